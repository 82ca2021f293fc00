"""The per-model AsymRnR state: schedule, token grid, step clock, matching cache and statistics.

A plain object, not a dict: ComfyUI copies the dicts inside ``transformer_options`` several times per
run, and the attention override (a closure over this object) and the DIFFUSION_MODEL wrapper (which
finds it in ``transformer_options``) must see the same instance, so copying returns ``self``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .cache import MatchCache, StepClock
from .matching import DEFAULT_MAX_ELEMENTS
from .schedule import ReductionSchedule


@dataclass
class ReductionStats:
    """What one run reduced. FLOPs are the self-attention core only: ``QK^T`` plus ``PV``, ``4 B H d Lq Lkv``."""

    kept: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)  # (block, step) -> q, kv, n tokens
    flops_dense: int = 0
    flops: int = 0
    matchings: int = 0  # matchings computed (cache misses)
    unequal_passthrough: int = 0  # self-attention calls with q shorter than k (keyframe-only passes): untouched

    def add(self, block: int, step: int, batch: int, heads: int, head_dim: int, n: int, lq: int, lkv: int) -> None:
        self.kept[(block, step)] = {"q": lq, "kv": lkv, "n": n}
        unit = 4 * batch * heads * head_dim
        self.flops_dense += unit * n * n
        self.flops += unit * lq * lkv

    def summary(self) -> dict:
        """JSON-able: totals, the saved fraction, and kept fractions as ``[block, step, q, kv]`` rows."""
        rows = [[b, s, round(v["q"] / v["n"], 4), round(v["kv"] / v["n"], 4)] for (b, s), v in sorted(self.kept.items())]
        return {"attention_flops_dense": self.flops_dense, "attention_flops": self.flops,
                "flops_saved_fraction": round(1 - self.flops / self.flops_dense, 4) if self.flops_dense else 0.0,
                "matchings": self.matchings, "unequal_passthrough": self.unequal_passthrough, "kept_fraction": rows}


class AsymRnRState:
    """Everything the override and the grid wrapper share; ``reset()`` starts a new run."""

    def __init__(self, schedule: ReductionSchedule, seed: int = 0, max_match_elements: int = DEFAULT_MAX_ELEMENTS):
        self.schedule = schedule
        self.seed = int(seed)
        self.max_match_elements = int(max_match_elements)
        self.previous_override: Callable | None = None
        self.recorder = None  # calibrate.RedundancyRecorder while measuring
        self.grid: tuple[int, int, int] | None = None
        self.clock = StepClock()
        self.cache = MatchCache()
        self.stats = ReductionStats()

    def reset(self) -> None:
        """Forget the run: step clock, cached matchings, statistics (the recorder keeps accumulating)."""
        self.clock = StepClock()
        self.cache.clear()
        self.stats = ReductionStats()

    @property
    def num_tokens(self) -> int | None:
        return None if self.grid is None else self.grid[0] * self.grid[1] * self.grid[2]

    def begin_call(self, x_shape: torch.Size, patch_size: tuple[int, int, int], transformer_options: dict) -> None:
        """Record the token grid of latent ``x [B, C, T, H, W]`` and the step of this DiT call."""
        self.grid = tuple(-(-int(n) // int(p)) for n, p in zip(x_shape[2:], patch_size))
        sigmas = transformer_options.get("sigmas")
        if sigmas is None:
            return
        sigma = float(sigmas.flatten()[0]) if torch.is_tensor(sigmas) else float(sigmas)
        sample = transformer_options.get("sample_sigmas")
        if self.clock.observe(sigma, sample if torch.is_tensor(sample) else None):  # a new sampling run
            self.cache.clear()
            self.stats = ReductionStats()

    def __copy__(self) -> "AsymRnRState":
        return self

    def __deepcopy__(self, memo) -> "AsymRnRState":
        return self
