"""Bipartite token matching: which tokens are redundant, and which destination stands in for each.

The token grid (T, H, W) is cut into chunks of ``dst_stride``; one token per chunk, chosen by a seeded
generator, is a destination (dst), every other token a source (src). Each source finds its nearest
destination anywhere in the video (squared Euclidean distance, as the authors' default), per batch
element and per head. Sources sorted most-distinct first: a reduction keeps a prefix of that order.

Memory: the distance matrix is ``[Nsrc, Ndst]`` per (batch, head); it is built for a bounded chunk of
(batch, head) rows at a time, never for all heads at once (Wan 14B at 720p would need ~15 GB).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

DEFAULT_STRIDE: tuple[int, int, int] = (1, 2, 2)
DEFAULT_MAX_ELEMENTS = 1 << 26  # fp32 distance entries per chunk: 256 MiB


class Match(NamedTuple):
    """A matching for one feature of one attention call; the part that is cached across steps."""

    dst_idx: torch.Tensor  # [Nd] long, token positions of destinations (ascending)
    src_idx: torch.Tensor  # [Ns] long, token positions of sources (ascending)
    order: torch.Tensor  # [B, H, Ns] int32, sources by decreasing distance to their nearest dst
    nearest: torch.Tensor  # [B, H, Ns] int32, for each source its nearest dst (index into dst_idx)


def partition_seed(seed: int, block: int, feature: str, window: int) -> int:
    """A deterministic generator seed per (run seed, block, feature, cache window)."""
    fid = {"q": 1, "kv": 2}.get(feature, 3)
    return (seed * 0x9E3779B1 + block * 7919 + fid * 104729 + window * 15485863) % (1 << 63)


def dst_partition(grid: tuple[int, int, int], stride: tuple[int, int, int] = DEFAULT_STRIDE,
                  generator: torch.Generator | None = None, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dst_idx, src_idx)``: one random destination per chunk of ``stride`` over the frame-major grid.

    A stride larger than the grid is clamped so there is at least one chunk per axis. Leftover rows
    (a dimension not divisible by its stride) sit at a random offset and are always sources, as in
    the authors' code. Drawn on the CPU (tiny, once per cache window) and moved to ``device``.
    """
    st = [max(1, min(int(s), int(g))) for s, g in zip(stride, grid)]
    counts = [g // s for g, s in zip(grid, st)]
    offsets = [int(torch.randint(g - c * s + 1, (1,), generator=generator)) for g, c, s in zip(grid, counts, st)]
    slot = torch.randint(st[0] * st[1] * st[2], tuple(counts), generator=generator)
    t = torch.arange(counts[0]).view(-1, 1, 1) * st[0] + offsets[0] + slot // (st[1] * st[2])
    h = torch.arange(counts[1]).view(1, -1, 1) * st[1] + offsets[1] + (slot // st[2]) % st[1]
    w = torch.arange(counts[2]).view(1, 1, -1) * st[2] + offsets[2] + slot % st[2]
    dst = ((t * grid[1] + h) * grid[2] + w).flatten()
    is_dst = torch.zeros(grid[0] * grid[1] * grid[2], dtype=torch.bool)
    is_dst[dst] = True
    src = (~is_dst).nonzero().squeeze(1)
    return dst.to(device), src.to(device)


def nearest_dst(x: torch.Tensor, dst_idx: torch.Tensor, src_idx: torch.Tensor,
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (batch, head) nearest destination of every source: ``(distance, index)``, each ``[B, H, Ns]``.

    ``x`` is ``[B, N, H, d]``. Distances are computed in fp32 (``|a|^2 + |b|^2 - 2ab`` cancels badly in
    bf16) over chunks of (batch, head) rows holding at most ``max_elements`` distance entries.
    """
    b, _, heads, d = x.shape
    nd, ns = dst_idx.numel(), src_idx.numel()
    xs = x.index_select(1, src_idx).permute(0, 2, 1, 3).reshape(b * heads, ns, d)
    xd = x.index_select(1, dst_idx).permute(0, 2, 1, 3).reshape(b * heads, nd, d)
    rows = max(1, max_elements // max(1, ns * nd))
    dist, idx = [], []
    for r0 in range(0, b * heads, rows):  # bounded chunks of (batch, head) rows
        a, c = xs[r0:r0 + rows].float(), xd[r0:r0 + rows].float()
        # |a - c|^2 = |a|^2 + (|c|^2 - 2 a.c): the row term does not change the argmin, so it is added to the [Ns]
        # minima only, and |c|^2 rides in the product as one more inner dimension ([-2a, 1] . [c, |c|^2]): the
        # Ns x Nd matrix is written once by the matmul and read once by the min, with no elementwise pass
        ones = torch.ones(*a.shape[:2], 1, dtype=a.dtype, device=a.device)
        m = torch.bmm(torch.cat((a * -2, ones), -1), torch.cat((c, c.pow(2).sum(-1, keepdim=True)), -1).transpose(1, 2))
        best, j = m.min(dim=-1)
        dist.append(best.add_(a.pow(2).sum(-1)).clamp_min_(0))
        idx.append(j)
        del m
    return torch.cat(dist).view(b, heads, ns), torch.cat(idx).view(b, heads, ns)


def match_tokens(x: torch.Tensor, dst_idx: torch.Tensor, src_idx: torch.Tensor,
                 max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[Match, torch.Tensor]:
    """Match ``x [B, N, H, d]``; returns the :class:`Match` and the per-source distance ``[B, H, Ns]``.

    The sort is stable so equal distances keep token order: the result depends only on the inputs.
    """
    dist, nearest = nearest_dst(x, dst_idx, src_idx, max_elements)
    order = torch.sort(dist, dim=-1, descending=True, stable=True).indices
    return Match(dst_idx, src_idx, order.to(torch.int32), nearest.to(torch.int32)), dist
