"""The asynchronous RhymeFlow sampler (the Async Sampler's own ODE loop on ``engine.Engine``), written against
ComfyUI's KSAMPLER contract.

``sample_rhymeflow(model, x, sigmas, extra_args, callback, disable, ...)`` is what ComfyUI calls with
``model(x, sigma, **extra_args) -> denoised`` (CFG applied). It works on ``denoised`` only, so the
flow velocity is ``(x - denoised) / sigma`` and every step is an ODE step in sigma.

Schedule (``schedule.py``): ``warmup`` full steps for every frame; keyframes are chosen from the last
warm-up x0 prediction; then groups start at rhythmic sync points (full pass, context recorded).
Inside a group keyframes take one solver step per step from keyframe-only passes, while non-keyframes
jump to the group's end along the sync point's trajectory (``projection.py``); their in-between
latents are that trajectory projected. Every frame lands on the final sigma.

Supported model_sampling: ComfyUI's ``CONST`` (rectified flow: Wan, HunyuanVideo, LTX-Video, Mochi).
Others are refused, since the projection assumes flow-straight trajectories.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .engine import Engine, check_flow, check_video_latent
from .keyframes import KeyframePlan
from .patch import KEY, RhymeFlowHolder
from .projection import PROJECTIONS, project
from .schedule import ScheduleConfig

SOLVERS = ("euler", "ab2")
NODE = "RhymeFlow Async Sampler"
log = logging.getLogger("rhymeflow")


class SolverState:
    """Per-frame multistep history for the keyframe solver (``ab2``: variable-step Adams-Bashforth 2)."""

    def __init__(self, method: str):
        if method not in SOLVERS:
            raise ValueError(f"{NODE}: keyframe_solver={method!r}; accepted: {', '.join(SOLVERS)}")
        self.method = method
        self.v_prev: torch.Tensor | None = None
        self.h_prev: float | None = None

    def step(self, z: torch.Tensor, v: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        h = sigma_next - sigma
        out = z + h * v
        if self.method == "ab2" and self.v_prev is not None and self.h_prev:
            r = h / (2 * self.h_prev)
            out = out + (h * r) * (v - self.v_prev)
        self.v_prev, self.h_prev = v, h
        return out


def _check_flow(model) -> None:
    """The guider's model_sampling, when there is one (the test bed's denoiser has none: it is flow by construction)."""
    ms = getattr(getattr(getattr(model, "inner_model", None), "inner_model", None), "model_sampling", None)
    if ms is not None:
        try:
            check_flow(ms)
        except ValueError as exc:
            raise ValueError(f"{NODE}: {exc}") from None


def _holder(extra_args: dict) -> RhymeFlowHolder:
    holder = extra_args.get("model_options", {}).get("transformer_options", {}).get(KEY)
    if not isinstance(holder, RhymeFlowHolder):
        raise ValueError(f"{NODE}: the MODEL has no RhymeFlow Projection Patch. Connect MODEL -> RhymeFlow Projection Patch "
                         "-> your guider; without it keyframe-only passes cannot run.")
    return holder


@torch.no_grad()
def sample_dense(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None, callback=None, disable=None,
                 solver: str = "euler") -> torch.Tensor:
    """Every frame, every step: the reference RhymeFlow is measured against (``euler`` = ComfyUI's euler)."""
    extra_args = {} if extra_args is None else extra_args
    state = SolverState(solver)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = state.step(x, (x - denoised) / float(sigmas[i]), float(sigmas[i]), float(sigmas[i + 1]))
    return x


@torch.no_grad()
def sample_rhymeflow(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None, callback=None, disable=None,
                     plan: KeyframePlan = KeyframePlan(), schedule: ScheduleConfig = ScheduleConfig(),
                     keyframe_solver: str = "euler", projection: str = "linear",
                     select: Callable[[torch.Tensor], tuple[list[int], list[float]]] | None = None,
                     settings: dict | None = None, adaptive: bool = False) -> torch.Tensor:
    """Run RhymeFlow on the engine; the ``RunResult`` lands in the holder's ``last_result``.

    ``select`` overrides keyframe selection (tests use it to make every frame a keyframe); ``settings`` are
    labels copied into the result (preset, node id, ...); ``adaptive`` re-chooses keyframes at sync points
    (``engine.Engine``). Steps the schedule reuses (``ScheduleConfig.passes``) make no call: every frame's
    solver step spans them.
    """
    extra_args = {} if extra_args is None else extra_args
    try:
        check_video_latent(x.shape)
    except ValueError as exc:
        raise ValueError(f"{NODE}: {exc}") from None
    if projection not in PROJECTIONS:
        raise ValueError(f"{NODE}: projection={projection!r}; accepted: {', '.join(PROJECTIONS)}")
    _check_flow(model)
    holder = _holder(extra_args)
    warm = SolverState(keyframe_solver)
    engine = Engine(holder, sigmas, x.shape[2], schedule, plan, select,
                    {"keyframe_solver": keyframe_solver, "projection": projection, **(settings or {})}, adaptive=adaptive)
    s_in = x.new_ones([x.shape[0]])
    sig = engine.sigmas

    def call(z: torch.Tensor, i: int) -> torch.Tensor:
        engine.enter(i)
        return model(z, sigmas[i] * s_in, **extra_args)

    def report(i: int, z: torch.Tensor, denoised: torch.Tensor) -> None:
        if callback is not None:
            callback({"x": z, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})

    try:
        warm_steps = engine.passes[:schedule.warmup]
        for i in warm_steps:
            denoised = call(x, i)
            report(i, x, denoised)
            v = (x - denoised) / sig[i]
            if i == warm_steps[-1]:
                engine.observe(i, denoised)
                engine.choose_keyframes(denoised)
            x = warm.step(x, v, sig[i], sig[engine.next_pass(i)])
        # Each frame's solver history: its last velocity (a multistep keyframe solver continues from it).
        v_last, h_key = warm.v_prev, warm.h_prev
        v_prev, sigma_prev = warm.v_prev, sig[warm_steps[-1]]
        for i, end in engine.groups:
            denoised = call(x, i)  # an adaptive run's keyframes for this group take over here
            engine.observe(i, denoised)
            keys, other = engine.key_frames(x.device), engine.other_frames(x.device)
            report(i, x, denoised)
            v = (x - denoised) / sig[i]
            key_solver = _history(keyframe_solver, v_last, keys, h_key)
            nxt = engine.next_pass(i)
            z_key = key_solver.step(x.index_select(2, keys), v.index_select(2, keys), sig[i], sig[nxt])
            z_other, v_other = x.index_select(2, other), v.index_select(2, other)
            v_prev_other = v_prev.index_select(2, other)
            if end == nxt:  # a one-pass group: every frame takes an ordinary solver step
                z_end = _history(keyframe_solver, v_last, other, sig[i] - sigma_prev).step(z_other, v_other, sig[i], sig[end])
            else:
                z_end = project(z_other, v_other, sig[i], sig[end], projection, v_prev_other, sigma_prev)
            j = nxt
            while j < end:
                x_j = x.clone()
                x_j.index_copy_(2, keys, z_key)
                x_j.index_copy_(2, other, project(z_other, v_other, sig[i], sig[j], projection, v_prev_other, sigma_prev))
                denoised = call(x_j, j)
                v_key = (z_key - denoised.index_select(2, keys)) / sig[j]
                denoised.index_copy_(2, other, x_j.index_select(2, other) - sig[j] * v_other)
                report(j, x_j, denoised)
                nxt = engine.next_pass(j)
                z_key = key_solver.step(z_key, v_key, sig[j], sig[nxt])
                j = nxt
            x = x.clone()
            x.index_copy_(2, keys, z_key)
            x.index_copy_(2, other, z_end)
            v_last = v.clone()
            v_last.index_copy_(2, keys, key_solver.v_prev)
            h_key = key_solver.h_prev
            v_prev, sigma_prev = v, sig[i]
        result = engine.finish()
        log.info("RhymeFlow: %d full + %d keyframe-only steps (%d reused), keyframes %s", result.full_passes,
                 result.keyframe_passes, result.step_map.reused_steps(), result.keyframes)
        return x
    finally:
        engine.close()


def _history(method: str, v_last: torch.Tensor | None, frames: torch.Tensor, h_prev: float | None) -> SolverState:
    """A solver for ``frames`` that continues from their last velocity (multistep solvers need it).

    A frame that has just become a keyframe (adaptive runs) continues from the velocity it was projected
    with, which is the one it last moved along.
    """
    out = SolverState(method)
    out.v_prev = v_last.index_select(2, frames) if v_last is not None else None
    out.h_prev = h_prev
    return out
