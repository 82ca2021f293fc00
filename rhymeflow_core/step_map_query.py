"""The planned step map for the UI widget: a query of node settings in, the map's JSON out.

The step-map widget on "RhymeFlow Async Sampler" and "RhymeFlow Accelerate" redraws as the user edits the
schedule and keyframe settings. It asks ``GET /rhymeflow/step_map`` (``nodes/routes.py``), which calls
``planned_step_map`` here, so the schedule is computed by the same ``build_step_map`` the sampler
runs and the widget never re-implements it.

The map is *planned*: which frames become keyframes under ``semantic`` and ``dynamic`` is only known
after warm-up (it depends on the x0 prediction), so the plan places ``budget`` keyframes uniformly;
``uniform`` and ``manual`` plans are exact. The realised map comes from the sampler's stats after a run.

Bad input never raises: the answer is ``{"error": "<what is wrong and what is accepted>", ...}`` so the
widget can show the message in place of the map.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import torch

from .keyframes import MAX_FRAMES, STRATEGIES, KeyframePlan, clip_text, parse_frame_list, select_keyframes
from .flow import simple_sigmas
from .engine import resolve_schedule
from .presets import DEFAULT_TARGET, MIN_STEPS, PRESETS, TARGET, Target
from .flops import WAN_DIMS, flop_ideal_speedup
from .schedule import ScheduleConfig, build_step_map

# Limits that keep one request cheap (a map is frames x steps small ints); generous for real use:
# Wan's 81 pixel frames are 21 latent frames, long runs rarely exceed 100 steps.
MAX_STEPS = 1000
DEFAULT_FRAMES = 21
DEFAULT_STEPS = 30
DEFAULT_SHIFT = 3.0  # the shift the plan assumes for the simple scheduler (the test bed's; Wan 480p)
FLOP_MODEL = "wan2.1-1.3b-480p"

# Uniform placement is what the plan shows for strategies that choose frames only after warm-up.
_DEFERRED = ("semantic", "dynamic")


class _QueryError(ValueError):
    pass


def _get(query: Mapping[str, Any], name: str, default: Any) -> Any:
    value = query.get(name, default)
    if isinstance(value, (list, tuple)) and not isinstance(default, (list, tuple)):
        value = value[-1] if value else default  # a repeated URL parameter: the last one wins
    return default if value is None or value == "" else value


def _int(query: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    raw = _get(query, name, default)
    if isinstance(raw, bool):
        raise _QueryError(f"{name}={clip_text(str(raw))} must be an integer")
    try:
        value = int(raw) if isinstance(raw, int) else int(str(raw).strip(), 10)
    except ValueError:
        raise _QueryError(f"{name}={clip_text(str(raw))} must be an integer") from None
    if not lo <= value <= hi:
        shown = str(value) if len(str(value)) <= 20 else clip_text(str(value))  # "frames=" + 4000 digits parses
        raise _QueryError(f"{name}={shown} must lie in {lo}..{hi}")
    return value


def _float(query: Mapping[str, Any], name: str, default: float) -> float:
    raw = _get(query, name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise _QueryError(f"{name}={clip_text(str(raw))} must be a number") from None
    if not math.isfinite(value):  # float("nan") parses, and nan passes every range check written as lo <= x <= hi
        raise _QueryError(f"{name}={clip_text(str(raw))} must be a finite number")
    return value


def _bool(query: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = _get(query, name, default)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _QueryError(f"{name}={clip_text(str(raw))} must be true or false")


def _choice(query: Mapping[str, Any], name: str, default: str, accepted: tuple[str, ...]) -> str:
    value = str(_get(query, name, default)).strip()
    if value not in accepted:
        raise _QueryError(f"{name}={clip_text(value)} is not known; accepted: {', '.join(accepted)}")
    return value


def schedule_from_query(query: Mapping[str, Any], steps: int, frames: int = DEFAULT_FRAMES,
                        keyframes: int = KeyframePlan().budget) -> tuple[str, ScheduleConfig]:
    """The preset name and its ``ScheduleConfig``; ``custom`` reads ``warmup``/``n_small``/``n_large``, ``target``
    (RhymeFlow Accelerate's) ``target_speedup``, priced on the plan's FLOP model at ``frames`` and ``keyframes``.

    Presets end warm-up at a noise level, so the plan needs sigmas: ComfyUI's ``simple`` scheduler at
    ``shift`` (default 3.0); the sampler uses the run's real sigmas."""
    preset = _choice(query, "preset", "paper", PRESETS + (TARGET,))
    if steps < MIN_STEPS:
        raise _QueryError(
            f"steps={steps} is too few for skipping to pay off (few-step distilled runs have nothing to skip); "
            f"use at least {MIN_STEPS} steps"
        )
    custom = None
    if preset == "custom":
        defaults = ScheduleConfig()
        custom = ScheduleConfig(
            warmup=_int(query, "warmup", defaults.warmup, 0, MAX_STEPS),
            n_small=_int(query, "n_small", defaults.n_small, 0, MAX_STEPS),
            n_large=_int(query, "n_large", defaults.n_large, 0, MAX_STEPS),
        )
    shift = _float(query, "shift", DEFAULT_SHIFT)
    if not 0.1 <= shift <= 100:
        raise _QueryError(f"shift={shift} must lie in 0.1..100")
    target = None
    if preset == TARGET:
        dims = dataclasses.replace(WAN_DIMS[FLOP_MODEL], frames=frames)
        target = Target(_float(query, "target_speedup", DEFAULT_TARGET), dims, keyframes, True)  # the nodes' default: kv
    cfg = resolve_schedule(preset, simple_sigmas(steps, shift).tolist(), "wan", custom, target)  # the run's own resolution
    return preset, cfg


def _threshold(query: Mapping[str, Any], default: float) -> float:
    """The cosine threshold, checked whatever the strategy, as the Keyframes node checks it."""
    value = _float(query, "threshold", default)
    if not -1.0 <= value <= 1.0:
        raise _QueryError(f"threshold={value} is a cosine similarity and must lie in [-1, 1] (default 0.98)")
    return value


def plan_from_query(query: Mapping[str, Any]) -> KeyframePlan:
    """The ``KeyframePlan`` the connected "RhymeFlow Keyframes" node would output."""
    strategy = _choice(query, "strategy", "semantic", STRATEGIES)
    defaults = KeyframePlan()
    manual: list[int] = []
    if strategy == "manual":  # other strategies ignore the text, as the plan keeps it only for switching back
        manual = parse_frame_list(str(_get(query, "manual", "")), MAX_FRAMES - 1)
    return KeyframePlan(
        strategy=strategy,
        budget=_int(query, "budget", defaults.budget, 0, MAX_FRAMES),
        threshold=_threshold(query, defaults.threshold),
        manual=tuple(manual),
        force_first=_bool(query, "force_first", defaults.force_first),
        force_last=_bool(query, "force_last", defaults.force_last),
    )


def planned_keyframes(plan: KeyframePlan, frames: int) -> list[int]:
    """Exact for ``manual`` and ``uniform``; for ``semantic``/``dynamic`` the uniform stand-in.

    Goes through ``select_keyframes`` (on a content-free latent) so validation and placement are the
    sampler's own.
    """
    if plan.strategy in _DEFERRED:
        plan = dataclasses.replace(plan, strategy="uniform")
    blank = torch.zeros(1, 1, frames, 1, 1)
    return list(select_keyframes(blank, plan).indices)


def _planned_sigmas(query: Mapping[str, Any], steps: int) -> list[float] | None:
    """The noise level at the start of each step, for the widget's hover: the simple scheduler at the query's
    shift; None when the shift is unreadable or out of range (a custom schedule does not read it)."""
    try:
        shift = _float(query, "shift", DEFAULT_SHIFT)
    except ValueError:
        return None
    if not 0.1 <= shift <= 100:
        return None
    return [round(float(x), 4) for x in simple_sigmas(steps, shift)[:-1]]


def planned_step_map(query: Mapping[str, Any]) -> dict:
    """``build_step_map(...).to_dict()`` for the settings in ``query``, plus what the widget shows.

    ``query`` holds strings (URL parameters) or plain values: ``frames`` (latent frames, default 21),
    ``steps`` (default 30), ``shift`` (default 3.0), ``preset`` (paper/balanced/fast/custom; custom reads ``warmup``,
    ``n_small``, ``n_large``), ``strategy``, ``budget``, ``threshold``, ``manual`` ("0, 6, 12-14"),
    ``force_first``, ``force_last``.

    Added keys: ``planned`` (always true here), ``keyframes_exact`` (false when the real keyframes are
    chosen after warm-up), ``note``, ``preset``, ``strategy``, ``schedule`` (the ``ScheduleConfig``),
    ``full_passes``, ``keyframe_passes``, ``flop_ideal`` (dense over RhymeFlow FLOPs for Wan 2.1 1.3B
    480p at this frame count), ``flop_model``, ``sigmas`` (one per step, or None) and ``error`` (None). On bad input only ``error``,
    ``planned`` and the echoed ``frames``/``steps`` (when readable) are returned.
    """
    out: dict[str, Any] = {"planned": True}
    try:
        frames = _int(query, "frames", DEFAULT_FRAMES, 2, MAX_FRAMES)
        steps = _int(query, "steps", DEFAULT_STEPS, 1, MAX_STEPS)
        out.update(frames=frames, steps=steps)
        plan = plan_from_query(query)
        keys = planned_keyframes(plan, frames)
        preset, cfg = schedule_from_query(query, steps, frames, len(keys))
        step_map = build_step_map(frames, steps, cfg, keys)
    except ValueError as exc:  # _QueryError and the core's own validation messages
        out["error"] = str(exc)
        return out
    dims = dataclasses.replace(WAN_DIMS[FLOP_MODEL], frames=frames)
    exact = plan.strategy not in _DEFERRED
    out.update(step_map.to_dict())
    out.update(
        keyframes_exact=exact,
        note=(
            "planned map" if exact else
            f"planned map: {plan.strategy} keyframes are chosen after warm-up; {plan.budget} shown uniformly"
        ),
        preset=preset,
        strategy=plan.strategy,
        schedule=cfg.to_dict(),
        full_passes=step_map.full_passes(),
        keyframe_passes=step_map.keyframe_passes(),
        flop_ideal=round(flop_ideal_speedup(step_map, dims), 4),
        flop_model=FLOP_MODEL,
        sigmas=_planned_sigmas(query, steps),
        error=None,
    )
    return out
