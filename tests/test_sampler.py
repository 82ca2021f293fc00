"""RhymeFlow sampler, patch and Wan adapter on a small random test-bed model: exactness and behaviour."""
import re

import pytest
import torch

from rhymeflow_core.adapters.wan import WanAdapter
from rhymeflow_core.flops import count_flops
from rhymeflow_core.keyframes import KeyframePlan
from rhymeflow_core.patch import PatchConfig
from rhymeflow_core.sampler import sample_dense, sample_rhymeflow
from rhymeflow_core.flops import ModelDims, pass_flops
from rhymeflow_core.schedule import ScheduleConfig, build_step_map
from rhymeflow_core.testbed.runner import Job, initial_noise, patched_call, run_sampler
from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel, apply_rope, attention

FRAMES = 8


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanModel(WanConfig(dim=128, ffn_dim=256, num_layers=2)).eval().requires_grad_(False)


def job(**kw):
    return Job(**{"cls": 1, "seed": 3, "frames": FRAMES, "steps": 12, **kw})


def all_frames(x0):
    return list(range(x0.shape[2])), [0.0] * x0.shape[2]


@pytest.mark.parametrize("solver", ["euler", "ab2"])
@pytest.mark.parametrize("mode", ["kv", "hidden"])
def test_every_frame_a_keyframe_equals_dense(model, solver, mode):
    dense, _, _ = run_sampler(sample_dense, model, job(), solver=solver)
    ours, _, holder = run_sampler(sample_rhymeflow, model, job(), PatchConfig(context_mode=mode),
                                  schedule=ScheduleConfig(warmup=3), keyframe_solver=solver, select=all_frames)
    assert holder.last_result.keyframe_passes > 0  # keyframe-only passes really ran
    torch.testing.assert_close(ours, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", ["euler", "ab2"])
def test_warmup_covering_all_steps_but_one_equals_dense(model, solver):
    dense, _, _ = run_sampler(sample_dense, model, job(), solver=solver)
    ours, _, _ = run_sampler(sample_rhymeflow, model, job(), PatchConfig(), schedule=ScheduleConfig(warmup=11), keyframe_solver=solver)
    torch.testing.assert_close(ours, dense, atol=1e-6, rtol=1e-6)


def test_async_run_differs_from_dense_and_follows_the_step_map(model):
    dense, _, _ = run_sampler(sample_dense, model, job())
    sched = ScheduleConfig(warmup=3, n_small=2, n_large=3)
    ours, den, holder = run_sampler(sample_rhymeflow, model, job(), PatchConfig(), schedule=sched, plan=KeyframePlan(budget=3))
    stats = holder.last_result.to_dict()
    planned = build_step_map(FRAMES, 12, sched, stats["keyframes"])
    assert stats["roles"] == planned.roles.tolist()
    assert stats["full_passes"] == planned.full_passes() and stats["keyframe_passes"] == planned.keyframe_passes()
    assert den.calls == 12  # one batched CFG call per step
    assert not torch.allclose(ours, dense) and torch.isfinite(ours).all()
    assert holder.run is None  # per-run state dropped


def test_same_seed_same_bits(model):
    a, _, _ = run_sampler(sample_rhymeflow, model, job(), PatchConfig(), schedule=ScheduleConfig(warmup=3), plan=KeyframePlan(budget=3))
    b, _, _ = run_sampler(sample_rhymeflow, model, job(), PatchConfig(), schedule=ScheduleConfig(warmup=3), plan=KeyframePlan(budget=3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["kv", "hidden"])
def test_cfg_batched_or_split_calls_give_the_same_run(model, mode):
    kw = dict(schedule=ScheduleConfig(warmup=3), plan=KeyframePlan(budget=3))
    a, da, _ = run_sampler(sample_rhymeflow, model, job(), PatchConfig(context_mode=mode), **kw)
    b, db, _ = run_sampler(sample_rhymeflow, model, job(batch_cfg=False), PatchConfig(context_mode=mode), **kw)
    assert db.calls == 2 * da.calls
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cpu_placement_and_fp16_cache_run(model):
    kw = dict(schedule=ScheduleConfig(warmup=3), plan=KeyframePlan(budget=3))
    a, _, ha = run_sampler(sample_rhymeflow, model, job(), PatchConfig(), **kw)
    b, _, hb = run_sampler(sample_rhymeflow, model, job(), PatchConfig(placement="cpu", cache_dtype="float16"), **kw)
    assert hb.last_result.cache_bytes * 2 == ha.last_result.cache_bytes
    torch.testing.assert_close(a, b, atol=5e-2, rtol=0)


def _block_inputs(model, frames=5):
    torch.manual_seed(1)
    x = torch.randn(2, 16, frames, 8, 8)
    freqs = model.rope_encode(frames, 8, 8)
    e, e0 = model.time_modulation(torch.tensor([400.0, 700.0]), torch.float32)
    h = model.patch_embedding(x).flatten(2).transpose(1, 2)
    ctx = model.text_embedding(torch.randn(2, 8, 4096))
    return h, e0, freqs, ctx


def test_adapter_full_block_equals_original(model):
    h, e0, freqs, ctx = _block_inputs(model)
    adapter = WanAdapter(attention, apply_rope)
    for block in model.blocks:
        ref = block(h, e=e0, freqs=freqs, context=ctx, transformer_options={})
        out, k, v = adapter.block_forward(block, h, e0, freqs, ctx, {})
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        assert k.shape == v.shape == h.shape


def test_keyframe_block_with_every_frame_active_equals_original(model):
    h, e0, freqs, ctx = _block_inputs(model)
    adapter = WanAdapter(attention, apply_rope)
    block = model.blocks[0]
    ref = block(h, e=e0, freqs=freqs, context=ctx, transformer_options={})
    empty = h[:, :0]
    out = adapter.keyframe_block_forward(block, h, e0, freqs, ctx, empty, empty, {})
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_keyframe_block_rows_match_full_block_given_true_context(model):
    """Keyframe rows from the keyframe-only block equal the full block's rows when the context K/V is exact."""
    h, e0, freqs, ctx = _block_inputs(model)
    adapter = WanAdapter(attention, apply_rope)
    block = model.blocks[1]
    ref, k, v = adapter.block_forward(block, h, e0, freqs, ctx, {})
    n = 16  # tokens per frame (8x8 latent, 2x2 patches)
    key = torch.cat([torch.arange(0, n), torch.arange(3 * n, 4 * n)])
    other = torch.tensor([i for i in range(h.shape[1]) if i not in set(key.tolist())])
    out = adapter.keyframe_block_forward(block, h[:, key], e0, freqs[:, key], ctx, k[:, other], v[:, other], {})
    torch.testing.assert_close(out, ref[:, key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["kv", "hidden"])
def test_keyframe_pass_flops_match_the_flop_model(model, mode):
    """The keyframe-only pass computes only keyframe queries: its FLOPs follow pass_flops(active=M)."""
    j = job(frames=FRAMES)
    x = initial_noise(j)
    denoiser, extra, holder = patched_call(model, j, PatchConfig(context_mode=mode))
    run = holder.new_run()
    run.set_keyframes(torch.tensor([0, 4, 7]))
    counts = {}
    for pass_mode in ("record", "keyframe"):
        run.mode = pass_mode
        counts[pass_mode] = count_flops(lambda: denoiser(x, torch.tensor(0.5), **extra))
    holder.end_run()
    dims = ModelDims("test", layers=2, dim=128, ffn_dim=256, tokens_per_frame=64, frames=FRAMES, text_tokens=8)
    predicted = pass_flops(dims, 3, kv_cached=mode == "kv") / pass_flops(dims, FRAMES)
    assert counts["keyframe"] / counts["record"] == pytest.approx(predicted, rel=0.1)


@pytest.mark.parametrize("bad, message", [
    (dict(x=torch.zeros(1, 16, 8, 8)), "the latent is an image latent (shape (1, 16, 8, 8): one frame"),
    (dict(x=torch.zeros(1, 16, 1, 8, 8)), "the latent is an image latent (shape (1, 16, 1, 8, 8): one frame"),
    (dict(x=torch.zeros(16, 8, 8)), "accepted: a video latent [B, C, frames, H, W]"),
    (dict(frames=2), "the latent has 2 latent frames; accepted: at least 3 latent frames"),
    (dict(schedule=ScheduleConfig(warmup=12)), "warmup=12"),
    (dict(schedule=ScheduleConfig(warmup=3, n_small=-1)), "n_small=-1"),
    (dict(plan=KeyframePlan(budget=8)), "budget=8"),
    (dict(plan=KeyframePlan(strategy="manual", manual=(0, 9))), "9"),
    (dict(projection="cubic"), "projection='cubic'"),
    (dict(keyframe_solver="rk4"), "keyframe_solver='rk4'"),
])
def test_bad_configurations_raise_clear_errors(model, bad, message):
    frames = bad.pop("frames", FRAMES)
    j = job(frames=frames)
    denoiser, extra, holder = patched_call(model, j, PatchConfig())
    x = bad.pop("x", initial_noise(j))
    from rhymeflow_core.flow import simple_sigmas
    with pytest.raises(ValueError, match=re.escape(message)):
        sample_rhymeflow(denoiser, x, simple_sigmas(12, 3.0), extra, **bad)
    assert holder.run is None


def test_sampler_without_the_patch_is_refused(model):
    denoiser, extra, _ = patched_call(model, job())
    from rhymeflow_core.flow import simple_sigmas
    with pytest.raises(ValueError, match="no RhymeFlow Projection Patch"):
        sample_rhymeflow(denoiser, initial_noise(job()), simple_sigmas(12, 3.0), extra)
