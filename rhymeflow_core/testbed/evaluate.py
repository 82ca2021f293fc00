"""Does the test bed sample like a real video model? One command prints the three targets and stores them in the model card.

Run: ``python -m rhymeflow_core.testbed.evaluate`` (10-20 minutes on 2 cores). Targets (issue "Test bed v2"):

- *recognisable*: share of 30-step dense samples that the scene classifier (``classifier.py``, fitted
  on generator videos only) recognises as their conditioned scene; at least 90%.
- *coherent*: mean adjacent-frame PSNR of those samples, over pairs that are not a cut, within 3 dB of
  the generator videos' (same scenes, frames and pseudo-VAE). A pair is a cut when its PSNR is below
  ``CUT_PSNR``: on held-out generator videos every true cut pair scored under 10.8 dB and every other
  pair over 13.5 dB, so one rule serves samples (whose cuts nobody placed) and data alike.
- *sensitive like a real model*: dense with half the steps against dense (Euler, the benchmarks' CFG
  and shift), pixel PSNR mean; published Wan 2.1 / HunyuanVideo figures at 40-50% of 50 steps are
  14.5-17.6 dB, so the target is 14-20 dB. Those Wan figures come from Wan's own pipeline, which samples
  with UniPC, as ComfyUI's Wan templates do (KSampler ``uni_pc``): ``--sampler uni_pc`` samples every
  video with ComfyUI's uni_pc (``rhymeflow_core.unipc``, on the schedule KSampler gives it) instead.
  The table also gives the per-video means' min/median/max: on this model a video either flips to another one (a cut elsewhere, another photograph: 16-19 dB)
  or stays a near copy (33-39 dB), and the mean hides which.

Beside them, a diagnostic (``coverage.py``): the share of sample frames that show each scene's rarer
photograph, against the data's. A model that drops a scene's modes samples near copies of the rest.

The previous checkpoint's values, if the card records them (``previous_checkpoint``), print beside.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable, NamedTuple

import torch

from ..metrics import psnr_per_frame
from ..flow import simple_sigmas
from ..sampler import sample_dense
from ..unipc import ksampler_sigmas, sample_unipc
from . import imagery, pseudo_vae
from .classifier import fit
from .conditioning import CLASSES
from .coverage import fit_photos
from .model_io import CARD_NAME, DEFAULT_DIR, load_card, load_model
from .runner import Job, run_sampler
from .videos import VideoSpec, render_video

CUT_PSNR = 12.0  # dB; see the module docstring
SENSITIVITY_RANGE = (14.0, 20.0)
HELDOUT_SEED = 700  # first seed of the held-out generator videos (training uses seeds >= 1,000,000)


class Sampling(NamedTuple):
    """How ``--sampler`` samples, how the report names it, and where the card keeps its latest evaluation."""

    sample: Callable
    schedule: Callable[[int, float], torch.Tensor]  # sigmas for n steps at a shift
    text: str
    card_key: str


SAMPLERS = {
    "euler": Sampling(sample_dense, simple_sigmas, "euler (sample_dense)", "evaluation"),
    "uni_pc": Sampling(sample_unipc, ksampler_sigmas, "uni_pc (rhymeflow_core.unipc, KSampler's schedule)", "evaluation_uni_pc"),
}


def adjacent_psnr(video: torch.Tensor) -> torch.Tensor:
    """PSNR of each frame against the next, ``[T-1]``, with the pairs that look like cuts dropped."""
    p = psnr_per_frame(video[:, 1:], video[:, :-1])
    return p[p >= CUT_PSNR]


def heldout_data_videos(jobs: list[Job], frames: int) -> list[torch.Tensor]:
    """One held-out generator video per job, of the job's scene (seeds from ``HELDOUT_SEED``, none used in training),
    through the pseudo-VAE as a sample would be: what the reference-free quality figures are compared with."""
    return [pseudo_vae.project(render_video(VideoSpec(j.cls, HELDOUT_SEED + k, frames))[0]) for k, j in enumerate(jobs)]


def evaluate(model, per_class: int = 4, frames: int = 16, cfg: float | None = None, shift: float | None = None,
             sampler: str = "euler") -> dict:
    """Sample every (scene, seed) at 15/25/30/50 steps of ``sampler`` (a ``SAMPLERS`` key) and score the three targets."""
    cfg = Job.cfg if cfg is None else cfg
    shift = Job.shift if shift is None else shift
    how = SAMPLERS[sampler]
    jobs = [Job(cls=c, seed=s, frames=frames, cfg=cfg, shift=shift) for s in range(per_class) for c in range(len(CLASSES))]
    videos: dict[int, list[torch.Tensor]] = {n: [] for n in (15, 25, 30, 50)}
    for job in jobs:
        for n in videos:
            latent = run_sampler(how.sample, model, Job(**{**job.__dict__, "steps": n}), sigmas=how.schedule(n, shift))[0]
            videos[n].append(pseudo_vae.decode(latent)[0])
    clf = fit()
    hits = [clf.recognised(v, j.cls) for v, j in zip(videos[30], jobs)]
    conf = [clf.confidence(v, j.cls) for v, j in zip(videos[30], jobs)]
    data = heldout_data_videos(jobs, frames)
    sample_adj, data_adj = torch.cat([adjacent_psnr(v) for v in videos[30]]), torch.cat([adjacent_psnr(v) for v in data])
    photos = fit_photos()
    classes = [j.cls for j in jobs]
    scene_of = torch.tensor(classes)

    def halving(n: int) -> dict:
        per_frame = [psnr_per_frame(a, b) for a, b in zip(videos[n], videos[n // 2])]
        p, per_video = torch.cat(per_frame), torch.stack([f.mean() for f in per_frame])
        scenes = {CLASSES[c]: round(float(per_video[scene_of == c].mean()), 2) for c in scene_of.unique().tolist()}
        return {"psnr_mean": round(float(p.mean()), 2), "psnr_worst_frame": round(float(p.min()), 2),
                "per_video": {"min": round(float(per_video.min()), 2), "median": round(float(per_video.median()), 2),
                              "max": round(float(per_video.max()), 2)},
                "per_scene": scenes}

    return {
        "settings": {"videos": len(jobs), "per_scene": per_class, "frames": frames, "cfg": cfg, "shift": shift, "sampler": how.text,
                     "seeds": f"0..{per_class - 1} per scene", "data_seeds": f"{HELDOUT_SEED}+ (held out)"},
        "recognisable": {"share": round(sum(hits) / len(hits), 3), "recognised": int(sum(hits)), "of": len(hits),
                         "mean_confidence": round(sum(conf) / len(conf), 3), "classifier_heldout_accuracy": round(clf.heldout_accuracy, 3)},
        "coherent": {"samples_adjacent_psnr": round(float(sample_adj.mean()), 2), "data_adjacent_psnr": round(float(data_adj.mean()), 2),
                     "difference": round(float(sample_adj.mean() - data_adj.mean()), 2),
                     "cut_pairs_dropped": {"samples": len(jobs) * (frames - 1) - sample_adj.numel(), "data": len(jobs) * (frames - 1) - data_adj.numel()}},
        "sensitive": {"dense15_vs_dense30": halving(30), "dense25_vs_dense50": halving(50)},
        "coverage": {"second_photograph_share": {"samples": photos.second_share(videos[30], classes),
                                                 "data": photos.second_share(data, classes)},
                     "photo_classifier_heldout_accuracy": round(photos.heldout_accuracy, 3)},
    }


def targets_met(ev: dict) -> dict[str, bool]:
    lo, hi = SENSITIVITY_RANGE
    s = ev["sensitive"]
    return {"recognisable": ev["recognisable"]["share"] >= 0.9, "coherent": abs(ev["coherent"]["difference"]) <= 3.0,
            "sensitive": all(lo <= s[k]["psnr_mean"] <= hi for k in s)}


def report(ev: dict, previous: dict | None) -> str:
    """The targets as a table, this checkpoint beside the previous one."""
    prev = previous or {}
    r, c, s = ev["recognisable"], ev["coherent"], ev["sensitive"]
    met = targets_met(ev)
    st = ev["settings"]
    rows = [("target", "this checkpoint", "previous checkpoint", "goal", "met"),
            ("recognisable: dense-30 recognised", f"{r['share']:.0%} ({r['recognised']}/{r['of']}), conf {r['mean_confidence']:.2f}",
             prev.get("recognisable", "-"), ">= 90%", "yes" if met["recognisable"] else "NO"),
            ("coherent: adjacent-frame PSNR", _coherent_text(c), prev.get("coherent", "-"), "within 3 dB", "yes" if met["coherent"] else "NO"),
            *(_sensitivity_row(f"sensitive: dense-{n // 2} vs dense-{n}", s[key], prev.get(key, "-"))
              for n, key in ((30, "dense15_vs_dense30"), (50, "dense25_vs_dense50"))),
            _coverage_row(ev["coverage"])]
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    head = (f"test-bed evaluation: {st['videos']} videos ({st['per_scene']} per scene), {st['frames']} frames, CFG {st['cfg']}, "
            f"shift {st['shift']}, {st['sampler']}; classifier held-out accuracy {r['classifier_heldout_accuracy']:.0%}")
    short, long = s["dense15_vs_dense30"]["per_scene"], s["dense25_vs_dense50"]["per_scene"]
    per_scene = "sensitive per scene (dense-15 vs 30 / dense-25 vs 50): " + ", ".join(f"{k} {short[k]:.1f} / {long[k]:.1f} dB" for k in short)
    return "\n".join([head] + ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows] + [per_scene])


def _coherent_text(c: dict) -> str:
    return f"{c['samples_adjacent_psnr']:.2f} dB vs data {c['data_adjacent_psnr']:.2f} ({c['difference']:+.2f})"


def _sensitivity_row(label: str, row: dict, previous: str) -> tuple[str, str, str, str, str]:
    """Mean over frames, then the spread of the per-video means: a flip to another video and a near-copy average out."""
    spread = row["per_video"]
    videos = f"per video {spread['min']:.1f}-{spread['max']:.1f}, median {spread['median']:.1f}; "
    return (label, f"{row['psnr_mean']:.2f} dB ({videos}worst frame {row['psnr_worst_frame']:.2f})", previous, "14-20 dB",
            "yes" if lo_hi(row) else "NO")


def rarer_share(second_share: dict[str, float]) -> float:
    """Mean over scenes of the rarer photograph's share of frames (0.5: both equally; 0: one photograph only)."""
    return sum(min(p, 1 - p) for p in second_share.values()) / len(second_share)


def _coverage_row(cov: dict) -> tuple[str, str, str, str, str]:
    """Diagnostic, not a target: how much of each scene's rarer photograph the samples show, beside the data."""
    s, d = cov["second_photograph_share"]["samples"], cov["second_photograph_share"]["data"]
    scenes = ", ".join(f"{k} {min(p, 1 - p):.0%}" for k, p in s.items())
    return ("diagnostic: frames on rarer photograph", f"{rarer_share(s):.0%} ({scenes}) vs data {rarer_share(d):.0%}", "-",
            "as data", "-")


def summary(ev: dict, label: str) -> dict:
    """The three targets' headline figures of an evaluation, as ``earlier_evaluations`` keeps them."""
    s = ev["sensitive"]
    return {"checkpoint": label, "recognised": ev["recognisable"]["share"], "coherent_difference_db": ev["coherent"]["difference"],
            "dense15_vs_dense30": s["dense15_vs_dense30"]["psnr_mean"], "dense25_vs_dense50": s["dense25_vs_dense50"]["psnr_mean"],
            **({"rarer_photograph_share": round(rarer_share(ev["coverage"]["second_photograph_share"]["samples"]), 3)} if "coverage" in ev else {})}


def as_previous(card: dict, what: str) -> dict:
    """A card's evaluation in the form ``previous_checkpoint`` keeps, so the next checkpoint's report prints it beside."""
    ev = card["evaluation"]
    r, c, s = ev["recognisable"], ev["coherent"], ev["sensitive"]
    return {"recognisable": f"{r['share']:.0%} ({r['recognised']}/{r['of']})",
            "coherent": _coherent_text(c),
            **{k: f"{s[k]['psnr_mean']:.2f} dB" for k in ("dense15_vs_dense30", "dense25_vs_dense50")},
            "what": what, "how": f"evaluate.py at CFG {ev['settings']['cfg']}, shift {ev['settings']['shift']}, {ev['settings']['videos']} videos"}


def lo_hi(row: dict) -> bool:
    return SENSITIVITY_RANGE[0] <= row["psnr_mean"] <= SENSITIVITY_RANGE[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-scene", type=int, default=4, help="seeds per scene (default 4: 16 videos)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--cfg", type=float, default=None, help=f"CFG scale (default: the benchmarks' {Job.cfg})")
    ap.add_argument("--shift", type=float, default=None, help=f"sigma shift (default: the benchmarks' {Job.shift}; ComfyUI's Wan templates use 8)")
    ap.add_argument("--sampler", choices=list(SAMPLERS), default="euler",
                    help="euler (default, the issue's) or uni_pc (ComfyUI's, as the Wan templates' KSampler runs it)")
    ap.add_argument("--folder", default=str(DEFAULT_DIR), help="folder with the checkpoint and model card")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the model card as it is")
    args = ap.parse_args(argv)
    if args.per_scene < 1 or args.frames < 3:
        ap.error(f"--per-scene {args.per_scene} / --frames {args.frames}: need at least 1 seed per scene and 3 frames")
    from pathlib import Path

    folder = Path(args.folder)
    card = load_card(folder)
    trained_on = card.get("data", {}).get("scenes")
    if trained_on is not None and trained_on != imagery.scenes():
        ap.error(f"--folder {folder}: its model card says the weights were trained on scenes {trained_on}, but "
                 f"rhymeflow_core.testbed.imagery now makes {imagery.scenes()}; evaluate them on the data they learned")
    t0 = time.time()
    ev = evaluate(load_model(folder), args.per_scene, args.frames, args.cfg, args.shift, args.sampler)
    ev["seconds"] = round(time.time() - t0)
    print(report(ev, card.get("previous_checkpoint") if args.sampler == "euler" else None))  # it was measured with euler
    if not args.no_write:
        key = SAMPLERS[args.sampler].card_key
        old = card.get(key)
        if old and old["settings"] != ev["settings"]:  # same checkpoint, other settings: keep it beside the new one
            card.setdefault("earlier_evaluations", []).append(summary(old, f"this checkpoint at CFG {old['settings']['cfg']}, "
                                                                            f"shift {old['settings']['shift']}, {old['settings']['sampler']}"))
        card[key] = {**ev, "targets_met": targets_met(ev)}
        (folder / CARD_NAME).write_text(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
