"""Class conditioning for the test bed: class index -> a fixed text-context tensor ``[1, L, 4096]``.

Why: ComfyUI's Wan takes umT5 embeddings (4096-d). The test bed has no text encoder, so each class
gets a deterministic random "prompt embedding" and the empty prompt (CFG's negative) is all zeros.
"""
from __future__ import annotations

import torch

from .videos import CLASSES

TEXT_TOKENS = 8
TEXT_DIM = 4096


def class_context(cls: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The context ``[1, 8, 4096]`` for class ``cls``; the same on every machine."""
    if not 0 <= int(cls) < len(CLASSES):
        raise ValueError(f"class_context: class {cls} is not one of 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    g = torch.Generator().manual_seed(4096 + int(cls))
    return torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=g).to(device=device, dtype=dtype)


def null_context(device=None, dtype=torch.float32) -> torch.Tensor:
    """The unconditional (negative) context."""
    return torch.zeros(1, TEXT_TOKENS, TEXT_DIM, device=device, dtype=dtype)
