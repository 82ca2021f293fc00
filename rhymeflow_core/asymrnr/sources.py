"""Where the AsymRnR node's schedule comes from, and the texts its nodes show. Pure: no ComfyUI imports.

Sources: ``uniform`` (the same rates in every block, dense for the first ``dense_start`` of the steps),
``testbed`` (the schedule calibrated on the RhymeFlow test bed, shipped as ``schedules/testbed_wan.json``
once calibrated), ``file`` (any schedule JSON, e.g. one written by the AsymRnR Schedule node) and a
connected schedule object. Loaded schedules can be scaled down (``scale`` in [0, 1] multiplies every rate).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..keyframes import clip_text
from .schedule import FEATURES, ReductionSchedule

SCHEDULES_DIR = Path(__file__).resolve().parent / "schedules"
TESTBED_SCHEDULE = SCHEDULES_DIR / "testbed_wan.json"
UNIFORM_COLUMNS = 100  # uniform schedules are read by progress through sampling: 1% resolution for dense_start
MAX_RATE = 0.95
# AsymRnR Token Reduction's schedule sources and the node inputs each reads besides cache_steps and partition_seed
# (the node hides the others: see presets.PRESET_INPUTS).
SOURCE_INPUTS: dict[str, tuple[str, ...]] = {
    "uniform": ("q_rate", "kv_rate", "dense_start"), "testbed": ("scale",), "file": ("scale", "schedule_file"), "input": ("scale",),
}


def schedule_skip_note(path: Path, tokens: int) -> str | None:
    """Why a benchmark leaves out its rows that use the schedule at ``path`` for a run of ``tokens`` video tokens.

    ``None`` when the schedule is there and fits. The node refuses a schedule calibrated at another latent size
    (``state.check_size``); a benchmark at another size should say so and go on, not stop after its other rows.
    """
    if not Path(path).exists():
        return f"(no AsymRnR schedule at {path}: AsymRnR rows skipped; calibrate with python -m rhymeflow_core.testbed.calibrate_asymrnr)"
    calibrated = ReductionSchedule.load(path).tokens
    if calibrated not in (None, tokens):
        return (f"(the AsymRnR schedule {Path(path).name} was calibrated at {calibrated} video tokens, this run has {tokens}: "
                "AsymRnR rows skipped; calibrate at this size with python -m rhymeflow_core.testbed.calibrate_asymrnr)")
    return None


def check_fraction(name: str, value: float, hi: float = 1.0, hi_open: bool = False) -> float:
    """``value`` as a float in ``[0, hi]`` (``[0, hi)`` when ``hi_open``), or a ValueError naming ``name``."""
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v and (v < hi if hi_open else v <= hi)):
        raise ValueError(f"input '{name}' = {value}; accepted: 0 <= {name} {'<' if hi_open else '<='} {hi}")
    return v


def uniform_schedule(num_blocks: int, q_rate: float, kv_rate: float, dense_start: float = 0.2, cache_steps: int = 3,
                     columns: int = UNIFORM_COLUMNS) -> ReductionSchedule:
    """Rates ``q_rate``/``kv_rate`` in every block; the first ``dense_start`` of sampling stays dense."""
    q = check_fraction("q_rate", q_rate, MAX_RATE)
    kv = check_fraction("kv_rate", kv_rate, MAX_RATE)
    first = math.ceil(check_fraction("dense_start", dense_start) * columns)
    row = lambda r: [0.0 if s < first else r for s in range(columns)]  # noqa: E731
    meta = {"source": "uniform", "q_rate": q, "kv_rate": kv, "dense_start": dense_start}
    return ReductionSchedule({"q": [row(q) for _ in range(num_blocks)], "kv": [row(kv) for _ in range(num_blocks)]},
                             int(cache_steps), meta=meta)


def scaled(schedule: ReductionSchedule, scale: float) -> ReductionSchedule:
    """A copy with every rate multiplied by ``scale`` in [0, 1] (``1`` returns an equal copy)."""
    s = check_fraction("scale", scale)
    rates = {f: [[r * s for r in row] for row in schedule.rates[f]] for f in FEATURES}
    return ReductionSchedule(rates, schedule.cache_steps, schedule.dst_stride, {**schedule.meta, "scale": s},
                             schedule.family, schedule.tokens)


def with_cache_steps(schedule: ReductionSchedule, cache_steps: int) -> ReductionSchedule:
    """``cache_steps`` 0 keeps the schedule's own; anything else replaces it (copy)."""
    if int(cache_steps) == 0:
        return schedule
    return ReductionSchedule(schedule.rates, int(cache_steps), schedule.dst_stride, dict(schedule.meta),
                             schedule.family, schedule.tokens)


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath((path, folder)) == folder


def resolve_path(path: str, roots: tuple[str | os.PathLike, ...] = ()) -> Path:
    """The real path of a schedule file inside one of ``roots`` or the pack's schedules folder.

    A relative path is looked up in ``roots`` (in order), then in the schedules folder; an absolute one
    must lie in one of them. Symlinks and ``..`` are resolved first (``os.path.realpath``), and a
    candidate that ends up outside is refused before its existence is checked, so the message says
    nothing about files elsewhere. Only ``.json`` files are read: a schedule is never anything else.
    """
    text = str(path).strip()
    shown = f"input 'schedule_file' = {clip_text(text, 120)}"
    if not text:
        raise ValueError("input 'schedule_file' is empty; give a schedule JSON path relative to ComfyUI's output folder, "
                         "e.g. asymrnr/schedule_00001_.json")
    allowed = [os.path.realpath(r) for r in (*roots, SCHEDULES_DIR)]
    where = ("ComfyUI's output or input folder or the pack's schedules folder" if roots else "the pack's schedules folder")
    if "\x00" in text or not text.lower().endswith(".json"):
        raise ValueError(f"{shown} is not a .json file name; accepted: a schedule JSON in {where}")
    p = Path(text)
    for candidate in [p] if p.is_absolute() else [Path(r) / p for r in allowed]:  # in search order
        real = os.path.realpath(candidate)
        if not any(_within(real, r) for r in allowed):
            raise ValueError(f"{shown} lies outside the folders schedules are read from (links and '..' resolved); "
                             f"accepted: a schedule JSON in {where}, given relative to it")
        if os.path.isfile(real):
            return Path(real)
    raise ValueError(f"{shown}: no such file in {where}")


def load_file(path: str, roots: tuple[str | os.PathLike, ...] = ()) -> ReductionSchedule:
    """``ReductionSchedule.load`` of ``resolve_path(path, roots)``; every failure a ValueError naming the input."""
    real = resolve_path(path, roots)
    try:
        return ReductionSchedule.load(real)
    except OSError as exc:
        raise ValueError(f"input 'schedule_file' = {clip_text(str(path).strip(), 120)} cannot be read "
                         f"({exc.strerror or type(exc).__name__})") from None
    except ValueError as exc:
        raise ValueError(f"input 'schedule_file': {exc}") from None


def check_blocks(schedule: ReductionSchedule, num_blocks: int) -> None:
    if schedule.num_blocks != num_blocks:
        raise ValueError(f"the schedule has {schedule.num_blocks} blocks but the model has {num_blocks}; "
                         "calibrate a schedule for this model (AsymRnR Calibrate + AsymRnR Schedule), or use schedule_source=uniform")


def schedule_text(schedule: ReductionSchedule, path: str | None = None) -> str:
    """A few lines describing a schedule (the AsymRnR Schedule node's summary)."""
    cells = schedule.num_blocks * schedule.num_steps
    mean = {f: sum(r for row in schedule.rates[f] for r in row) / cells for f in FEATURES}
    dense = sum(1 for s in range(schedule.num_steps)
                if all(schedule.rates[f][b][s] == 0 for f in FEATURES for b in range(schedule.num_blocks)))
    m = schedule.meta
    made_for = (f"calibrated on {schedule.family or 'an unnamed family'} at "
                f"{schedule.tokens if schedule.tokens is not None else 'any number of'} video tokens"
                if schedule.family or schedule.tokens else "for any model and size")
    lines = [f"AsymRnR schedule: {schedule.num_blocks} blocks x {schedule.num_steps} steps, cache_steps {schedule.cache_steps}, "
             f"dst_stride {list(schedule.dst_stride)}, {made_for}",
             f"mean rate q {mean['q']:.3f}, kv {mean['kv']:.3f}; dense steps {dense}; self-attention FLOPs left "
             f"{100 * schedule.flop_fraction():.1f}%"]
    if "target" in m:
        lines.append(f"target saving {m['target']}, achieved {m.get('achieved')}, threshold {m.get('threshold', 0):.4g}, "
                     f"caps q {m.get('q_cap')} kv {m.get('kv_cap')}")
    if path:
        lines.append(f"written to {path}")
    return "\n".join(lines)


def stats_text(summary: dict) -> str:
    """A few lines from ``ReductionStats.summary()`` (the AsymRnR Stats node's summary)."""
    rows = summary.get("kept_fraction", [])
    if not rows:
        return ("AsymRnR: no video self-attention call was seen in the last run (the model was not sampled through the "
                "patch, or every call passed through)")
    reduced = [r for r in rows if r[2] < 1 or r[3] < 1]
    steps = len({r[1] for r in rows})
    blocks = len({r[0] for r in rows})
    mean_q = sum(r[2] for r in rows) / len(rows)
    mean_kv = sum(r[3] for r in rows) / len(rows)
    lines = [f"AsymRnR: {len(reduced)} of {len(rows)} (block, step) cells reduced ({blocks} blocks x {steps} steps)",
             f"tokens kept: q {100 * mean_q:.1f}%, k/v {100 * mean_kv:.1f}% on average (min q "
             f"{100 * min(r[2] for r in rows):.1f}%, min k/v {100 * min(r[3] for r in rows):.1f}%)",
             f"self-attention core FLOPs saved: {100 * summary.get('flops_saved_fraction', 0.0):.1f}% "
             f"(QK^T + PV only; projections, cross-attention and FFN are unchanged)",
             f"matchings computed: {summary.get('matchings', 0)}; keyframe-only attention calls passed through: "
             f"{summary.get('unequal_passthrough', 0)}"]
    return "\n".join(lines)
