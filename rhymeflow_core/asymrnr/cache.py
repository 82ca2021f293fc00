"""Step counting from sigma, and the matching cache keyed by (block, feature, branch).

Why sigma and not calls: with CFG, cond and uncond may be one batched DiT call or two separate calls,
and multi-call solvers evaluate the model several times per step; counting calls would drift. A step
changes when the sigma changes. When ``sample_sigmas`` (ComfyUI's full schedule) is present the step
is read from it instead: the index ``i`` with ``s_{i+1} < sigma <= s_i``, which also survives skipped
calls (step caches such as TeaCache) and solver midpoints. A sigma that
goes up means a new sampling run: the caller resets its per-run state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .matching import Match


class StepClock:
    """The current sampler step, from the sigma of each DiT call."""

    def __init__(self) -> None:
        self.step = -1
        self.total: int | None = None
        self.sigma: float | None = None
        self._schedule_ref: object = None
        self._schedule: list[float] = []

    def observe(self, sigma: float, sample_sigmas: torch.Tensor | None = None) -> bool:
        """Advance to ``sigma``; returns True when it starts a new run (first call, or sigma went up)."""
        new_run = self.sigma is None or sigma > self.sigma
        if new_run:
            self.step = -1
        if sample_sigmas is not None:
            if sample_sigmas is not self._schedule_ref:  # one host copy per run, not per call
                self._schedule_ref, self._schedule = sample_sigmas, [float(s) for s in sample_sigmas.flatten().tolist()]
            self.total = max(1, len(self._schedule) - 1)
            tol = 1e-5 * max(sigma, 1e-3)  # the step whose interval [s_{i+1}, s_i] holds sigma (solver midpoints too)
            self.step = max(0, sum(1 for s in self._schedule[: self.total] if s >= sigma - tol) - 1)
        else:
            self.total = None
            if sigma != self.sigma:
                self.step += 1
        self.sigma = sigma
        return new_run


@dataclass
class _Entry:
    window: int
    n_tokens: int
    match: Match


class MatchCache:
    """Matchings per (block, feature, branch), valid for one cache window and one token count/batch/heads."""

    def __init__(self) -> None:
        self._entries: dict[tuple, _Entry] = {}

    def get(self, key: tuple, window: int, n_tokens: int, batch: int, heads: int) -> Match | None:
        e = self._entries.get(key)
        if e is None or e.window != window or e.n_tokens != n_tokens or e.match.order.shape[:2] != (batch, heads):
            return None
        return e.match

    def put(self, key: tuple, window: int, n_tokens: int, match: Match) -> None:
        self._entries[key] = _Entry(window, n_tokens, match)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
