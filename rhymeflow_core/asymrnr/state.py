"""The per-MODEL AsymRnR state: schedule, token layout and grid, step clock, matching cache, statistics,
and the result of the last finished run.

A plain object, not a dict: ComfyUI copies the dicts inside ``transformer_options`` several times per
run (shallow copies: the object passes by reference), and the attention override and the APPLY_MODEL
wrapper both find it there. Where results live, the one policy for both patches (as ``RhymeFlowHolder``):
on the object the sampled MODEL carries. ``ModelPatcher.clone()`` deep-copies ``model_options``, and a
deep copy is a fresh state with the same settings and no run state or result, so two clones never share
a run or a result. A calibration's measurement is the exception by design: it goes to the shared
``CalibrationSink`` the Calibrate node's handle holds, because that handle must see the run of whichever
clone (ModelSamplingSD3, LoRA, ...) was sampled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .cache import MatchCache, StepClock
from .layout import TESTBED_LAYOUT, TokenLayout
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

    def add(self, block: int, step: int, batch: int, heads: int, head_dim: int, n: int, lq: int, lkv: int, text: int = 0) -> None:
        """One video self-attention call: ``n`` video rows of which ``lq``/``lkv`` were kept, plus ``text`` text rows (kept)."""
        self.kept[(block, step)] = {"q": lq, "kv": lkv, "n": n}
        unit = 4 * batch * heads * head_dim
        self.flops_dense += unit * (n + text) * (n + text)
        self.flops += unit * (lq + text) * (lkv + text)

    def summary(self) -> dict:
        """JSON-able: totals, the saved fraction, and kept fractions as ``[block, step, q, kv]`` rows."""
        rows = [[b, s, round(v["q"] / v["n"], 4), round(v["kv"] / v["n"], 4)] for (b, s), v in sorted(self.kept.items())]
        return {"attention_flops_dense": self.flops_dense, "attention_flops": self.flops,
                "flops_saved_fraction": round(1 - self.flops / self.flops_dense, 4) if self.flops_dense else 0.0,
                "matchings": self.matchings, "unequal_passthrough": self.unequal_passthrough, "kept_fraction": rows}


class CalibrationSink:
    """Where a calibration run's measurement lands; shared (not copied) by every clone of the calibrating MODEL."""

    def __init__(self) -> None:
        self.measurement: dict | None = None

    def __copy__(self) -> "CalibrationSink":
        return self

    def __deepcopy__(self, memo) -> "CalibrationSink":
        return self


class AsymRnRState:
    """Everything the override and the APPLY_MODEL wrapper share; ``reset()`` starts a new run.

    ``origin`` says, for error messages raised while sampling, which node input the schedule came from.
    """

    def __init__(self, schedule: ReductionSchedule, seed: int = 0, max_match_elements: int = DEFAULT_MAX_ELEMENTS,
                 layout: TokenLayout = TESTBED_LAYOUT, origin: str = "AsymRnR: the schedule"):
        self.schedule = schedule
        self.seed = int(seed)
        self.max_match_elements = int(max_match_elements)
        self.layout = layout
        self.origin = origin
        self.previous_override: Callable | None = None
        self.recorder = None  # calibrate.RedundancyRecorder while measuring
        self.sink: CalibrationSink | None = None  # set on a calibrating state
        self.grid: tuple[int, int, int] | None = None
        self.calls_in_pass = 0  # video self-attention calls so far in this DiT call (layouts without a block index)
        self.clock = StepClock()
        self.cache = MatchCache()
        self.stats = ReductionStats()
        self.last_result: dict | None = None  # {"stats": ..., "measurement"?: ...} of the last finished run

    def reset(self) -> None:
        """Forget the run: step clock, cached matchings, statistics (the recorder keeps accumulating)."""
        self.clock = StepClock()
        self.cache.clear()
        self.stats = ReductionStats()

    @property
    def num_tokens(self) -> int | None:
        return None if self.grid is None else self.grid[0] * self.grid[1] * self.grid[2]

    def begin_call(self, x_shape: torch.Size, transformer_options: dict) -> bool:
        """Record the token grid of latent ``x [B, C, T, H, W]`` and the step of this DiT call; True when the call
        starts a sampling run (or carries no sigma to tell)."""
        self.grid = self.layout.grid(x_shape)
        self.calls_in_pass = 0
        sigmas = transformer_options.get("sigmas")
        if sigmas is None:
            return True
        sigma = float(sigmas.flatten()[0]) if torch.is_tensor(sigmas) else float(sigmas)
        sample = transformer_options.get("sample_sigmas")
        if self.clock.observe(sigma, sample if torch.is_tensor(sample) else None):  # a new sampling run
            self.cache.clear()
            self.stats = ReductionStats()
            return True
        return False

    def check_size(self) -> None:
        """A schedule calibrated at one token count is refused at another (its rates describe that size's redundancy).

        Checked at a run's first call only: that one is always a full pass, while the grid of a RhymeFlow
        keyframe-only pass is the keyframes' when this wrapper runs inside RhymeFlow's."""
        want, grid = self.schedule.tokens, self.grid
        if want is not None and grid is not None and want != self.num_tokens:
            raise ValueError(f"{self.origin} was calibrated at {want} video tokens; this run has "
                             f"{self.num_tokens} ({grid[0]} x {grid[1]} x {grid[2]} token grid); accepted: a schedule "
                             "calibrated at this latent size (AsymRnR Calibrate + AsymRnR Schedule), or schedule_source=uniform")

    def __copy__(self) -> "AsymRnRState":
        return self

    def __deepcopy__(self, memo) -> "AsymRnRState":
        """A fresh state with the same settings (``ModelPatcher.clone()``): no run state, no result."""
        fresh = AsymRnRState(self.schedule, self.seed, self.max_match_elements, self.layout, self.origin)
        fresh.previous_override = self.previous_override
        fresh.sink = self.sink
        if self.recorder is not None:
            fresh.recorder = type(self.recorder)(self.recorder.num_blocks, self.recorder.num_steps, self.recorder.edges)
        return fresh
