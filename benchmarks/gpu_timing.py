"""Median wall time of a callable after warm-up: CUDA events on a GPU, ``perf_counter`` on the CPU.

Why events: a CUDA call returns before its kernels finish, so host timers measure launch time unless
every call synchronises, and synchronising inside the timed region adds its own latency. An event pair
around each call, read after one final synchronisation, times what the GPU did. Peak memory is read
from the allocator over the timed calls (absolute: weights and caches included), so no extra run is
needed; on the CPU there is no allocator high-water mark and it is reported as ``None``.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    median_s: float
    samples_s: tuple[float, ...]
    first_s: float  # the first warm-up call (compilation, allocator growth and caches land here)
    peak_bytes: int | None

    def to_dict(self) -> dict:
        return {"median_s": self.median_s, "samples_s": list(self.samples_s), "first_s": self.first_s, "peak_bytes": self.peak_bytes}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call, synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def time_single(fn: Callable[[], object], device: torch.device) -> Timing:
    """One timed call (a whole sampling run: long enough that one sample is the measurement), with its peak memory."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    s = time_once(fn, device)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return Timing(s, (s,), s, peak)


def time_call(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> Timing:
    """Median of ``reps`` timed calls of ``fn`` after ``warmup`` untimed ones (at least one: its time is ``first_s``)."""
    first = time_once(fn, device)
    for _ in range(warmup - 1):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        samples = [start.elapsed_time(end) / 1e3 for start, end in events]
        peak = int(torch.cuda.max_memory_allocated(device))
    else:
        samples = [time_once(fn, device) for _ in range(reps)]
        peak = None
    return Timing(statistics.median(samples), tuple(samples), first, peak)
