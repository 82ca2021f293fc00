"""The frames x steps step map of a RhymeFlow run (its FLOP model is in ``flops.py``).

Which steps make a model pass at all comes first: with ``passes`` set, only that many of the run's
steps do (spread evenly over the run, ``pass_steps``); the others *reuse* the last pass's prediction
(step caching: for a flow model, holding the x0 prediction over a step is an Euler step over the merged
interval, so a reused step costs nothing and lands where dense sampling on the thinned sigmas would).
Warm-up and strides count pass steps. Why thin evenly: a thinned schedule that looks like a shorter
one of the same shift is the best-understood way to drop steps, and on top of it the asynchronous
scheme keeps its own gain (measured in ``benchmarks/benchmark.py``: RhymeFlow on the thinned steps
beats dense with as few passes by several dB at 2-3x).

After ``warmup`` full steps the run is cut into groups. Each group starts at a rhythmic (sync) point,
a full pass over every frame; its remaining steps are keyframe-only passes while the other frames
jump to the group's end. The stride grows from ``n_small`` to ``n_large`` because late, low-noise
steps are smooth enough to skip more of. The saving is decided by how many full passes remain;
``flops.py`` says how cheap the keyframe-only passes are, since their keys and values still cover
every frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import torch

ROLE_WARMUP, ROLE_SYNC, ROLE_KEY, ROLE_SKIP, ROLE_REUSE = 0, 1, 2, 3, 4
ROLE_LEGEND = {ROLE_WARMUP: "warm-up", ROLE_SYNC: "sync", ROLE_KEY: "keyframe", ROLE_SKIP: "projected", ROLE_REUSE: "reused"}


@dataclass(frozen=True)
class ScheduleConfig:
    """Warm-up length and stride schedule (the authors' progressive ``min/min+1/max`` skip).

    ``transitions`` are fractions of the post-warm-up steps: up to the first the stride is
    ``n_small``, up to the second ``min(n_small + 1, n_large)``, after it ``n_large``.
    """

    warmup: int = 8
    n_small: int = 2
    n_large: int = 3
    transitions: tuple[float, float] = (0.3, 0.7)
    passes: int = 0  # steps that make a model pass, spread evenly (0: every step); the others reuse the last pass

    def __post_init__(self) -> None:
        # JSON gives a list; a tuple keeps the config hashable.
        object.__setattr__(self, "transitions", tuple(self.transitions))

    def pass_count(self, steps: int) -> int:
        """How many of the ``steps`` make a model pass."""
        return self.passes or steps

    def validate(self, steps: int) -> None:
        """Raise ``ValueError`` naming the field, its value and what is accepted."""
        for name in ("warmup", "n_small", "n_large", "passes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r} must be an integer")
        if not 0 <= self.passes <= steps:
            raise ValueError(f"passes={self.passes} must be between 1 and the number of steps ({steps}), or 0 for every step")
        steps = self.pass_count(steps)  # warm-up and strides count pass steps
        if self.warmup < 1:
            raise ValueError(
                f"warmup={self.warmup} must be at least 1: keyframes are chosen from the x0 prediction "
                "of the last warm-up step"
            )
        if self.warmup >= steps:
            raise ValueError(
                f"warmup={self.warmup} must be smaller than the number of steps ({steps}): "
                "otherwise every step is a full pass and nothing is skipped"
            )
        if self.n_small < 1:
            raise ValueError(f"n_small={self.n_small} must be at least 1 (1 = no skipping early on)")
        if self.n_large < self.n_small:
            raise ValueError(f"n_large={self.n_large} must be at least n_small={self.n_small}: strides only grow")
        a_b = self.transitions
        if len(a_b) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in a_b) or not (
            0.0 <= a_b[0] <= a_b[1] <= 1.0
        ):
            raise ValueError(
                f"transitions={a_b!r} must be two fractions 0 <= a <= b <= 1 of the post-warm-up steps, "
                "e.g. (0.3, 0.7)"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["transitions"] = list(self.transitions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleConfig":
        """Inverse of ``to_dict``; unknown keys are an error so a typo is not silently a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ScheduleConfig keys {unknown}; accepted: {sorted(known)}")
        return cls(**d)


def stride_at(offset: int, total: int, cfg: ScheduleConfig) -> int:
    """Stride of the group whose sync point is ``offset`` steps into the ``total`` post-warm-up steps.

    ``offset`` counts from 1 at the first step after warm-up; identical to the authors'
    ``_progressive_skip_n`` (Python ``round``, i.e. half to even, included).
    """
    early_end = round(cfg.transitions[0] * total)
    middle_end = round(cfg.transitions[1] * total)
    if offset <= early_end:
        return cfg.n_small
    if offset <= middle_end:
        return min(cfg.n_small + 1, cfg.n_large)
    return cfg.n_large


def pass_steps(steps: int, cfg: ScheduleConfig) -> list[int]:
    """The steps that make a model pass: every step, or ``cfg.passes`` of them evenly spread (the first included)."""
    count = cfg.pass_count(steps)
    return [(k * steps) // count for k in range(count)]


def sync_groups(steps: int, cfg: ScheduleConfig) -> list[tuple[int, int]]:
    """``[(i, end)]``: a sync point at step ``i``; the group covers steps ``i .. end-1`` (reused steps included).

    The first group starts at the ``warmup``-th pass step; each next one starts where the previous ended;
    strides count pass steps.
    """
    cfg.validate(steps)
    kept = pass_steps(steps, cfg)
    count = len(kept)
    groups = []
    p = cfg.warmup
    while p < count:
        q = min(count, p + stride_at(p - cfg.warmup + 1, count - cfg.warmup, cfg))
        groups.append((kept[p], kept[q] if q < count else steps))
        p = q
    return groups


@dataclass
class StepMap:
    """Role of every (frame, step): what the sampler computes and what the UI widget draws."""

    roles: torch.Tensor  # uint8 [F, T], values ROLE_*
    keyframes: tuple[int, ...]  # of the first group (all groups unless keyframes are re-chosen at sync points)
    groups: list[tuple[int, int]]
    warmup: int
    group_keyframes: list[tuple[int, ...]] = field(default_factory=list)  # per group, when re-chosen at sync points

    def full_passes(self) -> int:
        """Passes over every frame: the warm-up steps plus one per sync point."""
        return self.warmup + len(self.groups)

    def keyframe_passes(self) -> int:
        """Passes whose queries are the keyframes only: the pass steps inside groups after their sync point."""
        return int((self.roles[:, self.warmup_end():] != ROLE_REUSE).any(0).sum()) - len(self.groups)

    def reused_steps(self) -> int:
        """Steps that make no pass (step caching)."""
        return int((self.roles == ROLE_REUSE).all(0).sum())

    def warmup_end(self) -> int:
        """The step where the first group starts (the step count when there is none)."""
        return self.groups[0][0] if self.groups else int(self.roles.shape[1])

    def to_dict(self) -> dict:
        """JSON for the step-map widget."""
        return {
            "frames": int(self.roles.shape[0]),
            "steps": int(self.roles.shape[1]),
            "roles": self.roles.tolist(),
            "keyframes": list(self.keyframes),
            "groups": [[i, end] for i, end in self.groups],
            "warmup": self.warmup,
            "group_keyframes": [list(k) for k in self.group_keyframes],
            "legend": {str(k): v for k, v in ROLE_LEGEND.items()},
        }


def _checked_keys(keyframes: Sequence[int], num_frames: int) -> tuple[int, ...]:
    keys = sorted(set(keyframes))
    if not keys or any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < num_frames for k in keys):
        raise ValueError(
            f"keyframes={list(keyframes)} must be a non-empty list of frame indices in 0..{num_frames - 1}"
        )
    return tuple(keys)


def build_step_map(num_frames: int, steps: int, cfg: ScheduleConfig, keyframes: Sequence[int],
                   group_keyframes: Sequence[Sequence[int]] | None = None) -> StepMap:
    """The ``[F, T]`` role map for ``num_frames`` latent frames, ``steps`` sampling steps and ``keyframes``;
    ``group_keyframes`` (one list per group) when keyframes were re-chosen at sync points."""
    keys = _checked_keys(keyframes, num_frames)
    groups = sync_groups(steps, cfg)
    per_group = [_checked_keys(k, num_frames) for k in group_keyframes] if group_keyframes else []
    if per_group and len(per_group) != len(groups):
        raise ValueError(f"group_keyframes has {len(per_group)} entries for {len(groups)} groups")
    roles = torch.full((num_frames, steps), ROLE_SKIP, dtype=torch.uint8)
    for g, (i, end) in enumerate(groups):
        roles[list(per_group[g] if per_group else keys), i:end] = ROLE_KEY
    kept = pass_steps(steps, cfg)
    start = groups[0][0] if groups else steps
    roles[:, :start] = ROLE_WARMUP
    roles[:, [i for i, _ in groups]] = ROLE_SYNC
    reused = sorted(set(range(steps)) - set(kept))
    roles[:, reused] = ROLE_REUSE
    return StepMap(roles=roles, keyframes=tuple(per_group[0]) if per_group else keys, groups=groups, warmup=cfg.warmup,
                   group_keyframes=per_group)
