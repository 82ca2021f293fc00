"""Schedule presets: warm-up as a noise level, strides as step counts, one table row per model family.

Why a noise level: the video's layout forms while the latent is mostly noise, whatever the step count,
the scheduler's shift or how the run is split between models. So a preset ends warm-up at the first
step whose sigma falls below ``sigma_warm``; that is the paper's Tw=8 of 50 steps on Wan's default
shift 3 (and Tw=5 of 30) and it carries over to other step counts and shifts (HunyuanVideo's shift 7
warms up longer in steps, automatically), to Mochi's linear-quadratic schedule, and to Wan 2.2 A14B,
whose low-noise expert starts below every threshold and so needs only one full pass (its sync).
Strides stay absolute because they count skipped steps, and fewer steps mean each one moves further.

Family rows are the same numbers today: no family but the test bed's Wan could be measured here (no
weights, no GPU), and a guess per family would look tuned without being so. The rows exist so that a
measured value has an obvious home; ``docs/design.md`` says how to measure one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .schedule import ScheduleConfig

if TYPE_CHECKING:
    from .flops import ModelDims

PRESETS = ("paper", "balanced", "fast", "custom")
TARGET = "target"  # the drop-in's extra preset: the shortest strides that reach a FLOP-ideal speed-up
DEFAULT_TARGET = 1.6  # the paper preset's FLOP-ideal on Wan 2.1 at 30 steps
MAX_STRIDE = 8  # longest stride a target may pick (the fast preset's 5, with room; longer strides blur motion)
MIN_STEPS = 10  # a run that starts from pure noise needs this many steps for skipping to pay off
MIN_SKIPPABLE = 4  # steps after warm-up; below this there is nothing to skip
TOP_SIGMA = 0.99  # a run starting at or above this sigma starts from noise (else: a later segment, e.g. a second expert)

# The node inputs each preset reads (besides the run's sigmas). The nodes hide the others while that preset is
# selected (nodes/common.uses, web/input_rules.js), so a new preset or mode is one row here; every entry of
# PRESETS and TARGET needs a row (tests/test_presets.py).
PRESET_INPUTS: dict[str, tuple[str, ...]] = {
    "paper": (), "balanced": (), "fast": (),
    "custom": ("warmup", "n_small", "n_large"),
    TARGET: ("target_speedup",),
}

# name -> (sigma_warm, n_small, n_large). paper: Tw 8/50 at shift 3, strides 2-3 (Sec. 4.1); balanced: strides
# 2-4; fast: warm-up ends one step earlier at 30-50 steps (Tw 4/30, 6/50), strides 3-5 (the authors' code default).
_WAN = {"paper": (0.945, 2, 3), "balanced": (0.945, 2, 4), "fast": (0.96, 3, 5)}
TABLE = {"wan": _WAN, "hunyuan_video": _WAN, "ltxv": _WAN, "mochi": _WAN}


def preset_schedule(preset: str, sigmas: Sequence[float], family: str = "wan") -> ScheduleConfig:
    """The ``ScheduleConfig`` of a named preset for this run's ``sigmas``; raises on too-few steps (plain field
    errors: the node that asked adds its display name)."""
    if family not in TABLE:
        raise ValueError(f"model family {family!r} has no presets; supported: {', '.join(TABLE)}")
    table = TABLE[family]
    if preset not in table:
        raise ValueError(f"preset={preset!r}; accepted: {', '.join(table)} (or custom)")
    sig = [float(s) for s in sigmas]
    steps = len(sig) - 1
    from_noise = sig[0] >= TOP_SIGMA
    if from_noise and steps < MIN_STEPS:
        raise ValueError(f"{steps} steps is too few for skipping to pay off (few-step distilled runs "
                         f"have nothing to skip); use at least {MIN_STEPS} steps or sample without RhymeFlow")
    sigma_warm, n_small, n_large = table[preset]
    warm = sum(s >= sigma_warm for s in sig[:-1])
    warmup = max(2 if from_noise else 1, warm)
    if steps - warmup < MIN_SKIPPABLE:
        raise ValueError(f"preset {preset!r} warms up for {warmup} of these {steps} steps (every step "
                         f"with sigma >= {sigma_warm}), leaving {steps - warmup}; at least {MIN_SKIPPABLE} are needed for "
                         "skipping to pay off: use more steps, or a standard sampler for this segment")
    return ScheduleConfig(warmup=warmup, n_small=n_small, n_large=n_large)


@dataclass(frozen=True)
class Target:
    """What the ``target`` preset needs besides the sigmas: the speed-up and what prices a pass."""

    speedup: float
    dims: "ModelDims"  # the model's FLOP dims at this latent (flops.ModelDims)
    keyframes: int
    kv_cached: bool  # context_mode kv: non-keyframe K/V are not re-projected


MILD_STRIDES = ((1, 2), (2, 2), (2, 3))  # tried on every step first: below the paper's speed-up
THINNED_STRIDES = ((2, 3), (2, 4), (3, 4), (3, 5), (4, 6), (5, 8))  # then on thinned steps, mildest first
TARGET_TOLERANCE = 0.05  # the knob lands within +5% of the target (never below it)


def target_schedule(target: float, sigmas: Sequence[float], family: str, dims: "ModelDims", keyframes: int,
                    kv_cached: bool) -> ScheduleConfig:
    """The schedule whose FLOP-ideal speed-up lands in ``[target, target * 1.05]``, mildest first.

    Two levers reach a speed-up: longer strides (fewer sync points) and fewer pass steps (the others reuse
    the last prediction, ``ScheduleConfig.passes``). Measured on the test bed, the paper's strides on thinned
    steps beat longer strides on every step at equal FLOPs, and both beat dense with as few passes
    (``benchmarks/benchmark.py``). So up to the paper's own speed-up the strides grow on every step
    (``MILD_STRIDES``); beyond it, for each pair in ``THINNED_STRIDES`` the most pass steps that reach the target
    are taken, and the first candidate inside the tolerance wins. Warm-up is the paper preset's, resolved on
    the pass steps' sigmas. ``dims`` are the model's FLOP dims at this latent (``flops.ModelDims``).
    """
    from .flops import flop_ideal_from_counts
    from .schedule import pass_steps, sync_groups

    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 1.0 < target <= 20.0:
        raise ValueError(f"target_speedup={target!r} must be a number in (1, 20]")
    steps = len(sigmas) - 1
    preset_schedule("paper", sigmas, family)  # raises the too-few-steps errors
    most = 0.0
    above: tuple[float, ScheduleConfig] | None = None  # the nearest candidate above the window, if none lands in it
    thinned = THINNED_STRIDES + MILD_STRIDES[:2]  # mild strides on thinned steps: between the rounds' jumps
    rounds = [(pair, (steps,)) for pair in MILD_STRIDES] + [(pair, range(steps - 1, MIN_SKIPPABLE, -1)) for pair in thinned]
    for (n_small, n_large), pass_counts in rounds:
        for passes in pass_counts:
            thin = ScheduleConfig(passes=passes if passes < steps else 0)
            kept = [sigmas[k] for k in pass_steps(steps, thin)] + [sigmas[-1]]
            try:
                warmup = preset_schedule("paper", kept, family).warmup
            except ValueError:  # too few pass steps left after warm-up
                break
            cfg = ScheduleConfig(warmup=warmup, n_small=n_small, n_large=n_large, passes=thin.passes)
            full = warmup + len(sync_groups(steps, cfg))
            speedup = flop_ideal_from_counts(full, passes - full, keyframes, dims, kv_cached, reused=steps - passes)
            if speedup >= target:
                if speedup <= target * (1 + TARGET_TOLERANCE):
                    return cfg
                if above is None or speedup < above[0]:
                    above = (speedup, cfg)
                break  # this pair jumps over the window; another pair may land in it
            most = max(most, speedup)
    if above is None:
        raise ValueError(f"target_speedup={target} is out of reach at {steps} steps with {keyframes} keyframes: the most is "
                         f"{most:.2f}x; lower the target, add steps or use fewer keyframes")
    return above[1]  # nothing lands inside the tolerance at this step count: the nearest above it
