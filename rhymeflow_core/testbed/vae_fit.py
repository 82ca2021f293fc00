"""Fit the pseudo-VAE's basis: principal components of 4x4x3 pixel patches of the generator's videos.

Run once: ``python -m rhymeflow_core.testbed.vae_fit`` writes ``weights/pseudo_vae_basis.safetensors``
and prints the reconstruction PSNR on held-out videos. Seeds 2_000_000+ (neither training nor evaluation).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..metrics import psnr_per_frame
from . import pseudo_vae
from .conditioning import CLASSES
from .videos import VideoSpec, render_video

FIT_SEED_BASE = 2_000_000


def fit_basis(videos_per_class: int = 64, frames: int = 8) -> dict[str, torch.Tensor]:
    """PCA of every 4x4 patch of ``videos_per_class`` clips per scene; one scale = RMS of the kept components."""
    patches = []
    for c in range(len(CLASSES)):
        for s in range(videos_per_class):
            v, _ = render_video(VideoSpec(c, FIT_SEED_BASE + s, frames))
            x = F.pixel_unshuffle(v.permute(1, 0, 2, 3), pseudo_vae.PATCH)  # [T, 48, h, w]
            patches.append(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double())
    p = torch.cat(patches)
    mean = p.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov((p - mean).T))
    order = evals.argsort(descending=True)[: pseudo_vae.LATENT_CHANNELS]
    comp = evecs[:, order].T
    comp = comp * torch.sign(comp.sum(1, keepdim=True) + 1e-12)  # a fixed sign per component
    scale = evals[order].mean().sqrt().reshape(1)
    return {"mean": mean.float().contiguous(), "components": comp.float().contiguous(), "scale": scale.float().contiguous()}


def reconstruction_psnr(videos: int = 16, frames: int = 16) -> float:
    """Mean per-frame PSNR of ``decode(encode(v))`` against ``v`` on held-out generator videos."""
    vals = [psnr_per_frame(v, pseudo_vae.project(v))
            for v in (render_video(VideoSpec(i % len(CLASSES), 300 + i, frames))[0] for i in range(videos))]
    return float(torch.cat(vals).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.parse_args(argv)
    pseudo_vae.BASIS_PATH.parent.mkdir(parents=True, exist_ok=True)
    save_file(fit_basis(), str(pseudo_vae.BASIS_PATH))
    pseudo_vae._basis.cache_clear()
    print(f"pseudo-VAE basis -> {pseudo_vae.BASIS_PATH}; reconstruction PSNR on held-out videos {reconstruction_psnr():.2f} dB")


if __name__ == "__main__":
    main()
