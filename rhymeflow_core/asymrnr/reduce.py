"""Drop-mode ("replace") reduction and restoration of token sequences ``[B, L, heads*d]``.

A reduced source is dropped and its destination stands in for it; there is no averaging and no
size bias (the authors' default ``replace`` mode). The reduced sequence is ``[kept sources, dsts]``
per head: attention runs after RoPE, so order carries no position information. Only queries are
restored: every dropped query position receives the output row of its matched destination, so the
output keeps the original length. Keys/values need no restoration (output length follows queries).

Everything is one gather per tensor with per-head indices; no per-token Python work.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .matching import Match


class Reduction(NamedTuple):
    """Index maps of one reduction: ``gather`` shortens, ``restore`` lengthens (queries only)."""

    gather: torch.Tensor  # [B, L, H] long: full-sequence position of each reduced token
    restore: torch.Tensor | None  # [B, N, H] long: reduced row whose output each position receives


def kept_sources(n_tokens: int, n_dst: int, n_src: int, rate: float) -> int:
    """Sources kept at ``rate``: ``L = max(Nd, floor(N (1 - rate)))`` tokens remain, as the authors'."""
    return max(0, min(n_src, int(n_tokens * (1.0 - rate)) - n_dst))


def plan_reduction(match: Match, keep: int, n_tokens: int, with_restore: bool) -> Reduction:
    """Index maps keeping the ``keep`` most distinct sources plus every destination, per (batch, head)."""
    b, h, ns = match.order.shape
    nd = match.dst_idx.numel()
    order = match.order.long()
    kept_pos = match.src_idx[order[..., :keep]]
    pos = torch.cat([kept_pos, match.dst_idx.expand(b, h, nd)], dim=-1)  # [B, H, L]
    restore = None
    if with_restore:
        length = keep + nd
        restore = torch.empty(b, h, n_tokens, dtype=torch.long, device=pos.device)
        restore.scatter_(-1, pos, torch.arange(length, device=pos.device).expand(b, h, length))
        dropped = order[..., keep:]
        restore.scatter_(-1, match.src_idx[dropped], keep + match.nearest.long().gather(-1, dropped))
        restore = restore.transpose(1, 2)
    return Reduction(pos.transpose(1, 2), restore)


def _rows(x: torch.Tensor, heads: int, index: torch.Tensor) -> torch.Tensor:
    """``x [B, N, heads*d]`` -> ``[B, L, heads*d]`` taking, per head, the rows ``index [B, L, heads]``."""
    b, _, hd = x.shape
    d = hd // heads
    idx = index.unsqueeze(-1).expand(*index.shape, d)
    return x.reshape(b, -1, heads, d).gather(1, idx).reshape(b, index.shape[1], hd)


def reduce_tokens(x: torch.Tensor, heads: int, reduction: Reduction) -> torch.Tensor:
    """The reduced sequence ``[B, L, heads*d]`` of ``x [B, N, heads*d]``."""
    return _rows(x, heads, reduction.gather)


def restore_tokens(out: torch.Tensor, heads: int, reduction: Reduction) -> torch.Tensor:
    """Full-length output ``[B, N, heads*d]`` from the reduced queries' output ``[B, L, heads*d]``."""
    if reduction.restore is None:
        raise ValueError("restore_tokens: this reduction was planned without a restore map (keys/values only)")
    return _rows(out, heads, reduction.restore)
