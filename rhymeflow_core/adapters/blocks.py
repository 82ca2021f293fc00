"""The part of every family adapter that is not family math: the patch's two block entry points and the model check.

Why one skeleton: a sync pass and a keyframe-only pass do the same bookkeeping in every family (record the
RoPE rows once per pass, store or load the non-keyframe context per block and CFG branch, hand the block's
outputs back in ComfyUI's ``patches_replace`` shape); only the block forward differs. A family subclasses
``BlockAdapter`` and supplies:

- ``dit_class`` / ``description`` / ``supported`` and ``is_plain(dit)``: which ComfyUI class it runs, and the
  attribute test that it is the plain variant (``check_variant`` may refuse more, e.g. Wan's reference input);
- ``record_rope(args, run)``: keep the RoPE rows of keyframes (and others) from the first block of a sync pass;
- ``full_block(key, args, run) -> (out, hidden, k, v)``: the unchanged block, with its post-RoPE K/V of every
  visual row (``hidden`` is the block input, kept in ``hidden`` context mode);
- ``keyframe_forward(key, args, run, ctx) -> out``: the block on keyframe rows with the cached context ``ctx``;
- optionally ``kv_from_hidden_fn(key, args, run)`` (``hidden`` mode: re-project cached block inputs) and
  ``kv_dim`` (the row axis of K/V: 1 for ``[B, rows, D]``, 2 for ``[B, heads, rows, head_dim]``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from .base import BlockKey

FIRST_BLOCK: BlockKey = ("double_block", 0)  # every family's first patched block (patch.py runs blocks in order)


class BlockAdapter(ABC):
    """Shared ``check_model``, ``record_block`` and ``keyframe_block`` of the family adapters."""

    dit_class: str
    description: str  # "a plain Wan DiT": what a refused model is not
    supported: str
    kv_dim: int = 1

    @abstractmethod
    def is_plain(self, dit: torch.nn.Module) -> bool: ...

    @abstractmethod
    def record_rope(self, args: dict, run) -> None: ...

    @abstractmethod
    def full_block(self, key: BlockKey, args: dict, run) -> tuple[dict, torch.Tensor | None, torch.Tensor, torch.Tensor]: ...

    @abstractmethod
    def keyframe_forward(self, key: BlockKey, args: dict, run, ctx: tuple) -> dict: ...

    def check_variant(self, dit: torch.nn.Module) -> None:
        """Refuse a variant of the right class that keyframe-only passes cannot run exactly (default: none)."""

    def check_model(self, dit: torch.nn.Module) -> None:
        """Refuse models this adapter cannot run exactly, naming what is supported."""
        if type(dit).__name__ != self.dit_class or not self.is_plain(dit):
            raise ValueError(f"model {type(dit).__name__} is not {self.description}; supported: {self.supported}")
        self.check_variant(dit)

    def kv_from_hidden_fn(self, key: BlockKey, args: dict, run) -> Callable[[torch.Tensor], tuple] | None:
        return None

    def record_block(self, key: BlockKey, args: dict, run) -> dict:
        """The block on every frame (equal to the original) that also stores the non-keyframe context."""
        if key == FIRST_BLOCK:
            self.record_rope(args, run)
        out, hidden, k, v = self.full_block(key, args, run)
        run.store_context(key, args["transformer_options"], hidden, k, v, dim=self.kv_dim)
        return out

    def keyframe_block(self, key: BlockKey, args: dict, run) -> dict:
        """The block on keyframe rows only, attending to keyframe rows plus the stored context."""
        ctx = run.load_context(key, args["transformer_options"], args["img"], self.kv_from_hidden_fn(key, args, run))
        return self.keyframe_forward(key, args, run, ctx)
