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

CLI (test bed): ``python -m rhymeflow_core.asymrnr.calibrate --out rhymeflow_core/asymrnr/schedules/testbed_wan.json``
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import torch

from .attention_override import install
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
            dst_stride: tuple[int, int, int] = DEFAULT_STRIDE) -> dict:
    """Call ``run_dense(transformer_options)`` (dense sampling with those options) and return the measurement."""
    state = AsymRnRState(ReductionSchedule.uniform(num_blocks, num_steps, dst_stride=dst_stride), seed=seed)
    state.recorder = RedundancyRecorder(num_blocks, num_steps)
    run_dense(install({}, state))
    return state.recorder.to_dict(seed=seed, dst_stride=list(dst_stride))


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
    meta = {"target": target, "achieved": round(saving(lam), 4), "lambda": round(lam, 4), "threshold": edges[j],
            "q_cap": q_cap, "kv_cap": kv_cap, "dense_start": dense_start, "dense_steps": first}
    return ReductionSchedule(rates(lam), cache_steps, tuple(measurement["meta"].get("dst_stride", DEFAULT_STRIDE)), meta)


def calibrate_testbed(model=None, jobs: Sequence | None = None, target: float = 0.3, seed: int = 0,
                      dst_stride: tuple[int, int, int] = DEFAULT_STRIDE, **build_kwargs) -> tuple[ReductionSchedule, dict]:
    """Measure dense ``sample_dense`` runs of the test bed (default: the trained checkpoint, one job per
    class, 16 frames, 30 steps) and build the schedule; returns ``(schedule, measurement)``."""
    from ..sampler import sample_dense
    from ..testbed.model_io import load_model
    from ..testbed.runner import Job, run_sampler
    from ..testbed.conditioning import CLASSES

    model = load_model() if model is None else model
    jobs = [Job(cls=c, seed=1000 + c) for c in range(len(CLASSES))] if jobs is None else list(jobs)
    steps = {j.steps for j in jobs}
    if len(steps) != 1:
        raise ValueError(f"AsymRnR calibration: all jobs need the same step count; got {sorted(steps)}")

    def run_dense(to: dict) -> None:
        for job in jobs:
            run_sampler(sample_dense, model, job, transformer_options=to)

    measurement = measure(run_dense, len(model.blocks), steps.pop(), seed, dst_stride)
    schedule = build_schedule(measurement, target=target, **build_kwargs)
    schedule.meta["calibrated_on"] = {"jobs": [vars(j) for j in jobs], "seed": seed,
                                     "model": {k: list(v) if isinstance(v, tuple) else v for k, v in model.cfg.to_dict().items()}}
    return schedule, measurement


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Calibrate an AsymRnR schedule on the RhymeFlow test bed.")
    p.add_argument("--out", required=True, help="schedule JSON to write")
    p.add_argument("--measurement-out", help="also write the redundancy measurement JSON here")
    p.add_argument("--target", type=float, default=0.3, help="mean self-attention FLOP saving (default 0.3)")
    p.add_argument("--q-cap", type=float, default=0.7)
    p.add_argument("--kv-cap", type=float, default=0.5)
    p.add_argument("--dense-start", type=float, default=0.2, help="fraction of first steps left dense")
    p.add_argument("--cache-steps", type=int, default=3)
    p.add_argument("--threshold", type=float, default=None, help="relative distance tau (default: pooled median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--random-model", action="store_true", help="development only: a random 2-block model, no checkpoint")
    a = p.parse_args(argv)
    from ..testbed.runner import Job
    from ..testbed.conditioning import CLASSES
    from ..testbed.wan_dit import WanConfig, WanModel

    model = None
    if a.random_model:
        torch.manual_seed(a.seed)
        model = WanModel(WanConfig(dim=128, ffn_dim=512, num_layers=2)).eval().requires_grad_(False)
    jobs = [Job(cls=c, seed=1000 + c, frames=a.frames, steps=a.steps) for c in range(len(CLASSES))]
    schedule, measurement = calibrate_testbed(model, jobs, a.target, a.seed, q_cap=a.q_cap, kv_cap=a.kv_cap,
                                              dense_start=a.dense_start, threshold=a.threshold, cache_steps=a.cache_steps)
    schedule.save(a.out)
    if a.measurement_out:
        Path(a.measurement_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.measurement_out).write_text(json.dumps(measurement) + "\n")
    m = schedule.meta
    print(f"AsymRnR schedule -> {a.out}: {schedule.num_blocks} blocks x {schedule.num_steps} steps, target {m['target']}, "
          f"achieved {m['achieved']} (tau {m['threshold']:.4g}, lambda {m['lambda']})")


if __name__ == "__main__":
    main()
