"""The drop-in benchmark: RhymeFlow Accelerate in a plain KSampler graph, per sampler and per composition.

Compositions (``rhymeflow_core.testbed.compositions``, the patches the composition tests build): the two-expert
KSamplerAdvanced shape, a random LoRA, core TorchCompileModel's wrapper (eager backend), another pack's attention
override (pass-through) and AsymRnR, each before the node; EasyCache and context windows are refused (tests).

Run from the repo root with ComfyUI's interpreter::

    OMP_NUM_THREADS=2 /opt/comfyui/.venv/bin/python benchmarks/dropin_benchmark.py [--steps 30] [--frames 16]

Graph (the Wan 2.1 T2V template's shape on the test bed): UNETLoader (test-bed checkpoint) -> ModelSamplingSD3 at
the test bed's SAMPLE_SHIFT -> [patch] -> [RhymeFlow Accelerate, preset paper, semantic keyframes] -> KSampler (``common_ksampler``,
scheduler simple, the test bed's CFG) -> RhymeFlow Test-bed Decode. Each row is compared with the dense run of the *same*
graph without the Accelerate node (same sampler, same patch), so a row's PSNR is what the node costs there.

Columns: wall-clock speed-up (median over ``--videos`` back-to-back dense/accelerated pairs), pixel PSNR mean /
worst frame over those videos (classes cycled, seeds 0..), DiT calls per pass kind, FLOP-ideal speed-up of the realised
step map at the model's real dims. Writes ``out/dropin_benchmark/dropin_benchmark.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = ("euler", "uni_pc", "dpmpp_2m", "res_multistep", "deis", "heun")


def _setup():
    spec = importlib.util.spec_from_file_location("comfyui_benchmark", ROOT / "benchmarks" / "comfyui_benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    pack = bench.set_up_comfyui()
    dropin = importlib.import_module(f"{bench.PACK}.nodes.dropin_node").RhymeFlowAccelerate
    return bench, pack, dropin


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--budget", type=int, default=4)
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "dropin_benchmark")
    a = ap.parse_args(argv)
    bench, pack, dropin = _setup()
    from rhymeflow_core.testbed import compositions
    import comfy.sd
    import nodes as comfy_nodes
    import torch
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    base = ModelSamplingSD3().patch(comfy.sd.load_diffusion_model(str(bench.DEFAULT_CHECKPOINT)), bench.SHIFT)[0]
    conds = {c: pack.tb.RhymeFlowTestbedConditioning.execute(c).args for c in pack.classes}

    def accelerate(model):
        return dropin.execute(model, preset="paper", target_speedup=1.6, strategy="semantic", budget=a.budget, context_mode="kv", warmup=5,
                              n_small=2, n_large=3, placement="device", cache_dtype="auto").args[0]

    def asym(model):
        return pack.asym.RhymeFlowAsymRnR.execute(model, "testbed", 0.3, 0.3, 1.0, "", 0.2, 0, 0).args[0]

    def decode(samples):
        return pack.tb.RhymeFlowTestbedDecode.execute({"samples": samples}).args[0].permute(3, 0, 1, 2)

    @torch.inference_mode()  # as ComfyUI executes nodes (uni_pc would otherwise keep an autograd graph: GBs)
    def one_sampler(models, sampler, video):
        cls = pack.classes[video % len(pack.classes)]
        latent = {"samples": torch.zeros(1, 16, a.frames, 16, 16)}
        out = comfy_nodes.common_ksampler(models[0], video, a.steps, bench.CFG, sampler, "simple", *conds[cls], latent)[0]
        return decode(out["samples"])

    @torch.inference_mode()
    def two_experts(models, sampler, video):
        """Wan 2.2 A14B's template shape: KSamplerAdvanced high-noise half with leftover noise, then the low-noise
        half without added noise; the test bed stands in for both experts (one node per expert, as in the template)."""
        cls, switch = pack.classes[video % len(pack.classes)], a.steps // 2
        latent = {"samples": torch.zeros(1, 16, a.frames, 16, 16)}
        mid = comfy_nodes.common_ksampler(models[0], video, a.steps, bench.CFG, sampler, "simple", *conds[cls], latent,
                                          start_step=0, last_step=switch, force_full_denoise=False)[0]
        out = comfy_nodes.common_ksampler(models[1], video, a.steps, bench.CFG, sampler, "simple", *conds[cls], mid,
                                          disable_noise=True, start_step=switch, last_step=10000, force_full_denoise=True)[0]
        return decode(out["samples"])

    # (row, sampler, the graph's MODELs without our node, how a video is sampled); compositions put the other
    # pack's patch before Accelerate, the order the README gives (tests/comfyui/test_dropin_compositions.py: both work)
    rows = [(f"KSampler {s}", s, (base,), one_sampler) for s in a.samplers]
    rows += [("two experts, KSamplerAdvanced uni_pc", "uni_pc", (base, base), two_experts),
             ("uni_pc + LoRA (random rank 4)", "uni_pc", (compositions.random_lora(base, 1.0),), one_sampler),
             ("uni_pc + TorchCompileModel (eager)", "uni_pc", (compositions.torch_compiled(base),), one_sampler),
             ("uni_pc + attention override", "uni_pc", (compositions.with_attention_override(base),), one_sampler)]
    skip = bench.asymrnr_skip_note(pack, a.frames)
    if skip:
        print(skip)
    else:
        rows.append(("uni_pc + AsymRnR (testbed 0.3)", "uni_pc", (asym(base),), one_sampler))
    results = []
    for name, sampler, models, run in rows:
        fast = tuple(accelerate(m) for m in models)
        psnr, times = [], {"dense": [], "dropin": []}
        for video in range(a.videos):  # each video times one dense and one accelerated run, back to back
            out = {}
            for key, m in (("dense", models), ("dropin", fast)):
                t0 = time.perf_counter()
                out[key] = run(m, sampler, video)
                times[key].append(time.perf_counter() - t0)
            psnr.append(pack.metrics.psnr_per_frame(out["dense"], out["dropin"]))
        runs = [pack.glue.holder_of(f).last_result for f in fast]
        steps = [len(r.roles[0]) for r in runs]  # two experts: each node's run prices its own slice of the steps
        p = torch.cat(psnr)
        row = {"row": name, "speedup": round(statistics.median(times["dense"]) / statistics.median(times["dropin"]), 3),
               "psnr_mean": round(float(p.mean()), 2), "psnr_worst": round(float(p.min()), 2),
               "calls": {k: sum(r.calls[k] for r in runs) for k in runs[0].calls},
               "full_passes": sum(r.full_passes for r in runs), "keyframe_passes": sum(r.keyframe_passes for r in runs),
               "flop_ideal": round(sum(steps) / sum(n / r.flop_speedup for n, r in zip(steps, runs)), 3),
               "keyframes": runs[0].keyframes}
        results.append(row)
        print(f"{name:38s} speed-up {row['speedup']:5.2f}x  PSNR {row['psnr_mean']:6.2f} (worst {row['psnr_worst']:6.2f}) dB  "
              f"calls {row['calls']}  FLOP-ideal {row['flop_ideal']:.2f}x", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "dropin_benchmark.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                             "rows": results}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
