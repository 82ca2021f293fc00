"""Side-by-side benchmark on the test bed: dense vs RhymeFlow presets vs the honest fewer-steps baseline.

Run from the repo root: ``python benchmarks/benchmark.py [--steps 30 50] [--quick]``. Prints one table
per step count and writes ``out/benchmark/benchmark.json``.

How each column is obtained, all in this one run:
- wall-clock ratio: dense time / method time, medians of ``--reps`` interleaved repetitions (every
  method once per round, rounds repeated) on the same video, so machine noise hits all methods alike;
- FLOP ratio: dense FLOPs / method FLOPs from torch's FlopCounterMode over a whole sampling run
  (attention included, see ``rhymeflow_core.flops``);
- FLOP-ideal: the step map's prediction (``flops.flop_ideal_speedup``) for this model's sizes;
- PSNR / SSIM: per frame in pixel space against dense of the same seed; mean and worst frame over
  ``--videos`` videos (classes cycled, seeds 0..);
- peak MB: peak of live tensor bytes during one run (``rhymeflow_core.memory``: CUDA allocator or CPU profiler);
- "dense-k @ equal time": dense with k steps, k chosen so its time matches the RhymeFlow row named,
  the honest baseline any accelerator must beat; plain "dense-k" rows sweep k from N/4 to 2N/3 for the curve;
- quality without a reference (the test bed's VBench analogue, ``testbed.classifier`` and
  ``testbed.evaluate``): "recog" is the share of videos the scene classifier, fitted on generator
  videos only, recognises as the conditioned scene, "conf" its mean probability for that scene, and
  "adj dB" the mean adjacent-frame PSNR over non-cut pairs (temporal coherence; the generator's own
  videos score the figure printed in the header).
Writes ``out/benchmark/benchmark.json``, one CSV per step count and ``pareto_<steps>.png``
(PSNR vs FLOP and vs wall-clock speed-up, one curve per method family).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rhymeflow_core.asymrnr import AsymRnRState, ReductionSchedule, install as install_asymrnr  # noqa: E402
from rhymeflow_core.asymrnr.sources import schedule_skip_note  # noqa: E402
from rhymeflow_core.flops import count_flops  # noqa: E402
from rhymeflow_core.flow import simple_sigmas  # noqa: E402
from rhymeflow_core.memory import peak_memory  # noqa: E402
from rhymeflow_core.keyframes import KeyframePlan  # noqa: E402
from rhymeflow_core.metrics import psnr_per_frame, ssim_per_frame  # noqa: E402
from rhymeflow_core.patch import PatchConfig  # noqa: E402
from rhymeflow_core.presets import preset_schedule, target_schedule  # noqa: E402
from rhymeflow_core.sampler import sample_dense, sample_rhymeflow  # noqa: E402
from rhymeflow_core.flops import FAMILY_DIMS, WAN_DIMS, ModelDims, attention_share, flop_ideal_speedup  # noqa: E402
from rhymeflow_core.schedule import build_step_map  # noqa: E402
from rhymeflow_core.testbed import pseudo_vae  # noqa: E402
from rhymeflow_core.testbed.conditioning import TEXT_TOKENS  # noqa: E402
from rhymeflow_core.testbed.model_io import DEFAULT_DIR, SAMPLE_SHIFT, load_model  # noqa: E402
from rhymeflow_core.testbed.runner import LATENT_SIZE, Job, run_sampler  # noqa: E402
from rhymeflow_core.testbed.conditioning import CLASSES  # noqa: E402
from rhymeflow_core.testbed.classifier import SceneClassifier, fit as fit_classifier  # noqa: E402
from rhymeflow_core.testbed.evaluate import adjacent_psnr, heldout_data_videos  # noqa: E402

from pareto_plot import write_csv, write_plot  # noqa: E402


@dataclass
class Method:
    """One row: how to sample (``run(model, job) -> (latent, holder)``) and how to describe it."""

    name: str
    run: Callable
    steps: int
    ideal: Callable | None = None  # (keyframes, attention FLOPs saved per video) -> FLOP-ideal speed-up
    result: dict = field(default_factory=dict)
    asym: AsymRnRState | None = None  # the AsymRnR state of the last run, if the method uses it


def dense(steps: int, name: str | None = None) -> Method:
    def run(model, job):
        latent, _, _ = run_sampler(sample_dense, model, Job(**{**job.__dict__, "steps": steps}))
        return latent, None
    return Method(name or f"dense-{steps}", run, steps, ideal=None)


def rhymeflow(steps: int, preset: str, budget: int, context: str = "kv", projection: str = "quadratic",
              solver: str = "euler", dims: ModelDims | None = None, asymrnr: ReductionSchedule | None = None,
              target: float | None = None, adaptive: bool = False) -> Method:
    """A RhymeFlow row: a named preset, or (``target``) the target knob's schedule for this model's dims.

    Defaults are the Async Sampler node's (quadratic projection, Euler keyframes); the label names what differs."""
    sigmas = simple_sigmas(steps, SAMPLE_SHIFT)
    if target is not None:
        schedule = target_schedule(target, sigmas.tolist(), "wan", dims, budget, context == "kv")
        preset = f"target {target:g}x"
    else:
        schedule = preset_schedule(preset, sigmas)
    plan = KeyframePlan(budget=budget)
    config = PatchConfig(context_mode=context)
    passes = f" P{schedule.passes}" if schedule.passes else ""
    label = f"rhymeflow {preset} (Tw{schedule.warmup} {schedule.n_small}-{schedule.n_large}{passes} M{budget}) {context}"
    label += f" {projection}" if projection != "quadratic" else ""
    label += f" {solver}" if solver != "euler" else ""
    label += " adaptive" if adaptive else ""
    label += " + asymrnr" if asymrnr is not None else ""
    method = Method(label, None, steps)

    def run(model, job):
        to = _asym_options(method, asymrnr)
        latent, _, holder = run_sampler(sample_rhymeflow, model, job, config, transformer_options=to, plan=plan,
                                        schedule=schedule, projection=projection, keyframe_solver=solver, adaptive=adaptive)
        return latent, holder

    def ideal(keyframes, saved, dense_flops):
        smap = build_step_map(dims.frames, steps, schedule, keyframes)
        cost = dense_flops / flop_ideal_speedup(smap, dims, kv_cached=context == "kv")
        return dense_flops / (cost - saved)

    method.run, method.ideal = run, ideal
    return method


def asymrnr_only(steps: int, sched: ReductionSchedule) -> Method:
    method = Method(f"asymrnr (calibrated, -{1 - sched.flop_fraction():.0%} attn FLOPs)", None, steps)

    def run(model, job):
        latent, _, _ = run_sampler(sample_dense, model, Job(**{**job.__dict__, "steps": steps}),
                                   transformer_options=_asym_options(method, sched))
        return latent, None

    method.run = run
    method.ideal = lambda keyframes, saved, dense_flops: dense_flops / (dense_flops - saved)
    return method


def _asym_options(method: Method, sched: ReductionSchedule | None) -> dict:
    """Fresh AsymRnR state per run (kept on the method for its stats), installed like the node does."""
    if sched is None:
        return {}
    method.asym = AsymRnRState(sched)
    return install_asymrnr({}, method.asym)


def timed(method: Method, model, job) -> float:
    t0 = time.perf_counter()
    method.run(model, job)
    return time.perf_counter() - t0


def no_reference_quality(videos: list[torch.Tensor], jobs: list[Job], clf: SceneClassifier) -> dict:
    """Recognised share, mean confidence for the conditioned scene, mean adjacent-frame PSNR (non-cut pairs)."""
    return {"recognised": sum(clf.recognised(v, j.cls) for v, j in zip(videos, jobs)) / len(jobs),
            "confidence": sum(clf.confidence(v, j.cls) for v, j in zip(videos, jobs)) / len(jobs),
            "adjacent_psnr": float(torch.cat([adjacent_psnr(v) for v in videos]).mean())}


def measure_quality(methods: list[Method], ref_videos: list[torch.Tensor], model, jobs: list[Job], reference: Method,
                    clf: SceneClassifier) -> None:
    """Fidelity against the dense videos, the no-reference score, FLOPs of one whole run, and the FLOP-ideal speed-up."""
    for m in methods:
        psnr, ssim, stats, videos = [], [], None, []
        for j, ref_v in zip(jobs, ref_videos):
            latent, holder = m.run(model, j)
            v = pseudo_vae.decode(latent)[0]
            videos.append(v)
            psnr.append(psnr_per_frame(ref_v, v))
            ssim.append(ssim_per_frame(ref_v, v))
            stats = stats or (holder.last_result.to_dict() if holder is not None and holder.last_result is not None else None)
        p, s = torch.cat(psnr), torch.cat(ssim)
        m.result.update(psnr_mean=float(p.mean()), psnr_worst=float(p.min()), ssim_mean=float(s.mean()), ssim_worst=float(s.min()),
                        **no_reference_quality(videos, jobs, clf))
        m.result["flops"] = count_flops(lambda: m.run(model, jobs[0]))
        m.result["peak_mb"] = peak_memory(lambda: m.run(model, jobs[0])) / 2**20
        saved = (m.asym.stats.flops_dense - m.asym.stats.flops) if m.asym is not None else 0
        keyframes = stats["keyframes"] if stats else None
        m.result["flop_ideal"] = (m.ideal(keyframes, saved, reference.result["flops"]) if m.ideal
                                  else reference.steps / m.steps)
        if m.asym is not None:
            m.result["attention_saved"] = saved / max(m.asym.stats.flops_dense, 1)
        if stats is not None:
            m.result.update(full_passes=stats["full_passes"], keyframe_passes=stats["keyframe_passes"],
                            cache_mb=stats["cache_bytes"] / 2**20, keyframes=stats["keyframes"])


def measure_time(methods: list[Method], model, job: Job, reps: int) -> None:
    """Median seconds per video over ``reps`` interleaved rounds; ratios against ``methods[0]``."""
    times = {m.name: [] for m in methods}
    timed(methods[0], model, job)  # untimed: the first run after FLOP counting and profiling pays one-off costs
    for r in range(reps):  # every method once per round, so drifts in machine load hit all alike; the order
        # rotates so no method is always first (in a fixed order the dense reference ran 10-20% slow per step)
        for m in methods[r % len(methods):] + methods[:r % len(methods)]:
            times[m.name].append(timed(m, model, job))
    for m in methods:
        m.result["seconds"] = statistics.median(times[m.name])
        m.result["wall_ratio"] = methods[0].result["seconds"] / m.result["seconds"]
        m.result["flop_ratio"] = methods[0].result["flops"] / m.result["flops"]
        m.result["measured_over_ideal"] = m.result["wall_ratio"] / m.result["flop_ideal"]


def print_table(title: str, methods: list[Method]) -> None:
    cols = [("method", lambda r, m: m.name), ("steps", lambda r, m: str(m.steps)),
            ("wall x", lambda r, m: f"{r['wall_ratio']:.2f}"), ("FLOP x", lambda r, m: f"{r['flop_ratio']:.2f}"),
            ("ideal x", lambda r, m: f"{r['flop_ideal']:.2f}"), ("wall/ideal", lambda r, m: f"{r['measured_over_ideal']:.2f}"),
            ("PSNR", lambda r, m: "ref" if m is methods[0] else f"{r['psnr_mean']:.2f}"),
            ("PSNR worst", lambda r, m: "ref" if m is methods[0] else f"{r['psnr_worst']:.2f}"),
            ("SSIM", lambda r, m: "ref" if m is methods[0] else f"{r['ssim_mean']:.3f}"),
            ("SSIM worst", lambda r, m: "ref" if m is methods[0] else f"{r['ssim_worst']:.3f}"),
            ("recog", lambda r, m: f"{r['recognised']:.0%}"), ("conf", lambda r, m: f"{r['confidence']:.2f}"),
            ("adj dB", lambda r, m: f"{r['adjacent_psnr']:.1f}"),
            ("full/key", lambda r, m: f"{r['full_passes']}/{r['keyframe_passes']}" if "full_passes" in r else f"{m.steps}/0"),
            ("cache MB", lambda r, m: f"{r['cache_mb']:.1f}" if "cache_mb" in r else "-"),
            ("peak MB", lambda r, m: f"{r['peak_mb']:.0f}"),
            ("s/video", lambda r, m: f"{r['seconds']:.2f}")]
    rows = [[f(m.result, m) for _, f in cols] for m in methods]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, (h, _) in enumerate(cols)]
    print(title)
    print("  ".join(h.ljust(w) for (h, _), w in zip(cols, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def equal_time_steps(dense_seconds: float, dense_steps: int, target_seconds: float) -> int:
    return max(1, round(dense_steps * target_seconds / dense_seconds))


def analytic_wan_table(budget: int) -> list[dict]:
    """FLOP-ideal speed-ups of the presets at real Wan 2.1 sizes (21 latent frames, uniform keyframes)."""
    rows = []
    for steps in (30, 50):
        for preset in ("paper", "balanced", "fast"):
            sched = preset_schedule(preset, simple_sigmas(steps, SAMPLE_SHIFT))
            smap = build_step_map(21, steps, sched, [round(i * 20 / (budget - 1)) for i in range(budget)])
            row = {"steps": steps, "preset": f"{preset} (Tw{sched.warmup} {sched.n_small}-{sched.n_large} M{budget})",
                   "full/key": f"{smap.full_passes()}/{smap.keyframe_passes()}"}
            for name, dims in WAN_DIMS.items():
                row[name] = f"{flop_ideal_speedup(smap, dims):.2f} / {flop_ideal_speedup(smap, dims, kv_cached=True):.2f}"
            rows.append(row)
    return rows


def analytic_family_table(budget: int, steps: int = 50) -> list[dict]:
    """FLOP-ideal speed-ups at every supported family's real size: simple scheduler at the family's default
    shift, presets resolved on those sigmas, ``budget`` uniform keyframes; ``kv`` context (hidden where implemented)."""
    rows = []
    for name, (dims, shift) in FAMILY_DIMS.items():
        row = {"model": name, "frames x tokens": f"{dims.frames} x {dims.tokens_per_frame}", "shift": f"{shift:.3g}",
               "attn share": f"{attention_share(dims):.0%}"}
        for preset in ("paper", "fast"):
            sched = preset_schedule(preset, simple_sigmas(steps, shift))
            keys = [round(i * (dims.frames - 1) / (budget - 1)) for i in range(budget)]
            smap = build_step_map(dims.frames, steps, sched, keys)
            row[f"{preset} {steps} steps"] = (f"Tw{sched.warmup} {smap.full_passes()}/{smap.keyframe_passes()}: "
                                              f"{flop_ideal_speedup(smap, dims, kv_cached=True):.2f}x")
        rows.append(row)
    return rows


def print_rows(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="RhymeFlow benchmark on the test bed (prints ratios measured side by side).")
    ap.add_argument("--steps", type=int, nargs="+", default=[30, 50], help="step counts to benchmark (each >= 10)")
    ap.add_argument("--frames", type=int, default=16, help="latent frames, 3..21")
    ap.add_argument("--videos", type=int, default=8, help="videos for fidelity (classes cycled, seeds 0..)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved timing repetitions (median reported)")
    ap.add_argument("--budget", type=int, default=4, help="RhymeFlow keyframes")
    ap.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0],
                    help="target-knob speed-ups to sweep (FLOP-ideal); adaptive rows at every second one, AsymRnR on the last")
    ap.add_argument("--quick", action="store_true", help="2 videos, 3 reps, 30 steps: a smoke run")
    ap.add_argument("--weights", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--asymrnr", type=Path, default=ROOT / "rhymeflow_core" / "asymrnr" / "schedules" / "testbed_wan.json",
                    help="AsymRnR schedule for the AsymRnR rows")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "benchmark")
    ap.add_argument("--analytic", action="store_true", help="print only the FLOP-ideal tables at real model sizes")
    args = ap.parse_args(argv)
    families = analytic_family_table(args.budget)
    print(f"FLOP-ideal speed-up at each family's real size (kv context, M{args.budget} uniform keyframes; "
          "Tw = warm-up steps, full/keyframe-only passes):")
    print_rows(families)
    if args.analytic:
        return
    if args.quick:
        args.videos, args.steps = 2, [30]
    if any(s < 10 for s in args.steps) or not 3 <= args.frames <= 21 or args.videos < 1 or args.reps < 1:
        ap.error("need --steps >= 10, --frames in 3..21, --videos >= 1, --reps >= 1")
    model = load_model(args.weights)
    dims = ModelDims("test bed", layers=len(model.blocks), dim=model.dim, ffn_dim=model.cfg.ffn_dim,
                     tokens_per_frame=(LATENT_SIZE // 2) ** 2, frames=args.frames, text_tokens=TEXT_TOKENS)
    clf = fit_classifier()
    print(f"test bed: {dims.layers} blocks, dim {dims.dim}, {model.num_heads} heads, {args.frames} latent frames x {dims.tokens_per_frame} tokens, "
          f"CFG {Job.cfg} (cond+uncond batched), shift {SAMPLE_SHIFT}; attention share of a dense pass: {attention_share(dims):.0%}; "
          f"{torch.get_num_threads()} CPU threads; fidelity over {args.videos} videos")
    report = {"dims": dims.__dict__, "threads": torch.get_num_threads(), "tables": {}, "analytic_wan": analytic_wan_table(args.budget),
              "analytic_families": families}
    print("\nFLOP-ideal speed-up at real Wan 2.1 sizes (hidden / kv context), attention share:",
          ", ".join(f"{n} {attention_share(d):.0%}" for n, d in WAN_DIMS.items()))
    print_rows(report["analytic_wan"])
    for steps in args.steps:
        jobs = [Job(cls=i % len(CLASSES), seed=i, frames=args.frames, steps=steps) for i in range(args.videos)]
        methods = [dense(steps),
                   rhymeflow(steps, "paper", args.budget, "kv", dims=dims),
                   rhymeflow(steps, "paper", args.budget, "kv", projection="linear", dims=dims),
                   rhymeflow(steps, "paper", args.budget, "kv", solver="ab2", dims=dims),
                   rhymeflow(steps, "fast", args.budget, "kv", dims=dims)]
        methods += [rhymeflow(steps, "", args.budget, "kv", dims=dims, target=t) for t in args.targets]
        methods += [rhymeflow(steps, "", args.budget, "kv", dims=dims, target=t, adaptive=True) for t in args.targets[1::2]]
        skip = schedule_skip_note(args.asymrnr, args.frames * dims.tokens_per_frame)
        if skip:
            print(skip)
        else:
            sched = ReductionSchedule.load(args.asymrnr)
            methods += [asymrnr_only(steps, sched),
                        rhymeflow(steps, "", args.budget, "kv", dims=dims, target=args.targets[-1], asymrnr=sched)]
        data = heldout_data_videos(jobs, args.frames)
        data_quality = no_reference_quality(data, jobs, clf)
        print(f"\ngenerator videos of the same scenes: adjacent-frame PSNR {data_quality['adjacent_psnr']:.1f} dB, "
              f"recognised {data_quality['recognised']:.0%}")
        ref_videos = [pseudo_vae.decode(methods[0].run(model, j)[0])[0] for j in jobs]
        measure_quality(methods, ref_videos, model, jobs, methods[0], clf)
        measure_time(methods, model, jobs[0], args.reps)  # first pass: find the equal-time step counts
        t_dense = methods[0].result["seconds"]
        baselines: list[Method] = []
        for m in methods[1:]:
            k = equal_time_steps(t_dense, steps, m.result["seconds"])
            if k < steps and all(b.steps != k for b in baselines):
                short = m.name.split(" (")[0] + " " + m.name.split(")")[-1].strip()
                baselines.append(dense(k, f"dense-{k} @ equal time to {short.strip()}"))
        sweep = sorted({max(1, round(steps * f)) for f in (0.25, 1 / 3, 0.4, 0.5, 2 / 3, 0.8)} - {b.steps for b in baselines})
        baselines += [dense(k) for k in sweep]
        measure_quality(baselines, ref_videos, model, jobs, methods[0], clf)
        methods += baselines
        measure_time(methods, model, jobs[0], args.reps)  # the reported timings: every row interleaved
        print()
        print_table(f"== {steps} steps ==", methods)
        report["tables"][str(steps)] = [{"method": m.name, "steps": m.steps, **m.result} for m in methods]
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(report["tables"][str(steps)], args.out / f"benchmark_{steps}.csv")
        title = (f"test bed v2, {steps} steps, {args.frames} latent frames, {args.videos} videos, CFG {Job.cfg}: "
                 "PSNR vs dense of the same seed")
        if not write_plot(report["tables"][str(steps)], title, args.out / f"pareto_{steps}.png"):
            print("(matplotlib not installed: no plot written)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / 'benchmark.json'}")


if __name__ == "__main__":
    main()
