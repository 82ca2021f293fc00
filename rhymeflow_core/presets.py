"""Schedule presets per model family and step count.

Why per step count: the paper's Tw=8 / strides 2-3 were tuned at 50 steps. Warm-up is a share of the
run (the layout forms in the first ~16% of steps whatever their number), so presets scale it; strides
stay absolute because they count skipped steps, and fewer steps mean each one moves further.
"""
from __future__ import annotations

from .schedule import ScheduleConfig

FAMILIES = ("wan2.1",)
PRESETS = ("paper", "balanced", "fast", "custom")
MIN_STEPS = 10

# name -> (warm-up share of steps, n_small, n_large); "paper" = Tw 8/50, strides 2-3 (Sec. 4.1)
_TABLE = {
    "wan2.1": {
        "paper": (0.16, 2, 3),
        "balanced": (0.16, 2, 4),
        "fast": (0.12, 3, 5),
    },
}


def preset_schedule(preset: str, steps: int, family: str = "wan2.1") -> ScheduleConfig:
    """The ``ScheduleConfig`` of a named preset at ``steps`` steps; raises on too-few steps."""
    if family not in FAMILIES:
        raise ValueError(f"RhymeFlow Async Sampler: model family {family!r} has no presets; supported: {', '.join(FAMILIES)}")
    table = _TABLE[family]
    if preset not in table:
        raise ValueError(f"RhymeFlow Async Sampler: preset={preset!r}; accepted: {', '.join(table)} (or custom)")
    if steps < MIN_STEPS:
        raise ValueError(f"RhymeFlow Async Sampler: {steps} steps is too few for skipping to pay off (few-step distilled runs "
                         f"have nothing to skip); use at least {MIN_STEPS} steps or sample without RhymeFlow")
    share, n_small, n_large = table[preset]
    return ScheduleConfig(warmup=max(2, round(share * steps)), n_small=n_small, n_large=n_large)
