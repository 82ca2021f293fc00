"""Reduction rates per (feature, block, step): what the method reduces where, as a JSON-able object.

``q`` rates shorten queries (outputs restored), ``kv`` rates shorten keys and values together. A rate
``r`` leaves ``max(Ndst, floor(N (1 - r)))`` tokens; ``0`` means the attention call is untouched. The
schedule also carries the two matching settings it was calibrated with: ``cache_steps`` (how many
sampler steps reuse one matching) and ``dst_stride`` (destination density), and what it was calibrated
on: the model ``family`` and the video token count ``tokens`` (``None`` for hand-made schedules such as
``uniform``, which fit any model). A schedule made for another family or size is refused where it is
used (the node for the family, the first model call for the size): its rates describe the redundancy of
that model at that size, and a matching table sized for other blocks would be read out of place.

Steps are sampler steps. A run with a different step count reads the schedule by progress through
sampling (step ``i`` of ``S`` reads column ``round(i (steps - 1) / (S - 1))``); when the run's step count
is unknown, column ``i`` is read, clamped to the last.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .matching import DEFAULT_STRIDE

FEATURES = ("q", "kv")
FORMAT = "asymrnr-schedule"
VERSION = 2  # v2: family and tokens recorded

# Bounds on everything a schedule (often a file from disk) may ask for. They sit far above real use
# (Wan 14B has 40 blocks; runs rarely exceed 100 steps; the node's cache_steps input stops at 100;
# the default stride is (1, 2, 2)) and far below what could exhaust memory or make one matching cover
# the whole video.
MAX_BLOCKS = 1024
MAX_STEPS = 1000
MAX_CACHE_STEPS = 1000
MAX_STRIDE = 64
MAX_TOKENS = 1 << 24  # video tokens a schedule may say it was calibrated at (Wan 14B 720p x 81 frames: 75,600)
MAX_FILE_BYTES = 4 * 1024 * 1024  # a 40-block x 1000-step schedule is about 0.5 MB


@dataclass
class ReductionSchedule:
    """``rates[feature][block][step]`` in ``[0, 1)``."""

    rates: dict[str, list[list[float]]]
    cache_steps: int = 3
    dst_stride: tuple[int, int, int] = DEFAULT_STRIDE
    meta: dict = field(default_factory=dict)
    family: str | None = None
    tokens: int | None = None

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
        if self.num_blocks > MAX_BLOCKS or self.num_steps > MAX_STEPS:
            raise ValueError(f"AsymRnR schedule: {self.num_blocks} blocks x {self.num_steps} steps; accepted: at most "
                             f"{MAX_BLOCKS} blocks x {MAX_STEPS} steps")
        bad = [r for t in self.rates.values() for row in t for r in row if not 0.0 <= r < 1.0]
        if bad:
            raise ValueError(f"AsymRnR schedule: rates must lie in [0, 1); found {bad[:3]}")
        if not 1 <= self.cache_steps <= MAX_CACHE_STEPS:
            raise ValueError(f"AsymRnR schedule: cache_steps={self.cache_steps}; accepted: 1..{MAX_CACHE_STEPS}")
        if len(self.dst_stride) != 3 or not all(1 <= s <= MAX_STRIDE for s in self.dst_stride):
            raise ValueError(f"AsymRnR schedule: dst_stride={self.dst_stride}; accepted: three ints (frames, h, w) in "
                             f"1..{MAX_STRIDE}")
        if self.family is not None and (not isinstance(self.family, str) or not self.family.isidentifier()):
            raise ValueError("AsymRnR schedule: family is not a family name; accepted: e.g. 'wan', 'hunyuan_video', 'ltxv', 'mochi'")
        if self.tokens is not None and (isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1):
            raise ValueError("AsymRnR schedule: tokens is not a positive integer; accepted: the video token count it was calibrated at")

    def check_family(self, family: str, origin: str) -> None:
        """Refuse a schedule calibrated on another model family; ``origin`` names the node input it came from."""
        if self.family is not None and self.family != family:
            raise ValueError(f"{origin} was calibrated on a {self.family!r} model; this MODEL is {family!r}; accepted: a "
                             f"schedule calibrated on a {family!r} model (AsymRnR Calibrate + AsymRnR Schedule), or "
                             "schedule_source=uniform")

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
        return {"format": FORMAT, "version": VERSION, "family": self.family, "tokens": self.tokens,
                "cache_steps": self.cache_steps, "dst_stride": list(self.dst_stride),
                "q": self.rates["q"], "kv": self.rates["kv"], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict) -> "ReductionSchedule":
        """A schedule from its JSON form, checked field by field before anything is built.

        Errors name the field and what is accepted, never the value found: the data may come from a
        file the user did not write (see ``load``), and a message must not echo its contents.
        """
        if not isinstance(data, dict):
            raise ValueError(f"the top level is a JSON {_kind(data)}; accepted: an object with format {FORMAT!r}")
        if data.get("format") == FORMAT and data.get("version") == 1:
            raise ValueError("field 'version' is 1: the schedule was written before schedules recorded the model family and "
                             f"size; accepted: a v{VERSION} schedule (recalibrate: AsymRnR Calibrate + AsymRnR Schedule)")
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"fields 'format'/'version' do not say {FORMAT!r} v{VERSION}; accepted: a schedule written by "
                             "AsymRnR Schedule or rhymeflow_core.asymrnr.calibrate")
        missing = [k for k in (*FEATURES, "cache_steps", "dst_stride", "family", "tokens") if k not in data]
        if missing:
            raise ValueError(f"field {missing[0]!r} is missing; accepted: an object with {', '.join(FEATURES)}, cache_steps, "
                             "dst_stride, family, tokens (and optionally meta)")
        family, tokens = data["family"], data["tokens"]
        if family is not None and (not isinstance(family, str) or len(family) > 64 or not family.isidentifier()):
            raise ValueError(f"field 'family' is not a family name (a JSON {_kind(family)}); accepted: null or a name such as "
                             "'wan', 'hunyuan_video', 'ltxv', 'mochi'")
        if tokens is not None:
            tokens = _bounded_int("tokens", tokens, 1, MAX_TOKENS)
        rates = {f: _rate_table(f, data[f]) for f in FEATURES}
        cache_steps = _bounded_int("cache_steps", data["cache_steps"], 1, MAX_CACHE_STEPS)
        stride = data["dst_stride"]
        if not isinstance(stride, list) or len(stride) != 3:
            raise ValueError(f"field 'dst_stride' is not a list of three ints; accepted: [frames, h, w] each in 1..{MAX_STRIDE}")
        stride = tuple(_bounded_int(f"dst_stride[{i}]", v, 1, MAX_STRIDE) for i, v in enumerate(stride))
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError("field 'meta' is not an object; accepted: a JSON object (or no 'meta')")
        return cls(rates, cache_steps, stride, dict(meta), family, tokens)

    def save(self, path: str | Path) -> None:
        """JSON with one rate row (a block's steps) per line, so diffs of schedules stay readable."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        items = []
        for key, value in self.to_dict().items():
            text = "[\n  " + ",\n  ".join(json.dumps(row) for row in value) + "\n ]" if key in FEATURES else json.dumps(value)
            items.append(f" {json.dumps(key)}: {text}")
        Path(path).write_text("{\n" + ",\n".join(items) + "\n}\n")

    @classmethod
    def load(cls, path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> "ReductionSchedule":
        """Read a schedule file, refusing it before reading when it is larger than ``max_bytes``.

        Every error is a ``ValueError`` naming the file (as given) and the field; JSON syntax errors give
        the line and column only, so nothing of the file's contents reaches a message.
        """
        name = os.path.basename(str(path))
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(max_bytes + 1) if size <= max_bytes else b""
        if size > max_bytes or len(data) > max_bytes:
            raise ValueError(f"schedule file {name!r} is {max(size, len(data))} bytes; accepted: at most {max_bytes} bytes "
                             "(is it a schedule JSON?)")
        try:
            parsed = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise ValueError(f"schedule file {name!r} is not UTF-8 text; accepted: a schedule JSON") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"schedule file {name!r} is not valid JSON (line {exc.lineno}, column {exc.colno}); "
                             "accepted: a schedule JSON") from None
        except RecursionError:
            raise ValueError(f"schedule file {name!r} nests too deeply to be a schedule; accepted: a schedule JSON") from None
        except ValueError as exc:  # _no_constant: NaN / Infinity
            raise ValueError(f"schedule file {name!r}: {exc}; accepted: a schedule JSON") from None
        try:
            return cls.from_dict(parsed)
        except ValueError as exc:
            raise ValueError(f"schedule file {name!r}: {exc}") from None


def _kind(value) -> str:
    """The JSON type of a parsed value, for messages that must not quote it."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _no_constant(name: str):
    """``json.loads`` hook: NaN and Infinity are not JSON and no rate or count can be either."""
    raise ValueError(f"{name} is not a finite number")


def _bounded_int(field_name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"field {field_name!r} is not an integer in {lo}..{hi} (a JSON {_kind(value)}"
                         f"{' out of range' if isinstance(value, int) and not isinstance(value, bool) else ''}); "
                         f"accepted: an integer in {lo}..{hi}")
    return value


def _rate_table(feature: str, table) -> list[list[float]]:
    """``table`` as ``[blocks][steps]`` floats in [0, 1), checked for shape and bounds before any copy."""
    if not isinstance(table, list) or not table or not all(isinstance(row, list) and row for row in table):
        raise ValueError(f"field {feature!r} is not a non-empty array of non-empty arrays; accepted: rates[blocks][steps]")
    if len(table) > MAX_BLOCKS or any(len(row) > MAX_STEPS for row in table):
        raise ValueError(f"field {feature!r} is larger than {MAX_BLOCKS} blocks x {MAX_STEPS} steps; accepted: at most that")
    for b, row in enumerate(table):
        for s, r in enumerate(row):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and 0.0 <= r < 1.0):
                raise ValueError(f"field {feature!r} block {b} step {s} is not a rate in [0, 1) (it is a JSON {_kind(r)}); "
                                 "accepted: numbers in [0, 1)")
    return [[float(r) for r in row] for row in table]
