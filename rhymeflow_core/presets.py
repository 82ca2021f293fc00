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


def target_schedule(target: float, sigmas: Sequence[float], family: str, dims: "ModelDims", keyframes: int,
                    kv_cached: bool) -> ScheduleConfig:
    """The paper preset's warm-up with the shortest strides whose FLOP-ideal speed-up reaches ``target``.

    Why shortest: quality falls as strides grow, so the first schedule that meets the target is the one to
    take. Strides are tried by ``n_large``, then ``n_small`` (both up to ``MAX_STRIDE``). ``dims`` are the
    model's FLOP dims at this latent (``flops.ModelDims``); ``keyframes`` the keyframe count.
    """
    from .flops import flop_ideal_from_counts
    from .schedule import sync_groups

    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 1.0 < target <= 20.0:
        raise ValueError(f"target_speedup={target!r} must be a number in (1, 20]")
    warmup = preset_schedule("paper", sigmas, family).warmup  # raises the too-few-steps errors
    steps = len(sigmas) - 1
    best = None
    for n_large in range(1, MAX_STRIDE + 1):
        for n_small in range(1, n_large + 1):
            cfg = ScheduleConfig(warmup=warmup, n_small=n_small, n_large=n_large)
            full = warmup + len(sync_groups(steps, cfg))
            speedup = flop_ideal_from_counts(full, steps - full, keyframes, dims, kv_cached)
            if speedup >= target:
                return cfg
            best = max(best or (0.0, cfg), (speedup, cfg), key=lambda b: b[0])
    raise ValueError(f"target_speedup={target} is out of reach at {steps} steps with {keyframes} keyframes: the most is "
                     f"{best[0]:.2f}x (strides {best[1].n_small}-{best[1].n_large}); lower the target, add steps or use fewer "
                     "keyframes")
