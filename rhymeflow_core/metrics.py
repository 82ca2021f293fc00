"""Per-frame fidelity against the dense run of the same seed: PSNR and SSIM in pixel space.

Why per frame: RhymeFlow treats frames differently (keyframes vs projected), so the mean hides the
frames it hurts; the worst frame is reported beside the mean everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr_per_frame(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``a, b [3, T, H, W]`` in [0, data_range] -> ``[T]`` dB (capped at 100); a batch dim is folded into frames."""
    a, b = _frames_first(a), _frames_first(b)
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(1e-10))).clamp(max=100.0)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_per_frame(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Standard SSIM (Gaussian 11x11, sigma 1.5, K1=0.01, K2=0.03), channel-averaged -> ``[T]``."""
    a, b = _frames_first(a).float(), _frames_first(b).float()  # [N, 3, H, W]
    n, c, h, w = a.shape
    win = _gaussian(min(11, h, w) | 1).to(a.device).expand(c, 1, -1, -1)

    def blur(t):
        return F.conv2d(t, win, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    s_aa = blur(a * a) - mu_a**2
    s_bb = blur(b * b) - mu_b**2
    s_ab = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return ssim.flatten(1).mean(1)


def _frames_first(v: torch.Tensor) -> torch.Tensor:
    """``[3, T, H, W]`` -> ``[T, 3, H, W]``; a leading batch is folded into frames (B*T)."""
    if v.ndim == 5:
        return v.permute(0, 2, 1, 3, 4).reshape(-1, v.shape[1], *v.shape[3:])
    if v.ndim != 4 or v.shape[0] != 3:
        raise ValueError(f"metrics: video of shape {tuple(v.shape)}; expected [3, T, H, W] or [B, 3, T, H, W]")
    return v.permute(1, 0, 2, 3)


def fidelity(reference: torch.Tensor, test: torch.Tensor) -> dict:
    """Mean and worst-frame PSNR/SSIM of ``test`` against ``reference`` (both ``[3, T, H, W]`` pixels)."""
    p, s = psnr_per_frame(reference, test), ssim_per_frame(reference, test)
    return {"psnr_mean": float(p.mean()), "psnr_min": float(p.min()), "ssim_mean": float(s.mean()), "ssim_min": float(s.min()),
            "psnr_frames": [round(float(x), 2) for x in p], "ssim_frames": [round(float(x), 4) for x in s]}
