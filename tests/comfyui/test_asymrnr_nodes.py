"""The AsymRnR nodes inside ComfyUI's own sampling code, without a server: rates 0 are bit-identical to the
input model, rates > 0 reduce tokens and change the result, the input MODEL is never mutated, the state is
reset per run (clones sharing it don't leak matchings or stats into each other), calibration in a graph
(Calibrate -> dense run -> Schedule -> Token Reduction), and composition with RhymeFlow Projection Patch in
both orders (full passes reduced, keyframe-only passes passed through).

The pack is imported as ComfyUI imports it (``rhymeflow_pack``, as in test_nodes_inprocess.py); the model is a
tiny random Wan 2.1 T2V DiT (2 blocks, dim 256 = 2 heads) saved as safetensors and loaded with
``load_diffusion_model`` (what UNETLoader calls).
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

STEPS = 10
FRAMES = 5
H = W = 8  # latent 8x8 -> 16 tokens per frame, 80 video tokens at 5 frames


@pytest.fixture(scope="module")
def wan(tiny_wan, tmp_path_factory):
    return tiny_wan(tmp_path_factory.mktemp("wan") / "tiny_wan.safetensors", 0, dim=256, ffn_dim=256, num_layers=2)


@pytest.fixture
def output_dir(comfyui, tmp_path):
    import folder_paths

    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_output_directory(old)


# ----------------------------------------------------------------------------------------------- helpers

def _asym(pack, model, **kw):
    args = dict(schedule_source="uniform", q_rate=0.5, kv_rate=0.5, scale=1.0, schedule_file="", dense_start=0.2,
                cache_steps=0, partition_seed=0) | kw
    return pack.asym.RhymeFlowAsymRnR.execute(model, **args).args[0]


def _projection(pack, model):
    return pack.patch_node.execute(model, context_mode="kv", placement="device", cache_dtype="auto").args[0]


def _rf_sampler(pack):
    plan = pack.kf_node.execute(strategy="uniform", budget=2, threshold=0.98, manual="", force_first=True, force_last=True).args[0]
    return pack.sampler_node.execute(keyframes=plan, preset="paper", warmup=2, n_small=2, n_large=3,
                                     keyframe_solver="euler", projection="linear").args[0]


def _euler():
    import comfy.samplers

    return comfy.samplers.sampler_object("euler")


def _sample(pack, model, sampler=None, frames=FRAMES, seed=0):
    import comfy.sample
    import comfy.samplers

    pos, neg = pack.tb.RhymeFlowTestbedConditioning.execute("astronaut").args
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(3.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    latent = torch.zeros(1, 16, frames, H, W)
    noise = comfy.sample.prepare_noise(latent, seed)
    return guider.sample(noise, latent, sampler or _euler(), sigmas, disable_pbar=True, seed=seed)


def _stats(pack, model, out):
    res = pack.asym.RhymeFlowAsymRnRStats.execute(model, {"samples": out})
    assert res.args[0]["samples"] is out
    return res.args[1], res.ui["asymrnr_stats"][0]


def _snapshot(model):
    to = model.model_options.get("transformer_options", {})
    return (sorted(model.model_options), sorted(to), repr(to.get("wrappers")), to.get("optimized_attention_override"),
            {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()})


@pytest.fixture(scope="module")
def dense(pack, wan):
    return _sample(pack, wan)


# ----------------------------------------------------------------------------------------------- token reduction

def test_zero_rates_are_bit_identical(pack, wan, dense):
    m = _asym(pack, wan, q_rate=0.0, kv_rate=0.0)
    out = _sample(pack, m)
    assert torch.equal(out, dense)
    summary, stats = _stats(pack, m, out)
    assert stats["flops_saved_fraction"] == 0.0 and stats["kept_fraction"]
    assert all(r[2] == r[3] == 1.0 for r in stats["kept_fraction"])
    assert "0 of 20 (block, step) cells reduced" in summary


def test_uniform_rates_reduce(pack, wan, dense):
    m = _asym(pack, wan, q_rate=0.5, kv_rate=0.5)
    out = _sample(pack, m)
    assert torch.isfinite(out).all() and out.shape == dense.shape and not torch.equal(out, dense)
    summary, stats = _stats(pack, m, out)
    rows = stats["kept_fraction"]
    assert len(rows) == 2 * STEPS
    dense_steps = {r[1] for r in rows if r[2] == r[3] == 1.0}
    assert dense_steps == {0, 1}, dense_steps  # dense_start 0.2 of 10 steps
    assert all(r[2] == r[3] == 0.5 for r in rows if r[1] >= 2)  # 40 of 80 tokens kept
    assert 0.5 < stats["flops_saved_fraction"] < 0.7 and stats["matchings"] > 0
    assert "16 of 20 (block, step) cells reduced" in summary and "FLOPs saved" in summary
    # deterministic, and the run state was reset: a second run is identical
    assert torch.equal(_sample(pack, m), out)
    state = pack.asym.state_of(m)
    assert len(state.cache) == 0 and state.grid is None and state.stats.kept == {}


def test_input_model_is_never_mutated(pack, wan):
    before = _snapshot(wan)
    options_copy = copy.deepcopy(wan.model_options)
    m = _asym(pack, wan)
    assert m is not wan and m.model is wan.model
    assert _snapshot(wan) == before and wan.model_options == options_copy
    assert pack.asym.state_of(wan) is None
    to = m.model_options["transformer_options"]
    assert isinstance(to["asymrnr"], pack.asymrnr.AsymRnRState)
    assert to["optimized_attention_override"] is pack.asymrnr.override
    assert list(m.wrappers["outer_sample"]) == ["asymrnr"] and list(m.wrappers["apply_model"]) == ["asymrnr"]
    _sample(pack, m)
    assert _snapshot(wan) == before and wan.model_options == options_copy


def test_each_clone_has_its_own_state_and_result(pack, wan):
    """The holder policy: a clone (LoRA loader, ModelSamplingSD3, ...) gets a fresh state with the same schedule; its
    runs and results are its own, and a MODEL that was not sampled has no result (as RhymeFlow Stats)."""
    m = _asym(pack, wan)
    a, b = m.clone(), m.clone()
    state = pack.asym.state_of(m)
    sa, sb = pack.asym.state_of(a), pack.asym.state_of(b)
    assert len({id(state), id(sa), id(sb)}) == 3 and sa.schedule is state.schedule is sb.schedule
    out_a = _sample(pack, a, frames=5)
    out_b = _sample(pack, b, frames=3)  # another token grid in between
    _, stats_a = _stats(pack, a, out_a)
    _, stats_b = _stats(pack, b, out_b)
    assert stats_a["attention_flops_dense"] > stats_b["attention_flops_dense"]  # each MODEL reports its own run
    assert stats_a["flops_saved_fraction"] > 0  # the override found the clone's own state
    assert torch.equal(_sample(pack, a, frames=5), out_a)  # nothing of b's run leaked into a's
    with pytest.raises(ValueError, match=r"AsymRnR Stats: input 'model' has not finished a sampling run"):
        _stats(pack, m, out_a)  # m itself was never sampled


def test_applying_twice_replaces(pack, wan, dense):
    m = _asym(pack, _asym(pack, wan, q_rate=0.5), q_rate=0.0, kv_rate=0.0)
    assert pack.asym.state_of(m).previous_override is None
    assert torch.equal(_sample(pack, m), dense)


def test_previous_override_is_chained(pack, wan, dense):
    calls = []

    def spy(func, *args, **kwargs):
        calls.append(args[0].shape[1])
        return func(*args, **kwargs)

    base = wan.clone()
    base.model_options["transformer_options"]["optimized_attention_override"] = spy
    m = _asym(pack, base, q_rate=0.5, kv_rate=0.0)
    out = _sample(pack, m)
    assert torch.isfinite(out).all() and 40 in calls and 80 in calls  # reduced and dense self-attention reach the spy


def test_token_reduction_errors(pack, wan, output_dir):
    node = pack.asym.RhymeFlowAsymRnR
    with pytest.raises(ValueError, match=r"AsymRnR Token Reduction: input 'scale' = 1\.5; accepted: 0 <= scale <= 1"):
        _asym(pack, wan, schedule_source="file", schedule_file=_schedule_file(pack, output_dir, 2), scale=1.5)
    with pytest.raises(ValueError, match=r"input 'q_rate' = 0\.99; accepted"):
        _asym(pack, wan, q_rate=0.99)
    with pytest.raises(ValueError, match=r"'schedule_source' = 'input' but nothing is connected"):
        _asym(pack, wan, schedule_source="input")
    with pytest.raises(ValueError, match=r"the schedule has 4 blocks but the model has 2"):
        _asym(pack, wan, schedule_source="file", schedule_file=_schedule_file(pack, output_dir, 4))
    with pytest.raises(ValueError, match=r"input 'schedule_file' = 'nope\.json': no such file"):
        _asym(pack, wan, schedule_source="file", schedule_file="nope.json")
    with pytest.raises(ValueError, match=r"input 'schedule_source' = 'bogus'; accepted: uniform, testbed, file, input"):
        _asym(pack, wan, schedule_source="bogus")
    if not pack.asym.sources.TESTBED_SCHEDULE.is_file():
        with pytest.raises(ValueError, match=r"'testbed' but .* is not there yet"):
            _asym(pack, wan, schedule_source="testbed")
    with pytest.raises(ValueError, match=r"AsymRnR Stats: input 'model' has no AsymRnR patch"):
        pack.asym.RhymeFlowAsymRnRStats.execute(wan, {"samples": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"AsymRnR Stats: input 'model' has not finished a sampling run"):
        pack.asym.RhymeFlowAsymRnRStats.execute(_asym(pack, wan), {"samples": torch.zeros(1)})
    assert node.define_schema().node_id == "RhymeFlowAsymRnR"


def _schedule_file(pack, folder: Path, blocks: int) -> str:
    """A uniform schedule written into ``folder`` (ComfyUI's output folder in these tests); its name relative to it."""
    pack.asymrnr.ReductionSchedule.uniform(blocks, 4, q=0.5, kv=0.4).save(folder / f"s{blocks}.json")
    return f"s{blocks}.json"


def test_file_source_and_scale(pack, wan, dense, output_dir):
    path = _schedule_file(pack, output_dir, 2)
    zero = _asym(pack, wan, schedule_source="file", schedule_file=path, scale=0.0)
    assert torch.equal(_sample(pack, zero), dense)
    m = _asym(pack, wan, schedule_source="file", schedule_file=path, scale=0.5, cache_steps=1)
    sched = pack.asym.state_of(m).schedule
    assert sched.cache_steps == 1 and sched.rates["q"][0][0] == 0.25 and sched.rates["kv"][1][3] == 0.2
    out = _sample(pack, m)
    assert torch.isfinite(out).all() and not torch.equal(out, dense)
    node = pack.asym.RhymeFlowAsymRnR  # a rewritten file re-runs the node (IS_CHANGED)
    before = node.fingerprint_inputs(schedule_source="file", schedule_file=path, q_rate=0.3)
    os.utime(output_dir / path, ns=(before + 10**9, before + 10**9))
    assert node.fingerprint_inputs(schedule_source="file", schedule_file=path) == before + 10**9
    assert node.fingerprint_inputs(schedule_source="uniform", schedule_file="") is None
    assert node.fingerprint_inputs(schedule_source="file", schedule_file="missing.json") is None


# ----------------------------------------------------------------------------------------------- calibration

def test_calibration_in_a_graph(pack, wan, dense, output_dir):
    sched_node = pack.asym.RhymeFlowAsymRnRSchedule
    rec, handle = pack.asym.RhymeFlowAsymRnRCalibrate.execute(wan, target=0.3, q_cap=0.7, kv_cap=0.5, dense_start=0.2,
                                                                cache_steps=3, partition_seed=0).args
    with pytest.raises(ValueError, match=r"AsymRnR Schedule: nothing was recorded yet"):
        sched_node.execute(handle, {"samples": dense}, "asymrnr/schedule")
    out = _sample(pack, rec.clone())  # a clone of the calibrating MODEL (as ModelSamplingSD3 makes) reaches the handle
    assert torch.equal(out, dense)  # recording is dense and exact
    res = sched_node.execute(handle, {"samples": out}, "asymrnr/schedule")
    schedule, summary = res.args
    assert (schedule.num_blocks, schedule.num_steps) == (2, STEPS)
    assert abs(schedule.meta["achieved"] - 0.3) < 0.05 and "written to asymrnr/schedule_00001_.json" in summary
    assert res.ui["text"] == [summary]
    written = output_dir / "asymrnr" / "schedule_00001_.json"
    saved = json.loads(written.read_text())
    assert saved["format"] == "asymrnr-schedule" and (saved["family"], saved["tokens"]) == ("wan", FRAMES * H * W // 4)
    assert all(r == 0 for f in ("q", "kv") for row in schedule.rates[f] for r in row[:2])  # dense_start
    # same graph: the schedule goes straight into Token Reduction; later prompts: schedule_source=file
    m = _asym(pack, wan, schedule_source="input", schedule=schedule)
    out_in = _sample(pack, m)
    assert torch.isfinite(out_in).all() and not torch.equal(out_in, dense)
    m_file = _asym(pack, wan, schedule_source="file", schedule_file="asymrnr/schedule_00001_.json")
    assert torch.equal(_sample(pack, m_file), out_in)
    _, stats = _stats(pack, m_file, out_in)
    assert abs(stats["flops_saved_fraction"] - schedule.meta["achieved"]) < 0.1


@pytest.mark.parametrize("prefix, pattern", [
    ("", r"has no file name"), ("  ", r"has no file name"), (".", r"has no file name"),
    ("../escape", r"leaves ComfyUI's output folder"), ("/tmp/abs", r"leaves ComfyUI's output folder"),
    ("linked/schedule", r"leaves ComfyUI's output folder"),
])
def test_schedule_prefix_is_checked_before_anything_is_written(pack, wan, output_dir, prefix, pattern):
    elsewhere = Path(tempfile.mkdtemp())  # outside the output folder, reached through a link inside it
    (output_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    _, handle = pack.asym.RhymeFlowAsymRnRCalibrate.execute(wan, target=0.3, q_cap=0.7, kv_cap=0.5, dense_start=0.2,
                                                             cache_steps=3, partition_seed=0).args
    with pytest.raises(ValueError, match=r"^AsymRnR Schedule: input 'filename_prefix' = .* " + pattern):
        pack.asym.RhymeFlowAsymRnRSchedule.execute(handle, {"samples": torch.zeros(1)}, prefix)
    assert not list(output_dir.rglob("*.json")) and not list(elsewhere.rglob("*.json"))


# ----------------------------------------------------------------------------------------------- composition

@pytest.mark.parametrize("order", ["asymrnr_then_projection", "projection_then_asymrnr"])
def test_composition_with_projection_patch(pack, wan, order):
    def build(q, kv):
        if order == "asymrnr_then_projection":
            return _projection(pack, _asym(pack, wan, q_rate=q, kv_rate=kv))
        return _asym(pack, _projection(pack, wan), q_rate=q, kv_rate=kv)

    plain_rf = _sample(pack, _projection(pack, wan), _rf_sampler(pack))
    zero = build(0.0, 0.0)
    assert torch.equal(_sample(pack, zero, _rf_sampler(pack)), plain_rf)
    m = build(0.5, 0.5)
    out = _sample(pack, m, _rf_sampler(pack))
    assert torch.isfinite(out).all() and not torch.equal(out, plain_rf)
    holder = pack.glue.holder_of(m)
    rf = holder.last_result.to_dict()
    assert rf["keyframe_passes"] > 0 and rf["full_passes"] > 0
    summary, stats = _stats(pack, m, out)
    assert stats["unequal_passthrough"] > 0  # keyframe-only passes: attention passed through
    reduced_steps = {r[1] for r in stats["kept_fraction"] if r[2] < 1}
    assert reduced_steps and len({r[1] for r in stats["kept_fraction"]}) == rf["full_passes"]  # only full passes recorded
    # a dense run on the composed model after that is still exact with the Projection Patch alone at rates 0
    assert torch.equal(_sample(pack, zero), _sample(pack, _projection(pack, wan)))


# ----------------------------------------------------------------------------------------------- EasyCache

@pytest.mark.parametrize("order", ["easycache_then_asymrnr", "asymrnr_then_easycache"])
def test_composes_with_core_easycache(pack, wan, dense, order):
    """EasyCache skips whole steps; AsymRnR counts steps from sigma, so skipped calls do not shift its schedule.
    Both orders run, reduce tokens on the steps that are computed, and stay close to the dense result."""
    from comfy_extras.nodes_easycache import EasyCacheNode as EasyCache

    def easycache(model):
        return EasyCache.execute(model, reuse_threshold=0.2, start_percent=0.15, end_percent=0.95, verbose=False).args[0]

    model = _asym(pack, easycache(wan)) if order == "easycache_then_asymrnr" else easycache(_asym(pack, wan))
    out = _sample(pack, model)
    assert torch.isfinite(out).all() and out.shape == dense.shape
    text, stats = _stats(pack, model, out)
    assert stats["flops_saved_fraction"] > 0, text
    assert (out - dense).abs().mean() < dense.abs().mean()  # an approximation of dense, not noise
