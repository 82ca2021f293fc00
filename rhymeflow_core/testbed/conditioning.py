"""Scene conditioning for the test bed: scene index -> a fixed text-context tensor ``[1, L, 4096]``.

Why: ComfyUI's Wan takes umT5 embeddings (4096-d). The test bed has no text encoder, so each scene
gets a deterministic random "prompt embedding" and the empty prompt (CFG's negative) is all zeros.
The scene names live here, not beside the video generator, because the ComfyUI nodes need them and
must not import the generator (it reads photographs from scikit-image, a dev-only dependency).
"""
from __future__ import annotations

import torch

# Each scene: two photographs (the clip cuts between them) and one kind of moving sprite; see videos.py.
CLASSES: tuple[str, ...] = ("astronaut", "cat", "cosmos", "lab")

TEXT_TOKENS = 8
TEXT_DIM = 4096


def class_context(cls: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The context ``[1, 8, 4096]`` for scene ``cls``; the same on every machine."""
    if not 0 <= int(cls) < len(CLASSES):
        raise ValueError(f"class_context: class {cls} is not one of 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    g = torch.Generator().manual_seed(4096 + int(cls))
    return torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=g).to(device=device, dtype=dtype)


def null_context(device=None, dtype=torch.float32) -> torch.Tensor:
    """The unconditional (negative) context."""
    return torch.zeros(1, TEXT_TOKENS, TEXT_DIM, device=device, dtype=dtype)
