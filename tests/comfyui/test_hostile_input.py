"""Hostile and careless input through a real headless ComfyUI server: every case gets a clear message naming the
node, the input, the value and what is accepted; none can exhaust the server; and nothing it does leaks into the
next run.

Each case is sent as the frontend sends it (``/prompt``, or the step-map route) to one server per module
(``conftest.server``). After each case the module checks the message, that it came quickly, that its ``/history``
entry is small and that the server still answers; after each group of cases, that a plain dense run on the cached
MODEL is bit-identical to the clean dense run made before any case (one per group, not per case: this tier shares
two CPU cores); at the end, that the server's peak memory, its ``/history`` and its log stayed small. The "untested classes" of issue 14 (batch > 1, denoise < 1,
CFG 1 and no negative, a re-queued cached prompt, fp8 weights, a frame-count change between runs, two samplers on
one patched MODEL) are here too, each checked against a run it must equal where one exists.

Graphs are written as API prompts by ``graph()`` (the test-bed model, its conditioning and empty latent, the pack's
nodes, ComfyUI's SamplerCustomAdvanced). Nothing depends on the test-bed model's size: its block count is never
used, and expected results are other runs of the same server, not stored figures.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from .server_harness import Run, Server

FRAMES, STEPS, SEED = 5, 12, 1234  # small: this tier shares 2 CPU cores with other work
UNET = "testbed_wan.safetensors"
CASE_SECONDS = 60  # a refused input must be refused quickly (the manual "0-30000000" took 48 s and 6.2 GB)
MAX_ERROR_CHARS = 1000  # the exception message of a refusal
MAX_HISTORY_ENTRY = 64 * 1024  # one refused prompt's /history entry (traceback and inputs included)
MAX_HISTORY_TOTAL = 4 * 1024 * 1024  # all of /history at the end of the module
MAX_PEAK_GROWTH = 512 * 1024 * 1024  # server peak RSS growth over the module, after the clean runs
MAX_LOG_GROWTH = 2 * 1024 * 1024


# ----------------------------------------------------------------------------------------------- graphs

def graph(*, sampler: str = "rhymeflow", frames: int = FRAMES, steps: int = STEPS, seed: int = SEED, keyframes: dict | None = None,
          patches: int = 1, asymrnr: dict | None = None, latent: str = "video", batch: int = 1, denoise: float = 1.0,
          cfg: float = 3.0, guider: str = "cfg", weight_dtype: str = "default", second_sampler: dict | None = None,
          tag: str = "out") -> dict:
    """An API prompt: test-bed Wan -> ModelSamplingSD3 -> [AsymRnR] -> Projection Patch x ``patches`` -> guider ->
    SamplerCustomAdvanced (RhymeFlow Async Sampler or euler) -> SaveLatent "9" (and "19" for ``second_sampler``)."""
    kf = dict(strategy="uniform", budget=3, threshold=0.98, manual="", force_first=True, force_last=True) | (keyframes or {})
    p: dict = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": weight_dtype}},
        "2": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 3.0}},
        "3": {"class_type": "RhymeFlowTestbedConditioning", "inputs": {"video_class": "cat"}},
        "4": {"class_type": "RhymeFlowKeyframes", "inputs": kf},
        "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "6": {"class_type": "BasicScheduler", "inputs": {"model": ["2", 0], "scheduler": "simple", "steps": steps, "denoise": denoise}},
    }
    model = ["2", 0]
    if asymrnr is not None:
        p["20"] = {"class_type": "RhymeFlowAsymRnR", "inputs": dict(
            model=model, schedule_source="uniform", q_rate=0.3, kv_rate=0.3, scale=1.0, schedule_file="", dense_start=0.2,
            cache_steps=0, partition_seed=0) | asymrnr}
        model = ["20", 0]
    for i in range(patches):
        nid = f"3{i}"
        p[nid] = {"class_type": "RhymeFlowProjectionPatch",
                  "inputs": {"model": model, "context_mode": "kv" if i == patches - 1 else "hidden", "placement": "device",
                             "cache_dtype": "auto"}}
        model = [nid, 0]
    if guider == "cfg":
        p["7"] = {"class_type": "CFGGuider", "inputs": {"model": model, "positive": ["3", 0], "negative": ["3", 1], "cfg": cfg}}
    else:
        p["7"] = {"class_type": "BasicGuider", "inputs": {"model": model, "conditioning": ["3", 0]}}
    if latent == "video":
        p["8"] = {"class_type": "RhymeFlowTestbedEmptyLatent", "inputs": {"frames": frames}}
    else:  # an image latent: 128 x 128 pixels is the test bed's 16 x 16 latent grid
        p["8"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}}
    lat = ["8", 0]
    if batch > 1:
        p["81"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": lat, "amount": batch}}
        lat = ["81", 0]

    def sampler_node(nid: str, kind: str) -> list:
        if kind == "rhymeflow":
            p[nid] = {"class_type": "RhymeFlowAsyncSampler", "inputs": {
                "keyframes": ["4", 0], "preset": "paper", "warmup": 5, "n_small": 2, "n_large": 3, "keyframe_solver": "euler",
                "projection": "quadratic"}}
        else:
            p[nid] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
        return [nid, 0]

    p["10"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["5", 0], "guider": ["7", 0], "sampler": sampler_node("11", sampler), "sigmas": ["6", 0], "latent_image": lat}}
    p["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": f"hostile/{tag}"}}
    if second_sampler is not None:
        noise = ["5", 0]
        if "seed" in second_sampler:
            p["15"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": second_sampler["seed"]}}
            noise = ["15", 0]
        p["12"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": noise, "guider": ["7", 0], "sampler": sampler_node("13", second_sampler.get("sampler", "rhymeflow")),
            "sigmas": ["6", 0], "latent_image": lat}}
        p["19"] = {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": f"hostile/{tag}_second"}}
    return p


def execution_error(run: Run) -> dict:
    errors = [d for t, d in run.status.get("messages", []) if t == "execution_error"]
    assert len(errors) == 1, f"expected one execution error, got status {run.error()}"
    return errors[0]


def peak_rss(server: Server) -> int:
    """The server process's peak resident memory (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


# ----------------------------------------------------------------------------------------------- clean references

class Clean:
    """Runs made before any case, and the check each group of cases ends with."""

    def __init__(self, server: Server):
        self.server = server
        self.dense = {}
        for seed in (SEED, SEED + 1):  # two seeds, alternated, so each check re-executes the sampler on the cached MODEL
            run = server.run(graph(sampler="dense", seed=seed, tag=f"clean_dense_{seed}"))
            assert run.ok(), run.error()
            self.dense[seed] = run.latent("9")
        run = server.run(graph(tag="clean_rhymeflow"))
        assert run.ok(), run.error()
        self.rhymeflow = run.latent("9")
        self.checks = 0
        self.peak = peak_rss(server)
        self.log_size = server.log_path.stat().st_size

    def check_after_case(self, what: str) -> None:
        """The server answers, and a dense run after the case is bit-identical to the clean one."""
        assert self.server.http.get(f"{self.server.url}/system_stats", timeout=10).ok, f"{what}: server does not answer"
        seed = (SEED, SEED + 1)[self.checks % 2]
        self.checks += 1
        run = self.server.run(graph(sampler="dense", seed=seed, tag=f"check_{self.checks}"))
        assert run.ok(), f"dense run after {what}: {run.error()}"
        assert "10" not in run.cached(), f"dense run after {what}: the sampler was served from the cache"
        assert torch.equal(run.latent("9"), self.dense[seed]), f"dense run after {what} differs from the clean one"


@pytest.fixture(scope="module")
def clean(server, checkpoint) -> Clean:
    return Clean(server)


def refused(server: Server, prompt: dict, node_type: str, *fragments: str) -> str:
    """Queue ``prompt``; it must fail quickly at ``node_type`` with a short message holding every fragment, leave a
    small ``/history`` entry and a server that still answers. (The dense check follows each group of cases.)"""
    t0 = time.monotonic()
    run = server.run(prompt, timeout=CASE_SECONDS)
    seconds = time.monotonic() - t0
    assert not run.ok(), f"{fragments[0]!r}: the prompt ran"
    err = execution_error(run)
    msg = err["exception_message"]
    assert err["node_type"] == node_type, (err["node_type"], msg)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert len(msg) <= MAX_ERROR_CHARS, f"message of {len(msg)} characters"
    assert seconds < CASE_SECONDS
    entry = server.http.get(f"{server.url}/history/{run.pid}", timeout=30)
    assert len(entry.content) <= MAX_HISTORY_ENTRY, f"/history entry of {len(entry.content)} bytes"
    assert server.http.get(f"{server.url}/system_stats", timeout=10).ok, "the server does not answer"
    return msg


# ----------------------------------------------------------------------------------------------- 1: Projection Patch twice

def test_projection_patch_twice_replaces_the_first(server, clean):
    run = server.run(graph(patches=2, tag="two_patches"))
    assert run.ok(), run.error()
    assert torch.equal(run.latent("9"), clean.rhymeflow), "two patches (the second kv) differ from one kv patch"
    assert "already patched; the earlier Projection Patch is replaced" in server.log()
    clean.check_after_case("two patches")


# ----------------------------------------------------------------------------------------------- 2: Keyframes manual

def test_manual_beyond_the_cap_or_the_latent_is_refused_at_once(server, clean):
    for text in ("0-30000000", "0-99999", "3, 9999999999999999999999999"):
        refused(server, graph(keyframes={"strategy": "manual", "manual": text}), "RhymeFlowKeyframes",
                f"RhymeFlow Keyframes: input 'manual' = {text!r}", "names a frame beyond 511; accepted: frame indices 0..511")
    msg = refused(server, graph(keyframes={"strategy": "manual", "manual": "0, 2, 100-400"}), "SamplerCustomAdvanced",
                  "RhymeFlow Keyframes (used by RhymeFlow Async Sampler): manual=[0, 2, 100, 101, 102, ... (298 more)]",
                  f"outside 0..{FRAMES - 1}", f"(the video has {FRAMES} latent frames)")
    assert "400" not in msg
    clean.check_after_case("manual frame lists")


def test_manual_is_not_parsed_when_the_strategy_ignores_it(server, clean):
    run = server.run(graph(keyframes={"manual": "0-30000000, not a list"}, tag="ignored_manual"))
    assert run.ok(), run.error()
    assert torch.equal(run.latent("9"), clean.rhymeflow)  # the same plan as with an empty text
    clean.check_after_case("ignored manual text")


# ----------------------------------------------------------------------------------------------- 3: AsymRnR schedule_file

OUTSIDE = "lies outside the folders schedules are read from"


@pytest.fixture(scope="module")
def schedule_files(server) -> dict:
    """Files in the server's folders: a secret outside them, links out of the input folder, a 2 GiB sparse file,
    and malformed schedules."""
    base = server.base
    secret = base / "secret_schedule.json"
    secret.write_text('{"format": "SECRET-CONTENT", "q": "SECRET"}')
    inp, out = base / "input", base / "output"
    inp.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    (inp / "evil.json").symlink_to("/etc/passwd")
    (inp / "secret_link.json").symlink_to(secret)
    with open(out / "huge.json", "wb") as f:
        f.truncate(2 * 1024 ** 3)
    valid = {"format": "asymrnr-schedule", "version": 2, "family": None, "tokens": None, "cache_steps": 3, "dst_stride": [1, 2, 2],
             "q": [[0.1, 0.1]], "kv": [[0.1, 0.1]], "meta": {}}
    bad = {"list.json": [valid], "no_q.json": {k: v for k, v in valid.items() if k != "q"},
           "cache_steps.json": valid | {"cache_steps": 10 ** 12}, "stride.json": valid | {"dst_stride": [1, 100000, 2]},
           "rows.json": valid | {"q": [[0.1, "x"]]}}
    for name, data in bad.items():
        (inp / name).write_text(json.dumps(data))
    (inp / "deep.json").write_text("[" * 200000 + "]" * 200000)
    (inp / "broken.json").write_text('{"format": "asymrnr-schedule", "q": [[0.1,')
    return {"secret": secret}


SCHEDULE_CASES = [
    ("/etc/passwd", ["input 'schedule_file' = '/etc/passwd' is not a .json file name"]),
    ("../../../../../../../etc/passwd.json", [OUTSIDE]),
    ("{secret}", [OUTSIDE]),
    ("../secret_schedule.json", [OUTSIDE]),
    ("evil.json", ["input 'schedule_file' = 'evil.json' " + OUTSIDE]),
    ("secret_link.json", [OUTSIDE]),
    ("huge.json", ["schedule file 'huge.json' is 2147483648 bytes; accepted: at most"]),
    ("list.json", ["schedule file 'list.json': the top level is a JSON array"]),
    ("no_q.json", ["schedule file 'no_q.json': field 'q' is missing"]),
    ("cache_steps.json", ["schedule file 'cache_steps.json': field 'cache_steps' is not an integer in 1..1000"]),
    ("stride.json", ["schedule file 'stride.json': field 'dst_stride[1]' is not an integer in 1..64"]),
    ("rows.json", ["schedule file 'rows.json': field 'q' block 0 step 1 is not a rate in [0, 1)"]),
    ("deep.json", ["schedule file 'deep.json'"]),
    ("broken.json", ["schedule file 'broken.json' is not valid JSON (line 1, column"]),
]


def test_schedule_file_is_confined_capped_and_validated(server, clean, schedule_files):
    for path, fragments in SCHEDULE_CASES:
        path = path.replace("{secret}", str(schedule_files["secret"]))
        msg = refused(server, graph(asymrnr={"schedule_source": "file", "schedule_file": path}), "RhymeFlowAsymRnR",
                      "AsymRnR Token Reduction: input 'schedule_file'", *fragments)
        assert "SECRET" not in msg and "root:" not in msg and "Traceback" not in msg, msg
    clean.check_after_case("schedule files")


# ----------------------------------------------------------------------------------------------- 4: image latent

def test_image_latent_is_named_as_such(server, clean):
    refused(server, graph(latent="image"), "SamplerCustomAdvanced",
            "RhymeFlow Async Sampler: the latent is an image latent (shape (1, 16, 1, 16, 16): one frame",
            "accepted: a video latent with at least 3 latent frames")
    clean.check_after_case("image latent")


# ----------------------------------------------------------------------------------------------- 5: smaller ones

def test_schedule_writer_refuses_an_empty_prefix(server, clean):
    prompt = graph(sampler="dense")
    prompt["40"] = {"class_type": "RhymeFlowAsymRnRCalibrate", "inputs": {
        "model": ["2", 0], "target": 0.3, "q_cap": 0.7, "kv_cap": 0.5, "dense_start": 0.2, "cache_steps": 3, "partition_seed": 0}}
    prompt["41"] = {"class_type": "RhymeFlowAsymRnRSchedule", "inputs": {
        "calibration": ["40", 1], "latent": ["8", 0], "filename_prefix": ""}}
    del prompt["9"]
    refused(server, prompt, "RhymeFlowAsymRnRSchedule",
            "AsymRnR Schedule: input 'filename_prefix' = '' has no file name; accepted: a path relative to ComfyUI's output folder")
    assert not list((server.base / "output").rglob("._*"))
    clean.check_after_case("empty schedule prefix")


@pytest.mark.parametrize("query, fragment", [
    ("threshold=nan", "threshold='nan' must be a finite number"),
    ("strategy=uniform&threshold=1e9", "threshold=1000000000.0 is a cosine similarity and must lie in [-1, 1]"),
    ("strategy=manual&manual=0-30000000", "names a frame beyond 511"),
    ("frames=" + "9" * 4000, "... (4000 characters) must lie in 2..512"),
    ("scheduler=" + "x" * 4000, "is not known; accepted: simple, "),
    ("steps=1000&denoise=0.05", "means 20000 scheduler steps; at most 10000"),
    ("start_step=30&end_step=30", "start_step=30 must be below end_step=30"),
])
def test_step_map_route_refuses_what_the_node_refuses(server, query, fragment):
    t0 = time.monotonic()
    r = server.http.get(f"{server.url}/rhymeflow/step_map?{query}", timeout=30)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text[:500]
    assert len(r.content) < 2000 and time.monotonic() - t0 < 10


# ----------------------------------------------------------------------------------------------- 6: classes that must keep working

def test_batch_of_two(server, clean):
    run = server.run(graph(batch=2, tag="batch2"))
    assert run.ok(), run.error()
    out = run.latent("9")
    assert out.shape[0] == 2 and out.shape[2] == FRAMES and torch.isfinite(out).all() and not torch.equal(out[0], out[1])


def test_denoise_below_one(server, clean):
    run = server.run(graph(denoise=0.8, tag="denoise"))
    assert run.ok(), run.error()
    assert torch.isfinite(run.latent("9")).all()


def test_cfg_one_equals_no_negative(server, clean):
    """CFG 1 skips the negative (ComfyUI's cfg1 optimisation): the same run as BasicGuider with the positive only."""
    cfg1 = server.run(graph(cfg=1.0, tag="cfg1"))
    basic = server.run(graph(guider="basic", tag="basic"))
    assert cfg1.ok() and basic.ok(), (cfg1.error(), basic.error())
    assert torch.isfinite(cfg1.latent("9")).all() and torch.equal(cfg1.latent("9"), basic.latent("9"))


def test_requeue_of_a_cached_prompt(server, clean):
    prompt = graph(tag="requeue")
    first = server.run(prompt)
    again = server.run(prompt)
    assert first.ok() and again.ok(), (first.error(), again.error())
    assert "10" not in first.cached() and "10" in again.cached()
    assert torch.equal(first.latent("9"), clean.rhymeflow) and torch.equal(again.latent("9"), clean.rhymeflow)


def test_fp8_weights(server, clean):
    rf = server.run(graph(weight_dtype="fp8_e4m3fn", tag="fp8_rf"))
    assert rf.ok(), rf.error()
    assert torch.isfinite(rf.latent("9")).all() and not torch.equal(rf.latent("9"), clean.rhymeflow)  # fp8 really used


def test_frame_count_change_between_runs(server, clean):
    """FRAMES (clean), then FRAMES + 2 on the same cached patched MODEL, then FRAMES again: equal to the clean run."""
    longer = server.run(graph(frames=FRAMES + 2, tag="longer"))
    assert longer.ok(), longer.error()
    assert longer.latent("9").shape[2] == FRAMES + 2 and torch.isfinite(longer.latent("9")).all()
    again = server.run(graph(tag="frames_again"))
    assert again.ok(), again.error()
    assert "10" not in again.cached() and torch.equal(again.latent("9"), clean.rhymeflow)
    clean.check_after_case("frame-count change")


def test_two_samplers_on_one_patched_model(server, clean):
    """Two RhymeFlow samplers on one guider (one patched MODEL, one holder) in one prompt, with different seeds: each
    equals its lone run, so no run state passes from one to the other."""
    run = server.run(graph(second_sampler={"seed": SEED + 1}, tag="two_samplers"))
    assert run.ok(), run.error()
    assert torch.equal(run.latent("9"), clean.rhymeflow)
    lone = server.run(graph(seed=SEED + 1, tag="lone_second"))
    assert lone.ok(), lone.error()
    assert torch.equal(run.latent("19"), lone.latent("9"))
    clean.check_after_case("two samplers")


# ----------------------------------------------------------------------------------------------- bounds over the module

def test_memory_history_and_log_stayed_bounded(server, clean):
    """Last in the module: nothing sent above grew the server's peak memory, its history or its log much, and a
    dense run is still the clean one."""
    clean.check_after_case("every case of this module")
    growth = peak_rss(server) - clean.peak
    assert growth < MAX_PEAK_GROWTH, f"server peak RSS grew by {growth / 2**20:.0f} MiB"
    history = server.http.get(f"{server.url}/history", timeout=30)
    assert history.ok and len(history.content) < MAX_HISTORY_TOTAL, f"/history is {len(history.content)} bytes"
    log_growth = server.log_path.stat().st_size - clean.log_size
    assert log_growth < MAX_LOG_GROWTH, f"server log grew by {log_growth} bytes"
    assert clean.checks > 0, "no case ran before this check: the bounds above would say nothing"
