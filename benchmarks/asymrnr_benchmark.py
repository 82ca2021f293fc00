"""AsymRnR's cost on CPU: matching measured apart from attention, and AsymRnR alone against dense per family.

Two tables, printed side by side with their spread (nothing here is a pytest test: timings are not asserted).

1. ``cost``: one video self-attention call (1 head of 128, one CPU thread) at 5k-30k tokens on a
   ``T x 32 x 32`` token grid, at the rates of the shipped calibrated test-bed schedule (the mean q and k/v
   rate of its reduced cells, read from the file). Timed separately: the matching's similarity
   (``nearest_dst``), its top-k (the stable sort), the plan plus gather/scatter (``plan_reduction``, the row
   selections of q, k, v and the restore), attention on the reduced shapes, and the whole override call with
   the matching cached. "AsymRnR/step" is the cached call plus the two matchings divided by the schedule's
   ``cache_steps`` (the matching is computed once per cache window). Dense and AsymRnR calls are interleaved,
   repeated ``--reps`` times; wall x is the median of per-repetition ratios (min-max after it); FLOP x is
   counted (``flops.count_flops``: attention, matmuls, the matching's matmul amortized the same way).
2. ``families`` (needs ComfyUI: run with its Python): a tiny random model of ComfyUI's own class per family
   (Wan, HunyuanVideo, LTX-Video, Mochi) at 5,120 video tokens; ``--steps`` DiT calls at decreasing sigma
   (one CFG branch), dense and with AsymRnR at a schedule calibrated on that model (``calibrate.measure`` +
   ``build_schedule``: target 30% attention FLOPs, dense first 20%, cache_steps 3), interleaved, ``--reps``
   times. FLOP x counts the whole DiT calls, matching included. Random weights: no fidelity column.

Run: ``/opt/comfyui/.venv/bin/python benchmarks/asymrnr_benchmark.py`` (both tables, a few minutes on one core);
``python3 benchmarks/asymrnr_benchmark.py --section cost`` needs no ComfyUI.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
COMFYUI = Path(os.environ.get("COMFYUI_PATH", "/opt/comfyui"))
sys.path.insert(0, str(COMFYUI))  # ComfyUI's nodes.py must win over the repo's nodes/ folder
sys.path.append(str(ROOT))

from rhymeflow_core.asymrnr import (  # noqa: E402
    KEY, AsymRnRState, ReductionSchedule, dst_partition, install, nearest_dst, override, plan_reduction,
)
from rhymeflow_core.asymrnr.calibrate import build_schedule, measure  # noqa: E402
from rhymeflow_core.asymrnr.reduce import gather_rows, kept_sources  # noqa: E402
from rhymeflow_core.asymrnr.sources import TESTBED_SCHEDULE  # noqa: E402
from rhymeflow_core.flops import count_flops  # noqa: E402
from rhymeflow_core.testbed.wan_dit import sdpa_attention  # noqa: E402


def _clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def calibrated_rates(path: Path = TESTBED_SCHEDULE) -> tuple[float, float, int]:
    """Mean q and k/v rate over the reduced cells of a calibrated schedule, and its cache_steps."""
    s = ReductionSchedule.load(path)
    cells = [(q, kv) for rq, rkv in zip(s.rates["q"], s.rates["kv"]) for q, kv in zip(rq, rkv) if q > 0 or kv > 0]
    return sum(c[0] for c in cells) / len(cells), sum(c[1] for c in cells) / len(cells), s.cache_steps


# ------------------------------------------------------------------------------------------------- table 1

def cost_row(frames: int, rq: float, rkv: float, cache_steps: int, reps: int, heads: int = 1, d: int = 128) -> dict:
    grid = (frames, 32, 32)
    n = frames * 32 * 32
    g = torch.Generator().manual_seed(frames)
    q, k, v = (torch.randn(1, n, heads * d, generator=g) for _ in range(3))
    state = AsymRnRState(ReductionSchedule.uniform(1, 1, q=rq, kv=rkv, cache_steps=cache_steps))
    state.begin_call(torch.Size((1, 16, frames, 64, 64)), {})
    to = {"block_index": 0, "cond_or_uncond": [0], KEY: state}
    patched = lambda: override(sdpa_attention, q, k, v, heads=heads, transformer_options=to)  # noqa: E731
    patched()  # computes and caches the two matchings
    kept = state.stats.kept[(0, 0)]
    dst, src = dst_partition(grid, state.schedule.dst_stride, torch.Generator().manual_seed(1))
    qh, kh, vh = (t.view(1, n, heads, d).transpose(1, 2) for t in (q, k, v))
    dist, near = nearest_dst(qh.transpose(1, 2), dst, src)
    match = state.cache.get((0, "q", (0,)), 0, n, 1, heads)
    match_kv = state.cache.get((0, "kv", (0,)), 0, n, 1, heads)

    def similarity():
        for x in (qh, vh):
            nearest_dst(x.transpose(1, 2), dst, src)

    def topk():
        for _ in range(2):
            torch.sort(dist, dim=-1, descending=True, stable=True)

    def gather_scatter():
        rq_ = plan_reduction(match, kept_sources(n, dst.numel(), src.numel(), rq), n, with_restore=True)
        rkv_ = plan_reduction(match_kv, kept_sources(n, dst.numel(), src.numel(), rkv), n, with_restore=False)
        idx = rkv_.gather.transpose(1, 2)
        gather_rows(qh, rq_.gather.transpose(1, 2), False), gather_rows(kh, idx, False), gather_rows(vh, idx, False)
        out = torch.zeros(1, kept["q"], heads * d)
        gather_rows(out.view(1, kept["q"], heads, d).transpose(1, 2), rq_.restore.transpose(1, 2), False)

    reduced_attn = lambda: sdpa_attention(q[:, :kept["q"]], k[:, :kept["kv"]], v[:, :kept["kv"]], heads)  # noqa: E731
    dense = lambda: sdpa_attention(q, k, v, heads)  # noqa: E731
    t = {name: [] for name in ("dense", "patched", "similarity", "topk", "gather_scatter", "reduced_attn")}
    for rep in range(reps):
        pair = (("dense", dense), ("patched", patched)) if rep % 2 == 0 else (("patched", patched), ("dense", dense))
        for name, fn in pair + (("similarity", similarity), ("topk", topk), ("gather_scatter", gather_scatter),
                                ("reduced_attn", reduced_attn)):
            t[name].append(_clock(fn))
    per_step = [p + (s + k_) / cache_steps for p, s, k_ in zip(t["patched"], t["similarity"], t["topk"])]
    f_dense = count_flops(dense)
    f_step = count_flops(patched) + count_flops(similarity) / cache_steps
    med = {name: statistics.median(v_) for name, v_ in t.items()}
    return {"tokens": n, "kept": f"{kept['q']}/{kept['kv']}", "dense": med["dense"], "similarity": med["similarity"],
            "topk": med["topk"], "gather": med["gather_scatter"], "reduced_attn": med["reduced_attn"],
            "cached": med["patched"], "step": statistics.median(per_step),
            "match_share": (med["similarity"] + med["topk"]) / med["dense"],
            "wall": _spread([a / b for a, b in zip(t["dense"], per_step)]), "flop": f_dense / f_step}


def print_cost(rows: list[dict], rq: float, rkv: float, cache_steps: int, reps: int) -> None:
    print(f"== AsymRnR cost: one self-attention call, 1 head of 128, 1 CPU thread; calibrated rates q {rq:.3f} k/v {rkv:.3f} "
          f"(mean of the test-bed schedule's reduced cells), cache_steps {cache_steps}, {reps} interleaved reps; seconds are medians ==")
    head = (f"{'tokens':>7}  {'kept q/kv':>11}  {'dense s':>8}  {'match: sim s':>12}  {'top-k s':>8}  {'gather/scatter s':>16}  "
            f"{'attn on reduced s':>17}  {'cached call s':>13}  {'AsymRnR/step s':>14}  {'matching/dense':>14}  "
            f"{'wall x (min-max)':>17}  {'FLOP x':>6}")
    print(head)
    for r in rows:
        print(f"{r['tokens']:>7}  {r['kept']:>11}  {r['dense']:>8.3f}  {r['similarity']:>12.3f}  {r['topk']:>8.4f}  "
              f"{r['gather']:>16.4f}  {r['reduced_attn']:>17.3f}  {r['cached']:>13.3f}  {r['step']:>14.3f}  "
              f"{r['match_share']:>13.0%}   {r['wall']:>17}  {r['flop']:>6.2f}")
    print("match: sim and top-k are for both matchings (Q and V), paid once per cache window; gather/scatter is per call "
          "and already inside 'cached call'.")


# ------------------------------------------------------------------------------------------------- table 2

def _random(dm: torch.nn.Module, scale: float = 0.05) -> dict:
    with torch.no_grad():
        for p in dm.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return {k: v.contiguous() for k, v in dm.state_dict().items()}


def family_model(family: str):
    """``(patcher, latent, apply_model kwargs)``: a tiny random model of ComfyUI's class at 5 x 1,024 video tokens."""
    import comfy.ops
    import comfy.sd

    ops = comfy.ops.disable_weight_init
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if family == "wan":
        import comfy.ldm.wan.model as wan

        dm = wan.WanModel(operations=ops, model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=256, ffn_dim=512, freq_dim=256,
                          text_dim=4096, out_dim=16, num_heads=2, num_layers=2, qk_norm=True, cross_attn_norm=True)
        return (comfy.sd.load_diffusion_model_state_dict(_random(dm)), torch.randn(1, 16, 5, 64, 64, generator=g),
                {"c_crossattn": torch.randn(1, 6, 4096, generator=g)})
    if family == "hunyuan_video":
        import comfy.ldm.hunyuan_video.model as hy

        dm = hy.HunyuanVideo(operations=ops, in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=64, hidden_size=256,
                             mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=256,
                             patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
                             use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False)
        mask = torch.ones(1, 8, dtype=torch.long)
        mask[:, -2:] = 0
        return (comfy.sd.load_diffusion_model_state_dict(_random(dm)), torch.randn(1, 16, 5, 64, 64, generator=g),
                {"c_crossattn": torch.randn(1, 8, 64, generator=g), "attention_mask": mask,
                 "y": torch.randn(1, 768, generator=g), "guidance": torch.tensor([6.0])})
    if family == "ltxv":
        import comfy.ldm.lightricks.model as lt

        heads = dict(attention_head_dim=64, num_attention_heads=4)  # detection would split 256 into 32 heads of 8
        dm = lt.LTXVModel(in_channels=128, cross_attention_dim=256, caption_channels=4096, num_layers=2, operations=ops, **heads)
        mask = torch.ones(1, 7, dtype=torch.long)
        mask[:, -2:] = 0
        return (_with_config(_random(dm), heads), torch.randn(1, 128, 5, 32, 32, generator=g),
                {"c_crossattn": torch.randn(1, 7, 4096, generator=g), "attention_mask": mask, "frame_rate": 24})
    import comfy.ldm.genmo.joint_model.asymm_models_joint as mochi

    sizes = dict(depth=2, num_heads=2, hidden_size_x=256, hidden_size_y=128, mlp_ratio_x=48.0, t5_feat_dim=64)  # ComfyUI asserts FFN 12,288
    dm = mochi.AsymmDiTJoint(operations=ops, patch_size=2, in_channels=12, learn_sigma=False, qk_norm=True, qkv_bias=False,
                             out_bias=True, use_t5=True, timestep_scale=1000.0, **sizes)
    mask = torch.zeros(1, 8)
    mask[:, :5] = 1.0
    return (_with_config(_random(dm), sizes), torch.randn(1, 12, 5, 64, 64, generator=g),
            {"c_crossattn": torch.randn(1, 8, 64, generator=g), "attention_mask": mask, "num_tokens": 5})


def _with_config(sd: dict, sizes: dict):
    """ComfyUI's detected model config for ``sd`` with ``sizes`` that detection cannot read off the weights, as a ModelPatcher."""
    import comfy.model_detection
    import comfy.model_patcher

    config = comfy.model_detection.model_config_from_unet(sd, "")
    config.unet_config.update(sizes)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(sd)
    model.load_model_weights(dict(sd), "")
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def family_row(family: str, steps: int, reps: int) -> dict:
    from rhymeflow_core import adapters

    patcher, x, kwargs = family_model(family)
    dm = patcher.model.diffusion_model
    layout = adapters.comfyui_adapter(dm).token_layout(dm)
    sample_sigmas = torch.linspace(1.0, 0.0, steps + 1)

    def run(to: dict) -> None:
        with torch.no_grad():
            for s in sample_sigmas[:-1]:
                opts = dict(to, sigmas=s.view(1), sample_sigmas=sample_sigmas, cond_or_uncond=[0])
                patcher.model.apply_model(x, s.view(1), transformer_options=opts, **kwargs)

    measurement = measure(run, layout.num_blocks, steps, layout=layout)
    schedule = build_schedule(measurement, target=0.3, dense_start=0.2, cache_steps=3)
    state = lambda: AsymRnRState(schedule, layout=layout)  # noqa: E731  (a fresh run: matchings recomputed)
    dense, patched = [], []
    for rep in range(reps):
        order = (("d", {}), ("p", None)) if rep % 2 == 0 else (("p", None), ("d", {}))
        for kind, to in order:
            if kind == "d":
                dense.append(_clock(lambda: run({})))
            else:
                st = state()
                patched.append(_clock(lambda: run(install({}, st))))
    st = state()
    f_dense, f_patched = count_flops(lambda: run({})), count_flops(lambda: run(install({}, st)))
    return {"family": family, "class": type(dm).__name__, "tokens": measurement["n_tokens"], "blocks": layout.num_blocks,
            "saved": 1 - schedule.flop_fraction(), "dense_s": statistics.median(dense), "asym_s": statistics.median(patched),
            "wall": _spread([a / b for a, b in zip(dense, patched)]), "flop": f_dense / f_patched,
            "matchings": st.stats.matchings}


def print_families(rows: list[dict], steps: int, reps: int) -> None:
    print(f"== AsymRnR alone vs dense, tiny random ComfyUI models, {steps} DiT calls (1 CFG branch) per run, 1 CPU thread, "
          f"{reps} interleaved reps; schedule calibrated on each model (target 30% attention FLOPs, dense first 20%, cache 3) ==")
    print(f"{'family':<14}  {'class':<13}  {'video tokens':>12}  {'blocks':>6}  {'attn FLOPs saved':>16}  {'dense s/run':>11}  "
          f"{'AsymRnR s/run':>13}  {'wall x (min-max)':>17}  {'FLOP x':>6}  {'matchings':>9}")
    for r in rows:
        print(f"{r['family']:<14}  {r['class']:<13}  {r['tokens']:>12}  {r['blocks']:>6}  {r['saved']:>16.0%}  {r['dense_s']:>11.2f}  "
              f"{r['asym_s']:>13.2f}  {r['wall']:>17}  {r['flop']:>6.2f}  {r['matchings']:>9}")
    print("FLOP x: whole DiT calls counted (projections, FFN, attention, the matching's matmuls); wall x: median of the "
          "per-repetition dense/AsymRnR ratios.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--section", choices=("all", "cost", "families"), default="all")
    ap.add_argument("--frames", type=int, nargs="+", default=[5, 10, 20, 30], help="cost table: T of the T x 32 x 32 grid")
    ap.add_argument("--families", nargs="+", default=["wan", "hunyuan_video", "ltxv", "mochi"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3, help="cost table repetitions")
    ap.add_argument("--family-reps", type=int, default=2, help="family table repetitions (dense and AsymRnR runs each)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.section in ("all", "cost"):
        rq, rkv, cache_steps = calibrated_rates()
        rows = [cost_row(f, rq, rkv, cache_steps, args.reps) for f in args.frames]
        print_cost(rows, rq, rkv, cache_steps, args.reps)
    if args.section in ("all", "families"):
        try:
            import comfy.cli_args  # parses an empty argv: ours is left alone

            comfy.cli_args.args.cpu = True
            import comfy.model_management  # noqa: F401  (only now: the device is the CPU)
        except ImportError as exc:
            sys.exit(f"ComfyUI at {COMFYUI} is not importable with {sys.executable} ({exc!r}); run this with its .venv python")
        rows = [family_row(f, args.steps, args.family_reps) for f in args.families]
        print_families(rows, args.steps, args.family_reps)


if __name__ == "__main__":
    main()
