"""Rectified-flow conventions shared by the test bed and the sampler, identical to ComfyUI's ``CONST``.

``x_sigma = sigma * noise + (1 - sigma) * x0``; the model predicts ``v = noise - x0``; the DiT sees
``timestep = sigma * 1000``; ``denoised = x - sigma * v``. Sigmas follow ComfyUI's ``simple`` scheduler
over ``ModelSamplingDiscreteFlow`` with a shift, so test-bed runs use the same steps ComfyUI would.
"""
from __future__ import annotations

import torch


def shift_sigma(t: torch.Tensor | float, shift: float) -> torch.Tensor:
    """ComfyUI's ``time_snr_shift``: ``shift*t / (1 + (shift-1)*t)``."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return shift * t / (1 + (shift - 1) * t)


def simple_sigmas(steps: int, shift: float) -> torch.Tensor:
    """``steps + 1`` sigmas from ~1 to 0, as ComfyUI's ``simple`` scheduler picks them from 1000 discrete ones."""
    if steps < 1:
        raise ValueError(f"simple_sigmas: steps={steps}; need at least 1")
    table = shift_sigma(torch.arange(1, 1001, dtype=torch.float32) / 1000, shift)
    ss = len(table) / steps
    sig = [float(table[-(1 + int(x * ss))]) for x in range(steps)] + [0.0]
    return torch.tensor(sig, dtype=torch.float32)


def noise_latent(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    return sigma * noise + (1 - sigma) * x0


def to_velocity(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Flow velocity from ComfyUI's ``denoised`` (x0) output: ``(x - x0) / sigma``."""
    return (x - denoised) / sigma
