"""AsymRnR calibration on the RhymeFlow test bed: dense runs of the test-bed model measured, a schedule built.

Lives in ``testbed/`` (not ``asymrnr/``) because it runs the test bed's own sampler and checkpoint; the
model-neutral measurement and schedule building are ``asymrnr/calibrate.py``.

CLI: ``python -m rhymeflow_core.testbed.calibrate_asymrnr --out rhymeflow_core/asymrnr/schedules/testbed_wan.json``
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch

from ..asymrnr.calibrate import build_schedule, measure
from ..asymrnr.matching import DEFAULT_STRIDE
from ..asymrnr.schedule import ReductionSchedule
from ..sampler import sample_dense
from .model_io import load_model
from .runner import Job, run_sampler
from .conditioning import CLASSES
from .wan_dit import WanConfig, WanModel


def calibrate_testbed(model=None, jobs: Sequence | None = None, target: float = 0.3, seed: int = 0,
                      dst_stride: tuple[int, int, int] = DEFAULT_STRIDE, **build_kwargs) -> tuple[ReductionSchedule, dict]:
    """Measure dense ``sample_dense`` runs of the test bed (default: the trained checkpoint, one job per
    class, 16 frames, 30 steps) and build the schedule; returns ``(schedule, measurement)``."""
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
