"""Train the test-bed DiT with rectified flow on photograph videos: seeded, resumable, CPU or CUDA, one recipe.

Run: ``python -m rhymeflow_core.testbed.train [--iters N] [--minutes M] [--device cpu|cuda] [--resume]``.
Every ``--save-every`` steps the whole training state (weights, EMA, optimizer, step, noise generator)
goes to ``--state`` so a stopped run resumes exactly where it was; at the end (or when ``--minutes``
runs out) the EMA weights are exported as ``testbed_wan.safetensors`` (fp16, ComfyUI Wan 2.1 key
names) with ``testbed_wan.json`` (the model card) into ``--out``. Each batch, its clip length
included, is a pure function of its step, so a resumed run sees the same data as an uninterrupted one
and ``--workers`` processes can render batches ahead of the optimizer (a GPU step is shorter than
rendering a batch on one core). Sigma is drawn uniformly in ComfyUI's shifted time, so training
covers noise levels in the density sampling visits. Training seeds are >= 1_000_000; evaluation
seeds below that are held out.

Precision: float32 master weights; matmuls in bfloat16 autocast where that is faster. On CUDA it
always is; on a CPU it depends on the chip (with AVX-512 BF16 / AMX it is, with AVX2 alone one step
measured 68 s in bf16 against 5 s in fp32), so ``--precision auto`` times one small step both ways.

For a lent GPU: ``--fit-minutes`` sizes the LR schedule to the time (re-planned every step from the
steps/s since ``FIT_FROM``) and ``--init-from`` warm-starts from a shipped checkpoint;
``tools/train_testbed_on_device.sh`` is the prepared one-command run.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..flow import noise_latent, shift_sigma
from . import imagery, pseudo_vae
from .conditioning import CLASSES, class_context, null_context
from .evaluate import as_previous
from .model_io import CARD_NAME, CHECKPOINT_NAME, DEFAULT_DIR, SAMPLE_CFG, SAMPLE_SHIFT, TRAIN_SHIFT
from .videos import FRAME_SIZE, VideoSpec, render_video
from .wan_dit import WanConfig, WanModel

# dim 512 is the smallest Wan with 4 heads (ComfyUI fixes head_dim at 128); 2 blocks keep the fp16
# checkpoint under 20 MB (the 4096 -> 512 text embedding alone is 2.1 M parameters).
TRAIN_CONFIG = WanConfig(dim=512, ffn_dim=640, num_layers=2)
TRAIN_SEED_BASE = 1_000_000
FRAMES_RANGE = (5, 21)  # latent frames per training clip, uniform
DEFAULT_STATE = Path("out/testbed_train/state.pt")


def make_batch(step: int, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``[B, 16, T, h, w]`` and scene ids of the deterministic training batch of ``step``."""
    classes = torch.arange(batch).add(step) % len(CLASSES)
    vids = [render_video(VideoSpec(int(c), TRAIN_SEED_BASE + step * batch + i, frames))[0] for i, c in enumerate(classes)]
    return pseudo_vae.encode(torch.stack(vids)), classes


def clip_frames(step: int, seed: int) -> int:
    """Latent frames of every clip in step ``step``'s batch: uniform in ``FRAMES_RANGE``, a pure function of (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return int(torch.randint(FRAMES_RANGE[0], FRAMES_RANGE[1] + 1, (1,), generator=g))


class StepBatches(torch.utils.data.IterableDataset):
    """Training batches from step ``start`` on, in step order; with DataLoader workers, worker k renders every k-th.

    DataLoader hands an iterable dataset's items out round-robin over its workers, so sharding by
    ``step % workers`` keeps the stream in step order whatever the worker count (tested).
    """

    def __init__(self, start: int, batch: int, seed: int):
        self.start, self.batch, self.seed = start, batch, seed

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in itertools.count(self.start + first, stride):
            yield (step, *make_batch(step, self.batch, clip_frames(step, self.seed)))


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # workers render; the main process keeps the cores it was given


def batch_stream(start: int, batch: int, seed: int, workers: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, latents, classes)`` from ``start`` on, rendered in ``workers`` processes (0: in this one)."""
    data = StepBatches(start, batch, seed)
    if workers == 0:
        return iter(data)
    return iter(torch.utils.data.DataLoader(data, batch_size=None, num_workers=workers, worker_init_fn=_one_thread, prefetch_factor=4))


def flow_loss(model: WanModel, x0: torch.Tensor, classes: torch.Tensor, g: torch.Generator, shift: float,
              p_uncond: float = 0.1, autocast: bool = False) -> torch.Tensor:
    """Rectified-flow MSE on the velocity ``noise - x0`` with scene dropout for CFG (noise drawn on the CPU generator)."""
    b, dev = x0.shape[0], x0.device
    sigma = shift_sigma(torch.rand(b, generator=g), shift).to(dev)
    noise = torch.randn(x0.shape, generator=g).to(dev)
    xt = noise_latent(x0, noise, sigma.view(-1, 1, 1, 1, 1))
    drop = torch.rand(b, generator=g) < p_uncond
    ctx = torch.cat([null_context() if d else class_context(int(c)) for c, d in zip(classes, drop)]).to(dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        v = model(xt, sigma * 1000, ctx)
    return F.mse_loss(v.float(), noise - x0)


@torch.no_grad()
def heldout_loss(model: WanModel, shift: float, n_batches: int = 4, frames: int = 16) -> float:
    """Denoising loss on held-out seeds at fixed noise draws (comparable across models)."""
    g = torch.Generator().manual_seed(7)
    dev = next(model.parameters()).device
    total = 0.0
    for i in range(n_batches):
        classes = torch.arange(8) % len(CLASSES)
        vids = [render_video(VideoSpec(int(c), 100 + 8 * i + j, frames))[0] for j, c in enumerate(classes)]
        total += float(flow_loss(model, pseudo_vae.encode(torch.stack(vids)).to(dev), classes, g, shift, p_uncond=0.0))
    return total / n_batches


def bf16_autocast_is_faster(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 autocast speeds up a training step here, and what was measured (one small step each way).

    CUDA: always (no probe). CPU: a chip without native bf16 emulates it far slower than fp32.
    """
    if device.type != "cpu":
        return True, f"{device.type}: bf16 autocast"
    model = WanModel(TRAIN_CONFIG)
    x0 = torch.randn(2, 16, 5, 16, 16)
    timings = {}
    for autocast in (False, True, False, True):  # interleaved; the best of two each
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        flow_loss(model, x0, torch.tensor([0, 1]), g, TRAIN_SHIFT, autocast=autocast).backward()
        timings[autocast] = min(timings.get(autocast, math.inf), time.perf_counter() - t)
    faster = timings[True] < timings[False]
    return faster, f"cpu probe: one step {timings[False]:.2f} s fp32, {timings[True]:.2f} s bf16 autocast -> {'bf16 autocast' if faster else 'fp32'}"


def _lr_scale(step: int, iters: int, warm: int) -> float:
    return min(1.0, (step + 1) / max(warm, 1)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, iters) / iters)))


EXTEND_PEAK = 0.5  # an extension restarts the cosine at half the recipe's LR (SGDR-style warm restart)


def _extended_lr_scale(step: int, start: int, end: int) -> float:
    """LR scale inside an extension ``[start, end)``: short warm-up, then cosine to 0.1x of ``EXTEND_PEAK``.

    A finished schedule has decayed to 0.1x; continuing at that rate learns too slowly to matter, and
    restarting at the full rate undoes what the EMA holds. Half the rate is the usual warm-restart compromise.
    """
    return EXTEND_PEAK * _lr_scale(step - start, end - start, min(50, (end - start) // 10))


def _lineage(init_from: Path | None) -> dict | None:
    """What a warm start starts from, read off the model card beside the checkpoint (if there is one).

    The exported card then says how the weights were trained before (steps, minutes, where) and, through
    ``previous_checkpoint``, the evaluation puts the starting checkpoint's figures beside the new ones.
    """
    if init_from is None:
        return None
    card_path = Path(init_from).with_name(CARD_NAME)
    if not card_path.exists():
        return {"training": {"checkpoint": str(init_from), "card": "none beside it"}, "previous": None}
    card = json.loads(card_path.read_text())
    t = card.get("training", {})
    what = f"{Path(init_from).name}: {t.get('iters_done', '?')} steps, {t.get('minutes', '?')} min"
    return {"training": {"checkpoint": str(init_from), "steps": t.get("iters_done"), "minutes": t.get("minutes"), "where": t.get("where", []),
                         "loss_curve": card.get("loss_curve"), "heldout_loss": card.get("heldout_loss")},
            "previous": as_previous(card, f"the warm start, {what}") if "evaluation" in card else None}


class Trainer:
    """All training state in one place, so it can be saved and resumed bit for bit."""

    def __init__(self, iters: int, batch: int, lr: float, seed: int, shift: float, device: torch.device,
                 autocast: bool = True, init_from: Path | None = None):
        self.iters, self.batch, self.lr, self.seed, self.shift, self.device = iters, batch, lr, seed, shift, device
        self.autocast = autocast
        torch.manual_seed(seed)
        self.model = WanModel(TRAIN_CONFIG)
        if init_from is not None:  # warm start: an exported checkpoint's (EMA) weights become both model and EMA
            self.model.load_state_dict({k: v.float() for k, v in load_file(str(init_from)).items()})
        self.model.to(device)
        self.lineage = _lineage(init_from)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
        self.g = torch.Generator().manual_seed(seed + 1)
        self.step, self.losses, self.seconds = 0, [], 0.0
        self.untrained_loss = heldout_loss(self.model, shift)
        self.where: list[str] = []  # one line per stretch of training: device, threads, steps, minutes
        self.extensions: list[tuple[int, int]] = []  # (from step, to step) of each warm-restarted extension

    @property
    def init_from(self) -> str | None:
        """The checkpoint a warm start began from (``None``: from scratch); its lineage records it."""
        return None if self.lineage is None else self.lineage["training"]["checkpoint"]

    @property
    def planned(self) -> int:
        """Steps the run is planned to reach: the recipe's, or the last extension's end."""
        return self.extensions[-1][1] if self.extensions else self.iters

    def extend_to(self, iters: int) -> None:
        """Plan more steps from the current one with a warm restart of the LR (what is left of the old schedule is dropped)."""
        if iters <= max(self.planned, self.step):
            raise ValueError(f"train --extend-to {iters}: must be more than the {max(self.planned, self.step)} steps already planned")
        self.extensions.append((self.step, iters))

    def _lr(self) -> float:
        if self.extensions and self.step >= self.extensions[0][0]:
            start, end = next((a, b) for a, b in reversed(self.extensions) if self.step >= a)
            return self.lr * _extended_lr_scale(self.step, start, end)
        return self.lr * _lr_scale(self.step, self.iters, min(200, self.iters // 10))

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(), "g": self.g.get_state(),
                "step": self.step, "losses": self.losses, "seconds": self.seconds, "untrained_loss": self.untrained_loss,
                "where": self.where, "extensions": self.extensions, "lineage": self.lineage, "recipe": {"iters": self.iters, "batch": self.batch, "lr": self.lr, "seed": self.seed, "shift": self.shift}}

    def load_state_dict(self, sd: dict) -> None:
        if sd["recipe"] != {"iters": self.iters, "batch": self.batch, "lr": self.lr, "seed": self.seed, "shift": self.shift}:
            raise ValueError(f"train --resume: the saved state was made with {sd['recipe']}; pass the same --iters/--batch/--lr/--seed")
        self.model.load_state_dict(sd["model"])
        self.ema.load_state_dict(sd["ema"])
        self.opt.load_state_dict(sd["opt"])
        self.g.set_state(sd["g"])
        self.step, self.losses, self.seconds = sd["step"], sd["losses"], sd["seconds"]
        self.untrained_loss, self.where = sd["untrained_loss"], sd["where"]
        self.extensions = [tuple(e) for e in sd.get("extensions", [])]
        self.lineage = sd.get("lineage")

    def train_step(self, x0: torch.Tensor, classes: torch.Tensor) -> float:
        """One optimizer step on this step's batch (``batch_stream`` gives it)."""
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        loss = flow_loss(self.model, x0.to(self.device, non_blocking=True), classes, self.g, self.shift, autocast=self.autocast)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        decay = min(0.999, (1 + self.step) / (10 + self.step))
        with torch.no_grad():  # one fused update, not a kernel per tensor (matters on a GPU)
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1 - decay)
        self.step += 1
        self.losses.append(float(loss.detach()))
        return self.losses[-1]

    def export(self, out: Path) -> dict:
        """EMA weights (fp16) and the model card into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in self.ema.state_dict().items()}
        save_file(state, str(out / CHECKPOINT_NAME), metadata={"format": "pt", "recipe": "rhymeflow_core.testbed.train"})
        chunk = max(1, -(-len(self.losses) // 10))  # ten chunks at most, none of a single step
        card = {
            "name": "RhymeFlow test bed v2: Wan 2.1 T2V architecture (4 heads), trained on photograph videos",
            "config": TRAIN_CONFIG.to_dict(),
            "num_heads": TRAIN_CONFIG.num_heads,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "classes": list(CLASSES),
            "data": {"generator": "rhymeflow_core.testbed.videos", "imagery": "rhymeflow_core.testbed.imagery (skimage.data photos, lfw_subset faces, sklearn digits)",
                     "pixels": f"3 x T x {FRAME_SIZE} x {FRAME_SIZE}", "latent": f"16 x T x {FRAME_SIZE // 4} x {FRAME_SIZE // 4}",
                     "frames_per_clip": f"uniform {FRAMES_RANGE[0]}..{FRAMES_RANGE[1]}", "cuts_per_clip": "0-2 at seeded frames",
                     "train_seeds": f">= {TRAIN_SEED_BASE}", "scenes": imagery.scenes(), "vae": "rhymeflow_core.testbed.pseudo_vae (4x4 patches, PCA 48 -> 16, per-channel unit variance)"},
            "training": {"iters_planned": self.planned, "iters_done": self.step,
                         "extensions": [f"steps {a}-{b}: warm restart at {EXTEND_PEAK}x LR, cosine to 0.1x" for a, b in self.extensions], "batch": self.batch, "lr": self.lr,
                         "schedule": "linear warm-up, cosine to 0.1x", "optimizer": "AdamW wd 0.01, grad clip 1.0", "precision": f"{'bf16 autocast' if self.autocast else 'fp32'}, fp32 weights (last stretch; each stretch's in 'where')",
                         "init_from": self.init_from, "before_warm_start": None if self.lineage is None else self.lineage["training"],
                         "ema": 0.999, "seed": self.seed, "sigma_shift": self.shift, "cfg_dropout": 0.1, "minutes": round(self.seconds / 60, 1),
                         "torch": torch.__version__, "where": self.where},
            "loss_curve": [round(sum(self.losses[i:i + chunk]) / len(self.losses[i:i + chunk]), 4) for i in range(0, len(self.losses), chunk)],
            "heldout_loss": {"untrained" if self.init_from is None else "at_warm_start": round(self.untrained_loss, 4),
                             "trained_ema": round(heldout_loss(self.ema, self.shift), 4)},
            "sampling": {"shift": SAMPLE_SHIFT, "cfg": SAMPLE_CFG, "scheduler": "simple", "comfyui": f"ModelSamplingSD3(shift={SAMPLE_SHIFT}) after UNETLoader"},
        }
        if self.lineage is not None and self.lineage["previous"] is not None:
            card["previous_checkpoint"] = self.lineage["previous"]
        (out / CARD_NAME).write_text(json.dumps(card, indent=2))
        return card


def _save(trainer: Trainer, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(trainer.state_dict(), tmp)
    tmp.replace(path)  # never a half-written state


# --fit-minutes re-plans the schedule's end after every step from the mean steps/s since this step of the stretch
# (the first steps warm up). Every step, not a few times: clip lengths vary 4x between steps and the first batches
# come from the workers' prefetch queue, so an early rate can be off by more than any fixed margin; re-planned to the
# last step, the schedule ends within a step of the time.
FIT_FROM = 5


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=6000, help="planned optimizer steps; the LR schedule spans them")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=0, help="stop (saving state and exporting) after this many minutes of this stretch; 0 = no limit")
    ap.add_argument("--fit-minutes", action="store_true",
                    help="with --minutes on a new run: re-plan --iters after every step from the measured steps/s so the LR schedule ends with the time")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="matmul precision; auto: bf16 autocast where it is faster (module docstring)")
    ap.add_argument("--workers", type=int, default=-1, help="processes rendering batches ahead; -1: none on CPU; on CUDA all cores but two, up to 12")
    ap.add_argument("--init-from", type=Path, default=None, help="a new run starts from this exported checkpoint's weights (warm start)")
    ap.add_argument("--state", type=Path, default=DEFAULT_STATE, help="resumable training state")
    ap.add_argument("--resume", action="store_true", help="continue from --state")
    ap.add_argument("--extend-to", type=int, default=0, help="with --resume: train on to this step, restarting the LR schedule from the current step")
    ap.add_argument("--note", action="append", default=[], help="a line for the model card's 'where' (e.g. a stretch stopped by hand)")
    ap.add_argument("--export-only", action="store_true", help="with --resume: export the saved state's EMA weights and card, no training")
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder for the exported checkpoint and model card")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.batch < 1:
        ap.error(f"--iters {args.iters} / --batch {args.batch}: must be positive")
    if args.fit_minutes and (not args.minutes or args.resume):
        ap.error("--fit-minutes needs --minutes and a new run (a resumed run keeps its planned steps)")
    if args.init_from is not None and args.resume:
        ap.error("--init-from starts a new run; --resume continues a saved one: pass one of them")
    device = torch.device(args.device)
    if args.precision == "auto":
        autocast, measured = bf16_autocast_is_faster(device)
    else:
        autocast, measured = args.precision == "bf16", f"--precision {args.precision}"
    print(measured, flush=True)
    workers = (0 if device.type == "cpu" else min(12, max(0, (os.cpu_count() or 1) - 2))) if args.workers < 0 else args.workers
    trainer = Trainer(args.iters, args.batch, args.lr, args.seed, TRAIN_SHIFT, device, autocast, args.init_from)
    if args.resume:
        trainer.load_state_dict(torch.load(args.state, map_location=device, weights_only=False))
        print(f"resumed at step {trainer.step} from {args.state}", flush=True)
    trainer.where += args.note
    if args.export_only:
        if not args.resume:
            ap.error("--export-only needs --resume (it exports a saved run)")
        card = trainer.export(args.out)
        print(json.dumps({k: card[k] for k in ("heldout_loss", "training")}, indent=2))
        return
    if args.extend_to:
        if not args.resume:
            ap.error("--extend-to needs --resume (it continues a saved run)")
        trainer.extend_to(args.extend_to)
    start, start_step = time.time(), trainer.step
    last, fit_t = start, start  # fit_t: when the stretch reached step FIT_FROM (the --fit-minutes rate is measured from there)
    for step, x0, classes in batch_stream(trainer.step, trainer.batch, trainer.seed, workers):
        if trainer.step >= trainer.planned:
            break
        assert step == trainer.step, (step, trainer.step)  # the stream is in step order (StepBatches)
        trainer.train_step(x0, classes)
        now = time.time()
        trainer.seconds += now - last
        last = now
        done = trainer.step - start_step
        if args.fit_minutes and done == FIT_FROM:
            fit_t = now
        if args.fit_minutes and done > FIT_FROM:
            per_step = (now - fit_t) / (done - FIT_FROM)
            trainer.iters = trainer.step + max(0, int((args.minutes * 60 - (now - start)) / per_step))
            if done == 5 * FIT_FROM or trainer.step % 50 == 0:
                print(f"--fit-minutes: {per_step * 1000:.0f} ms/step, schedule planned to {trainer.iters} steps", flush=True)
        if trainer.step % 50 == 0:
            recent = trainer.losses[-50:]
            print(f"step {trainer.step:5d}  loss {sum(recent) / len(recent):.4f}  {trainer.seconds / 60:6.1f} min", flush=True)
        out_of_time = args.minutes and now - start > args.minutes * 60
        if trainer.step % args.save_every == 0 or trainer.step == trainer.planned or out_of_time:
            _save(trainer, args.state)
        if out_of_time:
            break
    threads = torch.get_num_threads()
    machine = f"cpu ({threads} thread{'s' if threads > 1 else ''})" if device.type == "cpu" else f"{device.type} {torch.cuda.get_device_name(device)}"
    trainer.where.append(f"{machine}, {'bf16 autocast' if autocast else 'fp32'}, {workers} data workers: "
                         f"steps {start_step}-{trainer.step}, {(time.time() - start) / 60:.1f} min"
                         f"{f', warm-started from {args.init_from.name}' if args.init_from else ''} ({measured})")
    _save(trainer, args.state)
    card = trainer.export(args.out)
    print(json.dumps({k: card[k] for k in ("heldout_loss", "training")}, indent=2))


if __name__ == "__main__":
    main()
