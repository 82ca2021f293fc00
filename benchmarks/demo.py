"""Demo on the bundled test bed: dense vs RhymeFlow for a few classes, as a GIF, a PNG grid and a table.

Run from the repo root: ``python benchmarks/demo.py [--classes astronaut,cat] [--frames 16] [--steps 30]``.
No GPU and no ComfyUI needed. Writes ``out/demo/demo.gif`` (rows: scenes; left dense, right RhymeFlow)
and ``out/demo/grid.png`` (per scene: dense frames above RhymeFlow frames).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from rhymeflow_core.flow import simple_sigmas  # noqa: E402
from rhymeflow_core.keyframes import KeyframePlan  # noqa: E402
from rhymeflow_core.metrics import fidelity  # noqa: E402
from rhymeflow_core.patch import PatchConfig  # noqa: E402
from rhymeflow_core.presets import PRESETS, preset_schedule  # noqa: E402
from rhymeflow_core.sampler import sample_dense, sample_rhymeflow  # noqa: E402
from rhymeflow_core.testbed import pseudo_vae  # noqa: E402
from rhymeflow_core.testbed.model_io import DEFAULT_DIR, SAMPLE_SHIFT, load_model  # noqa: E402
from rhymeflow_core.testbed.runner import Job, run_sampler  # noqa: E402
from rhymeflow_core.testbed.conditioning import CLASSES  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="RhymeFlow test-bed demo: dense vs RhymeFlow, side by side.")
    ap.add_argument("--classes", default=",".join(CLASSES), help=f"comma-separated class names from: {', '.join(CLASSES)}")
    ap.add_argument("--frames", type=int, default=16, help="latent frames, 3..21 (default 16)")
    ap.add_argument("--steps", type=int, default=30, help="sampling steps, at least 10 (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="paper", choices=[p for p in PRESETS if p != "custom"], help="RhymeFlow schedule preset")
    ap.add_argument("--budget", type=int, default=4, help="keyframes per video (default 4)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    ap.add_argument("--weights", type=Path, default=DEFAULT_DIR, help="folder with testbed_wan.safetensors and its card")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    bad = [c for c in names if c not in CLASSES]
    if bad or not names:
        ap.error(f"--classes {args.classes!r}: unknown {bad or 'empty list'}; choose from {', '.join(CLASSES)}")
    if not 3 <= args.frames <= 21:
        ap.error(f"--frames {args.frames}: must be between 3 and 21 latent frames")
    if args.steps < 10:
        ap.error(f"--steps {args.steps}: must be at least 10 (fewer steps leave nothing to skip)")
    if not 1 <= args.budget < args.frames:
        ap.error(f"--budget {args.budget}: must be at least 1 and smaller than --frames ({args.frames})")
    args.class_ids = [CLASSES.index(c) for c in names]
    return args


def to_uint8(video: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """``[3, T, H, W]`` in [0, 1] -> ``[T, H*scale, W*scale, 3]`` uint8 (nearest upscale)."""
    v = video.permute(1, 2, 3, 0).mul(255).round().byte()
    return v.repeat_interleave(scale, 1).repeat_interleave(scale, 2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.weights)
    schedule = preset_schedule(args.preset, simple_sigmas(args.steps, SAMPLE_SHIFT))
    plan = KeyframePlan(budget=args.budget)
    rows, gif_rows, grid_rows = [], [], []
    for cls in args.class_ids:
        job = Job(cls=cls, seed=args.seed, frames=args.frames, steps=args.steps)
        t0 = time.perf_counter()
        dense, _, _ = run_sampler(sample_dense, model, job)
        t_dense = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours, _, holder = run_sampler(sample_rhymeflow, model, job, PatchConfig(), plan=plan, schedule=schedule)
        t_ours = time.perf_counter() - t0
        v_dense, v_ours = pseudo_vae.decode(dense)[0], pseudo_vae.decode(ours)[0]
        fid = fidelity(v_dense, v_ours)
        st = holder.last_result.to_dict()
        rows.append((CLASSES[cls], "dense", args.steps, args.steps, 0, t_dense, 1.0, "-", "-", "-"))
        rows.append((CLASSES[cls], f"rhymeflow/{args.preset}", args.steps, st["full_passes"], st["keyframe_passes"], t_ours,
                     t_dense / t_ours, f"{fid['psnr_mean']:.2f}", f"{fid['psnr_min']:.2f}", str(st["keyframes"])))
        gif_rows.append(torch.cat([to_uint8(v_dense), torch.full_like(to_uint8(v_dense)[:, :, :4], 255), to_uint8(v_ours)], dim=2))
        grid_rows.append(torch.cat([torch.cat(list(to_uint8(v_dense, 1)), dim=1), torch.cat(list(to_uint8(v_ours, 1)), dim=1)], dim=0))
    frames = torch.cat(gif_rows, dim=1)
    images = [Image.fromarray(f.numpy()) for f in frames]
    images[0].save(args.out / "demo.gif", save_all=True, append_images=images[1:], duration=150, loop=0)
    Image.fromarray(torch.cat(grid_rows, dim=0).numpy()).save(args.out / "grid.png")

    head = ("class", "method", "steps", "full", "key-only", "seconds", "speed-up", "PSNR mean", "PSNR worst", "keyframes")
    widths = [max(len(str(r[i])) if not isinstance(r[i], float) else 6 for r in rows + [head]) for i in range(len(head))]
    print(f"RhymeFlow demo on the test bed: {args.frames} latent frames, {args.steps} steps, seed {args.seed}, "
          f"preset {args.preset} (warmup {schedule.warmup}, strides {schedule.n_small}-{schedule.n_large}), "
          f"{torch.get_num_threads()} CPU threads")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        cells = [f"{c:.2f}" if isinstance(c, float) else str(c) for c in r]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print("PSNR (dB) is per frame in pixel space against the dense run of the same seed.")
    print(f"wrote {args.out / 'demo.gif'} and {args.out / 'grid.png'}")


if __name__ == "__main__":
    main()
