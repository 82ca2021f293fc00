"""AsymRnR Token Reduction on every family, on ComfyUI's own model classes at tiny random sizes.

The models and ``apply_model`` inputs are the family tier's (``test_family_*.py``). Per family:
  - rates 0: the patched MODEL's output is bit-identical to the unpatched one;
  - with reduction: every video self-attention call (found in the zero-rate run, which makes the same calls in
    the same order) reaches an override chained *under* AsymRnR with only its video rows shortened, to the
    rate's count; in the first block (same inputs in both runs) every kept video row is one of the dense
    video rows, and the text rows of q, k and v (joint attention: HunyuanVideo, Mochi) are the dense ones,
    bit for bit and in place; HunyuanVideo's text-padding key mask follows the kept keys; the output has the
    dense shape; every block was reduced;
  - with RhymeFlow's Projection Patch in either order: a sync pass is reduced, a keyframe-only pass passes
    through (counted), and at rates 0 both passes equal RhymeFlow alone bit for bit;
  - a schedule calibrated for another family or token count is refused with node, input, value and what is
    accepted;
  - calibration through the nodes (Calibrate -> a dense euler run -> Schedule -> Token Reduction) on each family.
"""
from __future__ import annotations

import pytest
import torch

from .family_harness import _run, call

FAMILIES = ("wan", "hunyuan_video", "ltxv", "mochi")


def _family(comfyui, family: str):
    """``(patcher, inputs)`` of the family tier's tiny model."""
    if family == "wan":
        from . import test_family_wan as t

        return t._load(comfyui, t._tiny_state_dict(comfyui, 0)), t._inputs(16, 16, 1)
    if family == "hunyuan_video":
        from . import test_family_hunyuan_video as t

        return t._load(comfyui, t._tiny_state_dict(comfyui, 0), "HunyuanVideo"), t._v1_inputs(1)
    if family == "ltxv":
        from . import test_family_ltxv as t

        return t._load(comfyui, 0), t._inputs(1)
    from . import test_family_mochi as t

    return t._load(comfyui, t._tiny_state_dict(comfyui, 0)), t._inputs(1)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, comfyui):
    patcher, inputs = _family(comfyui, request.param)
    return request.param, patcher, inputs


def _asym(pack, model, q: float, kv: float, **kw):
    args = dict(schedule_source="uniform", q_rate=q, kv_rate=kv, scale=1.0, schedule_file="", dense_start=0.0,
                cache_steps=0, partition_seed=0) | kw
    return pack.asym.RhymeFlowAsymRnR.execute(model, **args).args[0]


class Spy:
    """An override chained under AsymRnR: records what reaches attention (q, k, v in heads-first layout, the mask)."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, func, q, k, v, *args, **kwargs):
        heads = kwargs["heads"] if "heads" in kwargs else args[0]
        if kwargs.get("skip_reshape"):
            qh, kh, vh = q, k, v
        else:
            qh, kh, vh = (t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        self.calls.append({"q": qh.clone(), "k": kh.clone(), "v": vh.clone(), "mask": kwargs.get("mask")})
        return func(q, k, v, *args, **kwargs)


def _spied(pack, patcher, q: float, kv: float, inputs):
    base = patcher.clone()
    spy = Spy()
    base.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = spy
    m = _asym(pack, base, q, kv)
    spy = pack.asym.state_of(m).previous_override  # clone() deep-copied it with the options
    out = call(m, inputs, {"sigmas": inputs.sigma})
    return m, spy, out


def _is_subset(rows: torch.Tensor, pool: torch.Tensor) -> bool:
    """Every row of ``rows [L, d]`` equals some row of ``pool [N, d]`` exactly."""
    return bool((torch.cdist(rows.double(), pool.double(), compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values == 0).all())


def test_zero_rates_are_bit_identical(pack, family):
    name, patcher, inputs = family
    dense = call(patcher, inputs, {"sigmas": inputs.sigma})
    m = _asym(pack, patcher, 0.0, 0.0)
    assert torch.equal(call(m, inputs, {"sigmas": inputs.sigma}), dense), name
    state = pack.asym.state_of(m)
    assert state.layout.family == name and len(state.stats.kept) == state.layout.num_blocks  # every block seen


def test_only_video_rows_are_reduced_and_text_is_kept(pack, family):
    name, patcher, inputs = family
    zero, zspy, dense = _spied(pack, patcher, 0.0, 0.0, inputs)
    m, spy, out = _spied(pack, patcher, 0.5, 0.5, inputs)
    state = pack.asym.state_of(m)
    n, layout = state.num_tokens, state.layout
    assert n == inputs.x.shape[2] * pack.adapters.comfyui_adapter(patcher.model.diffusion_model).tokens_per_frame(
        patcher.model.diffusion_model, inputs.x)
    assert out.shape == dense.shape and torch.isfinite(out).all() and not torch.equal(out, dense)
    assert len(spy.calls) == len(zspy.calls)
    length = lambda c: c["q"].shape[2]  # noqa: E731
    self_calls = [i for i, c in enumerate(zspy.calls) if length(c) == c["k"].shape[2] and
                  (length(c) >= n if layout.joint_text else length(c) == n) and (c["mask"] is None or c["mask"].shape[-2] == 1)]
    assert len(self_calls) == layout.num_blocks, (name, [tuple(c["q"].shape) for c in zspy.calls])
    keep = n // 2  # rate 0.5: floor(n (1 - 0.5)) video rows (above the destinations' count at these sizes)
    for j, i in enumerate(self_calls):
        d, r = zspy.calls[i], spy.calls[i]
        text = length(d) - n
        assert (layout.joint_text or text == 0) and (text > 0) == layout.joint_text, (name, text)
        assert r["q"].shape[2] == r["k"].shape[2] == r["v"].shape[2] == keep + text, (name, j, r["q"].shape, r["k"].shape)
        if j == 0:  # same block inputs in both runs: kept rows are dense rows, text rows are the dense ones in place
            for t in ("q", "k", "v"):
                assert torch.equal(r[t][:, :, keep:], d[t][:, :, n:]), (name, t, "text rows changed")
                for b in range(r[t].shape[0]):
                    for h in range(r[t].shape[1]):
                        assert _is_subset(r[t][b, h, :keep], d[t][b, h, :n]), (name, t, b, h)
        if d["mask"] is not None:  # HunyuanVideo's key padding mask follows the kept keys; text part in place
            assert r["mask"].shape[-1] == keep + text
            assert torch.equal(r["mask"][..., keep:].expand(-1, -1, 1, -1)[0, 0, 0], d["mask"].reshape(-1)[n:])
    for i in set(range(len(zspy.calls))) - set(self_calls):  # everything else reaches attention untouched in shape
        assert spy.calls[i]["q"].shape == zspy.calls[i]["q"].shape and spy.calls[i]["k"].shape == zspy.calls[i]["k"].shape
    kept = state.stats.kept
    assert len(kept) == layout.num_blocks and all(v == {"q": keep, "kv": keep, "n": n} for v in kept.values()), kept


@pytest.mark.parametrize("order", ["asymrnr_then_projection", "projection_then_asymrnr"])
def test_composes_with_rhymeflow(pack, family, order):
    name, patcher, inputs = family
    keyframes = [0, 3]

    dm = patcher.model.diffusion_model
    n = inputs.x.shape[2] * pack.adapters.comfyui_adapter(dm).tokens_per_frame(dm, inputs.x)

    def build(q, kv):
        """A schedule that records this family and size: a keyframe-only pass (fewer tokens in view when AsymRnR's
        wrapper runs inside RhymeFlow's) must not be taken for another size."""
        sched = pack.asymrnr.ReductionSchedule.uniform(pack.asym.check_model(patcher).num_blocks, 2, q=q, kv=kv)
        sched = pack.asymrnr.ReductionSchedule(sched.rates, family=name, tokens=n)
        config = pack.patch.PatchConfig(context_mode="kv")
        if order == "asymrnr_then_projection":
            return pack.glue.patch_model(_asym(pack, patcher, q, kv, schedule_source="input", schedule=sched), config)
        return _asym(pack, pack.glue.patch_model(patcher, config), q, kv, schedule_source="input", schedule=sched)

    def passes(m):
        outs = []
        for mode, sigma in (("record", 0.7), ("keyframe", 0.6)):  # a sync step, then a keyframe-only step of one run
            _run(pack, m, mode, keyframes)
            outs.append(call(m, inputs, {"sigmas": torch.tensor([sigma])}))
        pack.glue.holder_of(m).end_run()
        return outs

    rf_alone = passes(pack.glue.patch_model(patcher, pack.patch.PatchConfig(context_mode="kv")))
    zero = passes(build(0.0, 0.0))
    assert all(torch.equal(a, b) for a, b in zip(zero, rf_alone)), name
    m = build(0.5, 0.5)
    state = pack.asym.state_of(m)
    sync, key = passes(m)
    assert torch.isfinite(sync).all() and torch.isfinite(key).all() and sync.shape == key.shape == rf_alone[0].shape
    assert len(state.stats.kept) == state.layout.num_blocks and all(v["q"] < v["n"] for v in state.stats.kept.values())
    assert state.stats.unequal_passthrough == state.layout.num_blocks, (name, state.stats.unequal_passthrough)


def test_schedule_for_another_family_or_size_is_refused(pack, family, tmp_path):
    import folder_paths

    name, patcher, inputs = family
    blocks = pack.asym.check_model(patcher).num_blocks
    other = "mochi" if name != "mochi" else "wan"
    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        sched = pack.asymrnr.ReductionSchedule.uniform(blocks, 4, q=0.3, kv=0.3)
        for fam, tokens, fname in ((other, None, "other.json"), (name, 7, "size.json")):
            pack.asymrnr.ReductionSchedule(sched.rates, meta={}, family=fam, tokens=tokens).save(tmp_path / fname)
        with pytest.raises(ValueError, match=rf"^AsymRnR Token Reduction: input 'schedule_source' = 'file' \(schedule_file = "
                                             rf"'other\.json'\): the schedule was calibrated on a '{other}' model; this MODEL is "
                                             rf"'{name}'; accepted: a schedule calibrated on a '{name}' model"):
            _asym(pack, patcher, 0.0, 0.0, schedule_source="file", schedule_file="other.json")
        m = _asym(pack, patcher, 0.0, 0.0, schedule_source="file", schedule_file="size.json")  # size: known at the first call
        with pytest.raises(ValueError, match=r"^AsymRnR Token Reduction: input 'schedule_source' = 'file' \(schedule_file = "
                                             r"'size\.json'\): the schedule was calibrated at 7 video tokens; this run has \d+ "
                                             r"\(\d+ x \d+ x \d+ token grid\); accepted: a schedule calibrated at this latent size"):
            call(m, inputs, {"sigmas": inputs.sigma})
    finally:
        folder_paths.set_output_directory(old)


def _sampling(comfyui, family: str):
    """``sample(model)``: the family tier's whole euler run through ComfyUI's guider (its conds, latent and steps)."""
    import comfy.samplers

    euler = comfy.samplers.sampler_object("euler")
    if family == "wan":
        from . import test_family_wan as t

        latent = torch.zeros(1, 16, t.FRAMES, t.H, t.W)
        return lambda m: t._sample(comfyui, m, euler, latent, (t._text(1), t._text(2)))
    if family == "hunyuan_video":
        from comfy_extras.nodes_hunyuan import EmptyHunyuanLatentVideo

        from . import test_family_hunyuan_video as t

        latent = EmptyHunyuanLatentVideo.execute(64, 64, 17).args[0]
        return lambda m: t._guided_sample(m, t._text_conditioning(12), euler, latent)
    if family == "ltxv":
        from comfy_extras.nodes_lt import EmptyLTXVLatentVideo

        from . import test_family_ltxv as t

        latent = EmptyLTXVLatentVideo.execute(**t.PIXELS, batch_size=1).args[0]
        return lambda m: t._sample(m, euler, latent, t._conditioning(11))
    from . import test_family_mochi as t

    return lambda m: t._sample(m, euler)


def test_calibration_per_family_through_the_nodes(comfyui, pack, family, tmp_path):
    """Calibrate -> one dense run -> Schedule -> Token Reduction (input), on each family: recording is exact, the
    schedule records the family and token count, and the reduced run saves about the calibrated share."""
    import folder_paths

    name, patcher, _ = family
    sample = _sampling(comfyui, name)
    dense = sample(patcher)
    rec, handle = pack.asym.RhymeFlowAsymRnRCalibrate.execute(patcher, target=0.3, q_cap=0.7, kv_cap=0.5, dense_start=0.2,
                                                                cache_steps=3, partition_seed=0).args
    out = sample(rec)
    assert torch.equal(out, dense), name  # recording is dense and exact
    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        schedule, summary = pack.asym.RhymeFlowAsymRnRSchedule.execute(handle, {"samples": out}, "asymrnr/schedule").args
    finally:
        folder_paths.set_output_directory(old)
    n = dense.shape[2] * pack.adapters.comfyui_adapter(patcher.model.diffusion_model).tokens_per_frame(
        patcher.model.diffusion_model, dense)
    assert (schedule.family, schedule.tokens, schedule.num_blocks) == (name, n, pack.asym.check_model(patcher).num_blocks)
    assert f"calibrated on {name} at {n} video tokens" in summary
    m = _asym(pack, patcher, 0.0, 0.0, schedule_source="input", schedule=schedule)
    reduced = sample(m)
    assert reduced.shape == dense.shape and torch.isfinite(reduced).all() and not torch.equal(reduced, dense)
    res = pack.asym.RhymeFlowAsymRnRStats.execute(m, {"samples": reduced})
    text, stats = res.args[1], res.ui["asymrnr_stats"][0]
    # the achieved share is over video rows; joint families' kept text rows make the whole call's saving smaller
    assert 0.05 < stats["flops_saved_fraction"] <= schedule.meta["achieved"] + 0.05, (name, text)
