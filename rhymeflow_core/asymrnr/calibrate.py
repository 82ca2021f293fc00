"""Calibration: measure redundancy in one dense run, then turn it into a reduction schedule.

The authors ship per-model "tier" tables but not the code that made them, and none for Wan, so this
module makes its own. ``measure`` runs a dense sampling (all rates 0, bit-exact with the plain model)
with a recorder attached: for every (block, step) and feature (Q; V, which drives K/V) it matches
sources to destinations as the method would and histograms the nearest-destination squared distance
divided by the mean squared token norm of that (sample, head). ``build_schedule`` reads, per cell, the
fraction of all tokens that are sources within a relative threshold ``tau`` of a destination (its
redundancy ``s``), and sets ``rate = min(cap, lam * s)`` with one ``lam`` found by bisection so the
mean self-attention FLOP saving over all cells, ``1 - mean((1 - r_q)(1 - r_kv))``, meets the target.
The most redundant cells get the highest rates; the first ``dense_start`` of the steps stay dense.
The schedule records the family (from the measurement's meta) and the video token count it was measured at.

Model-neutral: the test bed's calibration run and CLI are ``rhymeflow_core/testbed/calibrate_asymrnr.py``, so token
reduction does not import the test bed.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .attention_override import install
from .layout import TESTBED_LAYOUT, TokenLayout
from .matching import DEFAULT_STRIDE
from .schedule import FEATURES, ReductionSchedule
from .state import AsymRnRState

FORMAT = "asymrnr-redundancy"
VERSION = 1
DEFAULT_EDGES = tuple(float(e) for e in torch.logspace(-3, 1, 33).tolist())  # relative squared distance bins


class RedundancyRecorder:
    """Histograms of relative nearest-destination distances per (feature, block, step), summed over calls."""

    def __init__(self, num_blocks: int, num_steps: int, edges: Sequence[float] = DEFAULT_EDGES):
        self.num_blocks, self.num_steps, self.edges = num_blocks, num_steps, tuple(edges)
        self.counts: dict[tuple[str, int, int], torch.Tensor] = {}
        self.n_tokens = self.n_dst = 0

    def add(self, feature: str, block: int, step: int, distance: torch.Tensor, x: torch.Tensor, n_dst: int) -> None:
        """``distance [B, H, Ns]`` of the sources of ``x [B, N, H, d]``; stays on the device until ``to_dict``."""
        if not (0 <= block < self.num_blocks and 0 <= step < self.num_steps):
            raise ValueError(f"AsymRnR calibration: (block {block}, step {step}) outside {self.num_blocks} blocks x {self.num_steps} steps")
        norm = x.float().pow(2).sum(-1).mean(1).clamp_min(1e-12)  # [B, H] mean squared token norm
        rel = (distance / norm.unsqueeze(-1)).flatten()
        edges = torch.tensor(self.edges, device=rel.device, dtype=rel.dtype)
        hist = torch.bincount(torch.bucketize(rel, edges), minlength=len(self.edges) + 1).double()
        key = (feature, block, step)
        self.counts[key] = self.counts[key] + hist if key in self.counts else hist
        self.n_tokens, self.n_dst = x.shape[1], n_dst

    def to_dict(self, **meta) -> dict:
        """JSON-able measurement; bin ``i`` counts ratios in ``(edges[i-1], edges[i]]``."""
        zero = [0.0] * (len(self.edges) + 1)
        hist = {f: [[self.counts[(f, b, s)].tolist() if (f, b, s) in self.counts else zero for s in range(self.num_steps)]
                    for b in range(self.num_blocks)] for f in FEATURES}
        return {"format": FORMAT, "version": VERSION, "edges": list(self.edges), "num_blocks": self.num_blocks,
                "num_steps": self.num_steps, "n_tokens": self.n_tokens, "n_dst": self.n_dst, "meta": meta, "hist": hist}


def measure(run_dense: Callable[[dict], object], num_blocks: int, num_steps: int, seed: int = 0,
            dst_stride: tuple[int, int, int] = DEFAULT_STRIDE, layout: TokenLayout = TESTBED_LAYOUT) -> dict:
    """Call ``run_dense(transformer_options)`` (dense sampling with those options) and return the measurement."""
    state = AsymRnRState(ReductionSchedule.uniform(num_blocks, num_steps, dst_stride=dst_stride), seed=seed, layout=layout)
    state.recorder = RedundancyRecorder(num_blocks, num_steps)
    run_dense(install({}, state))
    return state.recorder.to_dict(seed=seed, dst_stride=list(dst_stride), family=layout.family)


def _cdf(counts: list[float], j: int) -> float:
    total = sum(counts)
    return sum(counts[: j + 1]) / total if total else 0.0


def build_schedule(measurement: dict, target: float = 0.3, q_cap: float = 0.7, kv_cap: float = 0.5,
                   dense_start: float = 0.2, threshold: float | None = None, cache_steps: int = 3) -> ReductionSchedule:
    """A schedule saving ``target`` of self-attention FLOPs on average over (block, step) cells.

    ``threshold`` is the relative distance ``tau`` (snapped to a bin edge); ``None`` takes the median
    over every recorded source, so ``s`` compares cells against the run as a whole.
    """
    if measurement.get("format") != FORMAT or measurement.get("version") != VERSION:
        raise ValueError(f"AsymRnR calibration: not a v{VERSION} {FORMAT} measurement")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"AsymRnR calibration: target={target}; need 0 <= target < 1")
    edges, hist = measurement["edges"], measurement["hist"]
    nb, ns_steps, n, nd = measurement["num_blocks"], measurement["num_steps"], measurement["n_tokens"], measurement["n_dst"]
    if threshold is None:
        pooled = [sum(c) for c in zip(*(cell for f in FEATURES for row in hist[f] for cell in row))]
        j = next(i for i in range(len(edges)) if _cdf(pooled, i) >= 0.5) if sum(pooled) else len(edges) - 1
    else:
        j = min(range(len(edges)), key=lambda i: abs(math.log(edges[i] / threshold)))
    src_share = (n - nd) / n if n else 0.0
    first = math.ceil(dense_start * ns_steps)
    red = {f: [[_cdf(hist[f][b][s], j) * src_share if s >= first else 0.0 for s in range(ns_steps)] for b in range(nb)] for f in FEATURES}
    sat = 1 - nd / n if n else 0.0  # beyond this rate only destinations remain
    caps = {"q": min(q_cap, sat), "kv": min(kv_cap, sat)}

    def rates(lam: float) -> dict[str, list[list[float]]]:
        return {f: [[round(min(caps[f], lam * r), 3) for r in row] for row in red[f]] for f in FEATURES}

    def saving(lam: float) -> float:
        return 1 - ReductionSchedule(rates(lam)).flop_fraction()

    positive = [r for f in FEATURES for row in red[f] for r in row if r > 0]
    lo, hi = 0.0, (max(caps.values()) / min(positive)) if positive else 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if saving(mid) < target else (lo, mid)
    lam = hi
    family = measurement["meta"].get("family")
    meta = {"target": target, "achieved": round(saving(lam), 4), "lambda": round(lam, 4), "threshold": edges[j],
            "q_cap": q_cap, "kv_cap": kv_cap, "dense_start": dense_start, "dense_steps": first}
    return ReductionSchedule(rates(lam), cache_steps, tuple(measurement["meta"].get("dst_stride", DEFAULT_STRIDE)), meta,
                             family=family if isinstance(family, str) else None, tokens=int(n) if n else None)
