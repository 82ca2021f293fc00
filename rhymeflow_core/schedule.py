"""The frames x steps step map of a RhymeFlow run, and a FLOP model of what it saves.

After ``warmup`` full steps the run is cut into groups. Each group starts at a rhythmic (sync) point,
a full pass over every frame; its remaining steps are keyframe-only passes while the other frames
jump to the group's end. The stride grows from ``n_small`` to ``n_large`` because late, low-noise
steps are smooth enough to skip more of. The saving is decided by how many full passes remain;
the FLOP model below says how cheap the keyframe-only passes are, since their keys and values still
cover every frame.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch

ROLE_WARMUP, ROLE_SYNC, ROLE_KEY, ROLE_SKIP = 0, 1, 2, 3
ROLE_LEGEND = {ROLE_WARMUP: "warm-up", ROLE_SYNC: "sync", ROLE_KEY: "keyframe", ROLE_SKIP: "projected"}


@dataclass(frozen=True)
class ScheduleConfig:
    """Warm-up length and stride schedule (the authors' progressive ``min/min+1/max`` skip).

    ``transitions`` are fractions of the post-warm-up steps: up to the first the stride is
    ``n_small``, up to the second ``min(n_small + 1, n_large)``, after it ``n_large``.
    """

    warmup: int = 8
    n_small: int = 2
    n_large: int = 3
    transitions: tuple[float, float] = (0.3, 0.7)

    def __post_init__(self) -> None:
        # JSON gives a list; a tuple keeps the config hashable.
        object.__setattr__(self, "transitions", tuple(self.transitions))

    def validate(self, steps: int) -> None:
        """Raise ``ValueError`` naming the field, its value and what is accepted."""
        for name in ("warmup", "n_small", "n_large"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r} must be an integer")
        if self.warmup < 1:
            raise ValueError(
                f"warmup={self.warmup} must be at least 1: keyframes are chosen from the x0 prediction "
                "of the last warm-up step"
            )
        if self.warmup >= steps:
            raise ValueError(
                f"warmup={self.warmup} must be smaller than the number of steps ({steps}): "
                "otherwise every step is a full pass and nothing is skipped"
            )
        if self.n_small < 1:
            raise ValueError(f"n_small={self.n_small} must be at least 1 (1 = no skipping early on)")
        if self.n_large < self.n_small:
            raise ValueError(f"n_large={self.n_large} must be at least n_small={self.n_small}: strides only grow")
        a_b = self.transitions
        if len(a_b) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in a_b) or not (
            0.0 <= a_b[0] <= a_b[1] <= 1.0
        ):
            raise ValueError(
                f"transitions={a_b!r} must be two fractions 0 <= a <= b <= 1 of the post-warm-up steps, "
                "e.g. (0.3, 0.7)"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["transitions"] = list(self.transitions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleConfig":
        """Inverse of ``to_dict``; unknown keys are an error so a typo is not silently a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ScheduleConfig keys {unknown}; accepted: {sorted(known)}")
        return cls(**d)


def stride_at(offset: int, total: int, cfg: ScheduleConfig) -> int:
    """Stride of the group whose sync point is ``offset`` steps into the ``total`` post-warm-up steps.

    ``offset`` counts from 1 at the first step after warm-up; identical to the authors'
    ``_progressive_skip_n`` (Python ``round``, i.e. half to even, included).
    """
    early_end = round(cfg.transitions[0] * total)
    middle_end = round(cfg.transitions[1] * total)
    if offset <= early_end:
        return cfg.n_small
    if offset <= middle_end:
        return min(cfg.n_small + 1, cfg.n_large)
    return cfg.n_large


def sync_groups(steps: int, cfg: ScheduleConfig) -> list[tuple[int, int]]:
    """``[(i, end)]``: a sync point at step ``i``; the group covers steps ``i .. end-1``.

    The first group starts at ``warmup``; each next one starts where the previous ended.
    """
    cfg.validate(steps)
    groups = []
    i = cfg.warmup
    while i < steps:
        end = min(steps, i + stride_at(i - cfg.warmup + 1, steps - cfg.warmup, cfg))
        groups.append((i, end))
        i = end
    return groups


@dataclass
class StepMap:
    """Role of every (frame, step): what the sampler computes and what the UI widget draws."""

    roles: torch.Tensor  # uint8 [F, T], values ROLE_*
    keyframes: tuple[int, ...]
    groups: list[tuple[int, int]]
    warmup: int

    def full_passes(self) -> int:
        """Passes over every frame: the warm-up steps plus one per sync point."""
        return self.warmup + len(self.groups)

    def keyframe_passes(self) -> int:
        """Passes whose queries are the keyframes only: the steps inside groups after their sync point."""
        return sum(end - i - 1 for i, end in self.groups)

    def to_dict(self) -> dict:
        """JSON for the step-map widget."""
        return {
            "frames": int(self.roles.shape[0]),
            "steps": int(self.roles.shape[1]),
            "roles": self.roles.tolist(),
            "keyframes": list(self.keyframes),
            "groups": [[i, end] for i, end in self.groups],
            "warmup": self.warmup,
            "legend": {str(k): v for k, v in ROLE_LEGEND.items()},
        }


def build_step_map(num_frames: int, steps: int, cfg: ScheduleConfig, keyframes: Sequence[int]) -> StepMap:
    """The ``[F, T]`` role map for ``num_frames`` latent frames, ``steps`` sampling steps and ``keyframes``."""
    keys = sorted(set(keyframes))
    if not keys or any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < num_frames for k in keys):
        raise ValueError(
            f"keyframes={list(keyframes)} must be a non-empty list of frame indices in 0..{num_frames - 1}"
        )
    groups = sync_groups(steps, cfg)
    roles = torch.full((num_frames, steps), ROLE_SKIP, dtype=torch.uint8)
    roles[keys, :] = ROLE_KEY
    roles[:, : cfg.warmup] = ROLE_WARMUP
    roles[:, [i for i, _ in groups]] = ROLE_SYNC
    return StepMap(roles=roles, keyframes=tuple(keys), groups=groups, warmup=cfg.warmup)


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


def flop_ideal_speedup(step_map: StepMap, d: ModelDims, kv_cached: bool = False) -> float:
    """Dense cost (one full pass per step) over the RhymeFlow cost; an upper bound on wall-clock gain."""
    frames, steps = step_map.roles.shape
    if frames != d.frames:
        raise ValueError(
            f"the step map has {frames} frames but {d.name} dims say frames={d.frames}; "
            "use dataclasses.replace(dims, frames=...)"
        )
    return flop_ideal_from_counts(step_map.full_passes(), step_map.keyframe_passes(), len(step_map.keyframes), d, kv_cached)


def flop_ideal_from_counts(full_passes: int, keyframe_passes: int, keyframes: int, d: ModelDims, kv_cached: bool = False) -> float:
    """The same figure from pass counts (what a finished run reports)."""
    full = pass_flops(d, d.frames)
    rhyme = full_passes * full + keyframe_passes * pass_flops(d, keyframes, kv_cached=kv_cached)
    return (full_passes + keyframe_passes) * full / rhyme


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
