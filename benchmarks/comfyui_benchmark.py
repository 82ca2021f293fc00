"""The benchmark inside ComfyUI: RhymeFlow beside ComfyUI's own EasyCache (and AsymRnR) on the same graph.

Run from the repo root with ComfyUI's interpreter (ComfyUI is found through ``COMFYUI_PATH``, default
``/opt/comfyui``)::

    OMP_NUM_THREADS=2 /opt/comfyui/.venv/bin/python benchmarks/comfyui_benchmark.py [--steps 30] [--videos 4] [--sampler uni_pc]

Prints one table and writes ``out/comfyui_benchmark/comfyui_benchmark.json``. Everything runs in this process,
without a server, through ComfyUI's own code, the way the example workflow wires it:
UNETLoader (``comfy.sd.load_diffusion_model`` on the test-bed checkpoint) -> ModelSamplingSD3 (the test bed's SAMPLE_SHIFT) ->
[method's model patch] -> CFGGuider (the test bed's SAMPLE_CFG) with the test-bed conditioning -> the simple
scheduler's sigmas as KSampler computes them for the sampler (uni_pc drops the penultimate sigma of one step more) ->
RandomNoise -> ``guider.sample(...)`` (what SamplerCustomAdvanced calls, minus its preview callback) ->
RhymeFlow Test-bed Decode. ComfyUI's nodes are called through their own ``execute``/``patch`` functions; the
pack is imported the way ComfyUI imports it (a package from the repo root's ``__init__.py``).

Rows, all on the same seeds, every one sampled by ``--sampler`` (KSamplerSelect; default euler, the Wan templates'
own is uni_pc):
- dense at ``--steps``: the reference;
- RhymeFlow: Projection Patch (kv) + Async Sampler, presets paper and fast, semantic keyframes, ``--budget`` (only
  with euler: the Async Sampler is its own sampler, euler or ab2 on keyframes, so under another ``--sampler`` it
  would not be the same graph);
- RhymeFlow Accelerate (the drop-in MODEL node) with ``preset=target`` at each ``--targets`` speed-up: the target
  knob's schedule (paper strides on thinned steps; see ``rhymeflow_core.presets.target_schedule``);
- EasyCache (ComfyUI's core node, ``comfy_extras.nodes_easycache``) at each ``--easycache``
  reuse threshold (start 0.15, end 0.95: the node's defaults); the steps it skipped come from its own log
  line ("EasyCache - skipped N/M steps"), as its holder is reset when sampling ends;
- AsymRnR Token Reduction (schedule_source "testbed", the schedule calibrated on this model);
- dense with k < ``--steps`` steps, k chosen so its time matches the fastest RhymeFlow row, and a sweep of
  k from N/4 to 2N/3: the honest baseline an accelerator has to beat.
Not included: EasyCache stacked on RhymeFlow. EasyCache caches whole-latent model outputs and RhymeFlow's
keyframe-only passes change the output's shape, so the RhymeFlow Async Sampler and RhymeFlow Accelerate (the
drop-in, the RhymeFlow rows under a sampler other than euler) refuse a MODEL that carries EasyCache (a clear error
instead of a shape mismatch inside core EasyCache).

Columns: wall-clock speed-up over dense (median of ``--reps`` interleaved rounds, every row once per round, on
one video, so drifts in machine load hit all rows alike), FLOP speed-up (dense passes over the passes the row paid
for: N/k for dense-k, N/(N - skipped) for EasyCache, the run's own counted FLOP figure for RhymeFlow; AsymRnR's is in
the core benchmark), PSNR/SSIM against dense per frame in pixel space (mean and worst frame over ``--videos``
videos, classes cycled, seeds 0..), and what the method did. Also writes a CSV and ``pareto.png`` (PSNR vs FLOP
and vs wall-clock speed-up, one curve per method).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.append(str(ROOT))  # after ComfyUI's root (set_up_comfyui): ComfyUI's nodes.py must win over our nodes/
from pareto_plot import write_csv, write_plot  # noqa: E402
from rhymeflow_core.testbed.model_io import SAMPLE_CFG, SAMPLE_SHIFT  # noqa: E402  (plain constants, no pack state)

COMFYUI_ROOT = Path(os.environ.get("COMFYUI_PATH", "/opt/comfyui")).expanduser().resolve()
PACK = "rhymeflow_pack"
DEFAULT_CHECKPOINT = ROOT / "rhymeflow_core" / "testbed" / "weights" / "testbed_wan.safetensors"
SHIFT, CFG, SCHEDULER = SAMPLE_SHIFT, SAMPLE_CFG, "simple"  # the test bed's, as every benchmark samples it
EASYCACHE_START, EASYCACHE_END = 0.15, 0.95  # the EasyCache node's defaults
MIN_STEPS, MIN_FRAMES, MAX_FRAMES = 10, 3, 21  # RhymeFlow's minimum steps; the test-bed latent's frame range
NOT_COMBINED = ("EasyCache + RhymeFlow is not a row: the RhymeFlow Async Sampler and RhymeFlow Accelerate refuse a MODEL that "
                "also has EasyCache (core EasyCache caches whole-latent outputs; keyframe-only passes change their shape).")


# ----------------------------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="RhymeFlow vs ComfyUI's EasyCache (and AsymRnR) on the test-bed model, sampled by ComfyUI in this process.")
    ap.add_argument("--steps", type=int, default=30, help=f"sampling steps of the dense reference (>= {MIN_STEPS}; default 30)")
    ap.add_argument("--frames", type=int, default=16, help=f"latent frames, {MIN_FRAMES}..{MAX_FRAMES} (default 16)")
    ap.add_argument("--videos", type=int, default=4, help="videos for PSNR/SSIM, classes cycled, seeds 0.. (>= 1; default 4)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved timing rounds, median reported (>= 1; default 3)")
    ap.add_argument("--budget", type=int, default=4, help="RhymeFlow keyframes (1..frames-1; default 4)")
    ap.add_argument("--easycache", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4], metavar="THRESHOLD",
                    help="EasyCache reuse_threshold per EasyCache row, 0..3 (default 0.05 0.1 0.2 0.4; 0.2 is the node's default)")
    ap.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0],
                    help="RhymeFlow Accelerate target_speedup per row (default 1.5 2 2.5 3)")
    ap.add_argument("--sampler", default="euler",
                    help="KSampler sampler_name of every row (default euler; the Wan templates use uni_pc); not ancestral or SDE")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="the test-bed checkpoint (safetensors)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "comfyui_benchmark", help="folder for comfyui_benchmark.json")
    args = ap.parse_args(argv)
    problems = []
    if args.steps < MIN_STEPS:
        problems.append(f"--steps {args.steps}: RhymeFlow needs at least {MIN_STEPS} steps")
    if not MIN_FRAMES <= args.frames <= MAX_FRAMES:
        problems.append(f"--frames {args.frames}: the test-bed latent takes {MIN_FRAMES}..{MAX_FRAMES} frames")
    if args.videos < 1:
        problems.append(f"--videos {args.videos}: need at least 1 video")
    if args.reps < 1:
        problems.append(f"--reps {args.reps}: need at least 1 timing round")
    if MIN_FRAMES <= args.frames <= MAX_FRAMES and not 1 <= args.budget < args.frames:
        problems.append(f"--budget {args.budget}: keyframes must be 1..{args.frames - 1} (fewer than --frames {args.frames})")
    bad = [t for t in args.easycache if not 0.0 <= t <= 3.0]
    if bad:
        problems.append(f"--easycache {' '.join(map(str, bad))}: EasyCache's reuse_threshold is 0..3")
    if not args.checkpoint.is_file():
        problems.append(f"--checkpoint {args.checkpoint}: no such file (train it: python -m rhymeflow_core.testbed.train)")
    if problems:
        ap.error("; ".join(problems))
    return args


# ----------------------------------------------------------------------------------------------- ComfyUI + the pack

def set_up_comfyui():
    """ComfyUI importable and forced onto the CPU (as tests/comfyui/conftest.py does); returns the pack's modules."""
    if not (COMFYUI_ROOT / "main.py").is_file():
        sys.exit(f"ComfyUI not found: no main.py in {COMFYUI_ROOT} (set COMFYUI_PATH; run with ComfyUI's own python)")
    root = str(COMFYUI_ROOT)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)  # ComfyUI's nodes.py must win over the repo's nodes/ folder (the repo root is appended above)
    try:
        import comfy.cli_args  # parses an empty argv (comfy.options.args_parsing is False): ours is left alone

        comfy.cli_args.args.cpu = True
        import comfy.model_management  # noqa: F401  (only now: the device is the CPU)
    except ImportError as exc:
        sys.exit(f"ComfyUI at {COMFYUI_ROOT} is not importable with {sys.executable} ({exc!r}); "
                 f"run this with {COMFYUI_ROOT}/.venv/bin/python")
    if PACK not in sys.modules:  # the pack as ComfyUI loads it: __init__.py executed as a package
        spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)

    class Pack:
        glue = importlib.import_module(f"{PACK}.nodes.glue")
        kf_node = importlib.import_module(f"{PACK}.nodes.keyframes_node").RhymeFlowKeyframes
        sampler_node = importlib.import_module(f"{PACK}.nodes.sampler_node").RhymeFlowAsyncSampler
        dropin_node = importlib.import_module(f"{PACK}.nodes.dropin_node").RhymeFlowAccelerate
        patch_node = importlib.import_module(f"{PACK}.nodes.patch_node").RhymeFlowProjectionPatch
        asym = importlib.import_module(f"{PACK}.nodes.asymrnr_node")
        asym_sources = importlib.import_module(f"{PACK}.rhymeflow_core.asymrnr.sources")
        tb = importlib.import_module(f"{PACK}.nodes.testbed_nodes")
        metrics = importlib.import_module(f"{PACK}.rhymeflow_core.metrics")
        presets = importlib.import_module(f"{PACK}.rhymeflow_core.presets")
        flow = importlib.import_module(f"{PACK}.rhymeflow_core.flow")
        classes = importlib.import_module(f"{PACK}.rhymeflow_core.testbed.conditioning").CLASSES

    return Pack


def check_sampler(name: str) -> None:
    """Exit with what is accepted unless ``name`` is a deterministic KSampler sampler on the scheduler's sigmas: the rows
    compare one seed's trajectories, which stochastic samplers re-noise differently per row, and dpm_fast/dpm_adaptive
    choose their own steps."""
    from comfy.samplers import KSampler

    excluded = ("ancestral", "sde", "seeds", "sa_solver", "ddpm", "lcm", "dpm_fast", "dpm_adaptive")
    accepted = [s for s in KSampler.SAMPLERS if not any(x in s for x in excluded)]
    if name not in accepted:
        sys.exit(f"--sampler {name!r}: not a deterministic KSampler sampler; accepted: {', '.join(accepted)}")


def asymrnr_skip_note(pack, frames: int) -> str | None:
    """Why the rows using the shipped test-bed AsymRnR schedule are left out at ``frames`` latent frames (``None``: they fit)."""
    tokens = frames * (pack.tb.LATENT_SIZE // 2) ** 2  # Wan's 1x2x2 patches
    return pack.asym_sources.schedule_skip_note(pack.asym_sources.TESTBED_SCHEDULE, tokens)


class EasyCacheLog(logging.Handler):
    """Collects EasyCache's end-of-run line "EasyCache - skipped N/M steps" (its holder is reset right after)."""

    PATTERN = re.compile(r"^EasyCache - skipped (\d+)/(\d+) steps")

    def __init__(self):
        super().__init__(logging.INFO)
        self.runs: list[tuple[int, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = self.PATTERN.match(record.getMessage())
        if m:
            self.runs.append((int(m.group(1)), int(m.group(2))))


def set_up_logging() -> EasyCacheLog:
    root = logging.getLogger()
    root.setLevel(logging.INFO)  # EasyCache logs at INFO; only our handler sees INFO records
    capture = EasyCacheLog()
    loud = logging.StreamHandler(sys.stderr)
    loud.setLevel(logging.WARNING)
    root.addHandler(capture)
    root.addHandler(loud)
    return capture


# ----------------------------------------------------------------------------------------------- methods

@dataclass
class Job:
    cls: str
    seed: int


@dataclass
class Method:
    """One row: the MODEL going into the guider, the sampler, the step count, and what to read after a run."""

    name: str
    model: object
    sampler: object
    steps: int
    after: Callable | None = None  # (EasyCache log lines of the run) -> dict of per-run facts (passes, skipped steps, ...)
    result: dict = field(default_factory=dict)
    facts: list = field(default_factory=list)


class Bench:
    def __init__(self, pack, args, easycache_log: EasyCacheLog):
        import comfy.sd
        from comfy_extras.nodes_custom_sampler import CFGGuider, KSamplerSelect, RandomNoise
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3

        self.pack, self.args, self.log = pack, args, easycache_log
        self.CFGGuider, self.KSamplerSelect, self.RandomNoise = CFGGuider, KSamplerSelect, RandomNoise
        unet = comfy.sd.load_diffusion_model(str(args.checkpoint))  # what UNETLoader calls
        self.model = ModelSamplingSD3().patch(unet, SHIFT)[0]
        self.conds = {c: pack.tb.RhymeFlowTestbedConditioning.execute(c).args for c in pack.classes}
        self.sigmas: dict[tuple[int, int], object] = {}

    # -- one SamplerCustomAdvanced-equivalent run
    def sample(self, m: Method, job: Job):
        import comfy.model_management
        import comfy.sample
        import torch

        pos, neg = self.conds[job.cls]
        guider = self.CFGGuider.execute(m.model, pos, neg, CFG).args[0]
        key = (id(m.model), m.steps)
        if key not in self.sigmas:
            self.sigmas[key] = self.ksampler_sigmas(m.model, m.steps)
        latent = self.pack.tb.RhymeFlowTestbedEmptyLatent.execute(self.args.frames).args[0]["samples"]
        latent = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent)
        noise = self.RandomNoise.execute(job.seed).args[0]
        with torch.inference_mode():  # as ComfyUI executes nodes (uni_pc would otherwise build an autograd graph)
            out = guider.sample(noise.generate_noise({"samples": latent}), latent, m.sampler, self.sigmas[key],
                                disable_pbar=True, seed=noise.seed)
        return out.to(comfy.model_management.intermediate_device())

    def decode(self, samples):
        frames = self.pack.tb.RhymeFlowTestbedDecode.execute({"samples": samples}).args[0]  # [T, H, W, 3]
        return frames.permute(3, 0, 1, 2)  # [3, T, H, W] for rhymeflow_core.metrics

    def ksampler_sigmas(self, model, steps: int):
        """The sigmas ComfyUI's KSampler computes for ``--sampler`` (``comfy.samplers.KSampler``: for uni_pc one step
        more with the penultimate sigma dropped; for euler the scheduler's own), so every row samples what the
        templates' KSampler would."""
        from comfy.samplers import KSampler

        return KSampler(model, steps, "cpu", self.args.sampler, SCHEDULER, 1.0).sigmas

    # -- the rows
    def sampler(self):
        """``--sampler`` as KSamplerSelect gives it (every row but the Async Sampler's samples with it)."""
        return self.KSamplerSelect.execute(self.args.sampler).args[0]

    def dense(self, steps: int, name: str | None = None) -> Method:
        return Method(name or f"dense {self.args.sampler}-{steps}", self.model, self.sampler(), steps)

    def rhymeflow(self, preset: str) -> Method:
        pack, a = self.pack, self.args
        patched = pack.patch_node.execute(self.model, context_mode="kv", placement="device", cache_dtype="auto").args[0]
        plan = pack.kf_node.execute(strategy="semantic", budget=a.budget, threshold=0.98, manual="", force_first=True,
                                    force_last=True).args[0]
        sampler = pack.sampler_node.execute(keyframes=plan, preset=preset, warmup=5, n_small=2, n_large=3,
                                            keyframe_solver="euler", projection="quadratic").args[0]  # the node's default
        sched = pack.presets.preset_schedule(preset, pack.flow.simple_sigmas(a.steps, SHIFT))
        holder = pack.glue.holder_of(patched)

        def after(_lines):
            s = holder.last_result.to_dict()
            return {"full_passes": s["full_passes"], "keyframe_passes": s["keyframe_passes"], "keyframes": s["keyframes"],
                    "flop_speedup": s["flop_speedup"]}

        name = f"rhymeflow {preset} (Tw{sched.warmup} {sched.n_small}-{sched.n_large} M{a.budget}) kv"
        return Method(name, patched, sampler, a.steps, after)

    def accelerate(self, target: float) -> Method:
        """The drop-in node at ``preset=target``, in front of the plain ``--sampler``."""
        a = self.args
        model = self.pack.dropin_node.execute(self.model, preset="target", target_speedup=target, strategy="semantic",
                                              budget=a.budget, context_mode="kv", warmup=5, n_small=2, n_large=3,
                                              placement="device", cache_dtype="auto").args[0]
        holder = self.pack.glue.holder_of(model)

        def after(_lines):
            r = holder.last_result
            return {"full_passes": r.full_passes, "keyframe_passes": r.keyframe_passes, "keyframes": r.keyframes,
                    "reused": r.step_map.reused_steps(), "flop_speedup": r.flop_speedup}

        return Method(f"rhymeflow target {target:g}x (Accelerate + {a.sampler})", model, self.sampler(), a.steps, after)

    def easycache(self, threshold: float) -> Method:
        from comfy_extras.nodes_easycache import EasyCacheNode

        model = EasyCacheNode.execute(self.model, threshold, EASYCACHE_START, EASYCACHE_END, False).args[0]

        def after(lines):
            if len(lines) != 1:
                raise RuntimeError(f"expected one 'EasyCache - skipped N/M steps' log line per run, got {lines}")
            return {"skipped": lines[0][0], "of": lines[0][1]}

        label = f"easycache {threshold:g}" + (" (node default)" if threshold == 0.2 else "")
        return Method(label, model, self.sampler(), self.args.steps, after)

    def asymrnr(self) -> Method:
        node = self.pack.asym.RhymeFlowAsymRnR
        model = node.execute(self.model, schedule_source="testbed", q_rate=0.3, kv_rate=0.3, scale=1.0, schedule_file="",
                             dense_start=0.2, cache_steps=0, partition_seed=0).args[0]

        def after(_lines):
            record = self.pack.asym.last_run(model)
            return {"attention_flops_saved": record["stats"]["flops_saved_fraction"]}

        return Method("asymrnr (testbed schedule)", model, self.sampler(), self.args.steps, after)


# ----------------------------------------------------------------------------------------------- measuring

def run(bench: Bench, m: Method, job: Job):
    before = len(bench.log.runs)
    out = bench.sample(m, job)
    if m.after is not None:
        m.facts.append(m.after(bench.log.runs[before:]))
    return out


def measure_quality(bench: Bench, methods: list[Method], jobs: list[Job], refs: list) -> None:
    metrics = bench.pack.metrics
    for m in methods:
        psnr, ssim = [], []
        for job, ref in zip(jobs, refs):
            v = bench.decode(run(bench, m, job))
            psnr.append(metrics.psnr_per_frame(ref, v))
            ssim.append(metrics.ssim_per_frame(ref, v))
        import torch

        p, s = torch.cat(psnr), torch.cat(ssim)
        m.result.update(psnr_mean=float(p.mean()), psnr_worst=float(p.min()), ssim_mean=float(s.mean()), ssim_worst=float(s.min()),
                        psnr_per_video=[round(float(x.mean()), 2) for x in psnr])


def measure_time(bench: Bench, methods: list[Method], job: Job, reps: int) -> None:
    times = {id(m): [] for m in methods}
    for _ in range(reps):  # every row once per round
        for m in methods:
            t0 = time.perf_counter()
            run(bench, m, job)
            times[id(m)].append(time.perf_counter() - t0)
    for m in methods:
        m.result["seconds"] = statistics.median(times[id(m)])
        m.result["seconds_all"] = [round(t, 3) for t in times[id(m)]]
        m.result["wall_ratio"] = methods[0].result["seconds"] / m.result["seconds"]


def what_it_did(m: Method) -> str:
    if not m.facts:
        return f"{m.steps} full steps"
    f = m.facts[-1]
    if "full_passes" in f:
        reused = f", {f['reused']} steps reused" if f.get("reused") else ""
        return f"full/key passes {f['full_passes']}/{f['keyframe_passes']}{reused}, keyframes {f['keyframes']}"
    if "skipped" in f:
        skipped = [x["skipped"] for x in m.facts]
        lo, hi = min(skipped), max(skipped)
        return f"skipped {lo if lo == hi else f'{lo}-{hi}'}/{f['of']} steps (mean {statistics.mean(skipped):.1f})"
    if "attention_flops_saved" in f:
        return f"attention FLOPs saved {f['attention_flops_saved']:.0%}"
    return ""


def flop_ratio(m: Method, steps: int) -> float | None:
    """Dense passes over the passes this row paid for (``None`` where only the core benchmark counts it: AsymRnR)."""
    if not m.facts:
        return steps / m.steps
    f = m.facts[-1]
    if "flop_speedup" in f:
        return f["flop_speedup"]
    if "skipped" in f:
        return f["of"] / (f["of"] - statistics.mean(x["skipped"] for x in m.facts))
    return None


def print_table(title: str, methods: list[Method]) -> None:
    ref = methods[0]
    cols = [("method", lambda r, m: m.name), ("steps", lambda r, m: str(m.steps)),
            ("wall x", lambda r, m: f"{r['wall_ratio']:.2f}"),
            ("FLOP x", lambda r, m: "-" if r.get("flop_ratio") is None else f"{r['flop_ratio']:.2f}"),
            ("PSNR", lambda r, m: "ref" if m is ref else f"{r['psnr_mean']:.2f}"),
            ("PSNR worst", lambda r, m: "ref" if m is ref else f"{r['psnr_worst']:.2f}"),
            ("SSIM", lambda r, m: "ref" if m is ref else f"{r['ssim_mean']:.3f}"),
            ("SSIM worst", lambda r, m: "ref" if m is ref else f"{r['ssim_worst']:.3f}"),
            ("s/video", lambda r, m: f"{r['seconds']:.2f}"),
            ("what it did", lambda r, m: r.get("did", ""))]
    rows = [[f(m.result, m) for _, f in cols] for m in methods]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, (h, _) in enumerate(cols)]
    print(title)
    print("  ".join(h.ljust(w) for (h, _), w in zip(cols, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    capture = set_up_logging()
    pack = set_up_comfyui()
    import torch

    import comfyui_version  # noqa: E402  (ComfyUI's root is on sys.path now)

    check_sampler(args.sampler)
    bench = Bench(pack, args, capture)
    jobs = [Job(cls=pack.classes[i % len(pack.classes)], seed=i) for i in range(args.videos)]
    print(f"ComfyUI {comfyui_version.__version__} in-process on the CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"test-bed checkpoint {args.checkpoint.name}, ModelSamplingSD3 shift {SHIFT}, CFGGuider cfg {CFG}, "
          f"KSamplerSelect {args.sampler}, KSampler's {SCHEDULER} sigmas; {args.frames} latent frames, {args.steps} steps; fidelity over {args.videos} videos, "
          f"timing median of {args.reps} interleaved rounds")

    methods = [bench.dense(args.steps)]
    if args.sampler == "euler":
        methods += [bench.rhymeflow("paper"), bench.rhymeflow("fast")]
    else:
        print(f"(no Async Sampler rows: it samples with its own euler/ab2 steps, not {args.sampler}; the drop-in rows are "
              f"RhymeFlow under {args.sampler})")
    methods += [bench.accelerate(t) for t in args.targets]
    methods += [bench.easycache(t) for t in args.easycache]
    skip = asymrnr_skip_note(pack, args.frames)
    if skip:
        print(skip)
    else:
        methods.append(bench.asymrnr())
    refs = [bench.decode(bench.sample(methods[0], j)) for j in jobs]
    measure_quality(bench, methods[1:], jobs, refs)  # the dense row is the reference
    measure_time(bench, methods, jobs[0], args.reps)  # first pass: the fastest RhymeFlow row and its equal-time k
    rf_rows = [m for m in methods if m.name.startswith("rhymeflow")]
    fastest = min(rf_rows, key=lambda m: m.result["seconds"])
    k = max(1, round(args.steps * fastest.result["seconds"] / methods[0].result["seconds"]))
    if k < args.steps:
        short = fastest.name.split(" (")[0]
        baseline = bench.dense(k, f"dense {args.sampler}-{k} @ equal time to {short}")
        measure_quality(bench, [baseline], jobs, refs)
        methods.append(baseline)
    else:
        print(f"(no equal-time baseline: the fastest RhymeFlow row, {fastest.name}, was not faster than dense)")
    sweep = [bench.dense(n) for n in sorted({max(1, round(args.steps * f)) for f in (0.25, 1 / 3, 0.4, 0.5, 2 / 3)})
             if n not in {m.steps for m in methods if m.name.startswith("dense")}]
    measure_quality(bench, sweep, jobs, refs)
    methods += sweep
    measure_time(bench, methods, jobs[0], args.reps)  # the reported timings: every row interleaved
    for m in methods:
        m.result["did"] = what_it_did(m)
        m.result["flop_ratio"] = flop_ratio(m, args.steps)
    print()
    print_table(f"== ComfyUI side by side: {args.steps} steps, {args.frames} latent frames, {args.videos} videos ==", methods)
    print(f"note: {NOT_COMBINED}")
    elapsed = time.perf_counter() - started
    report = {
        "command": " ".join([Path(sys.executable).as_posix(), *sys.argv]),
        "comfyui": {"version": comfyui_version.__version__, "path": str(COMFYUI_ROOT), "device": "cpu"},
        "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
        "config": {"sampler": args.sampler, "steps": args.steps, "frames": args.frames, "videos": args.videos, "reps": args.reps, "budget": args.budget,
                   "easycache_thresholds": args.easycache, "easycache_start_end": [EASYCACHE_START, EASYCACHE_END],
                   "shift": SHIFT, "cfg": CFG, "scheduler": SCHEDULER, "checkpoint": str(args.checkpoint),
                   "jobs": [j.__dict__ for j in jobs], "timing_video": jobs[0].__dict__},
        "rows": [{"method": m.name, "steps": m.steps, **m.result, "runs": m.facts} for m in methods],
        "equal_time_to": fastest.name,
        "not_included": NOT_COMBINED,
        "elapsed_seconds": round(elapsed, 1),
        "plot_title": (f"ComfyUI {comfyui_version.__version__}, test bed, {args.sampler}, {args.steps} steps, {args.frames} latent "
                       f"frames, {args.videos} videos: PSNR vs dense {args.sampler}-{args.steps}"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "comfyui_benchmark.json"
    path.write_text(json.dumps(report, indent=2))
    rows = [r for r in report["rows"] if r.get("flop_ratio") is not None]
    write_csv(report["rows"], args.out / "comfyui_benchmark.csv")
    if not write_plot(rows, report["plot_title"], args.out / "pareto.png"):
        print(f"(matplotlib is not installed in this interpreter: no plot; draw it with "
              f"python3 benchmarks/pareto_plot.py {path} {args.out / 'pareto.png'} under a python that has it)")
    print(f"\nwrote {path} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
