"""The planned step map for the UI widget: a query of node settings in, the map's JSON out.

The step-map widget on "RhymeFlow Async Sampler" and "RhymeFlow Accelerate" redraws as the user edits the
schedule and keyframe settings. It asks ``GET /rhymeflow/step_map`` (``nodes/routes.py``), which calls
``planned_step_map`` here, so the schedule is computed by the same ``build_step_map`` the sampler
runs and the widget never re-implements it.

The map is *planned*: which frames become keyframes under ``semantic`` and ``dynamic`` is only known
after warm-up (it depends on the x0 prediction), so the plan places ``budget`` keyframes uniformly;
``uniform`` and ``manual`` plans are exact. The realised map comes from the sampler's stats after a run.

What the map is planned on comes from the graph when the widget can read it there (``web/graph_settings.js``):
frames and the latent grid from the latent node, steps / scheduler / denoise / start and end step from the
sampler or scheduler node, the shift from ModelSamplingSD3, the model file from its loader, the context mode from
the node that installs the patch. The caller (``nodes/routes.py``) turns the scheduler into sigmas and the model
file into its real FLOP dims with ComfyUI's own functions (``sigmas_fn``, ``dims_fn``); without them (no ComfyUI,
no readable file) the plan falls back to the ``simple`` scheduler at ``shift`` and the Wan 2.1 1.3B dims, and the
answer says so (``sigmas_from``, ``flop_model``, ``flop_dims_real``).

Bad input never raises: the answer is ``{"error": "<what is wrong and what is accepted>", ...}`` so the
widget can show the message in place of the map.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import torch

from .keyframes import MAX_FRAMES, STRATEGIES, KeyframePlan, clip_text, parse_frame_list, select_keyframes
from .flow import simple_sigmas
from .engine import resolve_schedule
from .presets import DEFAULT_TARGET, MIN_STEPS, PRESETS, TARGET, TOP_SIGMA, Target
from .flops import WAN_DIMS, ModelDims, flop_ideal_speedup
from .patch import CONTEXT_MODES, DEFAULT_TEXT_TOKENS
from .schedule import ScheduleConfig, build_step_map

# Limits that keep one request cheap (a map is frames x steps small ints); generous for real use:
# Wan's 81 pixel frames are 21 latent frames, long runs rarely exceed 100 steps.
MAX_STEPS = 1000
DEFAULT_FRAMES = 21
DEFAULT_STEPS = 30
DEFAULT_SHIFT = 3.0  # the shift the plan assumes for the simple scheduler (the test bed's; Wan 480p)
FLOP_MODEL = "wan2.1-1.3b-480p"

MAX_LATENT_SIDE = 1024  # latent rows/columns (8192 pixels at Wan's 8x VAE)
MAX_TEXT_TOKENS = 4096
MIN_DENOISE = 0.01  # KSampler's widget step
MAX_TOTAL_STEPS = 10_000  # steps / denoise: what the scheduler is asked for
SIMPLE = "simple"

# Uniform placement is what the plan shows for strategies that choose frames only after warm-up.
_DEFERRED = ("semantic", "dynamic")

# scheduler name, total steps, shift -> total_steps + 1 sigmas (ComfyUI's calculate_sigmas on a flow model)
SigmasFn = Callable[[str, int, float], Sequence[float]]
# loader node type, model file name, latent (frames, height, width), text tokens -> (the model's FLOP dims at that
# latent, its family, a label); raises ValueError when the file cannot be read
DimsFn = Callable[[str, str, tuple[int, int, int], int], tuple[ModelDims, str, str]]


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
                        keyframes: int = KeyframePlan().budget, sigmas: Sequence[float] | None = None,
                        dims: ModelDims | None = None, family: str = "wan", kv_cached: bool = True) -> tuple[str, ScheduleConfig]:
    """The preset name and its ``ScheduleConfig``; ``custom`` reads ``warmup``/``n_small``/``n_large``, ``target``
    (RhymeFlow Accelerate's) ``target_speedup``, priced on ``dims`` (default: the Wan 2.1 1.3B dims at ``frames``)
    with ``keyframes`` and the context mode (``kv_cached``), as the run prices it.

    Presets end warm-up at a noise level, so the plan needs sigmas: ``sigmas`` when given (the graph's scheduler),
    else ComfyUI's ``simple`` scheduler at ``shift`` (default 3.0); the sampler uses the run's real sigmas."""
    preset = _choice(query, "preset", "paper", PRESETS + (TARGET,))
    from_noise = sigmas is None or float(sigmas[0]) >= TOP_SIGMA
    if steps < MIN_STEPS and from_noise:
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
    if sigmas is None:
        sigmas = simple_sigmas(steps, _shift(query)).tolist()
    target = None
    if preset == TARGET:
        dims = dims or dataclasses.replace(WAN_DIMS[FLOP_MODEL], frames=frames)
        target = Target(_float(query, "target_speedup", DEFAULT_TARGET), dims, keyframes, kv_cached)
    cfg = resolve_schedule(preset, list(sigmas), family, custom, target)  # the run's own resolution
    return preset, cfg


def _shift(query: Mapping[str, Any]) -> float:
    shift = _float(query, "shift", DEFAULT_SHIFT)
    if not 0.1 <= shift <= 100:
        raise _QueryError(f"shift={shift} must lie in 0.1..100")
    return shift


def planned_sigmas(query: Mapping[str, Any], sigmas_fn: SigmasFn | None = None) -> tuple[list[float], str]:
    """The sigmas of the run the graph describes, and how they were made (shown on the map).

    As ComfyUI's KSampler / BasicScheduler make them: ``steps`` at ``denoise`` < 1 are the last ``steps`` of
    ``int(steps / denoise)``; KSamplerAdvanced's ``start_step`` / ``end_step`` then keep that slice (a Wan 2.2 expert).
    ``scheduler`` other than ``simple`` needs ``sigmas_fn`` (ComfyUI's own schedulers)."""
    steps = _int(query, "steps", DEFAULT_STEPS, 1, MAX_STEPS)
    shift = _shift(query)
    scheduler = str(_get(query, "scheduler", SIMPLE)).strip()
    denoise = _float(query, "denoise", 1.0)
    if not MIN_DENOISE <= denoise <= 1.0:
        raise _QueryError(f"denoise={denoise} must lie in {MIN_DENOISE}..1")
    total = steps if denoise >= 1.0 else int(steps / denoise)
    if total > MAX_TOTAL_STEPS:
        raise _QueryError(f"steps={steps} at denoise={denoise} means {total} scheduler steps; at most {MAX_TOTAL_STEPS}")
    if sigmas_fn is not None:
        sig = [float(x) for x in sigmas_fn(scheduler, total, shift)]
    elif scheduler == SIMPLE:
        sig = simple_sigmas(total, shift).tolist()
    else:
        raise _QueryError(f"scheduler={clip_text(scheduler)} cannot be planned without ComfyUI; accepted here: {SIMPLE}")
    sig = sig[-(steps + 1):]
    start = _int(query, "start_step", 0, 0, MAX_STEPS)
    end = _int(query, "end_step", steps, 0, 10_000)  # KSamplerAdvanced's default end is 10000: "to the last step"
    end = min(end, steps)
    if not start < end:
        raise _QueryError(f"start_step={start} must be below end_step={end} (the steps this sampler runs)")
    sig = sig[start:end + 1]
    where = f"{scheduler} scheduler, shift {shift:g}, {steps} steps" + (f" at denoise {denoise:g}" if denoise < 1 else "")
    if (start, end) != (0, steps):
        where += f", steps {start + 1}-{end} of them"
    return sig, where


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


def _planned_dims(query: Mapping[str, Any], frames: int, dims_fn: DimsFn | None) -> tuple[ModelDims, str, str, bool]:
    """The FLOP dims the plan is priced on, the family whose preset row applies, a label and whether the dims are the
    model's own: read from the graph's model file by ``dims_fn`` at the graph's latent grid, else Wan 2.1 1.3B's."""
    text = _int(query, "text_tokens", DEFAULT_TEXT_TOKENS, 1, MAX_TEXT_TOKENS)
    loader, name = str(_get(query, "model_loader", "")), str(_get(query, "model_file", ""))
    reason = "no model loader in the graph"
    if loader and name and dims_fn is not None:
        grid = (frames, _int(query, "latent_h", 60, 1, MAX_LATENT_SIDE), _int(query, "latent_w", 104, 1, MAX_LATENT_SIDE))
        try:
            dims, family, label = dims_fn(loader, name, grid, text)
            return dims, family, label, True
        except ValueError as exc:
            reason = str(exc)
    elif loader and name:
        reason = "model files are read only inside ComfyUI"
    assumed = dataclasses.replace(WAN_DIMS[FLOP_MODEL], frames=frames, text_tokens=text)
    return assumed, "wan", f"{FLOP_MODEL} (assumed: {reason[:160]})", False


def planned_step_map(query: Mapping[str, Any], sigmas_fn: SigmasFn | None = None, dims_fn: DimsFn | None = None) -> dict:
    """``build_step_map(...).to_dict()`` for the settings in ``query``, plus what the widget shows.

    ``query`` holds strings (URL parameters) or plain values: ``frames`` (latent frames, default 21),
    ``steps`` (default 30), ``scheduler`` (default simple), ``shift`` (default 3.0), ``denoise``, ``start_step`` /
    ``end_step`` (see ``planned_sigmas``), ``preset`` (paper/balanced/fast/custom/target; custom reads ``warmup``,
    ``n_small``, ``n_large``, target ``target_speedup``), ``strategy``, ``budget``, ``threshold``, ``manual``
    ("0, 6, 12-14"), ``force_first``, ``force_last``, and for the FLOP price ``context_mode`` (kv/hidden),
    ``model_loader`` / ``model_file`` / ``latent_h`` / ``latent_w`` (read by ``dims_fn``) and ``text_tokens``.

    Added keys: ``planned`` (always true here), ``keyframes_exact`` (false when the real keyframes are
    chosen after warm-up), ``note``, ``preset``, ``strategy``, ``schedule`` (the ``ScheduleConfig``),
    ``full_passes``, ``keyframe_passes``, ``flop_ideal`` (dense over RhymeFlow FLOPs, priced as the run prices its
    passes), ``flop_model`` (what priced it), ``flop_dims_real`` (the model's own dims, read from its file),
    ``context_mode``, ``family``, ``sigmas`` (one per step), ``sigmas_from`` and ``error`` (None). On bad input only
    ``error``, ``planned`` and the echoed ``frames``/``steps`` (when readable) are returned.
    """
    out: dict[str, Any] = {"planned": True}
    try:
        frames = _int(query, "frames", DEFAULT_FRAMES, 2, MAX_FRAMES)
        out.update(frames=frames, steps=_int(query, "steps", DEFAULT_STEPS, 1, MAX_STEPS))
        sigmas, sigmas_from = planned_sigmas(query, sigmas_fn)
        steps = len(sigmas) - 1
        context_mode = _choice(query, "context_mode", "kv", CONTEXT_MODES)
        plan = plan_from_query(query)
        keys = planned_keyframes(plan, frames)
        dims, family, flop_model, real = _planned_dims(query, frames, dims_fn)
        preset, cfg = schedule_from_query(query, steps, frames, len(keys), sigmas, dims, family, context_mode == "kv")
        step_map = build_step_map(frames, steps, cfg, keys)
    except ValueError as exc:  # _QueryError and the core's own validation messages
        out["error"] = str(exc)
        return out
    exact = plan.strategy not in _DEFERRED
    adaptive = _bool(query, "adaptive", False)
    note = "planned map" if exact else f"planned map: {plan.strategy} keyframes are chosen after warm-up; {plan.budget} shown uniformly"
    if adaptive:  # the later groups' keyframes depend on how the frames drift during the run
        note += "; adaptive: keyframes are re-chosen at each sync point (shown: the first group's in every group)"
    out.update(step_map.to_dict())
    out.update(
        keyframes_exact=exact and not adaptive,
        note=note,
        preset=preset,
        strategy=plan.strategy,
        schedule=cfg.to_dict(),
        full_passes=step_map.full_passes(),
        keyframe_passes=step_map.keyframe_passes(),
        flop_ideal=round(flop_ideal_speedup(step_map, dims, kv_cached=context_mode == "kv"), 4),
        flop_model=flop_model,
        flop_dims_real=real,
        context_mode=context_mode,
        family=family,
        sigmas=[round(float(x), 4) for x in sigmas[:-1]],
        sigmas_from=sigmas_from,
        error=None,
    )
    return out
