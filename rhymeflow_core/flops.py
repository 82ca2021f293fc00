"""The FLOP model of a DiT pass (what a step map saves), and a FLOP counter to check it against.

The model (``ModelDims``, ``pass_flops``) prices a pass whose queries are a subset of the frames; the
counter (``count_flops``) measures a callable with torch's FlopCounterMode, attention included on
every device.

Why a counter of our own: torch's counter has formulas for the CUDA SDPA kernels but not for the CPU flash kernel, so on
CPU a DiT's attention would count as zero and every FLOP ratio would be wrong.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

if TYPE_CHECKING:
    from .schedule import StepMap


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query.shape if hasattr(query, "shape") else query, key.shape if hasattr(key, "shape") else key,
                           value.shape if hasattr(value, "shape") else value)


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of ``fn()`` (2 x multiply-adds of matmuls, convolutions and attention)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


@dataclass(frozen=True)
class ModelDims:
    """The shapes that decide a DiT pass's cost. ``tokens_per_frame`` is after patchification.

    ``text_in_sequence``: text tokens are part of the self-attention sequence (HunyuanVideo, Mochi: joint
    attention, text rows computed in every pass) instead of entering through cross-attention (Wan, LTX).
    ``text_dim`` / ``text_ffn_dim``: width and FFN width of the text stream when they differ from the
    visual ones (Mochi's asymmetric blocks: text Q/K/V are projected from ``text_dim`` up to ``dim``,
    the attention output back down); 0 means the same as ``dim`` / ``ffn_dim``.
    """

    name: str
    layers: int
    dim: int
    ffn_dim: int
    tokens_per_frame: int
    frames: int
    text_tokens: int = 512
    text_in_sequence: bool = False
    text_dim: int = 0
    text_ffn_dim: int = 0


def pass_flops(d: ModelDims, active_frames: int, batch: int = 1, kv_cached: bool = False) -> float:
    """FLOPs (2 x multiply-adds) of one transformer pass whose queries are ``active_frames`` frames.

    Q/O projections, cross-attention queries and the FFN run on the active tokens; the attention keys
    cover all frames (keyframe queries attend to the full context). K/V projections cover all frames
    too, unless ``kv_cached`` (the ``kv`` context mode: non-keyframe K/V come from the cache).
    ``active_frames == d.frames`` is the dense pass. Patch embedding, the head and element-wise ops
    are left out (well under 0.1% of a pass at real sizes).
    """
    n, dim, t = d.tokens_per_frame, d.dim, d.text_tokens
    s, sa = d.frames * n, active_frames * n
    if d.text_in_sequence:
        text_dim, text_ffn = d.text_dim or dim, d.text_ffn_dim or d.ffn_dim
        visual = 2 * sa * dim**2 + 2 * (sa if kv_cached else s) * dim**2 + 2 * sa * dim * d.ffn_dim
        text = 4 * t * dim * text_dim + 2 * t * text_dim * text_ffn  # Q/K/V/O between text_dim and dim; text FFN
        joint = visual + text + 2 * (sa + t) * (s + t) * dim
        return 2.0 * d.layers * batch * joint
    self_attn = 2 * sa * dim**2 + 2 * (sa if kv_cached else s) * dim**2 + 2 * sa * s * dim
    cross_attn = 2 * sa * dim**2 + 2 * t * dim**2 + 2 * sa * t * dim
    ffn = 2 * sa * dim * d.ffn_dim
    return 2.0 * d.layers * batch * (self_attn + cross_attn + ffn)


def attention_share(d: ModelDims) -> float:
    """Fraction of a dense pass spent in the quadratic self-attention term (scores + aggregation)."""
    s = d.frames * d.tokens_per_frame
    return 2.0 * d.layers * 2 * s * s * d.dim / pass_flops(d, d.frames)


def flop_ideal_speedup(step_map: "StepMap", d: ModelDims, kv_cached: bool = False) -> float:
    """Dense cost (one full pass per step) over the RhymeFlow cost; an upper bound on wall-clock gain."""
    frames, steps = step_map.roles.shape
    if frames != d.frames:
        raise ValueError(
            f"the step map has {frames} frames but {d.name} dims say frames={d.frames}; "
            "use dataclasses.replace(dims, frames=...)"
        )
    return flop_ideal_from_counts(step_map.full_passes(), step_map.keyframe_passes(), len(step_map.keyframes), d, kv_cached,
                                  reused=step_map.reused_steps())


def flop_ideal_from_counts(full_passes: int, keyframe_passes: int, keyframes: int, d: ModelDims, kv_cached: bool = False,
                           reused: int = 0) -> float:
    """The same figure from pass counts (what a finished run reports); ``reused`` steps made no pass (dense makes one)."""
    full = pass_flops(d, d.frames)
    rhyme = full_passes * full + keyframe_passes * pass_flops(d, keyframes, kv_cached=kv_cached)
    return (full_passes + keyframe_passes + reused) * full / rhyme


def _wan(name: str, layers: int, dim: int, ffn_dim: int, tokens_per_frame: int) -> ModelDims:
    return ModelDims(name=name, layers=layers, dim=dim, ffn_dim=ffn_dim, tokens_per_frame=tokens_per_frame, frames=21)


# 81 pixel frames -> 21 latent frames; 480p latent 60x104 and 720p 90x160, patch 2x2.
WAN_DIMS: dict[str, ModelDims] = {
    d.name: d
    for d in (
        _wan("wan2.1-1.3b-480p", 30, 1536, 8960, 30 * 52),
        _wan("wan2.1-1.3b-720p", 30, 1536, 8960, 45 * 80),
        _wan("wan2.1-14b-480p", 40, 5120, 13824, 30 * 52),
        _wan("wan2.1-14b-720p", 40, 5120, 13824, 45 * 80),
    )
}


# Real sizes of every supported family at a common generation setting, with ComfyUI's default shift for
# its simple scheduler (the noise level is what ends warm-up). Latent frames / tokens per frame follow
# each VAE's compression and the DiT's patch size:
#   Wan 2.2 TI2V-5B 1280x704, 121 frames: VAE 4x16x16, patch 2x2 -> 31 frames x 22*40 tokens;
#   HunyuanVideo 1280x720, 129 frames: VAE 4x8x8, patch 2x2 -> 33 x 45*80; 20 double + 40 single blocks,
#     256 text tokens inside the sequence;
#   LTX-Video 768x512, 121 frames: VAE 8x32x32, patch 1 -> 16 x 16*24; 128 T5 tokens by cross-attention;
#     ComfyUI samples it Flux-style with mu = 2.37, which is the SD3-style shift e^2.37 = 10.7;
#   Mochi 1 848x480, 163 frames: VAE 6x8x8, patch 2x2 -> 28 x 30*53; 256 T5 tokens in the sequence at
#     text width 1536; gated FFNs cost a plain FFN of 1.5x their hidden width (12288 visual, 6144 text).
FAMILY_DIMS: dict[str, tuple[ModelDims, float]] = {
    "wan2.1-1.3b-480p": (WAN_DIMS["wan2.1-1.3b-480p"], 8.0),
    "wan2.1/2.2-14b-720p": (dataclasses.replace(WAN_DIMS["wan2.1-14b-720p"], name="wan2.1/2.2-14b-720p"), 8.0),
    "wan2.2-ti2v-5b-720p": (ModelDims("wan2.2-ti2v-5b-720p", 30, 3072, 14336, 22 * 40, 31), 8.0),
    "hunyuan_video-720p": (ModelDims("hunyuan_video-720p", 60, 3072, 12288, 45 * 80, 33, text_tokens=256,
                                     text_in_sequence=True), 7.0),
    "ltxv-2b-768x512": (ModelDims("ltxv-2b-768x512", 28, 2048, 8192, 16 * 24, 16, text_tokens=128), math.exp(2.37)),
    "ltxv-13b-768x512": (ModelDims("ltxv-13b-768x512", 48, 4096, 16384, 16 * 24, 16, text_tokens=128), math.exp(2.37)),
    "mochi1-480p": (ModelDims("mochi1-480p", 48, 3072, 12288, 30 * 53, 28, text_tokens=256, text_in_sequence=True,
                              text_dim=1536, text_ffn_dim=6144), 6.0),
}
