"""What a finished RhymeFlow run reports: one typed ``RunResult``, the two-expert join, the text summary.

Why typed: both entry points (the Async Sampler and the drop-in MODEL node) finish through the same
engine, and the UI, the Stats node, the benchmarks and the tests read the same fields.

One shape, two channels, each needed: ``ui_record`` (``to_dict()`` or ``join_expert_results`` plus the text
summary) reaches the step-map widget by the ``rhymeflow.stats`` websocket event, which the run sends (so a graph
without RhymeFlow Stats shows its realised map; Stats sends the two-expert join the same way), and by RhymeFlow
Stats' ``ui`` output, the identical dict, which is what ComfyUI replays when a re-queued prompt comes from its cache
(no run, no event) and what ``/history`` keeps for API clients. Both carry the widget node's id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .flops import ModelDims, flop_ideal_from_counts, pass_flops
from .schedule import ROLE_SKIP, ScheduleConfig, StepMap


@dataclass
class RunResult:
    """One run on one MODEL: the realised step map and what it cost.

    ``calls``/``seconds`` count DiT calls per pass kind (``full``, ``record``, ``keyframe``); a CFG-batched
    call is one call, separate cond/uncond calls are two; second-order samplers make several per step.
    ``dims`` are the model's real FLOP-model dims, read at the run's first model call (``None`` if no
    call was made). ``settings`` are the entry point's own labels (preset, sampler name, node id, ...).
    """

    step_map: StepMap
    scores: list[float]
    schedule: ScheduleConfig
    calls: dict[str, int]
    seconds: dict[str, float]
    sampler_seconds: float
    cache_bytes: int
    context_mode: str
    family: str
    sigma_start: float
    sigma_end: float
    sigmas: list[float] = field(default_factory=list)  # the noise level of each step (the widget's hover shows it)
    dims: ModelDims | None = None
    settings: dict = field(default_factory=dict)

    @property
    def roles(self) -> list[list[int]]:
        return self.step_map.roles.tolist()

    @property
    def keyframes(self) -> list[int]:
        return list(self.step_map.keyframes)

    @property
    def full_passes(self) -> int:
        return self.step_map.full_passes()

    @property
    def keyframe_passes(self) -> int:
        return self.step_map.keyframe_passes()

    @property
    def dit_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def estimated_speedup(self) -> float:
        """Dense time estimated from this run's own full calls (calls x mean full-call time) over DiT time."""
        if self.full_calls == 0:
            return 1.0
        mean_full = (self.seconds["full"] + self.seconds["record"]) / self.full_calls
        return sum(self.calls.values()) * mean_full / max(self.dit_seconds, 1e-9)

    @property
    def full_calls(self) -> int:
        return self.calls["full"] + self.calls["record"]

    @property
    def flop_speedup(self) -> float | None:
        """Dense FLOPs over RhymeFlow FLOPs of the DiT calls this run made, at the model's real dims (an upper bound on
        the gain). Counted by call, not by step: a sampler with several calls per step (heun) pays a full pass for
        every call that lands on a warm-up or sync step, its predictor's call at a sync sigma included."""
        if self.dims is None:
            return None
        return flop_ideal_from_counts(self.full_calls, self.calls["keyframe"], len(self.keyframes), self.dims,
                                      kv_cached=self.context_mode == "kv", reused=self.reused_calls)

    @property
    def reused_calls(self) -> int:
        """Model calls that reused steps would have made (this run's calls per pass step, times the reused steps)."""
        reused = self.step_map.reused_steps()
        pass_steps = int(self.step_map.roles.shape[1]) - reused
        return round(reused * sum(self.calls.values()) / max(pass_steps, 1))

    def to_dict(self) -> dict:
        """The UI's JSON (no NaN: ``None`` where a figure is unknown)."""
        d = self.dims
        flop = self.flop_speedup
        return {
            **self.settings,
            "roles": self.roles,
            "keyframes": self.keyframes,
            "scores": [round(float(s), 4) for s in self.scores],
            "warmup": self.schedule.warmup,
            "schedule": self.schedule.to_dict(),
            "frames": int(self.step_map.roles.shape[0]),
            "steps": int(self.step_map.roles.shape[1]),
            "full_passes": self.full_passes,
            "keyframe_passes": self.keyframe_passes,
            "reused_steps": self.step_map.reused_steps(),
            "group_keyframes": [list(k) for k in self.step_map.group_keyframes],
            "calls": dict(self.calls),
            "dit_seconds": round(self.dit_seconds, 3),
            "sampler_seconds": round(self.sampler_seconds, 3),
            "estimated_speedup": round(self.estimated_speedup, 3),
            "flop_speedup": None if flop is None else round(flop, 3),
            "flop_dims": None if d is None else {"layers": d.layers, "dim": d.dim, "ffn_dim": d.ffn_dim,
                                                 "tokens_per_frame": d.tokens_per_frame, "frames": d.frames,
                                                 "text_tokens": d.text_tokens},
            "text_tokens": None if d is None else d.text_tokens,
            "cache_bytes": self.cache_bytes,
            "context_mode": self.context_mode,
            "family": self.family,
            "sigma_start": round(self.sigma_start, 4),
            "sigma_end": round(self.sigma_end, 4),
            "sigmas": [round(float(x), 4) for x in self.sigmas],
        }


def join_expert_results(first: RunResult, second: RunResult) -> dict:
    """One step map over both experts of a Wan 2.2 A14B run (two samplers, one after the other), as UI JSON.

    Each expert's run is its own RhymeFlow run with a clean sync at the switch: the experts' weights differ,
    so one expert's cached keys/values mean nothing to the other, and the first run ends with every frame at
    the switch sigma. ``segments`` tells the widget where the switch is; FLOP and time figures are summed
    over both runs, each with its own keyframes. Raises ``ValueError`` naming the mismatch.
    """
    f1, f2 = first.step_map.roles.shape[0], second.step_map.roles.shape[0]
    if f1 != f2:
        raise ValueError(f"the two experts' runs have {f1} and {f2} latent frames; connect the two models of one "
                         "Wan 2.2 A14B generation (high-noise first)")
    if abs(first.sigma_end - second.sigma_start) > 1e-3:
        raise ValueError(f"input 'model' ended at sigma {first.sigma_end:.4f} but 'second_model' started at "
                         f"{second.sigma_start:.4f}; connect the high-noise expert to 'model' and the low-noise one to "
                         "'second_model'")
    parts = (first, second)
    a, b = first.to_dict(), second.to_dict()
    steps = [a["steps"], b["steps"]]
    dit = [max(p.dit_seconds, 1e-9) for p in parts]
    out = dict(a)
    out.update(
        roles=[x + y for x, y in zip(a["roles"], b["roles"])],
        keyframes=sorted(set(a["keyframes"]) | set(b["keyframes"])),
        full_passes=a["full_passes"] + b["full_passes"],
        keyframe_passes=a["keyframe_passes"] + b["keyframe_passes"],
        calls={k: a["calls"][k] + b["calls"][k] for k in a["calls"]},
        dit_seconds=round(sum(dit), 3),
        sampler_seconds=round(first.sampler_seconds + second.sampler_seconds, 3),
        estimated_speedup=round(sum(p.estimated_speedup * d for p, d in zip(parts, dit)) / sum(dit), 3),
        cache_bytes=max(first.cache_bytes, second.cache_bytes),
        steps=sum(steps), sigma_end=b["sigma_end"], sigmas=a["sigmas"] + b["sigmas"],
        segments=[{"label": label, "start": start, "steps": n, "keyframes": p.keyframes}
                  for label, start, n, p in zip(("high-noise expert", "low-noise expert"), (0, steps[0]), steps, parts)],
    )
    if first.dims is not None and second.dims is not None:  # each run's dense FLOPs over its speed-up is its cost
        dense = [sum(p.calls.values()) * pass_flops(p.dims, p.dims.frames) for p in parts]
        out["flop_speedup"] = round(sum(dense) / sum(f / p.flop_speedup for f, p in zip(dense, parts)), 3)
    else:
        out["flop_speedup"] = None
    return out


def ui_record(stats: dict) -> dict:
    """The one JSON shape a finished run reaches the UI and ``/history`` in: ``stats`` (a ``RunResult.to_dict()`` or a
    ``join_expert_results`` dict) with its text summary."""
    return {**stats, "summary": summary_text(stats)}


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _x(v) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def summary_text(stats: dict) -> str:
    """The Stats node's text for a ``RunResult.to_dict()`` or a ``join_expert_results`` dict."""
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
        f"full passes: {stats['full_passes']} (warm-up {stats['warmup']}), keyframe-only passes: {stats['keyframe_passes']}"
        + (f", steps reused (no pass): {stats['reused_steps']}" if stats.get("reused_steps") else ""),
        (f"target {_x(stats['target_speedup'])} -> " if stats.get("target_speedup") else "")
        + f"FLOP-ideal speed-up: {_x(stats.get('flop_speedup'))}; estimated measured speed-up: {_x(stats['estimated_speedup'])}",
        f"DiT time {stats['dit_seconds']:.2f} s of {stats['sampler_seconds']:.2f} s sampling; context cache {_bytes(stats['cache_bytes'])}",
    ]
    return "\n".join(lines)
