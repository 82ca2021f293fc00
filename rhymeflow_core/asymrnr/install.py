"""Installing AsymRnR Token Reduction on a ComfyUI MODEL, and where finished runs' results live.

The installer is ``clone()`` plus keyed wrappers (OUTER_SAMPLE resets the state around every run, the
DIFFUSION_MODEL wrapper reads the token grid) and the attention override, chained to any override the
input had. Results of finished runs (never run state) are kept per sampled ModelPatcher and per state in
weak dictionaries: the AsymRnR state is shared by every clone (``AsymRnRState.__deepcopy__`` returns
``self``), so the sampled MODEL object is what tells two clones' runs apart. Errors are plain field errors;
the nodes add their display names. ComfyUI is imported inside the functions.
"""
from __future__ import annotations

import logging
import weakref

from . import KEY, AsymRnRState, ReductionSchedule, grid_wrapper, make_override

log = logging.getLogger("rhymeflow")

# results of finished runs, never run state: sampled ModelPatcher -> record, and state -> latest record
_RUNS_BY_MODEL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_RUNS_BY_STATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def outer_sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper keyed "asymrnr": a fresh run state before sampling, none left after it."""
    guider = executor.class_obj
    state = guider.model_options.get("transformer_options", {}).get(KEY)
    if not isinstance(state, AsymRnRState):
        return executor(*args, **kwargs)
    sigmas = args[3] if len(args) > 3 else kwargs.get("sigmas")
    calibrating = state.recorder is not None
    if calibrating:  # one measurement per run, sized for this run's steps
        from .calibrate import RedundancyRecorder

        steps = max(1, len(sigmas) - 1)
        state.recorder = RedundancyRecorder(state.schedule.num_blocks, steps)
        state.schedule = ReductionSchedule.uniform(state.schedule.num_blocks, steps, dst_stride=state.schedule.dst_stride)
    state.reset()
    state.grid = None
    done = False
    try:
        out = executor(*args, **kwargs)
        done = True
        return out
    finally:
        if done:
            record = {"stats": state.stats.summary()}
            if calibrating:
                record["measurement"] = state.recorder.to_dict(seed=state.seed, dst_stride=list(state.schedule.dst_stride))
            _RUNS_BY_STATE[state] = record
            try:
                _RUNS_BY_MODEL[guider.model_patcher] = record
            except TypeError:  # not weak-referenceable: the per-state record still serves
                pass
        state.reset()
        state.grid = None


def check_model(model) -> int:
    """The number of DiT blocks of a ComfyUI Wan model; a clear error for anything else."""
    import comfy.ldm.wan.model as wan

    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    if not isinstance(dm, wan.WanModel):
        raise ValueError(f"input 'model' is a {type(dm).__name__} ({type(getattr(model, 'model', None)).__name__}); "
                         "supported: Wan 2.1 / 2.2 DiTs (WanModel), loaded with UNETLoader or a checkpoint loader")
    return len(dm.blocks)


def install(model, state: AsymRnRState):
    """A clone of ``model`` with ``state`` installed; ``model`` itself is untouched.

    The override chains to whatever override the input had. If the input already carries AsymRnR directly
    under its override, that AsymRnR is replaced (not stacked); under another pack's override, refused.
    """
    import comfy.patcher_extension

    m = model.clone()
    to = m.model_options.setdefault("transformer_options", {})
    previous = to.get("optimized_attention_override")
    old = to.get(KEY)
    if isinstance(old, AsymRnRState):
        if getattr(previous, "asymrnr_state", None) is not old:
            raise ValueError("input 'model' already has AsymRnR under another attention override; apply AsymRnR "
                             "(or AsymRnR Calibrate) once, before other attention patches")
        log.info("AsymRnR: input 'model' already had AsymRnR; it is replaced, not stacked")
        previous = old.previous_override
    state.previous_override = previous
    override = make_override(state)
    override.asymrnr_state = state
    to["optimized_attention_override"] = override
    to[KEY] = state
    for kind, fn in ((comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, outer_sample_wrapper),
                     (comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, grid_wrapper)):
        m.remove_wrappers_with_key(kind, KEY)
        m.add_wrapper_with_key(kind, KEY, fn)
    return m


def state_of(model) -> AsymRnRState | None:
    state = getattr(model, "model_options", {}).get("transformer_options", {}).get(KEY)
    return state if isinstance(state, AsymRnRState) else None


def last_run(model) -> tuple[dict | None, bool]:
    """``(record, exact)``: the finished run of ``model`` itself, else the latest of any model sharing its state."""
    try:
        record = _RUNS_BY_MODEL.get(model)
    except TypeError:
        record = None
    if record is not None:
        return record, True
    state = state_of(model)
    return (_RUNS_BY_STATE.get(state) if state is not None else None), False


def measurement_of(state: AsymRnRState) -> dict | None:
    """The redundancy measurement of the last finished calibration run with ``state`` (``None`` before one)."""
    record = _RUNS_BY_STATE.get(state)
    return None if record is None else record.get("measurement")
