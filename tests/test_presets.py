"""Presets end warm-up at a noise level: the paper's settings come out at Wan's shift, and other shifts,
step counts and expert splits get the warm-up their sigmas call for."""
import pytest

from rhymeflow_core.flow import simple_sigmas
from rhymeflow_core.presets import MIN_SKIPPABLE, TABLE, preset_schedule


@pytest.mark.parametrize("steps, preset, warmup", [(50, "paper", 8), (30, "paper", 5), (30, "fast", 4), (50, "fast", 6)])
def test_paper_settings_at_wan_shift(steps, preset, warmup):
    assert preset_schedule(preset, simple_sigmas(steps, 3.0)).warmup == warmup


def test_larger_shift_warms_up_for_more_steps():
    at3, at7 = (preset_schedule("paper", simple_sigmas(30, shift)).warmup for shift in (3.0, 7.0))
    assert at7 > at3
    sig = simple_sigmas(30, 7.0)
    assert float(sig[at7 - 1]) >= 0.945 > float(sig[at7])  # warm-up is exactly the steps at or above the threshold


def test_wan22_expert_split_high_noise_warms_up_low_noise_syncs_once():
    sig = simple_sigmas(20, 8.0)
    switch = int((sig >= 0.875).sum())  # Wan 2.2 T2V A14B boundary
    high, low = sig[:switch + 1], sig[switch:]
    assert preset_schedule("paper", high).warmup == int((high[:-1] >= 0.945).sum()) >= 2
    assert preset_schedule("paper", low).warmup == 1  # a continuation: one full pass picks keyframes and syncs


def test_too_few_steps_from_noise_is_refused():
    with pytest.raises(ValueError, match="8 steps is too few.*at least 10"):
        preset_schedule("paper", simple_sigmas(8, 3.0))


def test_continuation_with_nothing_to_skip_is_refused():
    sig = simple_sigmas(20, 3.0)[-4:]  # 3 low-noise steps
    with pytest.raises(ValueError, match=f"at least {MIN_SKIPPABLE} are needed"):
        preset_schedule("paper", sig)


def test_every_family_has_every_preset_and_unknown_ones_are_refused():
    for family, rows in TABLE.items():
        assert set(rows) == {"paper", "balanced", "fast"}, family
        preset_schedule("paper", simple_sigmas(30, 3.0), family)
    with pytest.raises(ValueError, match="family 'flux' has no presets"):
        preset_schedule("paper", simple_sigmas(30, 3.0), "flux")


def test_target_takes_the_shortest_strides_that_reach_it():
    import dataclasses

    from rhymeflow_core.flops import WAN_DIMS, flop_ideal_from_counts
    from rhymeflow_core.presets import MAX_STRIDE, target_schedule
    from rhymeflow_core.schedule import ScheduleConfig, sync_groups

    sig = simple_sigmas(30, 8.0).tolist()
    dims = dataclasses.replace(WAN_DIMS["wan2.1-1.3b-480p"], frames=21)

    def speedup(cfg):
        full = cfg.warmup + len(sync_groups(30, cfg))
        return flop_ideal_from_counts(full, 30 - full, 4, dims, True)

    paper = preset_schedule("paper", sig)
    for target in (1.2, speedup(paper), speedup(paper) + 0.05):
        cfg = target_schedule(target, sig, "wan", dims, 4, True)
        assert cfg.warmup == paper.warmup and speedup(cfg) >= target
        shorter = [ScheduleConfig(cfg.warmup, a, b) for b in range(1, MAX_STRIDE + 1) for a in range(1, b + 1)
                   if (b, a) < (cfg.n_large, cfg.n_small)]
        assert all(speedup(c) < target for c in shorter)
    with pytest.raises(ValueError, match=r"target_speedup=50 must be a number in \(1, 20\]"):
        target_schedule(50, sig, "wan", dims, 4, True)
    with pytest.raises(ValueError, match=r"target_speedup=19 is out of reach at 30 steps with 4 keyframes: the most is"):
        target_schedule(19, sig, "wan", dims, 4, True)


def test_every_choice_declares_the_inputs_it_reads():
    """The nodes hide what a preset, strategy or schedule source ignores from these tables (nodes/common.uses):
    a choice without a row would hide every input another choice reads."""
    from rhymeflow_core.asymrnr.sources import SOURCE_INPUTS
    from rhymeflow_core.keyframes import STRATEGIES, STRATEGY_INPUTS
    from rhymeflow_core.presets import PRESET_INPUTS, PRESETS, TARGET

    assert set(PRESET_INPUTS) == set(PRESETS) | {TARGET}
    assert set(STRATEGY_INPUTS) == set(STRATEGIES)
    assert set(SOURCE_INPUTS) == {"uniform", "testbed", "file", "input"}
    assert PRESET_INPUTS["custom"] == ("warmup", "n_small", "n_large") and PRESET_INPUTS["paper"] == ()
