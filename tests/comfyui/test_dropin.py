"""RhymeFlow Accelerate (the drop-in) inside ComfyUI's own samplers, on the trained test-bed checkpoint.

Graph shapes are ComfyUI's: UNETLoader (``load_diffusion_model``) -> ModelSamplingSD3 -> RhymeFlow Accelerate ->
KSampler / KSamplerAdvanced (``nodes.common_ksampler``) or SamplerCustom(Advanced) (a guider and a SAMPLER).
Keyframe-only passes are counted independently of the pack: a forward pre-hook on the DiT records how many
latent frames every call carries.

Fidelity bound (stated, not measured here): for every sampler the drop-in's latent PSNR against the dense run
of the same sampler must be within ``MARGIN_DB`` of the Async Sampler's PSNR against dense euler. Why a margin
and not equality: non-keyframes follow the sampler's own integration of a held prediction, which equals the
Async Sampler's linear projection only for euler (tested exactly); other solvers differ in how their history
treats the sync points, which moves the error by a few dB either way, not by a different order. On the step-4800
checkpoint dpmpp_2m came out 6.6 dB under the Async path at these 20 steps and 9 frames (on the step-2000 checkpoint
it was within 6 dB): a multistep solver extrapolates from the jump its history sees at each sync point, and the
longer-trained model's predictions jump more there. So the margin is 8 dB. Those figures are for the linear field;
the node's default since is the quadratic one, which these tests use (the README's drop-in table has every sampler
at 30 steps with it).
"""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch

SAMPLERS = ("euler", "uni_pc", "dpmpp_2m", "res_multistep", "deis", "heun")
STEPS = 20
FRAMES = 9
SHIFT = 3.0  # for the tiny two-expert models built here; the Wan templates use 8 on real Wan
CFG = 4.0
MARGIN_DB = 8.0


@pytest.fixture(scope="module")
def conds(pack):
    pos, neg = pack.tb.RhymeFlowTestbedConditioning.execute("astronaut").args
    return pos, neg


def _latent():
    return {"samples": torch.zeros(1, 16, FRAMES, 16, 16)}


def _accelerate(pack, model, **kw):
    args = dict(preset="paper", target_speedup=1.6, strategy="uniform", budget=3, context_mode="kv", warmup=5, n_small=2, n_large=3,
                placement="device", cache_dtype="auto") | kw
    return pack.dropin_node.execute(model, **args).args[0]


@torch.inference_mode()  # as ComfyUI executes nodes
def _ksampler(model, conds, sampler, seed=0, **kw):
    import nodes as comfy_nodes

    return comfy_nodes.common_ksampler(model, seed, STEPS, CFG, sampler, "simple", conds[0], conds[1], _latent(), **kw)[0]["samples"]


@contextlib.contextmanager
def _frame_counts(model):
    """Latent frames of every DiT call while the block is active."""
    seen: list[int] = []
    handle = model.model.diffusion_model.register_forward_pre_hook(lambda mod, args: seen.append(int(args[0].shape[2])))
    try:
        yield seen
    finally:
        handle.remove()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    peak = b.abs().max().clamp_min(1e-6)
    return float(10 * torch.log10(peak**2 / (a - b).pow(2).mean().clamp_min(1e-20)))


def _guided(model, conds, sampler):
    """``model`` sampled by ``sampler`` the way SamplerCustomAdvanced does (CFGGuider, simple sigmas, seed 0)."""
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(*conds)
    guider.set_cfg(CFG)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    latent = _latent()["samples"]
    return guider.sample(comfy.sample.prepare_noise(latent, 0), latent, sampler, sigmas, disable_pbar=True, seed=0)


def _async(pack, model, conds, plan, projection="linear"):
    """The Async Sampler path (SamplerCustomAdvanced shape) with euler keyframes."""
    m = pack.patch_node.execute(model, context_mode="kv", placement="device", cache_dtype="auto").args[0]
    sampler = pack.sampler_node.execute(keyframes=plan, preset="paper", warmup=5, n_small=2, n_large=3,
                                        keyframe_solver="euler", projection=projection).args[0]
    return _guided(m, conds, sampler), pack.glue.holder_of(m).last_result


def _plan(pack):
    return pack.kf_node.execute(strategy="uniform", budget=3, threshold=0.98, manual="", force_first=True,
                                force_last=True).args[0]


def test_euler_equals_the_async_sampler(pack, testbed, conds):
    ours_model = _accelerate(pack, testbed, projection="linear")
    ours = _ksampler(ours_model, conds, "euler")
    theirs, async_result = _async(pack, testbed, conds, _plan(pack))
    result = pack.glue.holder_of(ours_model).last_result
    assert result.roles == async_result.roles and result.keyframe_passes > 0
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_quadratic_projection_follows_the_async_samplers(pack, testbed, conds):
    """With euler, the drop-in's quadratic field steps along the curve the Async Sampler's quadratic projection jumps
    along: it lands nearer that result than the linear field does."""
    theirs, _ = _async(pack, testbed, conds, _plan(pack), projection="quadratic")
    model = _accelerate(pack, testbed)  # the node's default projection
    quadratic = _ksampler(model, conds, "euler")
    linear = _ksampler(_accelerate(pack, testbed, projection="linear"), conds, "euler")
    assert not torch.equal(quadratic, linear)
    assert _psnr(quadratic, theirs) > _psnr(linear, theirs) + 3.0, (_psnr(quadratic, theirs), _psnr(linear, theirs))
    result = pack.glue.holder_of(model).last_result
    assert result.settings["projection"] == "quadratic"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_keyframe_only_passes_close_to_the_async_path(pack, testbed, conds, sampler):
    dense = _ksampler(testbed, conds, sampler)
    model = _accelerate(pack, testbed)
    with _frame_counts(model) as seen:
        ours = _ksampler(model, conds, sampler)
    result = pack.glue.holder_of(model).last_result
    keyframes = len(result.keyframes)
    assert keyframes < FRAMES and result.keyframe_passes > 0 and result.settings["sampler"] == sampler
    short = [n for n in seen if n < FRAMES]
    assert short and all(n == keyframes for n in short)  # keyframe-only DiT calls carry the keyframes only
    assert len(short) == result.calls["keyframe"] and len(seen) == sum(result.calls.values())
    # FLOP-ideal prices the DiT calls counted by the hook; with one call per step that is the step map's figure
    by_calls = pack.flops.flop_ideal_from_counts(len(seen) - len(short), len(short), keyframes, result.dims, kv_cached=True)
    by_steps = pack.flops.flop_ideal_from_counts(result.full_passes, result.keyframe_passes, keyframes, result.dims, kv_cached=True)
    assert result.flop_speedup == pytest.approx(by_calls) and result.flop_speedup > 1.0
    if len(seen) == STEPS:
        assert by_calls == pytest.approx(by_steps)
    theirs, _ = _async(pack, testbed, conds, _plan(pack))
    async_psnr = _psnr(theirs, _ksampler(testbed, conds, "euler"))
    assert torch.isfinite(ours).all()
    assert _psnr(ours, dense) >= async_psnr - MARGIN_DB, (sampler, _psnr(ours, dense), async_psnr)


def test_sampler_custom_and_sampler_custom_advanced(pack, testbed, conds):
    import comfy.sample
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    model = _accelerate(pack, testbed)
    holder = pack.glue.holder_of(model)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    sampler = comfy.samplers.sampler_object("dpmpp_2m")
    custom = SamplerCustom.execute(model, True, 0, CFG, conds[0], conds[1], sampler, sigmas, _latent()).args[0]["samples"]
    assert holder.last_result.keyframe_passes > 0 and holder.last_result.settings["sampler"] == "dpmpp_2m"
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(*conds)
    guider.set_cfg(CFG)
    latent = _latent()["samples"]
    advanced = guider.sample(comfy.sample.prepare_noise(latent, 0), latent, sampler, sigmas, disable_pbar=True, seed=0)
    torch.testing.assert_close(custom, advanced)  # same graph semantics, same seed


def test_two_expert_ksampler_advanced_syncs_cleanly_at_the_switch(pack, testbed, conds, tiny_wan, tmp_path):
    """Wan 2.2 A14B's template shape: KSamplerAdvanced high-noise expert (steps 0..switch, leftover noise),
    then KSamplerAdvanced low-noise expert (switch..end, no added noise), one Accelerate node per expert."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    low_base = ModelSamplingSD3().patch(tiny_wan(tmp_path / "low.safetensors", 1, dim=128, ffn_dim=256, num_layers=2), SHIFT)[0]
    high, low = _accelerate(pack, testbed), _accelerate(pack, low_base)
    switch = STEPS // 2
    import nodes as comfy_nodes

    mid = comfy_nodes.common_ksampler(high, 0, STEPS, CFG, "uni_pc", "simple", conds[0], conds[1], _latent(),
                                      start_step=0, last_step=switch, force_full_denoise=False)[0]
    out = comfy_nodes.common_ksampler(low, 0, STEPS, CFG, "uni_pc", "simple", conds[0], conds[1], mid, disable_noise=True,
                                      start_step=switch, last_step=10000, force_full_denoise=True)[0]["samples"]
    first, second = pack.glue.holder_of(high).last_result, pack.glue.holder_of(low).last_result
    assert first.sigma_end == pytest.approx(second.sigma_start) and first.sigma_end > 0
    assert second.schedule.warmup == 1 < first.schedule.warmup
    assert all(r[0] == 0 for r in second.roles) and all(r[1] == 1 for r in second.roles)  # full pass, then a sync
    assert first.keyframe_passes > 0 and second.keyframe_passes > 0 and torch.isfinite(out).all()
    ui = pack.stats_node.execute(high, {"samples": out}, second_model=low).ui["rhymeflow_stats"][0]
    assert [(s["start"], s["steps"]) for s in ui["segments"]] == [(0, len(first.roles[0])), (len(first.roles[0]), len(second.roles[0]))]


def test_denoise_below_one_and_a_batch_of_two(pack, testbed, conds):
    """denoise < 1 samples the tail of a longer schedule (a run not from noise: one full pass, then syncs); a batch
    of two latents shares one keyframe choice and holds each sample's (and CFG branch's) own predictions."""
    import nodes as comfy_nodes

    model = _accelerate(pack, testbed)
    holder = pack.glue.holder_of(model)
    with torch.inference_mode():
        start = {"samples": torch.randn(1, 16, FRAMES, 16, 16, generator=torch.Generator().manual_seed(1))}
        out = comfy_nodes.common_ksampler(model, 0, STEPS, CFG, "uni_pc", "simple", *conds, start, denoise=0.6)[0]["samples"]
    result = holder.last_result
    assert result.sigma_start < pack.presets.TOP_SIGMA and result.schedule.warmup == 1 and result.keyframe_passes > 0
    assert torch.isfinite(out).all()
    with _frame_counts(model) as seen, torch.inference_mode():
        pair = comfy_nodes.common_ksampler(model, 0, STEPS, CFG, "dpmpp_2m", "simple", *conds,
                                           {"samples": torch.zeros(2, 16, FRAMES, 16, 16)})[0]["samples"]
    assert pair.shape[0] == 2 and torch.isfinite(pair).all() and not torch.equal(pair[0], pair[1])
    assert holder.last_result.calls["keyframe"] == sum(n < FRAMES for n in seen) > 0


def test_target_preset_reaches_its_flop_ideal_speedup(pack, testbed, conds):
    """preset=target picks the paper warm-up and the shortest strides reaching target_speedup, priced on this model at
    this latent; the run's FLOP-ideal (counted calls, real dims) meets it."""
    model = _accelerate(pack, testbed, preset="target", target_speedup=1.4)
    _ksampler(model, conds, "uni_pc")
    result = pack.glue.holder_of(model).last_result
    assert result.flop_speedup >= 1.4 and result.keyframe_passes > 0
    expected = pack.presets.target_schedule(1.4, _run_sigmas(testbed), "wan", result.dims, len(result.keyframes), True)
    assert result.schedule == expected
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: target_speedup=19.* is out of reach"):
        _ksampler(_accelerate(pack, testbed, preset="target", target_speedup=19.0), conds, "uni_pc")


def _run_sigmas(model) -> list[float]:
    """The sigmas KSampler gives uni_pc at STEPS (it drops the penultimate sigma of a STEPS + 1 schedule)."""
    import comfy.samplers

    return comfy.samplers.KSampler(model, STEPS, "cpu", "uni_pc", "simple", 1.0).sigmas.tolist()


def _snapshot(model):
    to = model.model_options.get("transformer_options", {})
    return (sorted(model.model_options), sorted(to), repr(to.get("patches_replace")), repr(to.get("wrappers")),
            {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()})


def test_bypassing_the_node_is_bit_identical_dense_and_the_input_is_untouched(pack, testbed, conds):
    before, options = _snapshot(testbed), copy.deepcopy(testbed.model_options)
    dense = _ksampler(testbed, conds, "uni_pc")
    model = _accelerate(pack, testbed)
    accelerated = _ksampler(model, conds, "uni_pc")
    assert not torch.equal(accelerated, dense)
    assert _snapshot(testbed) == before and testbed.model_options.keys() == options.keys()
    assert torch.equal(_ksampler(testbed, conds, "uni_pc"), dense)


def test_requeue_after_an_interrupt_is_bit_identical(pack, testbed, conds):
    import comfy.model_management
    import comfy.sample

    model = _accelerate(pack, testbed)
    holder = pack.glue.holder_of(model)
    clean = _ksampler(model, conds, "dpmpp_2m")

    def interrupt(step, x0, x, total):
        if step == STEPS - 4:  # inside a keyframe group: run state and context cache are live
            assert holder.run is not None and holder.run.cache.nbytes() > 0
            raise comfy.model_management.InterruptProcessingException()

    latent = _latent()["samples"]
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        comfy.sample.sample(model, comfy.sample.prepare_noise(latent, 0), STEPS, CFG, "dpmpp_2m", "simple", conds[0],
                            conds[1], latent, callback=interrupt, disable_pbar=True, seed=0)
    assert holder.run is None and holder.engine is None
    assert torch.equal(_ksampler(model, conds, "dpmpp_2m"), clean)


def test_refusals_name_the_node_and_what_works(pack, testbed, conds):
    from comfy_extras.nodes_easycache import EasyCacheNode
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

    eps = ModelSamplingDiscrete().patch(testbed, "eps", False)[0]
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: input 'model': model_sampling \w+ is not supported; .*flow model"):
        _accelerate(pack, eps)

    model = _accelerate(pack, testbed)
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: input 'model' already has the drop-in"):
        _accelerate(pack, model)
    with pytest.raises(ValueError, match=r"RhymeFlow Projection Patch: input 'model' already has the drop-in"):
        pack.patch_node.execute(model, context_mode="kv", placement="device", cache_dtype="auto")
    cached = EasyCacheNode.execute(model, 0.2, 0.15, 0.95, False).args[0]
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: the MODEL also has EasyCache"):
        _ksampler(cached, conds, "euler")
    import nodes as comfy_nodes

    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: the latent is an image latent \(shape \(1, 16, 1, 16, 16\): one frame"):
        comfy_nodes.common_ksampler(model, 0, STEPS, CFG, "euler", "simple", conds[0], conds[1],  # an image latent
                                    {"samples": torch.zeros(1, 16, 16, 16)})
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: 6 steps is too few"):
        comfy_nodes.common_ksampler(model, 0, 6, CFG, "euler", "simple", conds[0], conds[1], _latent())
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: n_large=1 must be at least n_small=2"):
        _accelerate(pack, testbed, preset="custom", n_small=2, n_large=1)


def test_step_caching_under_euler_equals_the_async_loop_on_the_same_schedule(pack, pack_import, testbed, conds):
    """preset=target past the paper's speed-up thins the steps; a reused step returns every frame's held x0, which under
    euler is one step over the merged interval: the Async loop on the same schedule gives the same video."""
    import comfy.samplers

    model = _accelerate(pack, testbed, preset="target", target_speedup=2.5, projection="linear")
    ours = _ksampler(model, conds, "euler")
    result = pack.glue.holder_of(model).last_result
    assert result.step_map.reused_steps() > 0 and result.flop_speedup >= 2.5
    assert sum(result.calls.values()) == STEPS - result.step_map.reused_steps()  # no call at a reused step
    patched = pack.patch_node.execute(testbed, context_mode="kv", placement="device", cache_dtype="auto").args[0]
    sampler = comfy.samplers.KSAMPLER(pack_import("rhymeflow_core.sampler").sample_rhymeflow, extra_options={
        "plan": _plan(pack), "schedule": result.schedule, "keyframe_solver": "euler", "projection": "linear"})
    theirs = _guided(patched, conds, sampler)
    assert pack.glue.holder_of(patched).last_result.roles == result.roles
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
