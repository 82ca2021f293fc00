"""Installing RhymeFlow on a ComfyUI MODEL: one installer per feature, each a ``clone()`` plus keyed wrappers.

- ``patch_model``: the Projection Patch (keyframe-only passes for the Async Sampler);
- ``accelerate_model``: the drop-in (the same patch plus the wrappers that let any sampler drive it).

The user's MODEL is never changed: everything goes on the clone, under the key ``rhymeflow``, through
ComfyUI's public hooks (``add_wrapper_with_key``, ``set_model_patch_replace``, a post-CFG function).
Errors are plain field errors; the node that called adds its display name. ComfyUI is imported inside
the functions, so this module imports without it (the test bed installs through ``patch.install``).
"""
from __future__ import annotations

import logging

from . import adapters
from .dropin import DropinConfig, DropinHolder, apply_model_wrapper_dropin, post_cfg_capture, sampler_sample_wrapper
from .engine import check_flow
from .projection import PROJECTIONS
from .patch import KEY, BlockPatch, PatchConfig, RhymeFlowHolder, apply_model_wrapper

log = logging.getLogger("rhymeflow")


def outer_sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper: whatever happens inside sampling (errors, an interrupt), no run state survives."""
    guider = executor.class_obj
    holder = guider.model_options.get("transformer_options", {}).get(KEY)
    try:
        return executor(*args, **kwargs)
    finally:
        if isinstance(holder, RhymeFlowHolder):
            holder.end_run()


def model_adapter(model):
    """The family adapter for a ComfyUI MODEL; an error naming the input and the supported families otherwise."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    try:
        return adapters.comfyui_adapter(dm)
    except ValueError as exc:
        raise ValueError(f"input 'model' ({type(getattr(model, 'model', None)).__name__}): {exc}") from None


def holder_of(model) -> RhymeFlowHolder | None:
    """The RhymeFlow holder a MODEL carries (Projection Patch or drop-in), or ``None``."""
    holder = getattr(model, "model_options", {}).get("transformer_options", {}).get(KEY)
    return holder if isinstance(holder, RhymeFlowHolder) else None


def _check_unpatched(model) -> None:
    existing = holder_of(model)
    if existing is not None:
        kind = "the drop-in (RhymeFlow Accelerate)" if isinstance(existing, DropinHolder) else "RhymeFlow Projection Patch"
        raise ValueError(f"input 'model' already has {kind}; RhymeFlow is installed once per MODEL: remove one of the two")


def _drop_previous_patch(m) -> None:
    """A second Projection Patch on a Projection-Patched MODEL (an easy slip when copying graphs) replaces the first.

    Stacked, both APPLY_MODEL wrappers would cut the latent to keyframes, the inner one indexing an already cut
    tensor (an IndexError deep in the DiT, naming no RhymeFlow node). The block patches and the holder are simply
    overwritten by the new ones; the wrappers are lists per key, so the old ones are removed from this clone.
    Mixing the two entry points (Projection Patch and the drop-in) stays a refusal: which one was meant is unclear.
    """
    import comfy.patcher_extension

    log.info("RhymeFlow: input 'model' was already patched; the earlier Projection Patch is replaced, not stacked")
    for kind in (comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, comfy.patcher_extension.WrappersMP.APPLY_MODEL):
        m.remove_wrappers_with_key(kind, KEY)


def _install(model, holder: RhymeFlowHolder, apply_model):
    import comfy.patcher_extension

    m = model.clone()
    m.model_options.setdefault("transformer_options", {})[KEY] = holder
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, KEY, apply_model)
    for kind, index in holder.adapter.block_keys(m.model.diffusion_model):
        m.set_model_patch_replace(BlockPatch((kind, index)), "dit", kind, index)
    return m


def patch_model(model, config: PatchConfig):
    """A clone of ``model`` with the RhymeFlow Projection Patch installed (replacing an earlier one); ``model`` itself is untouched."""
    existing = holder_of(model)
    if isinstance(existing, DropinHolder):
        _check_unpatched(model)  # raises: the drop-in is already on this MODEL
    holder = RhymeFlowHolder(config, model_adapter(model))
    if existing is None:
        return _install(model, holder, apply_model_wrapper)
    m = model.clone()
    _drop_previous_patch(m)
    return _install(m, holder, apply_model_wrapper)


def accelerate_model(model, config: PatchConfig, dropin: DropinConfig):
    """A clone of ``model`` that any ComfyUI sampler runs with RhymeFlow's keyframe-only passes (``dropin.py``)."""
    import comfy.patcher_extension

    _check_unpatched(model)
    if dropin.projection not in PROJECTIONS:
        raise ValueError(f"input 'projection': {dropin.projection!r} is not one of {', '.join(PROJECTIONS)}")
    try:
        check_flow(model.get_model_object("model_sampling"))
    except ValueError as exc:
        raise ValueError(f"input 'model': {exc}") from None
    m = _install(model, DropinHolder(config, model_adapter(model), dropin), apply_model_wrapper_dropin)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, KEY, sampler_sample_wrapper)
    m.set_model_sampler_post_cfg_function(post_cfg_capture)
    return m
