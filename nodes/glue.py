"""ComfyUI glue for the RhymeFlow nodes: display names on core errors, the Async Sampler's KSAMPLER function and
the stats message to the UI. Installing (``clone()`` + wrappers) is ``rhymeflow_core/install.py``.

ComfyUI modules (``comfy``, ``server``) are imported inside functions only, so this module can be imported
and unit-tested without a ComfyUI install.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Sequence

from ..rhymeflow_core import install
from ..rhymeflow_core.dropin import DropinConfig, DropinHolder
from ..rhymeflow_core.engine import resolve_schedule, run_target
from ..rhymeflow_core.install import holder_of
from ..rhymeflow_core.keyframes import KeyframePlan
from ..rhymeflow_core.patch import KEY, PatchConfig, RhymeFlowHolder
from ..rhymeflow_core.presets import DEFAULT_TARGET, TARGET
from ..rhymeflow_core.sampler import sample_rhymeflow
from ..rhymeflow_core.schedule import ScheduleConfig
from ..rhymeflow_core.stats import ui_record

log = logging.getLogger("rhymeflow")

# Display names: the one place nodes/ spells them (core errors carry field names only).
PATCH_NODE = "RhymeFlow Projection Patch"
SAMPLER_NODE = "RhymeFlow Async Sampler"
KEYFRAMES_NODE = "RhymeFlow Keyframes"
STATS_NODE = "RhymeFlow Stats"
DROPIN_NODE = "RhymeFlow Accelerate"
STATS_EVENT = "rhymeflow.stats"

__all__ = ["holder_of", "model_adapter", "patch_model", "accelerate_model", "sample_rhymeflow_node", "node_errors",
           "check_choices", "check_strides"]


@contextmanager
def node_errors(node: str) -> Iterator[None]:
    """Prefix a core ``ValueError`` with the node's display name (unless it already names a RhymeFlow node)."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        if text.startswith("RhymeFlow"):
            raise
        raise ValueError(f"{node}: {text}") from None


def check_choices(node: str, choices: dict[str, tuple[object, Sequence[str]]]) -> None:
    """Combo inputs against what is accepted (an API prompt can send anything): ``{input: (value, accepted)}``."""
    for name, (value, accepted) in choices.items():
        if value not in accepted:
            raise ValueError(f"{node}: input '{name}' = {value!r}; accepted: {', '.join(accepted)}")


def check_strides(node: str, warmup: int, n_small: int, n_large: int) -> ScheduleConfig:
    """The custom schedule's step-free rules (integers, warm-up >= 1, strides only grow), checked by core once."""
    custom = ScheduleConfig(warmup=int(warmup), n_small=int(n_small), n_large=int(n_large))
    with node_errors(node):
        custom.validate(custom.warmup + 1)  # any step count above the warm-up: the run checks its own
    return custom


def model_adapter(model):
    with node_errors(PATCH_NODE):
        return install.model_adapter(model)


def patch_model(model, config: PatchConfig):
    """``install.patch_model`` with the Projection Patch's name on its errors."""
    with node_errors(PATCH_NODE):
        return install.patch_model(model, config)


def accelerate_model(model, config: PatchConfig, dropin: DropinConfig):
    """``install.accelerate_model`` with the drop-in node's name on its errors."""
    with node_errors(DROPIN_NODE):
        return install.accelerate_model(model, config, dropin)


def sample_rhymeflow_node(model, x, sigmas, extra_args=None, callback=None, disable=None, *, plan: KeyframePlan,
                          preset: str = "paper", warmup: int = 5, n_small: int = 2, n_large: int = 3,
                          keyframe_solver: str = "euler", projection: str = "linear", node_id: str | None = None,
                          target_speedup: float = DEFAULT_TARGET, adaptive: bool = False):
    """KSAMPLER function of the Async Sampler node: resolve the preset on this run's sigmas (``target``: priced on this
    model at this latent, ``engine.run_target``), run, report."""
    extra_args = {} if extra_args is None else extra_args
    to = extra_args.get("model_options", {}).get("transformer_options", {})
    if "easycache" in to:  # EasyCache/LazyCache cache whole-latent outputs; keyframe-only passes change the shape
        raise ValueError(f"{SAMPLER_NODE}: the MODEL also has {getattr(to['easycache'], 'name', 'EasyCache')}, which cannot be "
                         "combined with RhymeFlow's keyframe-only passes; remove it from this model, or use it with a standard "
                         "sampler (the Projection Patch leaves other samplers unchanged)")
    holder = to.get(KEY)
    family = holder.adapter.family if isinstance(holder, RhymeFlowHolder) else "wan"  # no patch: the sampler refuses below
    custom = ScheduleConfig(warmup=int(warmup), n_small=int(n_small), n_large=int(n_large))
    guider = getattr(model, "inner_model", None)  # KSAMPLER hands its function the guider's wrapped model
    with node_errors(SAMPLER_NODE):
        target = None
        if preset == TARGET:
            if not isinstance(holder, RhymeFlowHolder) or guider is None:
                raise ValueError("preset=target needs a MODEL from RhymeFlow Projection Patch (it prices the target on that model)")
            target = run_target(holder, guider, x, float(target_speedup), plan.keyframe_count())
        schedule = resolve_schedule(preset, sigmas.tolist(), family, custom, target)
    if x.ndim == 5 and x.shape[2] >= 3:
        with node_errors(f"{KEYFRAMES_NODE} (used by {SAMPLER_NODE})"):
            plan.validate(x.shape[2])
    settings = {"entry": "async", "node": node_id, "preset": preset, "strategy": plan.strategy,
                "target_speedup": float(target_speedup) if preset == TARGET else None}
    with node_errors(SAMPLER_NODE):
        out = sample_rhymeflow(model, x, sigmas, extra_args, callback, disable, plan=plan, schedule=schedule,
                               keyframe_solver=keyframe_solver, projection=projection, settings=settings,
                               adaptive=bool(adaptive))
    send_stats(node_id, holder.last_result.to_dict())  # sample_rhymeflow refused a MODEL without the holder
    return out


# The drop-in's SAMPLER_SAMPLE wrapper refuses to run this sampler on an accelerated MODEL (it would drive twice).
sample_rhymeflow_node.rhymeflow_async = True


def send_stats(node_id, stats: dict) -> None:
    """``rhymeflow.stats`` websocket message (``stats.ui_record``, the widget's only source of realised maps) to the
    client that queued the prompt, addressed to widget node ``node_id`` (no-op without a server)."""
    try:
        from server import PromptServer
    except Exception:  # noqa: BLE001 - no server (tests, scripts)
        return
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return
    try:
        server.send_sync(STATS_EVENT, {**ui_record(stats), "node": node_id}, server.client_id)
    except Exception as exc:  # noqa: BLE001 - a UI message must never fail a finished run
        log.warning("RhymeFlow: could not send stats to the UI: %s", exc)
