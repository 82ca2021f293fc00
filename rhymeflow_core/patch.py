"""The projection patch: an APPLY_MODEL wrapper plus one block-replace patch per DiT block.

How a pass is chosen: the engine (``engine.py``) sets ``run.mode`` on the holder before each model call.
- ``full``: untouched model (warm-up).
- ``record``: full pass on every frame (a sync point); each block also stores the non-keyframe context
  (block inputs for ``hidden`` mode, post-RoPE K/V for ``kv`` mode) and RoPE rows where needed.
- ``keyframe``: the wrapper feeds only keyframe frames of the latent (and of every per-frame input:
  concatenated image conditioning, denoise masks) through the model, so patch embedding, the residual
  stream, FFNs and the head run on M frames, not F; each block attends from keyframe queries to keys
  and values of all frames, with recorded RoPE rows so every token keeps its original position.

The wrapper sits on ``apply_model`` (ComfyUI's ``WrappersMP.APPLY_MODEL``) rather than on the diffusion
model because every family has that hook with one signature (Mochi's DiT has no DIFFUSION_MODEL
wrapper) and per-frame conditioning is still separate there. Block math is the family adapter's
(``adapters/``); this module is family-neutral.

The holder is a plain object (not a dict) because ComfyUI re-copies dicts inside
``transformer_options`` several times per run; objects pass by reference.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .context_cache import ContextCache

if TYPE_CHECKING:
    from .flops import ModelDims

KEY = "rhymeflow"
CONTEXT_MODES = ("hidden", "kv")
MODES = ("full", "record", "keyframe")
DEFAULT_TEXT_TOKENS = 512  # the FLOP model's text length when a call carries no text context (T5's padded length)


@dataclass(frozen=True)
class PatchConfig:
    """What the Projection Patch node sets."""

    context_mode: str = "kv"
    placement: str = "device"
    cache_dtype: str = "auto"  # auto | float16 | bfloat16 | float32

    def validate(self) -> None:
        if self.context_mode not in CONTEXT_MODES:
            raise ValueError(f"context_mode={self.context_mode!r}; accepted: {', '.join(CONTEXT_MODES)}")
        if self.cache_dtype not in ("auto", "float16", "bfloat16", "float32"):
            raise ValueError(f"cache_dtype={self.cache_dtype!r}; accepted: auto, float16, bfloat16, float32")
        ContextCache(self.placement)  # validates placement

    def torch_cache_dtype(self) -> torch.dtype | None:
        return None if self.cache_dtype == "auto" else getattr(torch, self.cache_dtype)


@dataclass
class RunState:
    """Per-run state; created by the sampler, dropped in its ``finally``."""

    keyframes: torch.Tensor | None = None  # frame indices, long, on the model's device
    mode: str = "full"
    context_mode: str = "kv"
    cache: ContextCache = field(default_factory=ContextCache)
    rope: dict = field(default_factory=dict)  # adapter-owned RoPE rows recorded at sync points
    call: dict = field(default_factory=dict)  # adapter-owned per-call values (e.g. Wan's context_img_len)
    tokens_per_frame: int = 0
    num_frames: int = 0
    dit: torch.nn.Module | None = None
    key_tok: torch.Tensor | None = None
    other_tok: torch.Tensor | None = None
    dims: "ModelDims | None" = None  # the model's real FLOP-model dims, read at the run's first call
    calls: dict = field(default_factory=lambda: {m: 0 for m in MODES})
    seconds: dict = field(default_factory=lambda: {m: 0.0 for m in MODES})

    def set_keyframes(self, frames: torch.Tensor) -> None:
        self.keyframes = frames
        self.key_tok = self.other_tok = None  # rebuilt for the token grid on the next call

    def store_context(self, key, to: dict, x: torch.Tensor | None, k: torch.Tensor, v: torch.Tensor, dim: int = 1) -> None:
        """At a sync pass, keep what keyframe-only passes need for the non-keyframe rows of block ``key``:
        post-RoPE ``k``/``v`` (``kv`` mode) or the block inputs ``x`` (``hidden``); visual rows lie on ``dim``."""
        rows = self.other_tok
        kept = (k.index_select(dim, rows), v.index_select(dim, rows)) if self.context_mode == "kv" else (x.index_select(dim, rows),)
        self.cache.put(key, to.get("cond_or_uncond", [0]), kept)

    def load_context(self, key, to: dict, x: torch.Tensor, kv_from_hidden=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The non-keyframe keys/values for a keyframe-only block, in this call's CFG-branch order; in ``hidden``
        mode the adapter's ``kv_from_hidden(h)`` re-projects the stored block inputs under this step's modulation."""
        stored = self.cache.get(key, to.get("cond_or_uncond", [0]), x.device, x.dtype)
        if self.context_mode == "kv":
            return stored
        (h,) = stored
        return kv_from_hidden(h) if h.shape[1] else (h, h)


class RhymeFlowHolder:
    """Lives in ``transformer_options["rhymeflow"]``; ``run``/``engine`` are set only while a RhymeFlow run is on.

    ``last_result`` (a ``stats.RunResult``) is where a finished run's figures live, for either entry point.
    """

    def __init__(self, config: PatchConfig, adapter):
        config.validate()
        if config.context_mode not in adapter.context_modes:
            raise ValueError(f"context_mode={config.context_mode!r} is not implemented for "
                             f"{adapter.family}; accepted: {', '.join(adapter.context_modes)}")
        self.config = config
        self.adapter = adapter
        self.run: RunState | None = None
        self.engine = None  # engine.Engine of the run in progress
        self.last_result = None  # stats.RunResult of the last finished run

    def new_run(self) -> RunState:
        self.run = RunState(context_mode=self.config.context_mode,
                            cache=ContextCache(self.config.placement, self.config.torch_cache_dtype()))
        return self.run

    def end_run(self) -> None:
        if self.run is not None:
            self.run.cache.clear()
        self.run = None

    def __deepcopy__(self, memo):  # ModelPatcher.clone() deep-copies model_options: share nothing per-run
        return RhymeFlowHolder(self.config, self.adapter)


def _token_rows(frames: torch.Tensor, num_frames: int, per_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices (frame-major order) of ``frames`` and of all other frames."""
    mask = torch.zeros(num_frames, dtype=torch.bool, device=frames.device)
    mask[frames] = True
    rows = torch.arange(num_frames * per_frame, device=frames.device).view(num_frames, per_frame)
    return rows[mask].flatten(), rows[~mask].flatten()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _frames(value, frames: torch.Tensor, num_frames: int):
    """``value`` restricted to ``frames`` along dim 2 when it is a per-frame tensor, else unchanged."""
    if torch.is_tensor(value) and value.ndim == 5 and value.shape[2] == num_frames:
        return value.index_select(2, frames.to(value.device))
    return value


def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
    """APPLY_MODEL wrapper: on keyframe passes, run the model on keyframe frames only and scatter back."""
    to = transformer_options if transformer_options is not None else {}
    holder = to.get(KEY)
    run = holder.run if isinstance(holder, RhymeFlowHolder) else None
    if run is None:
        return executor(x, t, c_concat, c_crossattn, control, to, **kwargs)
    adapter = holder.adapter
    if control is not None:
        raise ValueError("RhymeFlow: ControlNet inputs are not supported with keyframe-only passes; remove the ControlNet, "
                         "or sample without RhymeFlow (bypass RhymeFlow Accelerate, or use a standard sampler instead of the Async Sampler)")
    adapter.prepare_call(kwargs, run)
    dit = executor.class_obj.diffusion_model
    run.dit = dit
    run.num_frames = x.shape[2]
    run.tokens_per_frame = adapter.tokens_per_frame(dit, x)
    if run.dims is None:
        text = c_crossattn.shape[1] if torch.is_tensor(c_crossattn) and c_crossattn.ndim == 3 else DEFAULT_TEXT_TOKENS
        run.dims = adapter.model_dims(dit, x, int(text))
    if run.mode != "full" and (run.key_tok is None or run.key_tok.device != x.device):
        run.keyframes = run.keyframes.to(x.device)
        run.key_tok, run.other_tok = _token_rows(run.keyframes, run.num_frames, run.tokens_per_frame)
    _sync(x.device)
    t0 = time.perf_counter()
    if run.mode != "keyframe":
        out = executor(x, t, c_concat, c_crossattn, control, to, **kwargs)
    else:
        keys, f = run.keyframes, run.num_frames
        sub = {k: (_frames(v, keys, f) if k in adapter.frame_kwargs else v) for k, v in kwargs.items()}
        out_key = executor(x.index_select(2, keys), t, _frames(c_concat, keys, f), c_crossattn, control, to, **sub)
        out = out_key.new_zeros(out_key.shape[0], out_key.shape[1], *x.shape[2:])
        out.index_copy_(2, keys, out_key)
    _sync(x.device)
    run.calls[run.mode] += 1
    run.seconds[run.mode] += time.perf_counter() - t0
    return out


class BlockPatch:
    """``patches_replace["dit"][key]``: record context (sync passes) or run the keyframe-only block."""

    def __init__(self, key: tuple[str, int]):
        self.key = key

    def __call__(self, args: dict, extra: dict) -> dict:
        holder = args["transformer_options"].get(KEY)
        run = holder.run if isinstance(holder, RhymeFlowHolder) else None
        if run is None or run.mode == "full":
            return extra["original_block"](args)
        if run.mode == "record":
            return holder.adapter.record_block(self.key, args, run)
        return holder.adapter.keyframe_block(self.key, args, run)


def install(transformer_options: dict, holder: RhymeFlowHolder, keys: list[tuple[str, int]]) -> dict:
    """Return a copy of ``transformer_options`` with the patch installed (the test bed's equivalent of
    the node's ``clone()`` + ``add_wrapper_with_key`` + ``set_model_patch_replace``)."""
    to = dict(transformer_options)
    wrappers = {k: dict(v) for k, v in to.get("wrappers", {}).items()}
    wrappers.setdefault("apply_model", {})[KEY] = [apply_model_wrapper]
    to["wrappers"] = wrappers
    replace = {k: dict(v) for k, v in to.get("patches_replace", {}).items()}
    dit = replace.setdefault("dit", {})
    for key in keys:
        dit[key] = BlockPatch(key)
    to["patches_replace"] = replace
    to[KEY] = holder
    return to
