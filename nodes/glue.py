"""ComfyUI glue for the RhymeFlow nodes: installing the patch on a ModelPatcher, the KSAMPLER function that
resolves the schedule preset at run time, stats for the UI, and the comparison plot.

ComfyUI modules (``comfy``, ``server``) are imported inside functions only, so this module (and the pure
helpers in it) can be imported and unit-tested without a ComfyUI install.
"""
from __future__ import annotations

import logging
import math

import torch

from ..rhymeflow_core import presets
from ..rhymeflow_core import adapters
from ..rhymeflow_core.keyframes import KeyframePlan
from ..rhymeflow_core.patch import KEY, BlockPatch, PatchConfig, RhymeFlowHolder, apply_model_wrapper
from ..rhymeflow_core.sampler import sample_rhymeflow
from ..rhymeflow_core.flops import ModelDims, flop_ideal_from_counts, pass_flops
from ..rhymeflow_core.schedule import ROLE_SKIP, ScheduleConfig

log = logging.getLogger("rhymeflow")

PATCH_NODE = "RhymeFlow Projection Patch"
SAMPLER_NODE = "RhymeFlow Async Sampler"
KEYFRAMES_NODE = "RhymeFlow Keyframes"
STATS_NODE = "RhymeFlow Stats"
STATS_EVENT = "rhymeflow.stats"
DEFAULT_TEXT_TOKENS = 512


# ------------------------------------------------------------------------------------------ patch

def outer_sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper: whatever happens inside sampling (errors, an interrupt), no run state survives."""
    guider = executor.class_obj
    holder = guider.model_options.get("transformer_options", {}).get(KEY)
    try:
        return executor(*args, **kwargs)
    finally:
        if isinstance(holder, RhymeFlowHolder):
            holder.end_run()


def model_adapter(model):
    """The family adapter for a ComfyUI MODEL; an error naming node, input and the supported families otherwise."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    try:
        return adapters.comfyui_adapter(dm)
    except ValueError as exc:
        raise ValueError(f"{PATCH_NODE}: input 'model' ({type(getattr(model, 'model', None)).__name__}): {exc}") from None


def patch_model(model, config: PatchConfig):
    """A clone of ``model`` with the RhymeFlow projection patch installed; ``model`` itself is untouched."""
    import comfy.patcher_extension

    adapter = model_adapter(model)
    holder = RhymeFlowHolder(config, adapter)  # validates the config against the family
    m = model.clone()
    m.model_options.setdefault("transformer_options", {})[KEY] = holder
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, KEY, apply_model_wrapper)
    for kind, index in adapter.block_keys(m.model.diffusion_model):
        m.set_model_patch_replace(BlockPatch((kind, index)), "dit", kind, index)
    return m


def holder_of(model) -> RhymeFlowHolder | None:
    holder = getattr(model, "model_options", {}).get("transformer_options", {}).get(KEY)
    return holder if isinstance(holder, RhymeFlowHolder) else None


# ------------------------------------------------------------------------------------------ sampler

def resolve_schedule(preset: str, sigmas, warmup: int, n_small: int, n_large: int, family: str = "wan") -> ScheduleConfig:
    """The schedule for this run: a named preset resolved on the run's ``sigmas``, or the custom numbers."""
    steps = len(sigmas) - 1
    if preset != "custom":
        return presets.preset_schedule(preset, sigmas, family)
    if steps < presets.MIN_STEPS and float(sigmas[0]) >= presets.TOP_SIGMA:
        presets.preset_schedule("paper", sigmas, family)  # raises the few-steps error
    cfg = ScheduleConfig(warmup=int(warmup), n_small=int(n_small), n_large=int(n_large))
    try:
        cfg.validate(steps)
    except ValueError as exc:
        raise ValueError(f"{SAMPLER_NODE}: preset=custom at {steps} steps: {exc}") from None
    return cfg


def sample_rhymeflow_node(model, x, sigmas, extra_args=None, callback=None, disable=None, *, plan: KeyframePlan,
                          preset: str = "paper", warmup: int = 5, n_small: int = 2, n_large: int = 3,
                          keyframe_solver: str = "euler", projection: str = "linear", node_id: str | None = None):
    """KSAMPLER function of the Async Sampler node: resolve the preset on this run's sigmas, run, report."""
    extra_args = {} if extra_args is None else extra_args
    to = extra_args.get("model_options", {}).get("transformer_options", {})
    if "easycache" in to:  # EasyCache/LazyCache cache whole-latent outputs; keyframe-only passes change the shape
        raise ValueError(f"{SAMPLER_NODE}: the MODEL also has {getattr(to['easycache'], 'name', 'EasyCache')}, which cannot be "
                         "combined with RhymeFlow's keyframe-only passes; remove it from this model, or use it with a standard "
                         "sampler (the Projection Patch leaves other samplers unchanged)")
    steps = len(sigmas) - 1
    holder = to.get(KEY)
    family = holder.adapter.family if isinstance(holder, RhymeFlowHolder) else "wan"  # no patch: the sampler refuses below
    schedule = resolve_schedule(preset, sigmas, warmup, n_small, n_large, family)
    if x.ndim == 5 and x.shape[2] >= 3:
        try:
            plan.validate(x.shape[2])
        except ValueError as exc:
            raise ValueError(f"{KEYFRAMES_NODE} (used by {SAMPLER_NODE}): {exc}") from None
    out = sample_rhymeflow(model, x, sigmas, extra_args, callback, disable, plan=plan, schedule=schedule,
                           keyframe_solver=keyframe_solver, projection=projection)
    stats = dict(holder.last_stats or {})  # sample_rhymeflow refused a MODEL without the holder
    stats.update(node=node_id, frames=int(x.shape[2]), steps=steps, preset=preset, schedule=schedule.to_dict(),
                 keyframe_solver=keyframe_solver, projection=projection, strategy=plan.strategy,
                 text_tokens=_text_tokens(model), family=family, sigma_start=round(float(sigmas[0]), 4),
                 sigma_end=round(float(sigmas[-1]), 4))
    holder.last_stats = stats
    send_stats(node_id, stats)
    return out


def _text_tokens(model) -> int | None:
    """Length of the positive text context the guider holds (``None`` if it cannot be found)."""
    try:
        cond = model.inner_model.conds["positive"][0]["model_conds"]["c_crossattn"].cond
        return int(cond.shape[1])
    except Exception:  # noqa: BLE001 - best effort, only used for the FLOP estimate
        return None


def send_stats(node_id, stats: dict) -> None:
    """``rhymeflow.stats`` websocket message to the client that queued the prompt (no-op without a server)."""
    try:
        from server import PromptServer
    except Exception:  # noqa: BLE001 - no server (tests, scripts)
        return
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return
    try:
        server.send_sync(STATS_EVENT, {**stats, "node": node_id}, server.client_id)
    except Exception as exc:  # noqa: BLE001 - a UI message must never fail a finished run
        log.warning("RhymeFlow: could not send stats to the UI: %s", exc)


# ------------------------------------------------------------------------------------------ stats

def model_dims(model, latent: torch.Tensor, text_tokens: int | None) -> ModelDims:
    """FLOP-model dims of the patched MODEL's DiT for ``latent [B, C, T, H, W]``."""
    holder = holder_of(model)
    adapter = holder.adapter if holder is not None else model_adapter(model)
    return adapter.model_dims(model.model.diffusion_model, latent, int(text_tokens or DEFAULT_TEXT_TOKENS))


def flop_speedup(stats: dict, dims: ModelDims) -> float:
    """Dense FLOPs over RhymeFlow FLOPs for the realised run (an upper bound on the wall-clock gain)."""
    return flop_ideal_from_counts(stats["full_passes"], stats["keyframe_passes"], len(stats["keyframes"]), dims,
                                  kv_cached=stats.get("context_mode") == "kv")


def join_expert_stats(first: dict, second: dict, dims: tuple[ModelDims, ModelDims] | None) -> dict:
    """One step map over both experts of a Wan 2.2 A14B run (two samplers, one after the other).

    Each expert's sampler is its own RhymeFlow run with a clean sync at the switch: the experts' weights
    differ, so one expert's cached keys/values mean nothing to the other, and the first run ends with every
    frame at the switch sigma. ``segments`` tells the widget where the switch is; FLOP and time figures are
    summed over both runs, each with its own keyframes.
    """
    if len(first["roles"]) != len(second["roles"]):
        raise ValueError(f"{STATS_NODE}: the two experts' runs have {len(first['roles'])} and {len(second['roles'])} latent frames; "
                         "connect the two models of one Wan 2.2 A14B generation (high-noise first)")
    if first.get("sigma_end") is not None and second.get("sigma_start") is not None and \
            abs(first["sigma_end"] - second["sigma_start"]) > 1e-3:
        raise ValueError(f"{STATS_NODE}: input 'model' ended at sigma {first['sigma_end']} but 'second_model' started at "
                         f"{second['sigma_start']}; connect the high-noise expert to 'model' and the low-noise one to 'second_model'")
    parts = (first, second)
    steps = [len(p["roles"][0]) for p in parts]
    dit = [max(p["dit_seconds"], 1e-9) for p in parts]
    out = dict(first)
    out.update(
        roles=[a + b for a, b in zip(first["roles"], second["roles"])],
        keyframes=sorted(set(first["keyframes"]) | set(second["keyframes"])),
        full_passes=first["full_passes"] + second["full_passes"],
        keyframe_passes=first["keyframe_passes"] + second["keyframe_passes"],
        dit_seconds=round(sum(dit), 3),
        sampler_seconds=round(first["sampler_seconds"] + second["sampler_seconds"], 3),
        estimated_speedup=round(sum(p["estimated_speedup"] * d for p, d in zip(parts, dit)) / sum(dit), 3),
        cache_bytes=max(first["cache_bytes"], second["cache_bytes"]),
        steps=sum(steps), sigma_end=second.get("sigma_end"),
        segments=[{"label": label, "start": start, "steps": n, "keyframes": p["keyframes"]}
                  for label, start, n, p in zip(("high-noise expert", "low-noise expert"), (0, steps[0]), steps, parts)],
    )
    if dims is not None:  # each run's dense FLOPs over its own speed-up is its RhymeFlow cost
        dense = [(p["full_passes"] + p["keyframe_passes"]) * pass_flops(d, d.frames) for p, d in zip(parts, dims)]
        out["flop_speedup"] = round(sum(dense) / sum(f / flop_speedup(p, d) for f, p, d in zip(dense, parts, dims)), 3)
    return out


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _x(v) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def summary_text(stats: dict) -> str:
    frames, steps = len(stats["roles"]), len(stats["roles"][0]) if stats["roles"] else 0
    keys = stats["keyframes"]
    scores = stats.get("scores", [])
    key_scores = ", ".join(f"{k} ({scores[k]:.3f})" if k < len(scores) else str(k) for k in keys)
    computed = sum(r != ROLE_SKIP for row in stats["roles"] for r in row)
    lines = [
        f"RhymeFlow: {frames} latent frames x {steps} steps; {computed} of {frames * steps} frame-steps computed "
        f"({100 * computed / max(frames * steps, 1):.0f}%), the rest projected",
        f"keyframes ({len(keys)}): {key_scores}" if not stats.get("segments") else
        "keyframes: " + "; ".join(f"{s['label']} {s['keyframes']}" for s in stats["segments"]),
        f"full passes: {stats['full_passes']} (warm-up {stats['warmup']}), keyframe-only passes: {stats['keyframe_passes']}",
        f"FLOP-ideal speed-up: {_x(stats.get('flop_speedup'))}; estimated measured speed-up: {_x(stats['estimated_speedup'])}",
        f"DiT time {stats['dit_seconds']:.2f} s of {stats['sampler_seconds']:.2f} s sampling; context cache {_bytes(stats['cache_bytes'])}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ compare

def images_to_video(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[N, H, W, 3]`` (frames as batch) -> ``[3, N, H, W]`` for ``rhymeflow_core.metrics``."""
    return images[..., :3].permute(3, 0, 1, 2)


def psnr_plot(psnr: list[float], ssim: list[float], width: int = 640, height: int = 280) -> torch.Tensor:
    """Per-frame PSNR bars (SSIM in the labels) drawn with Pillow -> IMAGE ``[1, H, W, 3]``."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 44, 12, 28, 40
    n = max(len(psnr), 1)
    top_db = max(50.0, math.ceil(max(psnr, default=0.0) / 10) * 10)
    plot_h = height - top - bottom
    for db in range(0, int(top_db) + 1, 10):
        y = top + plot_h * (1 - db / top_db)
        draw.line([(left, y), (width - right, y)], fill=(60, 60, 68))
        draw.text((6, y - 6), f"{db}", fill=(170, 170, 170))
    slot = (width - left - right) / n
    for i, p in enumerate(psnr):
        x0 = left + i * slot + slot * 0.15
        x1 = left + (i + 1) * slot - slot * 0.15
        y0 = top + plot_h * (1 - min(p, top_db) / top_db)
        s = ssim[i] if i < len(ssim) else 1.0
        colour = (int(255 * (1 - s) ** 0.5), int(80 + 150 * s), 110)
        draw.rectangle([x0, y0, x1, top + plot_h], fill=colour)
        draw.text((x0, top + plot_h + 4), str(i), fill=(200, 200, 200))
    mean_p = sum(psnr) / n
    y = top + plot_h * (1 - min(mean_p, top_db) / top_db)
    draw.line([(left, y), (width - right, y)], fill=(255, 210, 60), width=2)
    mean_s = sum(ssim) / max(len(ssim), 1)
    draw.text((left, 8), f"PSNR per frame (dB), mean {mean_p:.2f}, min {min(psnr, default=0):.2f}; "
                         f"SSIM mean {mean_s:.4f}, min {min(ssim, default=0):.4f}", fill=(235, 235, 235))
    draw.text((left, height - 16), "frame", fill=(170, 170, 170))
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    return arr.unsqueeze(0)
