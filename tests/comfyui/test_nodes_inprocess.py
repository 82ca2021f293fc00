"""The RhymeFlow nodes inside ComfyUI's own sampling code, without a server: validation errors name the node,
the input and what is accepted; the user's MODEL is never mutated; run state never outlives a run.

The pack is imported the way ComfyUI imports it (a package from the repo root's ``__init__.py``), under the
name ``rhymeflow_pack``. Models are a tiny random Wan 2.1 T2V DiT saved as safetensors and loaded with
ComfyUI's ``load_diffusion_model`` (what UNETLoader calls), so nothing waits for the trained checkpoint.
"""
from __future__ import annotations

import copy

import pytest
import torch


STEPS = 10
H = W = 8  # latent 8x8 -> 16 tokens per frame


TINY = {"dim": 128, "ffn_dim": 256, "num_layers": 2}


@pytest.fixture(scope="module")
def wan(tiny_wan, tmp_path_factory):
    """A tiny random Wan 2.1 T2V ModelPatcher (2 blocks, dim 128)."""
    return tiny_wan(tmp_path_factory.mktemp("wan") / "tiny_wan.safetensors", 0, **TINY)


def _conds(pack, cls="astronaut"):
    pos, neg = pack.tb.RhymeFlowTestbedConditioning.execute(cls).args
    return pos, neg


def _plan(pack, **kw):
    args = dict(strategy="uniform", budget=2, threshold=0.98, manual="", force_first=True, force_last=True) | kw
    return pack.kf_node.execute(**args).args[0]


def _rf_sampler(pack, plan=None, preset="paper", **kw):
    args = dict(keyframes=plan if plan is not None else _plan(pack), preset=preset, warmup=2, n_small=2, n_large=3,
                keyframe_solver="euler", projection="linear") | kw
    return pack.sampler_node.execute(**args).args[0]


def _sample(pack, model, sampler, frames=5, steps=STEPS, seed=0, latent=None, callback=None):
    import comfy.sample
    import comfy.samplers

    pos, neg = _conds(pack)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(3.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps).cpu()
    latent = torch.zeros(1, 16, frames, H, W) if latent is None else latent
    noise = comfy.sample.prepare_noise(latent, seed)
    return guider.sample(noise, latent, sampler, sigmas, callback=callback, disable_pbar=True, seed=seed)


def _sample_sigmas(model, steps=STEPS):
    """The sigmas ``_sample`` runs on."""
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps).cpu()


def _euler():
    import comfy.samplers

    return comfy.samplers.sampler_object("euler")


def _patched(pack, wan, **kw):
    args = dict(context_mode="kv", placement="device", cache_dtype="auto") | kw
    return pack.patch_node.execute(wan, **args).args[0]


def _options_snapshot(model):
    to = model.model_options.get("transformer_options", {})
    return (sorted(model.model_options), sorted(to), repr(to.get("patches_replace")), repr(to.get("wrappers")),
            {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()})


# ----------------------------------------------------------------------------------------------- patch node

def test_patch_clones_and_never_mutates_the_input(pack, wan):
    before = _options_snapshot(wan)
    options_copy = copy.deepcopy(wan.model_options)
    m = _patched(pack, wan)
    assert m is not wan and m.model is wan.model
    assert _options_snapshot(wan) == before and wan.model_options == options_copy
    assert pack.glue.holder_of(wan) is None
    holder = pack.glue.holder_of(m)
    assert isinstance(holder, pack.patch.RhymeFlowHolder)
    to = m.model_options["transformer_options"]
    assert set(to["patches_replace"]["dit"]) == {("double_block", i) for i in range(len(wan.model.diffusion_model.blocks))}
    assert "rhymeflow" in m.wrappers["outer_sample"] and "rhymeflow" in m.wrappers["apply_model"]
    # sampling with the patched clone leaves the original untouched too
    _sample(pack, m, _rf_sampler(pack))
    assert _options_snapshot(wan) == before
    # a clone of the patched model gets its own holder (no shared run state or stats)
    c = m.clone()
    assert pack.glue.holder_of(c) is not holder and pack.glue.holder_of(c).last_result is None


def test_second_patch_replaces_the_first(pack, wan):
    """Projection Patch applied twice (a copied graph): the second replaces the first, on a clone, and the run is the
    one a single patch with the second's settings gives (stacked, the run died with an unnamed IndexError)."""
    once = _patched(pack, wan, context_mode="hidden")
    before = _options_snapshot(once)
    twice = _patched(pack, once, context_mode="kv")
    assert _options_snapshot(once) == before and pack.glue.holder_of(once).config.context_mode == "hidden"
    assert pack.glue.holder_of(twice).config.context_mode == "kv"
    assert [len(twice.wrappers[k]["rhymeflow"]) for k in ("outer_sample", "apply_model")] == [1, 1]
    assert torch.equal(_sample(pack, twice, _rf_sampler(pack)), _sample(pack, _patched(pack, wan), _rf_sampler(pack)))


def test_patch_refuses_other_model_families(pack, comfyui):
    import comfy.model_patcher

    class NotWan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.diffusion_model = torch.nn.Linear(2, 2)

    fake = comfy.model_patcher.ModelPatcher(NotWan(), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError) as exc:
        _patched(pack, fake)
    msg = str(exc.value)
    assert "RhymeFlow Projection Patch" in msg and "'model'" in msg and "Linear" in msg and "Wan 2.1 T2V" in msg


def test_patch_rejects_bad_options(pack, wan):
    with pytest.raises(ValueError, match=r"RhymeFlow Projection Patch: input 'placement' = 'gpu'; accepted: device, cpu"):
        _patched(pack, wan, placement="gpu")


# ----------------------------------------------------------------------------------------------- keyframes node

@pytest.mark.parametrize("kw, pattern", [
    ({"strategy": "manual", "manual": "0, x"}, r"RhymeFlow Keyframes: input 'manual' = '0, x'.*'x' is not a frame index.*e\.g\. '0, 6, 12-14'"),
    ({"strategy": "manual", "manual": "5-2"}, r"input 'manual'.*ascending range"),
    ({"threshold": 1.5}, r"RhymeFlow Keyframes: input 'threshold' = 1\.5; accepted: .*\[-1, 1\]"),
    ({"budget": 0}, r"RhymeFlow Keyframes: input 'budget' = 0; accepted: an integer >= 1"),
    ({"strategy": "random"}, r"input 'strategy' = 'random'; accepted: semantic, dynamic, uniform, manual"),
    ({"strategy": "manual", "manual": "", "force_first": False, "force_last": False}, r"input 'manual' is empty"),
])
def test_keyframes_node_errors(pack, kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        _plan(pack, **kw)


def test_keyframes_node_parses_manual(pack):
    plan = _plan(pack, strategy="manual", manual=" 0, 6, 12-14,")
    assert plan.manual == (0, 6, 12, 13, 14) and plan.strategy == "manual"


def test_keyframes_node_ignores_manual_text_for_other_strategies(pack):
    """A stale or mistyped manual text must neither fail nor cost anything when the strategy does not read it."""
    plan = _plan(pack, strategy="semantic", manual="0-30000000, not a list")
    assert plan.manual == () and plan.strategy == "semantic"


# ----------------------------------------------------------------------------------------------- sampler errors

def test_sampler_without_patch(pack, wan):
    with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: the MODEL has no RhymeFlow Projection Patch"):
        _sample(pack, wan, _rf_sampler(pack))


def test_sampler_image_latent(pack, wan):
    """Both ways an image latent can arrive: as SamplerCustomAdvanced passes it (made 5D with one frame by
    ``fix_empty_latent_channels``) and raw 4D (a direct guider call)."""
    import comfy.sample

    m = _patched(pack, wan)
    image = torch.zeros(1, 16, H, W)
    as_comfyui_passes_it = comfy.sample.fix_empty_latent_channels(m, image)
    assert as_comfyui_passes_it.shape == (1, 16, 1, H, W)
    for latent in (as_comfyui_passes_it, image):
        with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: the latent is an image latent \(shape .*one frame.*"
                                             r"accepted: a video latent with at least 3 latent frames"):
            _sample(pack, m, _rf_sampler(pack), latent=latent)


def test_sampler_too_few_frames(pack, wan):
    m = _patched(pack, wan)
    with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: the latent has 2 latent frames; accepted: at least 3"):
        _sample(pack, m, _rf_sampler(pack), frames=2)
    assert pack.glue.holder_of(m).run is None


@pytest.mark.parametrize("preset", ["paper", "custom"])
def test_sampler_too_few_steps(pack, wan, preset):
    m = _patched(pack, wan)
    with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: 8 steps is too few.*at least 10 steps"):
        _sample(pack, m, _rf_sampler(pack, preset=preset), steps=8)


def test_sampler_custom_schedule_error(pack, wan):
    m = _patched(pack, wan)
    with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: preset=custom at 10 steps: warmup=10 must be smaller"):
        _sample(pack, m, _rf_sampler(pack, preset="custom", warmup=10))
    with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: n_large=1 must be at least n_small=2"):
        _rf_sampler(pack, preset="custom", n_large=1)


def test_keyframe_index_out_of_range(pack, wan):
    m = _patched(pack, wan)
    plan = _plan(pack, strategy="manual", manual="0, 2, 9")
    with pytest.raises(ValueError, match=r"RhymeFlow Keyframes \(used by RhymeFlow Async Sampler\): manual=\[0, 2, 9\] has indices \[9\] outside 0\.\.4"):
        _sample(pack, m, _rf_sampler(pack, plan), frames=5)


def test_budget_not_below_frames(pack, wan):
    m = _patched(pack, wan)
    with pytest.raises(ValueError, match=r"RhymeFlow Keyframes \(used by RhymeFlow Async Sampler\): budget=5 must be smaller than the number of latent frames \(5\)"):
        _sample(pack, m, _rf_sampler(pack, _plan(pack, budget=5)), frames=5)


# ----------------------------------------------------------------------------------------------- runs

def test_run_stats_and_state(pack, wan):
    m = _patched(pack, wan)
    holder = pack.glue.holder_of(m)
    clean = _sample(pack, m, _euler())
    out = _sample(pack, m, _rf_sampler(pack))
    assert torch.isfinite(out).all() and out.shape == clean.shape
    # the holder reached through the MODEL is the one the run used: ComfyUI copies dicts, not objects
    stats = holder.last_result.to_dict()
    assert stats is not None and holder.run is None
    assert stats["frames"] == 5 and stats["steps"] == STEPS and len(stats["roles"]) == 5 and len(stats["roles"][0]) == STEPS
    assert stats["keyframes"] == [0, 4] and stats["text_tokens"] == 8
    sigmas = _sample_sigmas(m)
    assert stats["sigmas"] == [round(float(x), 4) for x in sigmas[:-1]]  # the widget's hover shows them per step
    assert stats["full_passes"] + stats["keyframe_passes"] == STEPS and stats["keyframe_passes"] > 0
    result = pack.stats_node.execute(m, {"samples": out})
    latent, summary = result.args
    assert latent["samples"] is out
    assert "5 latent frames x 10 steps" in summary and "FLOP-ideal speed-up" in summary
    # on the node (ui.text): the speed-ups and the keyframes come first, then the same summary
    shown = result.ui["text"][0].split("\n")
    ui = result.ui["rhymeflow_stats"][0]
    assert shown[0] == f"speed-up {ui['estimated_speedup']:.2f}x measured (DiT time) / {ui['flop_speedup']:.2f}x estimated (compute, this model)"
    assert shown[1] == "keyframes: 0, 4 (2 of 5 latent frames)"
    assert "\n".join(shown[3:]) == summary
    # a dense run after the RhymeFlow run on the same MODEL is bit-identical to the clean dense run
    again = _sample(pack, m, _euler())
    assert torch.equal(again, clean)
    # and the RhymeFlow run is reproducible
    assert torch.equal(_sample(pack, m, _rf_sampler(pack)), out)


def test_interrupt_leaves_no_state(pack, wan):
    import comfy.model_management

    m = _patched(pack, wan)
    holder = pack.glue.holder_of(m)
    clean_rf = _sample(pack, m, _rf_sampler(pack))
    clean_dense = _sample(pack, m, _euler())

    def interrupt(step, x0, x, total):
        if step == 5:  # inside a keyframe group: run state and context cache are live
            assert holder.run is not None and holder.run.cache.nbytes() > 0
            raise comfy.model_management.InterruptProcessingException()

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        _sample(pack, m, _rf_sampler(pack), callback=interrupt)
    assert holder.run is None
    assert torch.equal(_sample(pack, m, _euler()), clean_dense)
    assert torch.equal(_sample(pack, m, _rf_sampler(pack)), clean_rf)


def test_easycache_is_refused_with_rhymeflow_but_composes_with_dense(pack, wan):
    from comfy_extras.nodes_easycache import EasyCacheNode

    m = EasyCacheNode.execute(_patched(pack, wan), 0.2, 0.15, 0.95, False).args[0]
    with pytest.raises(ValueError, match=r"RhymeFlow Async Sampler: the MODEL also has EasyCache, which cannot be combined"):
        _sample(pack, m, _rf_sampler(pack))
    assert torch.isfinite(_sample(pack, m, _euler())).all()


def test_stats_node_errors(pack, wan):
    with pytest.raises(ValueError, match=r"RhymeFlow Stats: input 'model' has no RhymeFlow patch"):
        pack.stats_node.execute(wan, {"samples": torch.zeros(1, 16, 5, H, W)})
    with pytest.raises(ValueError, match=r"RhymeFlow Stats: input 'model' has not been sampled"):
        pack.stats_node.execute(_patched(pack, wan), {"samples": torch.zeros(1, 16, 5, H, W)})


# ----------------------------------------------------------------------------------------------- test-bed + compare

def test_testbed_decode_undoes_process_out(pack):
    import comfy.latent_formats

    from rhymeflow_core.testbed import pseudo_vae

    torch.manual_seed(1)
    z = pseudo_vae.encode(torch.rand(1, 3, 4, 64, 64))
    frames = pack.tb.RhymeFlowTestbedDecode.execute({"samples": comfy.latent_formats.Wan21().process_out(z)}).args[0]  # what a sampler hands downstream
    assert frames.shape == (4, 64, 64, 3)
    assert (frames - pseudo_vae.decode(z)[0].permute(1, 2, 3, 0)).abs().max() < 1e-4


def test_testbed_latent_and_conditioning(pack):
    latent = pack.tb.RhymeFlowTestbedEmptyLatent.execute(16).args[0]
    assert latent["samples"].shape == (1, 16, 16, 16, 16) and not latent["samples"].any()
    pos, neg = _conds(pack, "cosmos")
    assert pos[0][0].shape == (1, 8, 4096) and not neg[0][0].any() and pos[0][1] == {}
    with pytest.raises(ValueError, match=r"input 'frames' = 2; accepted: 3\.\.21"):
        pack.tb.RhymeFlowTestbedEmptyLatent.execute(2)


def test_compare_node(pack):
    torch.manual_seed(2)
    a = torch.rand(4, 32, 32, 3)
    b = (a + 0.02 * torch.randn_like(a)).clamp(0, 1)
    out = pack.compare_node.execute(a, b)
    summary, plot = out.args
    result = out.ui["rhymeflow_compare"][0]
    worst = result["psnr_frames"].index(min(result["psnr_frames"]))
    assert summary.startswith(f"PSNR vs dense: mean {result['psnr_mean']:.2f} dB, worst {result['psnr_min']:.2f} dB (frame {worst})\n")
    assert "4 frames" in summary and out.ui["text"] == [summary]  # shown on the node
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3 and 0 <= plot.min() and plot.max() <= 1
    same = out.ui["rhymeflow_compare"][0]
    assert len(same["psnr_frames"]) == 4 and 25 < same["psnr_mean"] < 45
    with pytest.raises(ValueError, match=r"RhymeFlow Compare: inputs 'dense' \(4, 32, 32, 3\) and 'accelerated' \(3, 32, 32, 3\) differ"):
        pack.compare_node.execute(a, b[:3])


# ----------------------------------------------------------------------------------------------- Wan 2.2 A14B experts

def test_two_experts_sync_cleanly_at_the_switch_and_share_one_step_map(pack, wan, tiny_wan, comfyui, tmp_path):
    """Wan 2.2 A14B as ComfyUI runs it: the high-noise expert's sampler on sigmas >= 0.875, then the low-noise
    expert's sampler from that latent without new noise (KSamplerAdvanced add_noise=disable / SplitSigmas)."""
    import comfy.sample
    import comfy.samplers

    high, low = _patched(pack, wan), _patched(pack, tiny_wan(tmp_path / "low.safetensors", 1, **TINY))
    sigmas = comfy.samplers.calculate_sigmas(wan.get_model_object("model_sampling"), "simple", 24).cpu()
    switch = int((sigmas >= 0.875).sum())
    pos, neg = _conds(pack)
    latent = torch.zeros(1, 16, 5, H, W)

    def run(model, sig, start, noise):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(pos, neg)
        guider.set_cfg(3.0)
        return guider.sample(noise, start, _rf_sampler(pack), sig, disable_pbar=True, seed=0)

    mid = run(high, sigmas[:switch + 1], latent, comfy.sample.prepare_noise(latent, 0))
    out = run(low, sigmas[switch:], mid, torch.zeros_like(latent))
    first, second = pack.glue.holder_of(high).last_result.to_dict(), pack.glue.holder_of(low).last_result.to_dict()
    assert second["schedule"]["warmup"] == 1 < first["schedule"]["warmup"]  # the low-noise run starts with one sync
    assert first["sigma_end"] == second["sigma_start"] == round(float(sigmas[switch]), 4)
    assert all(r in (0, 1) for r in (row[0] for row in second["roles"]))  # its first step is a full pass on every frame

    ui = pack.stats_node.execute(high, {"samples": out}, second_model=low).ui["rhymeflow_stats"][0]
    assert len(ui["roles"]) == 5 and all(len(row) == 24 for row in ui["roles"])
    assert ui["sigmas"] == [round(float(x), 4) for x in sigmas[:-1]]  # both experts' steps, in order
    assert [(s["start"], s["steps"]) for s in ui["segments"]] == [(0, switch), (switch, 24 - switch)]
    assert ui["roles"][0][switch:] == second["roles"][0] and ui["roles"][0][:switch] == first["roles"][0]
    assert ui["full_passes"] == first["full_passes"] + second["full_passes"] and ui["flop_speedup"] > 1.0
    assert "high-noise expert" in ui["summary"] and "low-noise expert" in ui["summary"]
    assert pack.stats_node.execute(high, {"samples": out}, second_model=low).ui["text"][0].split("\n")[1] == (
        f"keyframes: high-noise expert {', '.join(map(str, first['keyframes']))}; "
        f"low-noise expert {', '.join(map(str, second['keyframes']))}")

    with pytest.raises(ValueError, match="ended at sigma .* but 'second_model' started at"):
        pack.stats_node.execute(low, {"samples": out}, second_model=high)


# ----------------------------------------------------------------------------------------------- listing

# what an artist types -> the node it must find (others may match too)
SEARCH_WORDS = {"speed": "RhymeFlowAsyncSampler", "fast": "RhymeFlowAsyncSampler", "accelerate": "RhymeFlowAsyncSampler",
                "cache": "RhymeFlowProjectionPatch", "keyframe": "RhymeFlowKeyframes"}


def test_every_node_is_listed_and_found_by_what_it_does(pack_import):
    """/object_info (the V1 node info) carries each node's category and search aliases from nodes/common.py;
    each word an artist types for "make it faster" names at least one RhymeFlow node."""
    common = pack_import("nodes.common")
    nodes = pack_import("nodes").node_list()
    info = {n.GET_NODE_INFO_V1()["name"]: n.GET_NODE_INFO_V1() for n in nodes}
    assert set(info) == set(common.LISTING)
    for node_id, (category, aliases) in common.LISTING.items():
        assert info[node_id]["category"] == category and info[node_id]["search_aliases"] == aliases, node_id
    by_category = {c: sorted(i for i in info if info[i]["category"] == c) for c in {v["category"] for v in info.values()}}
    assert by_category == {
        "RhymeFlow": ["RhymeFlowAccelerate", "RhymeFlowAsyncSampler", "RhymeFlowCompare", "RhymeFlowKeyframes", "RhymeFlowProjectionPatch",
                      "RhymeFlowStats"],
        "RhymeFlow/AsymRnR": ["RhymeFlowAsymRnR", "RhymeFlowAsymRnRCalibrate", "RhymeFlowAsymRnRSchedule",
                              "RhymeFlowAsymRnRStats"],
        "RhymeFlow/test bed": ["RhymeFlowTestbedConditioning", "RhymeFlowTestbedDecode", "RhymeFlowTestbedEmptyLatent"],
    }
    for word, node_id in SEARCH_WORDS.items():
        assert any(word in alias for alias in info[node_id]["search_aliases"]), (word, node_id)
