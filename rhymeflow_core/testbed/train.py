"""Train the test-bed DiT with rectified flow on procedural videos (seeded, CPU, under an hour on 2 cores).

Run: ``python -m rhymeflow_core.testbed.train [--iters N] [--out DIR]``. Writes ``testbed_wan.safetensors``
(EMA weights, fp16, ComfyUI Wan 2.1 key names) and ``testbed_wan.json`` (the model card). Sigma is drawn
uniformly in ComfyUI's shifted time, so training covers noise levels in the density sampling visits.
Training seeds are >= 1_000_000; evaluation seeds below that are held out.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..flow import noise_latent, shift_sigma
from . import pseudo_vae
from .conditioning import class_context, null_context
from .model_io import CARD_NAME, CHECKPOINT_NAME, DEFAULT_DIR, TRAIN_SHIFT
from .videos import CLASSES, VideoSpec, render_video
from .wan_dit import WanConfig, WanModel

TRAIN_CONFIG = WanConfig(dim=128, ffn_dim=512, num_layers=4)
TRAIN_SEED_BASE = 1_000_000


def make_batch(step: int, batch: int, frames: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``[B, 16, T, h, w]`` and class ids of a deterministic training batch."""
    classes = torch.arange(batch) % len(CLASSES)
    vids = [render_video(VideoSpec(int(c), TRAIN_SEED_BASE + step * batch + i, frames, size))[0] for i, c in enumerate(classes)]
    return pseudo_vae.encode(torch.stack(vids)), classes


def flow_loss(model: WanModel, x0: torch.Tensor, classes: torch.Tensor, g: torch.Generator, shift: float, p_uncond: float = 0.1) -> torch.Tensor:
    """Rectified-flow MSE on the velocity ``noise - x0`` with class dropout for CFG."""
    b = x0.shape[0]
    sigma = shift_sigma(torch.rand(b, generator=g), shift)
    noise = torch.randn(x0.shape, generator=g)
    xt = noise_latent(x0, noise, sigma.view(-1, 1, 1, 1, 1))
    drop = torch.rand(b, generator=g) < p_uncond
    ctx = torch.cat([null_context() if d else class_context(int(c)) for c, d in zip(classes, drop)])
    v = model(xt, sigma * 1000, ctx)
    return F.mse_loss(v, noise - x0)


@torch.no_grad()
def heldout_loss(model: WanModel, shift: float, n_batches: int = 4, frames: int = 16) -> float:
    """Denoising loss on held-out seeds at fixed noise draws (comparable across models)."""
    g = torch.Generator().manual_seed(7)
    total = 0.0
    for i in range(n_batches):
        classes = torch.arange(8) % len(CLASSES)
        vids = [render_video(VideoSpec(int(c), 100 + 8 * i + j, frames))[0] for j, c in enumerate(classes)]
        total += float(flow_loss(model, pseudo_vae.encode(torch.stack(vids)), classes, g, shift, p_uncond=0.0))
    return total / n_batches


def train(iters: int, out: Path, batch: int = 8, lr: float = 1e-3, seed: int = 0, shift: float = TRAIN_SHIFT) -> dict:
    torch.manual_seed(seed)
    model = WanModel(TRAIN_CONFIG)
    untrained_loss = heldout_loss(model, shift)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(seed + 1)
    warm = min(100, iters // 10)
    losses: list[float] = []
    t0 = time.time()
    for step in range(iters):
        frames = int(torch.randint(9, 22, (1,), generator=g))  # 9..21 latent frames
        x0, classes = make_batch(step, batch, frames)
        scale = min(1.0, (step + 1) / max(warm, 1)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / iters)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        loss = flow_loss(model, x0, classes, g, shift)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(0.998, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        losses.append(float(loss))
        if step % 50 == 0 or step == iters - 1:
            print(f"step {step:5d}  loss {sum(losses[-50:]) / len(losses[-50:]):.4f}  frames {frames}  {time.time() - t0:6.0f}s", flush=True)
    minutes = (time.time() - t0) / 60
    trained_loss = heldout_loss(ema, shift)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in ema.state_dict().items()}
    save_file(state, str(out / CHECKPOINT_NAME), metadata={"format": "pt", "recipe": "rhymeflow_core.testbed.train"})
    chunk = max(1, iters // 10)
    card = {
        "name": "RhymeFlow test bed: Wan 2.1 T2V architecture, trained on procedural videos",
        "config": TRAIN_CONFIG.to_dict(),
        "num_heads": TRAIN_CONFIG.num_heads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "classes": list(CLASSES),
        "data": {"generator": "rhymeflow_core.testbed.videos", "pixels": "3 x T x 32 x 32", "latent": "16 x T x 16 x 16",
                 "frames_per_clip": "uniform 9..21", "cuts_per_clip": "0-2 at seeded frames", "train_seeds": f">= {TRAIN_SEED_BASE}",
                 "vae": "rhymeflow_core.testbed.pseudo_vae (pixel-unshuffle + orthonormal 12->16)"},
        "training": {"iters": iters, "batch": batch, "lr": lr, "schedule": "linear warm-up, cosine to 0.1x", "optimizer": "AdamW wd 0.01",
                     "ema": 0.998, "seed": seed, "sigma_shift": shift, "cfg_dropout": 0.1, "minutes": round(minutes, 1),
                     "torch": torch.__version__, "threads": torch.get_num_threads()},
        "loss_curve": [round(sum(losses[i:i + chunk]) / len(losses[i:i + chunk]), 4) for i in range(0, iters, chunk)],
        "heldout_loss": {"untrained": round(untrained_loss, 4), "trained_ema": round(trained_loss, 4)},
        "sampling": {"shift": shift, "cfg": 3.0, "scheduler": "simple", "comfyui": f"ModelSamplingSD3(shift={shift}) after UNETLoader"},
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2))
    return card


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=1500, help="optimizer steps (default 1500, about 35 min on 2 cores)")
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder for the checkpoint and model card")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.iters < 1:
        ap.error(f"--iters {args.iters}: must be a positive number of steps")
    card = train(args.iters, args.out, seed=args.seed)
    print(json.dumps({k: card[k] for k in ("heldout_loss", "training")}, indent=2))


if __name__ == "__main__":
    main()
