"""A lossy linear stand-in for Wan's VAE: 4x4 pixel patches -> 16 latent channels by a fixed PCA basis.

Why: the test bed needs latents with Wan 2.1's 16 channels and /4-or-more spatial compression, so a
64 x 64 video (where a face or a digit can be recognised) becomes a 16 x 16 latent that a CPU can
sample. A fixed linear map keeps decode cheap and deterministic, and every latent (noisy, projected,
final) can be looked at as pixels; fidelity is always measured on decoded pixels. The basis is the
top-16 principal components of 4x4x3 patches of the generator's videos, with one scale for all
channels so the latent has unit variance on average. One scale, not one per channel: the first
components (patch colour and gradients) then carry most of the variance, as they carry most of what
a viewer sees, so the model's loss and the noise schedule treat layout before fine texture, as pixel
diffusion does (a per-channel whitened latent, tried first, trained into 4x4-block noise). The basis is
fitted once (``vae_fit.py``) and shipped, so the ComfyUI pack never needs the generator. One pixel frame per latent frame (no temporal
compression). ``decode(encode(p))`` is the projection of ``p`` onto the basis (lossy: see the model card
for its reconstruction PSNR); ``encode(decode(z)) == z`` while no pixel is clamped.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

LATENT_CHANNELS = 16
PATCH = 4
BASIS_PATH = Path(__file__).resolve().parent / "weights" / "pseudo_vae_basis.safetensors"


@lru_cache(maxsize=4)
def _basis(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean [48], components [16, 48], scale [1])`` from the shipped basis file."""
    if not BASIS_PATH.exists():
        raise FileNotFoundError(f"pseudo-VAE basis {BASIS_PATH} is missing; fit it with `python -m rhymeflow_core.testbed.vae_fit`")
    t = load_file(str(BASIS_PATH))
    return t["mean"].to(device), t["components"].to(device), t["scale"].to(device)


def encode(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 3, T, H, W]`` in [0, 1] (H, W divisible by 4) -> latents ``[B, 16, T, H/4, W/4]``."""
    if pixels.ndim != 5 or pixels.shape[1] != 3 or pixels.shape[-1] % PATCH or pixels.shape[-2] % PATCH:
        raise ValueError(f"pseudo_vae.encode: pixels of shape {tuple(pixels.shape)}; expected [B, 3, T, H, W] with H and W divisible by {PATCH}")
    b, _, t, h, w = pixels.shape
    mean, comp, scale = _basis(str(pixels.device))
    x = F.pixel_unshuffle(pixels.float().permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w), PATCH)  # [BT, 48, h/4, w/4]
    z = torch.einsum("lc,nchw->nlhw", comp, x - mean.view(1, -1, 1, 1)) / scale
    return z.reshape(b, t, LATENT_CHANNELS, h // PATCH, w // PATCH).permute(0, 2, 1, 3, 4).to(pixels.dtype)


def decode(latents: torch.Tensor) -> torch.Tensor:
    """Latents ``[B, 16, T, h, w]`` -> pixels ``[B, 3, T, 4h, 4w]`` clamped to [0, 1]."""
    if latents.ndim != 5 or latents.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"pseudo_vae.decode: latents of shape {tuple(latents.shape)}; expected [B, 16, T, h, w]")
    b, _, t, h, w = latents.shape
    mean, comp, scale = _basis(str(latents.device))
    z = latents.float().permute(0, 2, 1, 3, 4).reshape(b * t, LATENT_CHANNELS, h, w) * scale
    x = torch.einsum("lc,nlhw->nchw", comp, z) + mean.view(1, -1, 1, 1)
    x = F.pixel_shuffle(x, PATCH).clamp(0, 1)
    return x.reshape(b, t, 3, PATCH * h, PATCH * w).permute(0, 2, 1, 3, 4)


def project(video: torch.Tensor) -> torch.Tensor:
    """``decode(encode(video))`` for one video ``[3, T, H, W]``: a generator video as the model's latent space
    represents it, the form every comparison of samples with data uses."""
    return decode(encode(video[None]))[0]
