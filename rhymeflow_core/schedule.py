"""The frames x steps step map of a RhymeFlow run (its FLOP model is in ``flops.py``).

After ``warmup`` full steps the run is cut into groups. Each group starts at a rhythmic (sync) point,
a full pass over every frame; its remaining steps are keyframe-only passes while the other frames
jump to the group's end. The stride grows from ``n_small`` to ``n_large`` because late, low-noise
steps are smooth enough to skip more of. The saving is decided by how many full passes remain;
``flops.py`` says how cheap the keyframe-only passes are, since their keys and values still cover
every frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch

ROLE_WARMUP, ROLE_SYNC, ROLE_KEY, ROLE_SKIP = 0, 1, 2, 3
ROLE_LEGEND = {ROLE_WARMUP: "warm-up", ROLE_SYNC: "sync", ROLE_KEY: "keyframe", ROLE_SKIP: "projected"}


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

    def __post_init__(self) -> None:
        # JSON gives a list; a tuple keeps the config hashable.
        object.__setattr__(self, "transitions", tuple(self.transitions))

    def validate(self, steps: int) -> None:
        """Raise ``ValueError`` naming the field, its value and what is accepted."""
        for name in ("warmup", "n_small", "n_large"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r} must be an integer")
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


def sync_groups(steps: int, cfg: ScheduleConfig) -> list[tuple[int, int]]:
    """``[(i, end)]``: a sync point at step ``i``; the group covers steps ``i .. end-1``.

    The first group starts at ``warmup``; each next one starts where the previous ended.
    """
    cfg.validate(steps)
    groups = []
    i = cfg.warmup
    while i < steps:
        end = min(steps, i + stride_at(i - cfg.warmup + 1, steps - cfg.warmup, cfg))
        groups.append((i, end))
        i = end
    return groups


@dataclass
class StepMap:
    """Role of every (frame, step): what the sampler computes and what the UI widget draws."""

    roles: torch.Tensor  # uint8 [F, T], values ROLE_*
    keyframes: tuple[int, ...]
    groups: list[tuple[int, int]]
    warmup: int

    def full_passes(self) -> int:
        """Passes over every frame: the warm-up steps plus one per sync point."""
        return self.warmup + len(self.groups)

    def keyframe_passes(self) -> int:
        """Passes whose queries are the keyframes only: the steps inside groups after their sync point."""
        return sum(end - i - 1 for i, end in self.groups)

    def to_dict(self) -> dict:
        """JSON for the step-map widget."""
        return {
            "frames": int(self.roles.shape[0]),
            "steps": int(self.roles.shape[1]),
            "roles": self.roles.tolist(),
            "keyframes": list(self.keyframes),
            "groups": [[i, end] for i, end in self.groups],
            "warmup": self.warmup,
            "legend": {str(k): v for k, v in ROLE_LEGEND.items()},
        }


def build_step_map(num_frames: int, steps: int, cfg: ScheduleConfig, keyframes: Sequence[int]) -> StepMap:
    """The ``[F, T]`` role map for ``num_frames`` latent frames, ``steps`` sampling steps and ``keyframes``."""
    keys = sorted(set(keyframes))
    if not keys or any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < num_frames for k in keys):
        raise ValueError(
            f"keyframes={list(keyframes)} must be a non-empty list of frame indices in 0..{num_frames - 1}"
        )
    groups = sync_groups(steps, cfg)
    roles = torch.full((num_frames, steps), ROLE_SKIP, dtype=torch.uint8)
    roles[keys, :] = ROLE_KEY
    roles[:, : cfg.warmup] = ROLE_WARMUP
    roles[:, [i for i, _ in groups]] = ROLE_SYNC
    return StepMap(roles=roles, keyframes=tuple(keys), groups=groups, warmup=cfg.warmup)
