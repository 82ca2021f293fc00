"""What the projection patch needs from a model family: one adapter per family implements this.

Why a protocol: ``patch.py`` owns the run state, the context cache and the keyframe subsetting of the
model input, which are the same for every family; how a block computes its keys/values and runs on a
subset of its rows is what differs (Wan's cross-attention blocks, HunyuanVideo's double/single
streams with text inside the sequence, LTX-Video, Mochi's asymmetric joint blocks).

Token order is frame-major in every supported family (``(t h w)`` after patchification), so keyframe
token rows are whole ``tokens_per_frame`` runs; ``patch.py`` computes them once per run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from ..asymrnr.layout import TokenLayout
    from ..flops import ModelDims

BlockKey = tuple[str, int]  # the ``patches_replace["dit"]`` key, e.g. ("double_block", 3)


class FamilyAdapter(Protocol):
    family: str
    context_modes: tuple[str, ...]  # which PatchConfig.context_mode values the adapter implements
    frame_kwargs: tuple[str, ...]  # model-call kwargs with a frame axis (dim 2) to subset on keyframe passes

    def check_model(self, dit: torch.nn.Module) -> None:
        """Raise ``ValueError`` naming what is supported if this adapter cannot run ``dit`` exactly."""

    def model_dims(self, dit: torch.nn.Module, x: torch.Tensor, text_tokens: int) -> "ModelDims":
        """The FLOP model's dims of ``dit`` for latent ``x [B, C, F, H, W]`` (``flops.pass_flops``)."""

    def block_keys(self, dit: torch.nn.Module) -> list[BlockKey]:
        """Every ``patches_replace["dit"]`` key the patch installs a replacement for."""

    def tokens_per_frame(self, dit: torch.nn.Module, x: torch.Tensor) -> int:
        """Visual tokens per latent frame of ``x [B, C, F, H, W]`` after patchification."""

    def token_layout(self, dit: torch.nn.Module) -> "TokenLayout":
        """Where the video rows of ``dit``'s self-attention calls are, for AsymRnR's attention override."""

    def prepare_call(self, kwargs: dict, run) -> None:
        """Refuse conditioning in a model call that keyframe-only passes cannot honour (call-time errors) and
        keep what the blocks need from the call's kwargs in ``run.call``."""

    def record_block(self, key: BlockKey, args: dict, run) -> dict:
        """The block on every frame (equal to the original) that also stores the non-keyframe context."""

    def keyframe_block(self, key: BlockKey, args: dict, run) -> dict:
        """The block on keyframe rows only, attending to keyframe rows plus the stored context."""

