"""The one RhymeFlow engine both entry points drive: the Async Sampler (a SAMPLER) and the drop-in MODEL node.

An ``Engine`` is one run over one MODEL: it resolves the schedule on the run's real sigmas, says which
pass every step is (``full`` warm-up, ``record`` sync point, ``keyframe``-only pass), chooses the
keyframes once from the last warm-up x0 prediction, maps any model call's sigma to its step, and ends
with the typed ``RunResult``, whose step map comes from ``schedule.build_step_map`` (the function the
widget's planned map uses too). What differs between the entry points is only who moves the latent:

- the Async Sampler runs its own ODE loop (``sampler.py``): keyframes take its solver step, non-keyframes
  jump to the group's end along the projection;
- the drop-in (``dropin.py``) lets ComfyUI's sampler move the latent and answers each model call:
  non-keyframes get back the x0 prediction held from their last full evaluation, which for a flow model
  *is* the projection (``x = x0 + sigma * v`` with ``x0`` and ``v`` fixed is the straight line the
  paper projects along), so any solver advances them along it.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from . import presets
from .keyframes import KeyframePlan, select_keyframes
from .patch import DEFAULT_TEXT_TOKENS
from .schedule import ScheduleConfig, build_step_map, pass_steps, sync_groups
from .stats import RunResult

Select = Callable[[torch.Tensor], tuple[list[int], list[float]]]
SIGMA_RTOL = 1e-4  # a model call's sigma may come back through a solver's own time variable (uni_pc): float drift


def resolve_schedule(preset: str, sigmas: Sequence[float], family: str = "wan", custom: ScheduleConfig | None = None,
                     target: presets.Target | None = None) -> ScheduleConfig:
    """The schedule of a run: a named preset resolved on the run's ``sigmas``, ``custom`` (``preset="custom"``) or the
    shortest strides reaching ``target`` (``preset="target"``, the drop-in's).

    Raises ``ValueError`` naming the field; nodes prefix their display name.
    """
    steps = len(sigmas) - 1
    accepted = presets.PRESETS + (presets.TARGET,)
    if preset not in accepted:
        raise ValueError(f"preset={preset!r}; accepted: {', '.join(accepted)}")
    if preset == presets.TARGET:
        if target is None:
            raise ValueError("preset=target needs a target speed-up")
        return presets.target_schedule(target.speedup, sigmas, family, target.dims, target.keyframes, target.kv_cached)
    if preset != "custom":
        return presets.preset_schedule(preset, sigmas, family)
    if custom is None:
        raise ValueError("preset=custom needs the warmup/n_small/n_large numbers")
    if steps < presets.MIN_STEPS and float(sigmas[0]) >= presets.TOP_SIGMA:
        presets.preset_schedule("paper", sigmas, family)  # raises the few-steps error
    try:
        custom.validate(steps)
    except ValueError as exc:
        raise ValueError(f"preset=custom at {steps} steps: {exc}") from None
    return custom


def run_target(holder, guider, latent: torch.Tensor, speedup: float, keyframes: int) -> presets.Target:
    """What ``preset=target`` is priced on: this model's real dims at this latent and prompt length (either entry point).

    ``guider`` is ComfyUI's guider of the run (its ``model_patcher`` and ``conds``); ``holder`` the patch's holder.
    """
    dims = holder.adapter.model_dims(guider.model_patcher.model.diffusion_model, latent, _text_tokens(guider))
    return presets.Target(speedup, dims, keyframes, holder.config.context_mode == "kv")


def _text_tokens(guider) -> int:
    """Length of the positive prompt's text context (the FLOP model's default when the guider holds none)."""
    try:
        return int(guider.conds["positive"][0]["model_conds"]["c_crossattn"].cond.shape[1])
    except (KeyError, IndexError, AttributeError, TypeError):
        return DEFAULT_TEXT_TOKENS


def check_video_latent(shape: Sequence[int]) -> None:
    """RhymeFlow skips frames: refuse latents without at least 3 of them, saying what they are.

    An image latent reaches a sampler as one video frame: SamplerCustomAdvanced (``comfy.sample.
    fix_empty_latent_channels``) turns a 4D ``[B, C, H, W]`` latent into ``[B, C, 1, H, W]`` for video models
    before any sampler runs, so a single frame is where an image latent is recognised.
    """
    shape = tuple(shape)
    if len(shape) == 4 or (len(shape) == 5 and shape[2] == 1):
        raise ValueError(f"the latent is an image latent (shape {shape}: one frame; ComfyUI samples an image latent as a "
                         "one-frame video); accepted: a video latent with at least 3 latent frames, e.g. from "
                         "EmptyHunyuanLatentVideo or a video model's own empty-latent node")
    if len(shape) != 5:
        raise ValueError(f"latent has shape {shape}; accepted: a video latent [B, C, frames, H, W] with at least 3 latent frames")
    if shape[2] < 3:
        raise ValueError(f"the latent has {shape[2]} latent frames; accepted: at least 3 latent frames (for Wan, at least 9 pixel frames)")


def check_flow(model_sampling) -> None:
    """RhymeFlow's projection assumes straight (rectified-flow) trajectories: ComfyUI's ``CONST`` sampling only."""
    if "CONST" not in {c.__name__ for c in type(model_sampling).__mro__}:
        raise ValueError(f"model_sampling {type(model_sampling).__name__} is not supported; RhymeFlow needs a flow model "
                         "(ComfyUI CONST: Wan, HunyuanVideo, LTX-Video, Mochi)")


def frame_drift(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """Per-frame relative L1 change between two predictions ``[B, C, F, H, W]`` -> ``[F]``.

    The per-frame form of what TeaCache and EasyCache measure per step: how much a frame's prediction
    moved between two full passes, relative to its size.
    """
    dims = [d for d in range(now.ndim) if d != 2]
    return (now - before).abs().float().mean(dims) / before.abs().float().mean(dims).clamp_min(1e-8)


class Engine:
    """One RhymeFlow run on a patched MODEL's holder (``patch.RhymeFlowHolder``); ``close()`` in a ``finally``.

    ``adaptive``: keyframes are re-chosen at every sync point after the first, as the frames whose prediction
    moved most between the last two full passes (``frame_drift``). Why: a non-keyframe's projection error
    grows with how far its velocity bends inside a group, and the bend it showed over the last group is
    the best estimate of the next one that costs nothing (no extra pass; the keyframe budget, and so the
    FLOPs, stay as planned). So each frame's stride is chosen from its own measured error: 1 while it drifts
    among the budget's worst, the group's stride otherwise. The change from the last sync point applies from
    the next one, because a group's keyframe-only passes must use the frames its sync pass cached around.
    """

    def __init__(self, holder, sigmas: Sequence[float], frames: int, schedule: ScheduleConfig, plan: KeyframePlan,
                 select: Select | None = None, settings: dict | None = None, adaptive: bool = False):
        self.sigmas = [float(s) for s in sigmas]
        self.steps = len(self.sigmas) - 1
        schedule.validate(self.steps)
        plan.validate(frames)
        self.schedule, self.plan, self.frames = schedule, plan, frames
        self.groups = sync_groups(self.steps, schedule)
        self.passes = pass_steps(self.steps, schedule)
        self._modes = ["reuse"] * self.steps
        for p, step in enumerate(self.passes):
            self._modes[step] = "full" if p < schedule.warmup else "keyframe"
        self._group_end: dict[int, int] = {}
        for i, end in self.groups:
            self._modes[i] = "record"
            for j in range(i, end):
                self._group_end[j] = end
        self._next_pass = {step: (self.passes[p + 1] if p + 1 < len(self.passes) else self.steps)
                           for p, step in enumerate(self.passes)}
        self.adaptive = adaptive
        self._observed: tuple[int, torch.Tensor] | None = None  # (step, prediction) of the last full pass seen
        self._pending: list[int] | None = None  # keyframes for the next group (adaptive)
        self._group_keys: dict[int, list[int]] = {}  # group start -> keyframes, where they changed
        self._select = select
        self.settings = dict(settings or {})
        self.keyframes: list[int] | None = None
        self.scores: list[float] = []
        self.holder = holder
        self.run = holder.new_run()
        holder.engine = self
        self._t0 = time.perf_counter()

    # ---------------------------------------------------------------- schedule
    def mode(self, step: int) -> str:
        """``full`` (warm-up), ``record`` (sync point: full pass that stores context), ``keyframe`` or ``reuse``
        (no pass: every frame keeps the last pass's prediction)."""
        return self._modes[step]

    @property
    def last_warmup_step(self) -> int:
        """The step whose x0 prediction chooses the keyframes."""
        return self.passes[self.schedule.warmup - 1]

    def next_pass(self, step: int) -> int:
        """The pass step after pass step ``step`` (``steps`` after the last): a solver step spans the reused ones."""
        return self._next_pass[step]

    def previous_full_pass(self, step: int) -> int | None:
        """The last full pass (warm-up or sync) before ``step``, or ``None``: the quadratic projection's second velocity."""
        return next((k for k in range(step - 1, -1, -1) if self._modes[k] in ("full", "record")), None)

    def group_end(self, step: int) -> int:
        """First step after the group that holds ``step`` (a post-warm-up step)."""
        return self._group_end[step]

    def step_of(self, sigma: float) -> int:
        """The step a model call at ``sigma`` belongs to: the ``k`` with ``sigma_{k+1} < sigma <= sigma_k``.

        A second-order sampler's extra calls inside a step (dpm_2, dpmpp_2s: at a sigma between two
        schedule sigmas) belong to that step; a call exactly at ``sigma_{k+1}`` (heun's corrector) to step
        ``k+1``, whose pass kind is then used one call early, which costs at most a full pass at a sync
        point and never skips a frame that should be computed. Below the last sigma (uni_pc evaluates
        at 0.001 when the schedule ends at 0) is the last step.
        """
        s = self.sigmas
        for k in range(self.steps):
            if sigma > s[k + 1] + SIGMA_RTOL * max(abs(s[k + 1]), 1e-3):
                return k
        return self.steps - 1

    def enter(self, step: int) -> str:
        """Set the pass kind the patch runs for the next model call; returns it (``reuse``: make no call).

        At a sync point of an adaptive run, the keyframes chosen from the last drift take over first, so the
        sync pass caches context around the frames its group will compute.
        """
        mode = self._modes[step]
        if mode == "reuse":
            return mode
        if mode == "record" and self._pending is not None:
            self._switch_keyframes(step, self._pending)
        self.run.mode = mode
        return mode

    # ---------------------------------------------------------------- keyframes
    def choose_keyframes(self, denoised: torch.Tensor) -> torch.Tensor:
        """Choose the keyframes from the last warm-up x0 prediction ``[B, C, F, H, W]``; returns their indices."""
        if self._select is not None:
            keys, scores = self._select(denoised)
        else:
            chosen = select_keyframes(denoised, self.plan)
            keys, scores = list(chosen.indices), list(chosen.scores)
        self.keyframes, self.scores = list(keys), list(scores)
        self._first_keys = list(keys)
        idx = torch.tensor(self.keyframes, dtype=torch.long, device=denoised.device)
        self.run.set_keyframes(idx)
        return idx

    def observe(self, step: int, denoised: torch.Tensor) -> None:
        """See the (guided) x0 prediction of a full pass; an adaptive run picks the next group's keyframes from it."""
        if self._modes[step] not in ("full", "record") or (self._observed is not None and self._observed[0] == step):
            return  # not a full pass, or a second call of the same step (a second-order sampler's)
        before = self._observed
        self._observed = (step, denoised.detach())
        if not self.adaptive or before is None or self._modes[step] != "record" or self.keyframes is None:
            return
        drift = frame_drift(denoised, before[1])
        budget = len(self.keyframes)
        self._pending = sorted(int(f) for f in torch.topk(drift, budget).indices)

    def _switch_keyframes(self, step: int, keys: list[int]) -> None:
        self._pending = None
        if keys != self.keyframes:
            self.keyframes = keys
            self.run.set_keyframes(torch.tensor(keys, dtype=torch.long, device=self.run.keyframes.device))
        self._group_keys[step] = list(keys)

    def group_keyframes(self) -> list[list[int]] | None:
        """The keyframes of each group, when they were re-chosen (adaptive), else ``None``."""
        if not self.adaptive:
            return None
        out, keys = [], self._first_keys
        for i, _ in self.groups:
            keys = self._group_keys.get(i, keys)
            out.append(keys)
        return out

    def key_frames(self, device: torch.device) -> torch.Tensor:
        """Indices of the current keyframes."""
        return torch.tensor(self.keyframes or [], dtype=torch.long, device=device)

    def other_frames(self, device: torch.device) -> torch.Tensor:
        """Indices of the frames that are not keyframes."""
        key_set = set(self.keyframes or [])
        return torch.tensor([f for f in range(self.frames) if f not in key_set], dtype=torch.long, device=device)

    # ---------------------------------------------------------------- result
    def finish(self) -> RunResult:
        """The run's ``RunResult``; also kept as the holder's ``last_result`` (the one place results live)."""
        if self.keyframes is None:
            raise RuntimeError("RhymeFlow: the run ended before its warm-up chose keyframes")
        run = self.run
        result = RunResult(
            step_map=build_step_map(self.frames, self.steps, self.schedule, self._first_keys, self.group_keyframes()),
            scores=self.scores, schedule=self.schedule, calls=dict(run.calls), seconds=dict(run.seconds),
            sampler_seconds=time.perf_counter() - self._t0, cache_bytes=run.cache.nbytes(),
            context_mode=run.context_mode, family=self.holder.adapter.family, sigma_start=self.sigmas[0],
            sigma_end=self.sigmas[-1], sigmas=self.sigmas[:-1], dims=run.dims,
            settings={**self.settings, "adaptive": self.adaptive},
        )
        self.holder.last_result = result
        return result

    def close(self) -> None:
        """Drop all per-run state (called in ``finally``: an error or an interrupt leaves nothing behind)."""
        if self.holder.engine is self:
            self.holder.engine = None
        self.holder.end_run()
