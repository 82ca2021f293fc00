"""An invertible stand-in for Wan's VAE: 2x2 pixel-unshuffle, then a fixed orthonormal 12 -> 16 channel map.

Why: the test bed needs latents with Wan 2.1's 16 channels and a decode that is exact, so that every
latent (noisy, projected, final) can be looked at as pixels and fidelity is measured in pixel space
without a learned decoder in the way. One pixel frame per latent frame (no temporal compression).
``decode(encode(p)) == p`` up to float rounding; ``decode`` projects any latent onto the image subspace.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LATENT_CHANNELS = 16
SCALE = 1.6  # brings procedural-video latents to roughly unit variance


def _basis(device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed ``[16, 12]`` matrix with orthonormal columns (seeded QR: the same on every machine)."""
    g = torch.Generator().manual_seed(20261122)
    q, _ = torch.linalg.qr(torch.randn(LATENT_CHANNELS, 12, generator=g, dtype=torch.float64))
    return q.to(device=device, dtype=dtype)


def encode(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 3, T, H, W]`` in [0, 1] -> latents ``[B, 16, T, H/2, W/2]``."""
    if pixels.ndim != 5 or pixels.shape[1] != 3 or pixels.shape[-1] % 2 or pixels.shape[-2] % 2:
        raise ValueError(f"pseudo_vae.encode: pixels of shape {tuple(pixels.shape)}; expected [B, 3, T, H, W] with even H and W")
    b, _, t, h, w = pixels.shape
    x = (pixels * 2 - 1).permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
    x = F.pixel_unshuffle(x, 2)  # [BT, 12, H/2, W/2]
    z = torch.einsum("lc,nchw->nlhw", _basis(x.device, x.dtype), x) * SCALE
    return z.reshape(b, t, LATENT_CHANNELS, h // 2, w // 2).permute(0, 2, 1, 3, 4)


def decode(latents: torch.Tensor) -> torch.Tensor:
    """Latents ``[B, 16, T, h, w]`` -> pixels ``[B, 3, T, 2h, 2w]`` clamped to [0, 1]."""
    if latents.ndim != 5 or latents.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"pseudo_vae.decode: latents of shape {tuple(latents.shape)}; expected [B, 16, T, h, w]")
    b, _, t, h, w = latents.shape
    z = latents.permute(0, 2, 1, 3, 4).reshape(b * t, LATENT_CHANNELS, h, w).float() / SCALE
    x = F.pixel_shuffle(torch.einsum("lc,nlhw->nchw", _basis(z.device), z), 2)
    return ((x + 1) / 2).clamp(0, 1).reshape(b, t, 3, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)
