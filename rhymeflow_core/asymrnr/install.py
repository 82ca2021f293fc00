"""Installing AsymRnR Token Reduction on a ComfyUI MODEL, and where finished runs' results live.

The installer is ``clone()`` plus keyed wrappers (OUTER_SAMPLE resets the state around every run, the
APPLY_MODEL wrapper reads the token grid) and the attention override, chained to any override the input
had. Which models: those a family adapter exists for (``adapters/``); the adapter also gives the
family's ``TokenLayout``. Results of finished runs live as RhymeFlow's do (``RhymeFlowHolder.last_result``):
on the state of the MODEL that was sampled (``state.last_result``); every clone carries its own state
(``AsymRnRState.__deepcopy__``), so a result is always the run of the MODEL it is read from. Errors are
plain field errors; the nodes add their display names. ComfyUI is imported inside the functions.
"""
from __future__ import annotations

import logging

from .. import adapters
from . import KEY, AsymRnRState, ReductionSchedule, grid_wrapper, override
from .layout import TokenLayout

log = logging.getLogger("rhymeflow")


def outer_sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper keyed "asymrnr": a fresh run state before sampling, none left after it; the result kept."""
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
                record["measurement"] = state.recorder.to_dict(seed=state.seed, dst_stride=list(state.schedule.dst_stride),
                                                               family=state.layout.family)
                if state.sink is not None:
                    state.sink.measurement = record["measurement"]
            state.last_result = record
        state.reset()
        state.grid = None


def check_model(model) -> TokenLayout:
    """The token layout of a ComfyUI MODEL's DiT (family, blocks, where video rows are); a clear error for anything else."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    try:
        adapter = adapters.comfyui_adapter(dm)
    except ValueError as exc:
        raise ValueError(f"input 'model' ({type(getattr(model, 'model', None)).__name__}): {exc}") from None
    return adapter.token_layout(dm)


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
        if previous is not override:
            raise ValueError("input 'model' already has AsymRnR under another attention override; apply AsymRnR "
                             "(or AsymRnR Calibrate) once, before other attention patches")
        log.info("AsymRnR: input 'model' already had AsymRnR; it is replaced, not stacked")
        previous = old.previous_override
    state.previous_override = previous
    to["optimized_attention_override"] = override
    to[KEY] = state
    for kind, fn in ((comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, outer_sample_wrapper),
                     (comfy.patcher_extension.WrappersMP.APPLY_MODEL, grid_wrapper)):
        m.remove_wrappers_with_key(kind, KEY)
        m.add_wrapper_with_key(kind, KEY, fn)
    return m


def state_of(model) -> AsymRnRState | None:
    state = getattr(model, "model_options", {}).get("transformer_options", {}).get(KEY)
    return state if isinstance(state, AsymRnRState) else None


def last_run(model) -> dict | None:
    """The record of ``model``'s own last finished run (``None`` when this exact MODEL has not been sampled)."""
    state = state_of(model)
    return None if state is None else state.last_result
