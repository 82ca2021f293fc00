"""Per-frame fidelity against the dense run of the same seed: PSNR and SSIM in pixel space.

Why per frame: RhymeFlow treats frames differently (keyframes vs projected), so the mean hides the
frames it hurts; the worst frame is reported beside the mean everywhere.
"""
from __future__ import annotations

import math

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


def images_to_video(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[N, H, W, 3]`` (frames as batch) -> ``[3, N, H, W]`` for ``rhymeflow_core.metrics``."""
    return images[..., :3].permute(3, 0, 1, 2)


def psnr_plot(psnr: list[float], ssim: list[float], width: int = 640, height: int = 280) -> torch.Tensor:
    """Per-frame PSNR bars (SSIM in the labels) drawn with Pillow -> IMAGE ``[1, H, W, 3]``."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 44, 12, 28, 40
    n = max(len(psnr), 1)
    top_db = max(50.0, math.ceil(max(psnr, default=0.0) / 10) * 10)
    plot_h = height - top - bottom
    for db in range(0, int(top_db) + 1, 10):
        y = top + plot_h * (1 - db / top_db)
        draw.line([(left, y), (width - right, y)], fill=(60, 60, 68))
        draw.text((6, y - 6), f"{db}", fill=(170, 170, 170))
    slot = (width - left - right) / n
    for i, p in enumerate(psnr):
        x0 = left + i * slot + slot * 0.15
        x1 = left + (i + 1) * slot - slot * 0.15
        y0 = top + plot_h * (1 - min(p, top_db) / top_db)
        s = ssim[i] if i < len(ssim) else 1.0
        colour = (int(255 * (1 - s) ** 0.5), int(80 + 150 * s), 110)
        draw.rectangle([x0, y0, x1, top + plot_h], fill=colour)
        draw.text((x0, top + plot_h + 4), str(i), fill=(200, 200, 200))
    mean_p = sum(psnr) / n
    y = top + plot_h * (1 - min(mean_p, top_db) / top_db)
    draw.line([(left, y), (width - right, y)], fill=(255, 210, 60), width=2)
    mean_s = sum(ssim) / max(len(ssim), 1)
    draw.text((left, 8), f"PSNR per frame (dB), mean {mean_p:.2f}, min {min(psnr, default=0):.2f}; "
                         f"SSIM mean {mean_s:.4f}, min {min(ssim, default=0):.4f}", fill=(235, 235, 235))
    draw.text((left, height - 16), "frame", fill=(170, 170, 170))
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    return arr.unsqueeze(0)
