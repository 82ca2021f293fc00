"""The drop-in: RhymeFlow inside ComfyUI's own samplers (KSampler, KSamplerAdvanced, SamplerCustom[Advanced]).

Nothing here moves the latent; the user's sampler does. Three public hooks answer its model calls:

- ``SAMPLER_SAMPLE`` wrapper: starts one ``engine.Engine`` run on the sigmas the sampler was given (for
  KSamplerAdvanced that is its start/end slice; denoise < 1 is the tail of a longer schedule) and ends it
  in ``finally``, so an error or an interrupt leaves no state and a re-queue starts clean;
- ``APPLY_MODEL`` wrapper: maps the call's sigma to its step (``Engine.step_of``: multistep and
  second-order samplers included), runs that step's pass (warm-up: full; sync: full and records
  context; otherwise keyframe-only, through the Projection Patch's own wrapper), and on keyframe-only
  passes returns for the non-keyframes the x0 prediction held from their sync pass;
- a post-CFG function that only reads: the guided x0 prediction of the last warm-up step, from which
  the keyframes are chosen (as the Async Sampler chooses them).

Why returning the held x0 is sound for any sampler: for a flow model ``x = x0 + sigma * v``; with x0
and v fixed (those of the sync pass) that is the straight line along which the paper projects
skipped frames (``projection="linear"``). Every deterministic ComfyUI solver integrates such a field
exactly: Euler-type and linear multistep solvers in sigma (euler, heun, deis, ipndm) see the constant
velocity ``v`` and exponential integrators in log-SNR (uni_pc, dpmpp_2m, res_multistep) see a constant
x0, the case they are exact for. So within a group non-keyframes follow the paper's linear projection;
multistep solvers additionally keep the previous sync's x0 in their history. ``projection="quadratic"``
(the default, as on the Async Sampler) bends the held field the way ``projection.py`` does: with the
curvature ``a = (v_i - v_p) / (sigma_i - sigma_p)`` of the velocities at the sync pass ``i`` and the
full pass before it ``p``, the velocity ``v(sigma) = v_i + a (sigma - sigma_i)`` integrates to the
quadratic projection, and ``x = x0 + sigma * v`` along that path gives the returned prediction
``x0(sigma) = x0_i - a (sigma^2 - sigma_i^2) / 2``, again independent of the sampler's state, so every
solver integrates it with its own order. Keyframes get the user's solver on real keyframe-only passes.
Ancestral and SDE samplers add noise to every frame; their non-keyframes are pulled back towards the
held x0 (what "x0 held" means under noise), an approximation the tests do not cover.

With ``euler`` and ``projection="linear"`` this equals the Async Sampler with ``keyframe_solver=euler`` and
``projection=linear`` to float tolerance (tested); with ``quadratic`` the Async Sampler jumps along the
closed form where Euler steps along it, the same path to first order in the step. CFG: every branch
(cond/uncond, batched or separate calls) holds its own x0 (``ContextCache`` keeps per-branch entries), so
any CFG function combines held predictions as it would real ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .engine import Engine, check_video_latent, resolve_schedule, run_target
from .keyframes import KeyframePlan
from .patch import KEY, PatchConfig, RhymeFlowHolder, apply_model_wrapper
from .presets import DEFAULT_TARGET, TARGET
from .schedule import ScheduleConfig

HELD = ("dropin", "x0")  # context-cache key of the non-keyframes' held x0 prediction (and, quadratic, its curvature)
VELOCITY = "dropin-velocity"  # context-cache key prefix of a full pass's velocity, every frame: (VELOCITY, step)
LAST = ("dropin", "last")  # context-cache key of the last pass's output, every frame (what a reused step returns)


@dataclass(frozen=True)
class DropinConfig:
    """What the drop-in node sets: keyframes and schedule (the patch's settings are the ``PatchConfig``)."""

    plan: KeyframePlan = field(default_factory=KeyframePlan)
    preset: str = "paper"
    custom: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup=5))  # used when preset == "custom"
    target_speedup: float = DEFAULT_TARGET  # used when preset == "target"
    adaptive: bool = False  # re-choose keyframes at sync points from measured drift (engine.Engine)
    projection: str = "quadratic"  # how the held prediction moves non-keyframes between sync points (module docstring)
    node: str = "RhymeFlow drop-in"  # the display name run-time errors start with (nodes/ passes its own)
    node_id: str | None = None  # the node's id in the graph, so the UI gives the result to that node's widget
    report: Callable[[dict], None] | None = None  # where a finished run's ``RunResult.to_dict()`` goes (the UI event)


class DropinHolder(RhymeFlowHolder):
    """The Projection Patch's holder plus the drop-in's settings and per-run captures."""

    def __init__(self, config: PatchConfig, adapter, dropin: DropinConfig):
        super().__init__(config, adapter)
        self.dropin = dropin
        self.warm_x0: torch.Tensor | None = None  # guided x0 of the last warm-up step (post-CFG)
        self.warm_x0_branch: torch.Tensor | None = None  # the same from the model call, if no CFG function ran
        self.held_sigma: float | None = None  # sigma of the sync pass whose prediction is held (quadratic projection)

    def end_run(self) -> None:
        super().end_run()
        self.warm_x0 = self.warm_x0_branch = self.held_sigma = None

    def __deepcopy__(self, memo):  # ModelPatcher.clone() deep-copies model_options: share nothing per-run
        return DropinHolder(self.config, self.adapter, self.dropin)


def _dropin_holder(options: dict | None) -> DropinHolder | None:
    holder = (options or {}).get(KEY)
    return holder if isinstance(holder, DropinHolder) else None


def sampler_name(sampler) -> str:
    """The ``sampler_name`` of the sampler object a SAMPLER_SAMPLE wrapper wraps (``sample_dpmpp_2m`` -> ``dpmpp_2m``)."""
    fn = getattr(sampler, "sampler_function", None)
    name = getattr(fn, "__name__", type(sampler).__name__)
    name = name[len("sample_"):] if name.startswith("sample_") else name
    return {"unipc": "uni_pc", "unipc_bh2": "uni_pc_bh2"}.get(name, name)  # uni_pc's functions drop the underscore


def sampler_sample_wrapper(executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
    """SAMPLER_SAMPLE wrapper: one engine run per sampler run, always closed."""
    to = extra_args.get("model_options", {}).get("transformer_options", {})
    holder = _dropin_holder(to)
    if holder is None:
        return executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)
    name = sampler_name(executor.class_obj)
    cfg = holder.dropin
    try:
        schedule = _check_run(holder, guider, executor.class_obj, extra_args.get("model_options", {}), noise, sigmas)
        engine = Engine(holder, sigmas.tolist(), noise.shape[2], schedule, cfg.plan,  # validates the plan on these frames
                        settings={"entry": "dropin", "node": cfg.node_id, "sampler": name, "preset": cfg.preset,
                                  "projection": cfg.projection, "strategy": cfg.plan.strategy,
                                  "target_speedup": cfg.target_speedup if cfg.preset == TARGET else None},
                        adaptive=cfg.adaptive)
    except ValueError as exc:
        raise ValueError(f"{cfg.node}: {exc}") from None
    try:
        out = executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)
        result = engine.finish()
        if cfg.report is not None:
            cfg.report(result.to_dict())
        return out
    finally:
        engine.close()


def _check_run(holder: DropinHolder, guider, sampler, options: dict, noise: torch.Tensor, sigmas: torch.Tensor) -> ScheduleConfig:
    """Refuse what the drop-in cannot run (plain field errors); the run's schedule otherwise."""
    to = options.get("transformer_options", {})
    if getattr(getattr(sampler, "sampler_function", None), "rhymeflow_async", False):
        raise ValueError("input 'model' is already accelerated, so the RhymeFlow Async Sampler cannot drive it; connect the "
                         "Async Sampler to a MODEL from RhymeFlow Projection Patch, or use any standard sampler here")
    if "easycache" in to:  # EasyCache/LazyCache compare whole-latent outputs; keyframe-only passes change their shape
        raise ValueError(f"the MODEL also has {getattr(to['easycache'], 'name', 'EasyCache')}, which caches whole-latent "
                         "outputs and cannot be combined with keyframe-only passes; use one of the two")
    if options.get("context_handler") is not None:  # core context windows call the model on windows of frames
        raise ValueError("the MODEL also has context windows (e.g. WanContextWindowsManual), which run the model on "
                         "windows of frames, while keyframe-only passes need every frame in each call; use one of the two "
                         "(RhymeFlow already cuts the cost of long videos)")
    check_video_latent(noise.shape)
    cfg = holder.dropin
    target = run_target(holder, guider, noise, cfg.target_speedup, cfg.plan.keyframe_count()) if cfg.preset == TARGET else None
    return resolve_schedule(cfg.preset, sigmas.tolist(), holder.adapter.family, cfg.custom, target)


def post_cfg_capture(args: dict) -> torch.Tensor:
    """Post-CFG function that changes nothing: keeps the guided x0 of the last warm-up step for keyframe choice,
    and shows the engine every full pass's guided x0 (an adaptive run re-chooses keyframes from it)."""
    denoised = args["denoised"]
    holder = _dropin_holder(args.get("model_options", {}).get("transformer_options"))
    engine = holder.engine if holder is not None else None
    if engine is not None:
        step = engine.step_of(float(args["sigma"].max()))
        if engine.keyframes is None and step == engine.last_warmup_step:
            holder.warm_x0 = denoised.detach()
        engine.observe(step, denoised)
    return denoised


def apply_model_wrapper_dropin(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                               **kwargs):
    """APPLY_MODEL wrapper: choose this call's pass from its sigma; non-keyframes get their held x0 back."""
    to = transformer_options if transformer_options is not None else {}
    holder = _dropin_holder(to)
    engine = holder.engine if holder is not None else None
    if engine is None:  # not inside a sampler run (nothing to accelerate)
        return executor(x, t, c_concat, c_crossattn, control, to, **kwargs)
    step = engine.step_of(float(t.max()))
    mode = engine.enter(step)
    branches = to.get("cond_or_uncond", [0])
    if mode == "reuse":  # step caching: no pass, every frame keeps the last pass's prediction
        (last,) = engine.run.cache.get(LAST, branches, x.device, x.dtype)
        return last.clone()
    if mode != "full" and engine.keyframes is None:
        warm = holder.warm_x0 if holder.warm_x0 is not None else holder.warm_x0_branch
        if warm is None:
            raise RuntimeError("RhymeFlow drop-in: a post-warm-up model call came before any warm-up call; "
                               "the sampler skipped the first steps of its own sigmas")
        engine.choose_keyframes(warm.to(x.device))
    out = apply_model_wrapper(executor, x, t, c_concat, c_crossattn, control, to, **kwargs)
    if mode == "full" and step == engine.last_warmup_step:
        holder.warm_x0_branch = out.chunk(len(branches))[0].detach()
    sigma = float(t.max())
    quadratic = holder.dropin.projection == "quadratic"
    if quadratic and mode in ("full", "record"):
        v = (x - out) / sigma
        before = _keep_velocity(engine, branches, step, v)
    if mode == "record":
        other = engine.other_frames(out.device)
        held = (out.index_select(2, other),)
        if quadratic:  # dv/dsigma of the non-keyframes since the full pass before this one (zero if none)
            curvature = torch.zeros_like(held[0]) if before is None else \
                (v - before[1]).index_select(2, other) / (sigma - engine.sigmas[before[0]])
            held += (curvature,)
            holder.held_sigma = sigma
        engine.run.cache.put(HELD, branches, held)
    elif mode == "keyframe":
        held = engine.run.cache.get(HELD, branches, out.device, out.dtype)
        x0 = held[0] if not quadratic else held[0] - held[1] * (0.5 * (sigma * sigma - holder.held_sigma ** 2))
        out.index_copy_(2, engine.other_frames(out.device), x0)
    if engine.schedule.passes:
        engine.run.cache.put(LAST, branches, (out,))
    return out


def _keep_velocity(engine: Engine, branches: list, step: int, v: torch.Tensor) -> tuple[int, torch.Tensor] | None:
    """Cache a full pass's velocity and drop the older ones: only this one and the full pass's before it are ever
    needed. Returns ``(step, velocity)`` of the full pass before this one, or ``None`` if there is none."""
    cache, prev = engine.run.cache, engine.previous_full_pass(step)
    cache.put((VELOCITY, step), branches, (v,))
    oldest = step if prev is None else prev
    cache.drop(lambda key: isinstance(key, tuple) and key[0] == VELOCITY and key[1] < oldest)
    return None if prev is None else (prev, cache.get((VELOCITY, prev), branches, v.device, v.dtype)[0])
