"""Per-block, per-CFG-branch store of what keyframe-only passes need for the non-keyframe rows.

Why a separate object: ComfyUI may batch cond and uncond in one DiT call or run them one by one, in
either order. Entries are therefore kept per (block, branch) and re-assembled in the order of the
current call, so the cache is right however the guider batches. Placement is a memory/speed lever:
``device`` keeps entries where they were made; ``cpu`` moves them off the accelerator (pinned memory
and non-blocking copies when CUDA is present), which is the authors' default on large models.
"""
from __future__ import annotations

from typing import Sequence

import torch

PLACEMENTS = ("device", "cpu")


class ContextCache:
    """Holds tuples of tensors ``[b, rows, ...]`` keyed by ``(block, branch)``."""

    def __init__(self, placement: str = "device", dtype: torch.dtype | None = None):
        if placement not in PLACEMENTS:
            raise ValueError(f"ContextCache: placement={placement!r}; accepted: {', '.join(PLACEMENTS)}")
        self.placement = placement
        self.dtype = dtype
        self._store: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        # device placement: the batched tensors as recorded, returned as-is when asked in the same order
        self._batched: dict[tuple[int, tuple[int, ...]], tuple[torch.Tensor, ...]] = {}

    def _stash(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if self.dtype is not None:
            t = t.to(self.dtype)
        if self.placement == "cpu" and t.device.type != "cpu":
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=torch.cuda.is_available())
            host.copy_(t, non_blocking=True)
            return host
        return t.clone() if self.placement == "cpu" else t

    def put(self, block: int, branches: Sequence[int], tensors: Sequence[torch.Tensor]) -> None:
        """Store a batched call's tensors, split into one chunk per CFG branch."""
        n = len(branches)
        if self.placement == "device":
            self._batched[(block, tuple(int(b) for b in branches))] = tuple(self._stash(t) for t in tensors)
        chunks = [t.chunk(n, dim=0) for t in tensors]
        for c, branch in enumerate(branches):
            self._store[(block, int(branch))] = tuple(self._stash(ch[c]) for ch in chunks)

    def get(self, block: int, branches: Sequence[int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The stored tensors for ``branches`` in that order, batched, on ``device``."""
        same = self._batched.get((block, tuple(int(b) for b in branches)))
        if same is not None and same[0].device == device and same[0].dtype == dtype:
            return same
        try:
            parts = [self._store[(block, int(b))] for b in branches]
        except KeyError as exc:
            raise RuntimeError(f"RhymeFlow context cache has no entry for block {block}, branch {exc.args[0][1]}: "
                               "a keyframe-only pass ran before any sync pass recorded context") from None
        return tuple(torch.cat([p[i] for p in parts]).to(device=device, dtype=dtype, non_blocking=True) for i in range(len(parts[0])))

    def nbytes(self) -> int:
        """Bytes held (per-branch chunks of a batched record share its memory: counted once)."""
        return sum(t.numel() * t.element_size() for ts in self._store.values() for t in ts)

    def drop(self, which) -> None:
        """Forget the entries whose key ``which(key)`` is true (e.g. a full pass's velocity once it is too old)."""
        for key in [k for k in self._store if which(k[0])]:
            del self._store[key]
        for key in [k for k in self._batched if which(k[0])]:
            del self._batched[key]

    def clear(self) -> None:
        self._store.clear()
        self._batched.clear()
