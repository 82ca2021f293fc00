"""How hard is the test bed? PSNR/SSIM of dense with N/2 steps against dense with N, written to the model card.

Why: if halving the steps costs nothing, no accelerator can be judged on this model. Every benchmark
compares against this "fewer steps" baseline, so the card records what it scores.
Run: ``python -m rhymeflow_core.testbed.evaluate`` (about a minute on 2 cores).
"""
from __future__ import annotations

import argparse
import json

import torch

from ..metrics import psnr_per_frame, ssim_per_frame
from ..sampler import sample_dense
from . import pseudo_vae
from .model_io import CARD_NAME, DEFAULT_DIR, load_model
from .runner import Job, run_sampler
from .videos import CLASSES


def step_halving(model, steps: int, videos: int, frames: int = 16) -> dict:
    psnr, ssim = [], []
    for i in range(videos):
        job = Job(cls=i % len(CLASSES), seed=i, frames=frames, steps=steps)
        full = pseudo_vae.decode(run_sampler(sample_dense, model, job)[0])[0]
        half = pseudo_vae.decode(run_sampler(sample_dense, model, Job(**{**job.__dict__, "steps": steps // 2}))[0])[0]
        psnr.append(psnr_per_frame(full, half))
        ssim.append(ssim_per_frame(full, half))
    p, s = torch.cat(psnr), torch.cat(ssim)
    return {"steps": steps, "half_steps": steps // 2, "videos": videos, "frames": frames,
            "psnr_mean": round(float(p.mean()), 2), "psnr_worst_frame": round(float(p.min()), 2),
            "ssim_mean": round(float(s.mean()), 4), "ssim_worst_frame": round(float(s.min()), 4)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=8, help="videos per step count (classes cycled, seeds 0..)")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error(f"--videos {args.videos}: need at least 1")
    model = load_model()
    rows = [step_halving(model, n, args.videos) for n in (30, 50)]
    card_path = DEFAULT_DIR / CARD_NAME
    card = json.loads(card_path.read_text())
    card["step_halving"] = {"method": "dense euler N/2 vs dense euler N, same seed, pixel space per frame", "rows": rows}
    card_path.write_text(json.dumps(card, indent=2))
    for r in rows:
        print(f"dense-{r['half_steps']} vs dense-{r['steps']}: PSNR {r['psnr_mean']} dB (worst frame {r['psnr_worst_frame']}), "
              f"SSIM {r['ssim_mean']} (worst {r['ssim_worst_frame']}) over {r['videos']} videos")


if __name__ == "__main__":
    main()
