"""GPU benchmark at real Wan 2.1 sizes (random weights, bf16): do keyframe-only passes, cached context and
AsymRnR pay off in wall-clock where users run them?

Run on a CUDA machine from the repo root: ``python3 benchmarks/gpu_benchmark.py --out out/gpu`` (under
8 minutes on one H200; nothing is downloaded). ``--dry-run`` prints the plan and a GPU-time estimate on
any machine; ``--smoke`` runs every code path at toy sizes on the CPU (CI). ``docs/gpu-benchmark.md``
says how to read the table.

Why random weights: timing depends on shapes, not values, and the architecture-exact test-bed
``WanModel`` (ComfyUI's module names and forward math) at Wan 2.1's real dims runs the same kernels as
the real model. Every measurement goes through the project's own code: the projection patch
(``install``/``RhymeFlowHolder``/``WanAdapter``), the context cache, the samplers and presets, and
AsymRnR's attention override. Models are built with as many layers as fit the time; per-layer figures
are scaled to the real depth and labelled so.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

START = time.perf_counter()  # the time budget counts from here: importing torch and starting CUDA are part of the 8 minutes

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

# The project's code paths, imported here only, so a move in the engine refactor (#11) is a one-line fix.
from rhymeflow_core.adapters.wan import WanAdapter  # noqa: E402
from rhymeflow_core.asymrnr import KEY as ASYMRNR_KEY, AsymRnRState, ReductionSchedule, dst_partition, match_tokens, override  # noqa: E402
from rhymeflow_core.flow import simple_sigmas  # noqa: E402
from rhymeflow_core.keyframes import KeyframePlan  # noqa: E402
from rhymeflow_core.patch import PatchConfig, RhymeFlowHolder, install  # noqa: E402
from rhymeflow_core.presets import preset_schedule  # noqa: E402
from rhymeflow_core.sampler import sample_dense, sample_rhymeflow  # noqa: E402
from rhymeflow_core.testbed.conditioning import TEXT_DIM  # noqa: E402
from rhymeflow_core.testbed.denoiser import TestbedDenoiser  # noqa: E402
from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel, apply_rope, attention, sdpa_attention  # noqa: E402

from gpu_plan import (ASSUMED, WAN_SHIFT, ModelConfig, Task, build_plan, estimate_total, flop_ideal_from_counts,  # noqa: E402
                      pass_flops, plan_text, real_configs, smoke_config, uniform_keyframes)
from gpu_timing import Timing, time_call, time_once, time_single  # noqa: E402

GIB = 2**30
JSON_NAME, TABLE_NAME = "gpu_benchmark.json", "gpu_benchmark.txt"
SECTIONS = ("pass", "run", "asymrnr", "compile")  # a task's section is its kind's first word


class RealSizeDenoiser(TestbedDenoiser):
    """The test bed's CFG-guided model call with Wan's 512 text tokens, on the model's device.

    Why a subclass: the test bed's class contexts are 8 tokens on the CPU; a real prompt is 512 umT5
    tokens, which the cross-attention cost depends on. The guidance, batching and APPLY_MODEL wrappers
    are the test bed's (and so ComfyUI's) unchanged.
    """

    def __init__(self, model: WanModel, text_tokens: int, cfg_scale: float, seed: int = 0):
        super().__init__(model, cls=0, cfg_scale=cfg_scale, batch_cfg=True)
        p = model.blocks[0].modulation  # the compute dtype (the patch embedding, the first parameter, stays fp32)
        g = torch.Generator(device=p.device).manual_seed(seed)
        self.cond = torch.randn(1, text_tokens, TEXT_DIM, generator=g, device=p.device).to(p.dtype)
        self.uncond = torch.zeros_like(self.cond)


def build_model(c: ModelConfig, device: torch.device, dtype: torch.dtype) -> WanModel:
    """Random-weight ``WanModel`` with ``c.layers`` blocks, built on ``device``. The patch embedding stays
    fp32 as in ComfyUI's Wan (its forward feeds it ``x.float()``)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = WanModel(WanConfig(dim=c.dims.dim, ffn_dim=c.dims.ffn_dim, num_layers=c.layers))
    model = model.to(dtype).eval().requires_grad_(False)
    model.patch_embedding.float()
    return model


def block_bytes(model: WanModel) -> int:
    return sum(p.numel() * p.element_size() for p in model.blocks[0].parameters())


def compile_submodules(model: WanModel, backend: str) -> None:
    """``torch.compile`` the block parts every pass type runs: self-attention (native full passes),
    cross-attention and FFN (all passes). The adapter's own block math gets a compiled RoPE (its
    injection point). Whole blocks are not compiled because RhymeFlow's block patch replaces their
    forward on sync and keyframe passes."""
    for block in model.blocks:
        for module in (block.self_attn, block.cross_attn, block.ffn):
            module.compile(backend=backend)


class Runner:
    """Runs the plan's tasks in order under a time budget; rows go to the table and, after every task, the JSON."""

    def __init__(self, args: argparse.Namespace, tasks: list[Task], device: torch.device, dtype: torch.dtype):
        self.args, self.tasks, self.device, self.dtype = args, tasks, device, dtype
        self.rows: list[dict] = []
        self.results: dict[tuple, dict] = {}  # (config name, kind, m, context, placement) -> measured row
        self.model: WanModel | None = None
        self.model_key: tuple | None = None
        self.compiled = False  # whether self.model's submodules are compiled (once per model: a second compile recompiles)
        self.spent_s = self.estimated_s = 0.0  # over measured tasks: how far off the plan's estimates are on this machine
        self.meta = self._meta()

    def _meta(self) -> dict:
        meta = {"started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv[1:], "torch": torch.__version__, "device": str(self.device), "dtype": str(self.dtype),
                "smoke": self.args.smoke, "budget_s": self.args.budget_s, "reps": self.args.reps, "warmup": self.args.warmup,
                "assumed": ASSUMED, "estimate_s": round(estimate_total(self.tasks), 1)}
        if self.device.type == "cuda":
            p = torch.cuda.get_device_properties(self.device)
            meta.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / GIB, 1), multiprocessors=p.multi_processor_count,
                        cuda=torch.version.cuda, tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                        flash_sdp=torch.backends.cuda.flash_sdp_enabled())
        else:
            meta["cpu_threads"] = torch.get_num_threads()
        return meta

    def elapsed(self) -> float:
        return time.perf_counter() - START

    def correction(self) -> float:
        """Measured over estimated seconds of the tasks so far (clamped to 0.5..4), applied to the next estimates so
        the budget holds even where the assumed throughput is wrong."""
        return min(4.0, max(0.5, self.spent_s / self.estimated_s)) if self.estimated_s > 0 else 1.0

    def run(self) -> None:
        for task in self.tasks:
            build = ASSUMED["build_s"] if task.model_key not in (None, self.model_key) else 0.0
            need = (task.estimate_s + build) * self.correction()
            if self.elapsed() + need > self.args.budget_s:
                self._add(task, status="skipped", note=f"time budget: {self.elapsed():.0f} s of {self.args.budget_s:.0f} s used, "
                                                          f"this task needs ~{need:.0f} s (estimate x {self.correction():.2f} "
                                                          "measured/estimated so far)")
            else:
                t_start = time.perf_counter()
                try:
                    self._use_model(task.model_key, task.config)
                    rows = getattr(self, f"_{task.kind}")(task)
                except Exception as exc:  # one failing measurement (OOM, a compile error) must not lose the rest
                    first_line = str(exc).splitlines()[0][:160] if str(exc) else ""
                    self._add(task, status="failed", note=f"{type(exc).__name__}: {first_line}",
                              traceback=traceback.format_exc()[-3000:])
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                else:
                    spent = time.perf_counter() - t_start
                    self.spent_s, self.estimated_s = self.spent_s + spent, self.estimated_s + task.estimate_s + build
                    for extra in rows:
                        self._add(task, extra.pop("label", None), status="measured", task_seconds=round(spent, 2), **extra)
            self.write()

    # ------------------------------------------------------------------------------------ bookkeeping

    def _add(self, task: Task, label: str | None = None, **fields) -> None:
        c = task.config
        row = {"section": task.section, "model": c.name, "layers": f"{c.layers}/{c.dims.layers}", "tokens": c.tokens,
               "task": label or task.label, "estimate_s": round(task.estimate_s, 1), **fields}
        self.rows.append(row)

    def _use_model(self, key: tuple | None, c: ModelConfig) -> None:
        if key == self.model_key:
            return
        self.model = self.model_key = None
        self.compiled = False
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if key is not None:
            self.model = build_model(c, self.device, self.dtype)
            self.model_key = key

    def write(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        self.meta["elapsed_s"] = round(self.elapsed(), 1)
        self.meta["measured_over_estimated"] = round(self.correction(), 3)
        skipped = [{"task": r["task"], "model": r["model"], "status": r["status"], "why": r["note"]} for r in self.rows
                   if r["status"] != "measured"]
        report = {"meta": self.meta, "plan": [{"model": t.config.name, "task": t.label, "estimate_s": round(t.estimate_s, 1)}
                                              for t in self.tasks], "rows": self.rows, "skipped": skipped}
        (out / JSON_NAME).write_text(json.dumps(report, indent=1, default=str))

    # ------------------------------------------------------------------------------------ measurements

    def _time(self, fn: Callable[[], object]) -> Timing:
        return time_call(fn, self.device, self.args.reps, self.args.warmup)

    def _inputs(self, c: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One CFG branch's latent, timestep and 512-token text context (the FLOP model's batch-1 pass)."""
        g = torch.Generator(device=self.device).manual_seed(1)
        h, w = c.latent_hw
        x = torch.randn(1, 16, c.dims.frames, h, w, generator=g, device=self.device)
        ctx = torch.randn(1, c.dims.text_tokens, TEXT_DIM, generator=g, device=self.device).to(self.dtype)
        return x, torch.full((1,), 0.5, device=self.device), ctx

    def _pass_fn(self, c: ModelConfig, to: dict) -> Callable[[], torch.Tensor]:
        den = RealSizeDenoiser(self.model, c.dims.text_tokens, cfg_scale=1.0)
        x, t, ctx = self._inputs(c)
        opts = dict(to, cond_or_uncond=[0], sigmas=t)
        return lambda: den.apply_model(x, t, None, ctx, None, dict(opts))

    def _peaks(self, c: ModelConfig, timing: Timing, device_cache_bytes: int = 0) -> dict:
        if timing.peak_bytes is None:
            return {"peak_gib": None, "peak_gib_full_depth": None}
        extra_layers = c.dims.layers - c.layers
        full = timing.peak_bytes + extra_layers * (block_bytes(self.model) + device_cache_bytes / c.layers)
        return {"peak_gib": round(timing.peak_bytes / GIB, 2), "peak_gib_full_depth": round(full / GIB, 2)}

    def _pass_row(self, c: ModelConfig, timing: Timing, flop_x: float, ref_key: tuple | None, device_cache: int = 0,
                  **extra) -> dict:
        """A pass row; ``ref_key`` names the full-pass row it is compared with (None: it is the reference)."""
        ref = self.results.get(ref_key) if ref_key else None
        wall_x = ref["time_s"] / timing.median_s if ref else (1.0 if ref_key is None else None)
        return {"n": len(timing.samples_s), "time_s": timing.median_s, "time_s_full_depth": timing.median_s * c.depth_scale,
                "first_s": timing.first_s, "wall_x": wall_x, "flop_x": flop_x,
                "wall_over_flop": wall_x / flop_x if wall_x is not None else None, **self._peaks(c, timing, device_cache), **extra}

    def _pass_full(self, task: Task, compiled: bool = False) -> list[dict]:
        c = task.config
        timing = self._time(self._pass_fn(c, {}))
        note = "reference" + (f"; first call (compile) {timing.first_s:.1f} s" if compiled else "")
        row = self._pass_row(c, timing, 1.0, None, note=note)
        if compiled:
            eager = self.results.get((c.name, "pass_full"))
            row["note"] += f"; eager/compiled {eager['time_s'] / timing.median_s:.2f}x" if eager else "; no eager figure"
        self.results[(c.name, task.kind)] = row
        return [row]

    def _pass_keyframe(self, task: Task, adapter: WanAdapter | None = None) -> list[dict]:
        c, p = task.config, task.params
        adapter = adapter or WanAdapter(attention, apply_rope)
        holder = RhymeFlowHolder(PatchConfig(context_mode=p["context"], placement=p["placement"]), adapter)
        call = self._pass_fn(c, install({}, holder, adapter.block_keys(self.model)))
        run = holder.new_run()
        try:
            run.set_keyframes(torch.tensor(uniform_keyframes(p["m"], c.dims.frames), device=self.device))
            run.mode = "record"
            record_s = time_once(call, self.device)
            cache = run.cache.nbytes()
            run.mode = "keyframe"
            timing = self._time(call)
        finally:
            holder.end_run()
        d = c.built_dims()
        flop_x = pass_flops(d, d.frames) / pass_flops(d, p["m"], kv_cached=p["context"] == "kv")
        compiled = task.kind.startswith("compile")
        ref_kind = "compile_full" if compiled else "pass_full"
        note = f"sync pass {_fmt_time(record_s)}; cache {_fmt_bytes(cache * c.depth_scale)} at full depth"
        if compiled:
            eager = self.results.get((c.name, "pass_keyframe", p["m"], p["context"], p["placement"]))
            note += f"; first call (compile) {timing.first_s:.1f} s; "
            note += f"eager/compiled {eager['time_s'] / timing.median_s:.2f}x" if eager else "no eager figure"
        row = self._pass_row(c, timing, flop_x, (c.name, ref_kind), record_s=record_s, cache_bytes=cache,
                             device_cache=cache if p["placement"] == "device" else 0, note=note)
        self.results[(c.name, "pass_keyframe" if not compiled else task.kind, p["m"], p["context"], p["placement"])] = row
        return [row]

    def _compile(self) -> None:
        if not self.compiled:
            compile_submodules(self.model, self.args.compile_backend)
            self.compiled = True

    def _compile_full(self, task: Task) -> list[dict]:
        self._compile()
        return self._pass_full(task, compiled=True)

    def _compile_keyframe(self, task: Task) -> list[dict]:
        self._compile()
        rope = torch.compile(apply_rope, backend=self.args.compile_backend)
        return self._pass_keyframe(task, WanAdapter(attention, rope))

    def _run(self, task: Task) -> list[dict]:
        """A whole sampling run end to end (one timed run: at these sizes it is tens of seconds)."""
        c, p = task.config, task.params
        den = RealSizeDenoiser(self.model, c.dims.text_tokens, cfg_scale=p["cfg"])
        sigmas = simple_sigmas(p["steps"], WAN_SHIFT)
        g = torch.Generator(device=self.device).manual_seed(2)
        h, w = c.latent_hw
        x = torch.randn(1, 16, c.dims.frames, h, w, generator=g, device=self.device) * sigmas[0]
        holder = None
        if p["schedule"] is None:
            sampler, to, kwargs = sample_dense, {}, {}
        else:
            adapter = WanAdapter(attention, apply_rope)
            holder = RhymeFlowHolder(PatchConfig(context_mode="kv"), adapter)
            to = install({}, holder, adapter.block_keys(self.model))
            sampler, kwargs = sample_rhymeflow, {"plan": KeyframePlan(budget=self.args.run_keyframes), "schedule": p["schedule"]}
        extra_args = {"model_options": {"transformer_options": to}, "seed": 0}
        timing = time_single(lambda: sampler(den, x, sigmas, extra_args, **kwargs), self.device)
        seconds = timing.median_s
        row = {"n": 1, "time_s": seconds, "time_s_full_depth": seconds * c.depth_scale, **self._peaks(c, timing)}
        if holder is None:
            self.results[(c.name, "run_dense")] = row
            row.update(wall_x=1.0, flop_x=1.0, wall_over_flop=1.0, note=f"reference; {p['steps']} full passes")
            return [row]
        st = holder.last_result.to_dict()
        ideal = flop_ideal_from_counts(st["full_passes"], st["keyframe_passes"], len(st["keyframes"]), c.dims, kv_cached=True)
        dense = self.results.get((c.name, "run_dense"))
        wall_x = dense["time_s"] / seconds if dense else None
        sched = p["schedule"]
        row.update(wall_x=wall_x, flop_x=ideal, wall_over_flop=wall_x / ideal if wall_x else None,
                   full_passes=st["full_passes"], keyframe_passes=st["keyframe_passes"], keyframes=st["keyframes"],
                   cache_bytes=st["cache_bytes"], note=f"Tw{sched.warmup} {sched.n_small}-{sched.n_large} M{len(st['keyframes'])}: "
                   f"{st['full_passes']} full + {st['keyframe_passes']} keyframe passes; kv cache {_fmt_bytes(st['cache_bytes'])}")
        return [row]

    def _asymrnr(self, task: Task) -> list[dict]:
        """One layer's video self-attention: dense, AsymRnR-reduced with its matching cached, and the matching itself."""
        c, rate = task.config, task.params["rate"]
        n, dim, heads = c.tokens, c.dims.dim, c.heads
        g = torch.Generator(device=self.device).manual_seed(3)
        q, k, v = (torch.randn(1, n, dim, generator=g, device=self.device).to(self.dtype) for _ in range(3))
        dense = self._time(lambda: sdpa_attention(q, k, v, heads))
        grid_shape = torch.Size((1, 16, c.dims.frames, *c.latent_hw))
        state = AsymRnRState(ReductionSchedule.uniform(1, 1, q=rate, kv=rate))
        state.begin_call(grid_shape, {})
        to = {"block_index": 0, "cond_or_uncond": [0], ASYMRNR_KEY: state}
        reduced = self._time(lambda: override(sdpa_attention, q, k, v, heads=heads, transformer_options=to))  # 1st call: matching
        kept = state.stats.kept[(0, 0)]
        cached_ok = state.stats.matchings == 2  # one Q and one K/V matching, then cache hits only

        def matching() -> None:
            for x in (q, v):
                dst, src = dst_partition(state.grid, state.schedule.dst_stride, torch.Generator().manual_seed(4), self.device)
                match_tokens(x.view(1, n, heads, dim // heads), dst, src, state.max_match_elements)

        match = self._time(matching)
        flop_x = n * n / (kept["q"] * kept["kv"])
        wall_x = dense.median_s / reduced.median_s
        cache_note = ("matching computed once per feature, then cached" if cached_ok else
                      f"WARNING: {state.stats.matchings} matchings computed, expected 2 (the cache missed in timed calls)")
        base = {"n": len(dense.samples_s), "time_s_full_depth": None}
        return [
            {**base, "label": "AsymRnR dense attention (one layer)", "time_s": dense.median_s,
             "wall_x": 1.0, "flop_x": 1.0, "wall_over_flop": 1.0, **self._peaks_plain(dense), "note": "reference"},
            {**base, "label": f"AsymRnR reduced attention q{rate:g}/kv{rate:g}", "time_s": reduced.median_s,
             "wall_x": wall_x, "flop_x": flop_x, "wall_over_flop": wall_x / flop_x, "q_kept": kept["q"], "kv_kept": kept["kv"],
             **self._peaks_plain(reduced), "note": f"{cache_note}; kept q {kept['q']}, k/v {kept['kv']} of {n}"},
            {**base, "label": "AsymRnR matching Q + K/V (a cache miss)", "time_s": match.median_s,
             "wall_x": None, "flop_x": None, "wall_over_flop": None, **self._peaks_plain(match),
             "note": f"= {match.median_s / dense.median_s:.2f}x a dense attention, paid once per {state.schedule.cache_steps} steps"},
        ]

    @staticmethod
    def _peaks_plain(timing: Timing) -> dict:
        return {"peak_gib": round(timing.peak_bytes / GIB, 2) if timing.peak_bytes is not None else None, "peak_gib_full_depth": None}


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 10:
        return f"{s:.1f} s"
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e3:.3f} ms"


def _fmt_bytes(b: float) -> str:
    return f"{b / GIB:.2f} GiB" if b >= GIB / 10 else f"{b / 2**20:.1f} MiB"


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("model", lambda r: r["model"]),
    ("layers", lambda r: r["layers"]),
    ("task", lambda r: r["task"]),
    ("n", lambda r: str(r.get("n", "-"))),
    ("time", lambda r: _fmt_time(r.get("time_s"))),
    ("@depth", lambda r: _fmt_time(r.get("time_s_full_depth"))),
    ("wall x", lambda r: _fmt(r.get("wall_x"), ".2f")),
    ("FLOP x", lambda r: _fmt(r.get("flop_x"), ".2f")),
    ("wall/FLOP", lambda r: _fmt(r.get("wall_over_flop"), ".2f")),
    ("peak GiB", lambda r: _fmt(r.get("peak_gib"), ".1f")),
    ("@depth GiB", lambda r: _fmt(r.get("peak_gib_full_depth"), ".1f")),
    ("note", lambda r: r.get("note", "") if r["status"] == "measured" else f"{r['status'].upper()}: {r.get('note', '')}"),
]


def table_text(rows: list[dict]) -> str:
    """One table of every row, measured or not, in run order."""
    cells = [[f(r) for _, f in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (h, _) in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(COLUMNS, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="RhymeFlow/AsymRnR GPU benchmark at real Wan 2.1 sizes (random weights, bf16).")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "gpu", help=f"folder for {JSON_NAME} and {TABLE_NAME}")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting tasks that would end past this many seconds")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its GPU-time estimate; measure nothing")
    ap.add_argument("--smoke", action="store_true", help="toy sizes, fp32, on the CPU: every code path, for CI")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="which parts to run (all by default; e.g. leave out compile to re-run the rest quickly)")
    ap.add_argument("--reps", type=int, default=3, help="timed repeats per measurement (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones (at least 1)")
    ap.add_argument("--keyframes", type=int, nargs="+", default=[2, 4, 8], help="M of the keyframe-only passes (of 21 frames)")
    ap.add_argument("--cpu-keyframes", type=int, nargs="*", default=[4], help="M of the passes with a CPU-offloaded cache")
    ap.add_argument("--steps", type=int, default=50, help="steps of the end-to-end runs")
    ap.add_argument("--cfg", type=float, default=5.0, help="CFG scale of the end-to-end runs (cond+uncond batched; 1 = no CFG)")
    ap.add_argument("--run-keyframes", type=int, default=4, help="keyframe budget M of the end-to-end RhymeFlow runs")
    ap.add_argument("--asym-rate", type=float, default=0.3, help="AsymRnR reduction rate of both Q and K/V")
    ap.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None,
                    help="compute dtype (default: bfloat16 on CUDA, float32 in --smoke)")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default: inductor; eager in --smoke)")
    args = ap.parse_args(argv)
    bad_m = not all(2 <= m < 21 for m in args.keyframes + args.cpu_keyframes)
    if args.reps < 1 or args.warmup < 1 or bad_m or not 0 <= args.asym_rate < 1:
        ap.error("need --reps >= 1, --warmup >= 1, --keyframes each in 2..20, 0 <= --asym-rate < 1")
    args.compile_backend = args.compile_backend or ("eager" if args.smoke else "inductor")
    args.dtype = getattr(torch, args.dtype or ("float32" if args.smoke else "bfloat16"))
    return args


def make_plan(args: argparse.Namespace) -> list[Task]:
    configs = [smoke_config()] if args.smoke else real_configs()
    run_config = compile_config = configs[0]  # Wan 2.1 1.3B at 480p, all 30 layers
    sigmas = simple_sigmas(args.steps, WAN_SHIFT)
    presets = {"dense": None, **{name: preset_schedule(name, sigmas) for name in ("paper", "fast")}}
    tasks = build_plan(configs, run_config, compile_config, reps=args.reps, warmup=args.warmup, keyframes=tuple(args.keyframes),
                       cpu_keyframes=tuple(args.cpu_keyframes), steps=args.steps, cfg=args.cfg, asym_rate=args.asym_rate,
                       presets=presets)
    return [t for t in tasks if t.section in args.sections]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = make_plan(args)
    print(plan_text(tasks, args.budget_s))
    if args.dry_run:
        return 0
    if args.smoke:  # one thread: CI shares its cores, and oversubscribed OpenMP slows tiny ops by orders of magnitude
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device: run with --smoke (toy sizes on the CPU) or --dry-run (the plan only)", file=sys.stderr)
        return 2
    dtype = args.dtype
    runner = Runner(args, tasks, device, dtype)
    with torch.no_grad():
        runner.run()
    table = table_text(runner.rows)
    head = (f"{runner.meta.get('gpu', 'CPU')}, torch {torch.__version__}, {dtype}; {runner.elapsed():.0f} s "
            f"(estimate {runner.meta['estimate_s']:.0f} s, budget {args.budget_s:.0f} s)")
    print("\n" + head + "\n" + table)
    (Path(args.out) / TABLE_NAME).write_text(head + "\n" + table + "\n")
    not_run = [r for r in runner.rows if r["status"] != "measured"]
    if not_run:
        print(f"\n{len(not_run)} rows not measured (see their notes): " + "; ".join(f"{r['model']} {r['task']}" for r in not_run[:6])
              + (" ..." if len(not_run) > 6 else ""))
    print(f"wrote {Path(args.out) / JSON_NAME} and {Path(args.out) / TABLE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
