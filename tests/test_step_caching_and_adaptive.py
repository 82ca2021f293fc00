"""Step caching (``ScheduleConfig.passes``), the target knob and adaptive keyframes: exactness and bookkeeping.

Why these identities: a reused step holds every frame's prediction, which for Euler is one solver step over
the merged interval, so a run with ``passes=P`` must equal the same schedule run on the thinned sigmas
(the pass steps' sigmas plus the last). An adaptive run changes which frames are keyframes, never how many,
so its passes and FLOPs must equal the fixed run's.
"""
import dataclasses

import pytest
import torch

from rhymeflow_core.engine import frame_drift
from rhymeflow_core.flops import WAN_DIMS, ModelDims, flop_ideal_speedup
from rhymeflow_core.flow import simple_sigmas
from rhymeflow_core.keyframes import KeyframePlan
from rhymeflow_core.patch import PatchConfig
from rhymeflow_core.presets import TARGET_TOLERANCE, target_schedule
from rhymeflow_core.sampler import sample_dense, sample_rhymeflow
from rhymeflow_core.schedule import ROLE_REUSE, ScheduleConfig, build_step_map, pass_steps
from rhymeflow_core.testbed.runner import Job, initial_noise, patched_call
from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel

FRAMES, STEPS = 8, 16
TESTBED_DIMS = ModelDims("test bed", layers=2, dim=512, ffn_dim=640, tokens_per_frame=64, frames=16, text_tokens=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanModel(WanConfig(dim=128, ffn_dim=256, num_layers=2)).eval().requires_grad_(False)


def _run(model, sampler, sigmas, config=None, **kw):
    job = Job(cls=1, seed=3, frames=FRAMES, steps=len(sigmas) - 1)
    denoiser, extra, holder = patched_call(model, job, config)
    x = initial_noise(job) * sigmas[0]
    return sampler(denoiser, x, sigmas, extra, **kw), holder


def test_pass_steps_are_spread_evenly_and_reused_steps_show_on_the_map():
    cfg = ScheduleConfig(warmup=3, n_small=2, n_large=3, passes=10)
    kept = pass_steps(STEPS, cfg)
    assert kept[0] == 0 and len(kept) == 10 and kept == sorted(set(kept))
    assert max(b - a for a, b in zip(kept, kept[1:] + [STEPS])) == 2  # no gap longer than steps/passes rounded up
    m = build_step_map(FRAMES, STEPS, cfg, [0, 7])
    reused = [s for s in range(STEPS) if s not in kept]
    assert (m.roles[:, reused] == ROLE_REUSE).all() and not (m.roles[:, kept] == ROLE_REUSE).any()
    assert m.reused_steps() == STEPS - 10 and m.full_passes() + m.keyframe_passes() == 10
    dense_like = build_step_map(FRAMES, STEPS, dataclasses.replace(cfg, passes=0), [0, 7])
    assert dense_like.reused_steps() == 0
    d = dataclasses.replace(TESTBED_DIMS, frames=FRAMES)
    assert flop_ideal_speedup(m, d) > flop_ideal_speedup(dense_like, d)


def test_passes_out_of_range_is_refused_by_field():
    with pytest.raises(ValueError, match=r"passes=17 must be between 1 and the number of steps \(16\)"):
        ScheduleConfig(warmup=3, passes=17).validate(STEPS)
    with pytest.raises(ValueError, match=r"warmup=6 must be smaller than the number of steps \(6\)"):
        ScheduleConfig(warmup=6, passes=6).validate(STEPS)  # warm-up counts pass steps


@pytest.mark.parametrize("select", [None, "all"])
def test_reused_steps_equal_the_same_schedule_on_the_thinned_sigmas(model, select):
    sigmas = simple_sigmas(STEPS, 3.0)
    cfg = ScheduleConfig(warmup=3, n_small=2, n_large=3, passes=10)
    kept = pass_steps(STEPS, cfg)
    thinned = torch.cat([sigmas[kept], sigmas[-1:]])
    chooser = (lambda x0: (list(range(FRAMES)), [0.0] * FRAMES)) if select else None
    ours, holder = _run(model, sample_rhymeflow, sigmas, PatchConfig(), schedule=cfg, plan=KeyframePlan(budget=3), select=chooser)
    theirs, _ = _run(model, sample_rhymeflow, thinned, PatchConfig(), schedule=dataclasses.replace(cfg, passes=0),
                     plan=KeyframePlan(budget=3), select=chooser)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    result = holder.last_result
    assert sum(result.calls.values()) == 10 and result.step_map.reused_steps() == STEPS - 10
    if select:  # every frame a keyframe: the thinned run is dense Euler on the thinned sigmas
        dense, _ = _run(model, sample_dense, thinned)
        torch.testing.assert_close(ours, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [20, 30, 50])
@pytest.mark.parametrize("dims", [TESTBED_DIMS, WAN_DIMS["wan2.1-1.3b-480p"]], ids=["testbed", "wan1.3b"])
def test_the_target_knob_lands_within_five_percent_above_its_target(steps, dims):
    sigmas = simple_sigmas(steps, 3.0).tolist()
    landed = []
    for target in (1.3, 1.5, 1.6, 2.0, 2.5, 3.0):
        cfg = target_schedule(target, sigmas, "wan", dims, 4, kv_cached=True)
        got = flop_ideal_speedup(build_step_map(dims.frames, steps, cfg, [0, 1, 2, 3]), dims, kv_cached=True)
        landed.append(target <= got <= target * (1 + TARGET_TOLERANCE))
        assert got >= target
    assert all(landed), landed


def test_an_unreachable_target_says_the_most_there_is():
    with pytest.raises(ValueError, match=r"target_speedup=9.0 is out of reach at 20 steps with 4 keyframes: the most is \d"):
        target_schedule(9.0, simple_sigmas(20, 3.0).tolist(), "wan", TESTBED_DIMS, 4, kv_cached=True)


def test_frame_drift_ranks_the_frame_that_moved():
    before = torch.ones(1, 4, 5, 2, 2)
    now = before.clone()
    now[:, :, 3] += 0.5
    now[:, :, 1] += 0.1
    drift = frame_drift(now, before)
    assert drift.argmax() == 3 and drift[1] > drift[0] == 0 and torch.isclose(drift[3], torch.tensor(0.5))


def test_adaptive_keyframes_change_at_sync_points_with_the_same_passes(model):
    sigmas = simple_sigmas(STEPS, 3.0)
    cfg = ScheduleConfig(warmup=3, n_small=2, n_large=3)
    fixed, h_fixed = _run(model, sample_rhymeflow, sigmas, PatchConfig(), schedule=cfg, plan=KeyframePlan(budget=3))
    ours, h_ours = _run(model, sample_rhymeflow, sigmas, PatchConfig(), schedule=cfg, plan=KeyframePlan(budget=3), adaptive=True)
    a, b = h_fixed.last_result, h_ours.last_result
    per_group = b.step_map.group_keyframes
    assert len(per_group) == len(b.step_map.groups) and all(len(k) == 3 for k in per_group)
    assert per_group[0] == tuple(a.keyframes)  # the first group keeps the warm-up's choice
    assert len(set(per_group)) > 1  # re-chosen later
    assert a.calls == b.calls and a.flop_speedup == b.flop_speedup
    assert not torch.allclose(ours, fixed) and torch.isfinite(ours).all()
    planned = build_step_map(FRAMES, STEPS, cfg, per_group[0], per_group)
    assert b.roles == planned.roles.tolist()


def test_the_summary_shows_reused_steps_and_the_realised_figure_beside_the_target(model):
    from rhymeflow_core.stats import summary_text

    sigmas = simple_sigmas(STEPS, 3.0)
    cfg = ScheduleConfig(warmup=3, n_small=2, n_large=3, passes=10)
    _, holder = _run(model, sample_rhymeflow, sigmas, PatchConfig(), schedule=cfg, plan=KeyframePlan(budget=3),
                     settings={"target_speedup": 2.0})
    stats = holder.last_result.to_dict()
    text = summary_text(stats)
    assert "steps reused (no pass): 6" in text
    assert f"target 2.00x -> FLOP-ideal speed-up: {stats['flop_speedup']:.2f}x" in text
