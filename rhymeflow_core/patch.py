"""The projection patch: a DIFFUSION_MODEL wrapper plus one block-replace patch per DiT block.

How a pass is chosen: the sampler sets ``run.mode`` on the holder before each model call.
- ``full``: untouched model (warm-up).
- ``record``: full pass on every frame (a sync point); each block also stores the non-keyframe context
  (block inputs for ``hidden`` mode, post-RoPE K/V for ``kv`` mode) and block 0 stores the RoPE table.
- ``keyframe``: the wrapper feeds only keyframe latents through the DiT (patch embedding, residual
  stream, head: M frames, not F), and each block attends from keyframe queries to keys/values of all
  frames, with the recorded RoPE rows so every token keeps its original position.

The holder is a plain object (not a dict) because ComfyUI re-copies dicts inside
``transformer_options`` several times per run; objects pass by reference.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .context_cache import ContextCache

KEY = "rhymeflow"
CONTEXT_MODES = ("hidden", "kv")
MODES = ("full", "record", "keyframe")


@dataclass(frozen=True)
class PatchConfig:
    """What the Projection Patch node sets."""

    context_mode: str = "kv"
    placement: str = "device"
    cache_dtype: str = "auto"  # auto | float16 | bfloat16 | float32

    def validate(self) -> None:
        if self.context_mode not in CONTEXT_MODES:
            raise ValueError(f"RhymeFlow Projection Patch: context_mode={self.context_mode!r}; accepted: {', '.join(CONTEXT_MODES)}")
        if self.cache_dtype not in ("auto", "float16", "bfloat16", "float32"):
            raise ValueError(f"RhymeFlow Projection Patch: cache_dtype={self.cache_dtype!r}; accepted: auto, float16, bfloat16, float32")
        ContextCache(self.placement)  # validates placement

    def torch_cache_dtype(self) -> torch.dtype | None:
        return None if self.cache_dtype == "auto" else getattr(torch, self.cache_dtype)


@dataclass
class RunState:
    """Per-run state; created by the sampler, dropped in its ``finally``."""

    keyframes: torch.Tensor | None = None  # frame indices, long, on the model's device
    mode: str = "full"
    cache: ContextCache = field(default_factory=ContextCache)
    freqs_key: torch.Tensor | None = None  # RoPE rows of keyframe tokens, recorded at sync points
    freqs_other: torch.Tensor | None = None  # RoPE rows of the other tokens
    tokens_per_frame: int = 0
    num_frames: int = 0
    dit: torch.nn.Module | None = None
    key_tok: torch.Tensor | None = None
    other_tok: torch.Tensor | None = None
    calls: dict = field(default_factory=lambda: {m: 0 for m in MODES})
    seconds: dict = field(default_factory=lambda: {m: 0.0 for m in MODES})

    def set_keyframes(self, frames: torch.Tensor) -> None:
        self.keyframes = frames
        self.key_tok = self.other_tok = None  # rebuilt for the token grid on the next call


class RhymeFlowHolder:
    """Lives in ``transformer_options["rhymeflow"]``; ``run`` is set only while a RhymeFlow sampler runs."""

    def __init__(self, config: PatchConfig, adapter):
        config.validate()
        self.config = config
        self.adapter = adapter
        self.run: RunState | None = None
        self.last_stats: dict | None = None

    def new_run(self) -> RunState:
        self.run = RunState(cache=ContextCache(self.config.placement, self.config.torch_cache_dtype()))
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


def diffusion_model_wrapper(executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options=None, **kwargs):
    """DIFFUSION_MODEL wrapper: on keyframe passes, run the DiT on keyframe latents only and scatter back."""
    to = transformer_options if transformer_options is not None else {}
    holder = to.get(KEY)
    run = holder.run if isinstance(holder, RhymeFlowHolder) else None
    if run is None:
        return executor(x, timestep, context, clip_fea, time_dim_concat, to, **kwargs)
    if time_dim_concat is not None or clip_fea is not None:
        raise ValueError("RhymeFlow: image/time-concat conditioning is not supported by the Wan 2.1 T2V adapter")
    dit = executor.class_obj
    ph, pw = dit.patch_size[1:]
    run.dit = dit
    run.num_frames = x.shape[2]
    run.tokens_per_frame = -(-x.shape[3] // ph) * -(-x.shape[4] // pw)
    if run.mode != "full" and (run.key_tok is None or run.key_tok.device != x.device):
        run.keyframes = run.keyframes.to(x.device)
        run.key_tok, run.other_tok = _token_rows(run.keyframes, run.num_frames, run.tokens_per_frame)
    _sync(x.device)
    t0 = time.perf_counter()
    if run.mode != "keyframe":
        out = executor(x, timestep, context, clip_fea, time_dim_concat, to, **kwargs)
    else:
        if timestep.ndim > 1:
            raise ValueError("RhymeFlow: per-frame timesteps are not supported by the Wan 2.1 T2V adapter")
        out_key = executor(x.index_select(2, run.keyframes), timestep, context, clip_fea, time_dim_concat, to, **kwargs)
        out = out_key.new_zeros(out_key.shape[0], out_key.shape[1], *x.shape[2:])
        out.index_copy_(2, run.keyframes, out_key)
    _sync(x.device)
    run.calls[run.mode] += 1
    run.seconds[run.mode] += time.perf_counter() - t0
    return out


def block_patch(args: dict, extra: dict) -> dict:
    """``patches_replace["dit"][("double_block", i)]``: record context or run the keyframe-only block."""
    to = args["transformer_options"]
    holder = to.get(KEY)
    run = holder.run if isinstance(holder, RhymeFlowHolder) else None
    if run is None or run.mode == "full":
        return extra["original_block"](args)
    i = to["block_index"]
    block = run.dit.blocks[i]
    branches = to.get("cond_or_uncond", [0])
    adapter = holder.adapter
    x, e0, context = args["img"], args["vec"], args["txt"]
    if run.mode == "record":
        if i == 0:
            run.freqs_key, run.freqs_other = args["pe"][:, run.key_tok], args["pe"][:, run.other_tok]
        out, k, v = adapter.block_forward(block, x, e0, args["pe"], context, to)
        if holder.config.context_mode == "kv":
            run.cache.put(i, branches, (k[:, run.other_tok], v[:, run.other_tok]))
        else:
            run.cache.put(i, branches, (x[:, run.other_tok],))
        return {"img": out}
    if holder.config.context_mode == "kv":
        k_ctx, v_ctx = run.cache.get(i, branches, x.device, x.dtype)
    else:
        (h,) = run.cache.get(i, branches, x.device, x.dtype)
        k_ctx, v_ctx = adapter.kv_from_hidden(block, h, e0, run.freqs_other) if h.shape[1] else (h, h)
    return {"img": adapter.keyframe_block_forward(block, x, e0, run.freqs_key, context, k_ctx, v_ctx, to)}


def install(transformer_options: dict, holder: RhymeFlowHolder, num_blocks: int) -> dict:
    """Return a copy of ``transformer_options`` with the patch installed (the test bed's equivalent of
    the node's ``clone()`` + ``add_wrapper_with_key`` + ``set_model_patch_replace``)."""
    to = dict(transformer_options)
    wrappers = {k: dict(v) for k, v in to.get("wrappers", {}).items()}
    wrappers.setdefault("diffusion_model", {})[KEY] = [diffusion_model_wrapper]
    to["wrappers"] = wrappers
    replace = {k: dict(v) for k, v in to.get("patches_replace", {}).items()}
    dit = replace.setdefault("dit", {})
    for i in range(num_blocks):
        dit[("double_block", i)] = block_patch
    to["patches_replace"] = replace
    to[KEY] = holder
    return to
