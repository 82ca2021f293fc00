"""Reduction rates per (feature, block, step): what the method reduces where, as a JSON-able object.

``q`` rates shorten queries (outputs restored), ``kv`` rates shorten keys and values together. A rate
``r`` leaves ``max(Ndst, floor(N (1 - r)))`` tokens; ``0`` means the attention call is untouched. The
schedule also carries the two matching settings it was calibrated with: ``cache_steps`` (how many
sampler steps reuse one matching) and ``dst_stride`` (destination density).

Steps are sampler steps. A run with a different step count reads the schedule by progress through
sampling (step ``i`` of ``S`` reads column ``round(i (steps - 1) / (S - 1))``); when the run's step count
is unknown, column ``i`` is read, clamped to the last.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .matching import DEFAULT_STRIDE

FEATURES = ("q", "kv")
FORMAT = "asymrnr-schedule"
VERSION = 1


@dataclass
class ReductionSchedule:
    """``rates[feature][block][step]`` in ``[0, 1)``."""

    rates: dict[str, list[list[float]]]
    cache_steps: int = 3
    dst_stride: tuple[int, int, int] = DEFAULT_STRIDE
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dst_stride = tuple(int(s) for s in self.dst_stride)
        self.validate()

    @property
    def num_blocks(self) -> int:
        return len(self.rates["q"])

    @property
    def num_steps(self) -> int:
        return len(self.rates["q"][0])

    def validate(self) -> None:
        if set(self.rates) != set(FEATURES):
            raise ValueError(f"AsymRnR schedule: features {sorted(self.rates)}; expected exactly {list(FEATURES)}")
        shapes = {f: (len(t), {len(row) for row in t}) for f, t in self.rates.items()}
        if any(n == 0 or len(cols) != 1 or 0 in cols for n, cols in shapes.values()) or shapes["q"] != shapes["kv"]:
            raise ValueError(f"AsymRnR schedule: rate tables must be equal, non-empty [blocks][steps] grids; got {shapes}")
        bad = [r for t in self.rates.values() for row in t for r in row if not 0.0 <= r < 1.0]
        if bad:
            raise ValueError(f"AsymRnR schedule: rates must lie in [0, 1); found {bad[:3]}")
        if self.cache_steps < 1:
            raise ValueError(f"AsymRnR schedule: cache_steps={self.cache_steps}; need at least 1")
        if len(self.dst_stride) != 3 or min(self.dst_stride) < 1:
            raise ValueError(f"AsymRnR schedule: dst_stride={self.dst_stride}; need three positive ints (frames, h, w)")

    def column(self, step: int, total_steps: int | None = None) -> int:
        """The schedule column read at ``step`` of a run of ``total_steps`` steps."""
        if total_steps is not None and total_steps != self.num_steps:
            return min(self.num_steps - 1, round(step * (self.num_steps - 1) / max(1, total_steps - 1)))
        return min(step, self.num_steps - 1)

    def rate(self, feature: str, block: int, step: int, total_steps: int | None = None) -> float:
        if not 0 <= block < self.num_blocks:
            raise ValueError(f"AsymRnR schedule: block {block} is outside the schedule's {self.num_blocks} blocks; "
                             "calibrate a schedule for this model")
        return self.rates[feature][block][self.column(step, total_steps)]

    def flop_fraction(self) -> float:
        """Mean over (block, step) cells of ``(1 - r_q)(1 - r_kv)``: self-attention QK^T+PV cost left."""
        cells = [(1 - q) * (1 - kv) for rq, rkv in zip(self.rates["q"], self.rates["kv"]) for q, kv in zip(rq, rkv)]
        return sum(cells) / len(cells)

    @classmethod
    def uniform(cls, num_blocks: int, num_steps: int, q: float = 0.0, kv: float = 0.0, **kwargs) -> "ReductionSchedule":
        """The same rates in every cell (``q=kv=0``: a measuring/no-op schedule)."""
        return cls({"q": [[q] * num_steps for _ in range(num_blocks)], "kv": [[kv] * num_steps for _ in range(num_blocks)]}, **kwargs)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "cache_steps": self.cache_steps, "dst_stride": list(self.dst_stride),
                "q": self.rates["q"], "kv": self.rates["kv"], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict) -> "ReductionSchedule":
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"AsymRnR schedule: format={data.get('format')!r} version={data.get('version')!r}; expected {FORMAT!r} v{VERSION}")
        rates = {f: [[float(r) for r in row] for row in data[f]] for f in FEATURES}
        return cls(rates, int(data["cache_steps"]), tuple(data["dst_stride"]), dict(data.get("meta", {})))

    def save(self, path: str | Path) -> None:
        """JSON with one rate row (a block's steps) per line, so diffs of schedules stay readable."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        items = []
        for key, value in self.to_dict().items():
            text = "[\n  " + ",\n  ".join(json.dumps(row) for row in value) + "\n ]" if key in FEATURES else json.dumps(value)
            items.append(f" {json.dumps(key)}: {text}")
        Path(path).write_text("{\n" + ",\n".join(items) + "\n}\n")

    @classmethod
    def load(cls, path: str | Path) -> "ReductionSchedule":
        return cls.from_dict(json.loads(Path(path).read_text()))
