"""What the GPU benchmark will measure, in order, and how long each measurement should take.

Why a plan apart from the measuring code: GPU time is short and rare, so the whole run must be sized
before a GPU is at hand. The plan is plain data (one ``Task`` per measurement, with a time estimate
derived from the FLOP model and a few stated throughput assumptions), so a CPU ``--dry-run`` prints
exactly what a GPU run would do and roughly how long it would take, and the runner can skip what no
longer fits its time budget. The estimates are assumptions, not measurements; a GPU run records each
task's measured seconds next to its estimate in the JSON, so the constants below can be corrected.

This module is the benchmark's one import site for the FLOP model (``rhymeflow_core.flops``) and the step map.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from rhymeflow_core.flops import FAMILY_DIMS, WAN_DIMS, ModelDims, flop_ideal_from_counts, pass_flops  # noqa: F401  re-exported
from rhymeflow_core.schedule import build_step_map  # noqa: F401  re-exported to gpu_benchmark

# Assumptions behind every estimate (stated in the dry-run output and the JSON).
ASSUMED = {
    "bf16_flops_per_s": 400e12,  # sustained on big matmuls and flash attention (H200 peak ~990, ~790 measured on 8k^3 GEMMs)
    "fp32_flops_per_s": 50e12,  # AsymRnR matching distances are fp32 matmuls (no TF32 unless the user enables it)
    "host_bytes_per_s": 8e9,  # CPU-offloaded cache: pinned alloc + copy out, host concat + copy in (conservative)
    "overhead_s_per_task": 0.5,  # synchronisation, allocation, Python, peak-memory bookkeeping
    "build_s": 3.0,  # building one random-weight model on the GPU
    "compile_s": 60.0,  # torch.compile (inductor) of the block submodules at two shapes, first calls included
}

WAN_SHIFT = FAMILY_DIMS["wan2.1-1.3b-480p"][1]  # ComfyUI's default shift for Wan (the presets read sigmas)
FRAMES = 21  # 81 pixel frames -> 21 latent frames (Wan VAE 4x temporal)
LATENT_HW = {"480p": (60, 104), "720p": (90, 160)}  # latent height/width; patch 2x2 -> 30x52 / 45x80 tokens per frame


@dataclass(frozen=True)
class ModelConfig:
    """One real (or smoke-sized) model at one resolution; ``layers`` of ``dims.layers`` are built."""

    name: str
    dims: ModelDims  # full-depth dims; FLOP ratios do not depend on depth
    heads: int
    layers: int  # blocks actually built (per-layer figures are scaled by dims.layers / layers)
    latent_hw: tuple[int, int]

    @property
    def tokens(self) -> int:
        return self.dims.frames * self.dims.tokens_per_frame

    @property
    def depth_scale(self) -> float:
        return self.dims.layers / self.layers

    def built_dims(self) -> ModelDims:
        return dataclasses.replace(self.dims, layers=self.layers)


@dataclass(frozen=True)
class Task:
    """One measurement. ``kind``: pass_full, pass_keyframe, run, asymrnr, compile_full, compile_keyframe."""

    kind: str
    config: ModelConfig
    estimate_s: float
    params: dict = field(default_factory=dict)

    @property
    def section(self) -> str:
        return self.kind.split("_")[0]

    @property
    def label(self) -> str:
        p = self.params
        if self.kind == "pass_full":
            return "full pass"
        if self.kind == "pass_keyframe":
            return f"keyframe pass M{p['m']} {p['context']} cache:{p['placement']}"
        if self.kind == "run":
            guidance = f"CFG {p['cfg']:g}, cond+uncond batched" if p["cfg"] != 1.0 else "no CFG"
            return f"{p['steps']}-step run {p['method']} ({guidance})"
        if self.kind == "asymrnr":
            return f"AsymRnR attention q{p['rate']:g}/kv{p['rate']:g}"
        if self.kind == "compile_full":
            return "full pass, torch.compile"
        return f"keyframe pass M{p['m']} {p['context']} cache:{p['placement']}, torch.compile"

    @property
    def model_key(self) -> tuple | None:
        """Tasks with the same key share one built model (None: no model needed)."""
        if self.kind == "asymrnr":
            return None
        return (self.config.name, self.config.layers, self.kind.startswith("compile"))


def real_configs() -> list[ModelConfig]:
    """Wan 2.1 1.3B and 14B at 480p and 720p x 81 frames; depth chosen so one pass is about a second at most."""
    layers = {"wan2.1-1.3b-480p": 30, "wan2.1-1.3b-720p": 8, "wan2.1-14b-480p": 6, "wan2.1-14b-720p": 2}
    out = []
    for name, dims in WAN_DIMS.items():
        out.append(ModelConfig(name, dims, heads=dims.dim // 128, layers=layers[name], latent_hw=LATENT_HW[name.rsplit("-", 1)[1]]))
    return out


def smoke_config() -> ModelConfig:
    """Toy sizes for the CPU smoke test: every code path, a few milliseconds per pass."""
    dims = ModelDims("smoke", layers=2, dim=256, ffn_dim=512, tokens_per_frame=4, frames=FRAMES, text_tokens=8)
    return ModelConfig("smoke", dims, heads=2, layers=2, latent_hw=(4, 4))  # two heads of 128, as the real models' head size


def _secs(flops: float) -> float:
    return flops / ASSUMED["bf16_flops_per_s"]


def _cache_bytes(c: ModelConfig, m: int, context: str, elem: int = 2) -> float:
    rows = (c.dims.frames - m) * c.dims.tokens_per_frame
    return (2 if context == "kv" else 1) * rows * c.dims.dim * elem * c.layers


def uniform_keyframes(m: int, frames: int = FRAMES) -> list[int]:
    """``m`` evenly spaced frames from first to last, as the analytic tables use."""
    return [round(i * (frames - 1) / (m - 1)) for i in range(m)]


def run_flops(c: ModelConfig, steps: int, batch: int, schedule=None, m: int = 4) -> float:
    """FLOPs of a whole sampling run at full depth (``schedule``: the preset's ScheduleConfig, None = dense)."""
    full = pass_flops(c.dims, c.dims.frames, batch=batch)
    if schedule is None:
        return steps * full
    smap = build_step_map(c.dims.frames, steps, schedule, uniform_keyframes(m, c.dims.frames))
    return smap.full_passes() * full + smap.keyframe_passes() * pass_flops(c.dims, m, batch=batch, kv_cached=True)


def build_plan(configs: list[ModelConfig], run_config: ModelConfig, compile_config: ModelConfig, *, reps: int, warmup: int,
               keyframes: tuple[int, ...], cpu_keyframes: tuple[int, ...], steps: int, cfg: float, asym_rate: float,
               presets: dict) -> list[Task]:
    """Every task in the order it runs: the decisive figures first, so a tight budget drops the tail.

    Per model: the full pass, keyframe passes with the cache on the GPU (every M in ``keyframes``), then
    CPU-offloaded (``cpu_keyframes``: the offload cost is the copied bytes, nearly the same for any small
    M); the end-to-end runs (``presets``: method -> ScheduleConfig, None = dense) right after
    ``run_config``'s passes, on the same model; then AsymRnR; ``torch.compile`` last, since it costs the
    most per figure and is only informative where it compiles in the time.
    """
    over = ASSUMED["overhead_s_per_task"]
    calls = warmup + reps
    tasks: list[Task] = []
    for c in configs:
        d = c.built_dims()
        full = _secs(pass_flops(d, d.frames))
        tasks.append(Task("pass_full", c, over + calls * full))
        for placement, ms in (("device", keyframes), ("cpu", cpu_keyframes)):
            for context in ("kv", "hidden"):
                for m in ms:
                    key = _secs(pass_flops(d, m, kv_cached=context == "kv"))
                    host = _cache_bytes(c, m, context) / ASSUMED["host_bytes_per_s"] if placement == "cpu" else 0.0
                    est = over + full + host + calls * (key + host)  # one record (sync) pass, then the keyframe passes
                    tasks.append(Task("pass_keyframe", c, est, {"m": m, "context": context, "placement": placement}))
        if c is run_config:
            batch = 2 if cfg != 1.0 else 1
            for method, schedule in presets.items():
                est = over + _secs(run_flops(run_config, steps, batch, schedule))
                tasks.append(Task("run", run_config, est, {"method": method, "steps": steps, "cfg": cfg, "schedule": schedule}))
    for c in configs:
        n, dim = c.tokens, c.dims.dim
        n_dst = n // 4  # dst_stride (1, 2, 2): one destination per 4 tokens
        dense = _secs(4 * n * n * dim)
        kept = (1 - asym_rate) ** 2
        match = 2 * (2 * (n - n_dst) * n_dst * dim) / ASSUMED["fp32_flops_per_s"]  # Q and V matchings
        tasks.append(Task("asymrnr", c, over + calls * (dense + dense * kept) + (1 + calls) * match, {"rate": asym_rate}))
    d = compile_config.built_dims()
    full = _secs(pass_flops(d, d.frames))
    m = 4 if 4 in keyframes else keyframes[0]
    key = _secs(pass_flops(d, m, kv_cached=True))
    tasks.append(Task("compile_full", compile_config, over + ASSUMED["compile_s"] / 2 + calls * full))
    tasks.append(Task("compile_keyframe", compile_config, over + ASSUMED["compile_s"] / 2 + full + calls * key,
                      {"m": m, "context": "kv", "placement": "device"}))
    return tasks


def builds(tasks: list[Task]) -> int:
    """How many models the run builds (a new one whenever consecutive tasks need a different one)."""
    keys = [t.model_key for t in tasks]
    return sum(1 for i, k in enumerate(keys) if k is not None and (i == 0 or keys[i - 1] != k))


def plan_text(tasks: list[Task], budget_s: float) -> str:
    """The dry-run's printout: every task with its estimate, the total and the assumptions."""
    lines = [f"{'#':>3}  {'model':<18} {'built/real layers':>17}  {'tokens':>6}  {'est. s':>7}  task"]
    for i, t in enumerate(tasks):
        c = t.config
        lines.append(f"{i:>3}  {c.name:<18} {f'{c.layers}/{c.dims.layers}':>17}  {c.tokens:>6}  {t.estimate_s:>7.1f}  {t.label}")
    n_builds = builds(tasks)
    lines.append(f"estimated GPU time: {estimate_total(tasks):.0f} s for {len(tasks)} tasks and {n_builds} model "
                 f"build{'' if n_builds == 1 else 's'} (budget {budget_s:.0f} s: tasks that would overrun it are skipped at run time)")
    lines.append("assumptions: " + ", ".join(f"{k} {v:g}" for k, v in ASSUMED.items()))
    return "\n".join(lines)


def estimate_total(tasks: list[Task]) -> float:
    return ASSUMED["build_s"] * builds(tasks) + sum(t.estimate_s for t in tasks)
