"""Procedural videos with sharp edges, texture, fast motion and scene cuts at known frames.

Why: a flow model trained on smooth data has nearly straight trajectories, so "just use fewer steps"
costs nothing and no accelerator can be judged. Hard edges, high-frequency texture and fast motion
curve the trajectories; scene cuts give real semantic transitions that keyframe selection must find.

Every video is a pure function of (class, seed, frames, size): ``render_video`` returns pixels in
[0, 1] shaped ``[3, T, H, W]`` plus the frame indices where a new scene starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

CLASSES: tuple[str, ...] = ("discs", "squares", "pan", "bars")

# Per-class palettes keep classes apart by colour as well as by shape.
_PALETTES = {
    "discs": [(0.95, 0.25, 0.15), (1.0, 0.65, 0.1), (1.0, 0.95, 0.3), (0.85, 0.1, 0.45)],
    "squares": [(0.1, 0.45, 1.0), (0.1, 0.9, 0.9), (0.2, 0.85, 0.3), (0.55, 0.3, 1.0)],
    "pan": [(0.9, 0.9, 0.9), (0.1, 0.1, 0.1), (0.95, 0.3, 0.6), (0.2, 0.7, 0.4), (0.3, 0.3, 0.9)],
    "bars": [(1.0, 1.0, 1.0), (0.95, 0.8, 0.1), (0.1, 0.8, 0.95)],
}


@dataclass(frozen=True)
class VideoSpec:
    """What to render. ``cuts=None`` lets the seed choose 0-2 cuts; a tuple fixes them."""

    cls: int
    seed: int
    frames: int = 16
    size: int = 32
    cuts: tuple[int, ...] | None = None
    extra: dict = field(default_factory=dict, compare=False)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return torch.meshgrid(c, c, indexing="ij")  # yy, xx in [0, 1]


def _colour(g: torch.Generator, name: str) -> torch.Tensor:
    pal = _PALETTES[name]
    return torch.tensor(pal[int(torch.randint(len(pal), (1,), generator=g))])


def _background(g: torch.Generator, size: int, kind: str) -> torch.Tensor:
    """A sharp, textured background ``[3, H, W]``: checkerboard or diagonal stripes in dark tones."""
    yy, xx = _grid(size)
    base = torch.rand(3, generator=g) * 0.25
    alt = base + 0.15 + torch.rand(3, generator=g) * 0.15
    period = float(torch.randint(3, 7, (1,), generator=g)) / size
    if kind == "checker":
        m = ((xx // period) + (yy // period)) % 2
    else:
        m = (((xx + yy) // period) % 2)
    return torch.where(m.bool(), alt.view(3, 1, 1), base.view(3, 1, 1))


def _scene_discs(g, size, n):
    yy, xx = _grid(size)
    bg = _background(g, size, "checker")
    k = int(torch.randint(2, 4, (1,), generator=g))
    pos, vel = torch.rand(k, 2, generator=g), (torch.rand(k, 2, generator=g) - 0.5) * 0.3
    rad = 0.12 + torch.rand(k, generator=g) * 0.1
    cols = [_colour(g, "discs") for _ in range(k)]
    frames = []
    for t in range(n):
        p = pos + vel * t
        p = 1 - (1 - p.remainder(2)).abs()  # bounce inside [0, 1]
        img = bg.clone()
        for j in range(k):
            m = ((xx - p[j, 0]) ** 2 + (yy - p[j, 1]) ** 2) < rad[j] ** 2
            img = torch.where(m, cols[j].view(3, 1, 1), img)
        frames.append(img)
    return frames


def _scene_squares(g, size, n):
    yy, xx = _grid(size)
    bg = _background(g, size, "stripes")
    k = int(torch.randint(2, 4, (1,), generator=g))
    pos, vel = torch.rand(k, 2, generator=g), (torch.rand(k, 2, generator=g) - 0.5) * 0.3
    half = 0.1 + torch.rand(k, generator=g) * 0.08
    spin = (torch.rand(k, generator=g) - 0.5) * 0.8
    cols = [_colour(g, "squares") for _ in range(k)]
    frames = []
    for t in range(n):
        p = 1 - (1 - (pos + vel * t).remainder(2)).abs()
        img = bg.clone()
        for j in range(k):
            a = spin[j] * t
            dx, dy = xx - p[j, 0], yy - p[j, 1]
            u, v = dx * torch.cos(a) + dy * torch.sin(a), -dx * torch.sin(a) + dy * torch.cos(a)
            m = (u.abs() < half[j]) & (v.abs() < half[j])
            img = torch.where(m, cols[j].view(3, 1, 1), img)
        frames.append(img)
    return frames


def _scene_pan(g, size, n):
    """Camera pan over a blocky mosaic larger than the frame, moving several pixels per frame."""
    cells = 6
    big = 3 * size
    idx = torch.randint(len(_PALETTES["pan"]), (big // cells + 1, big // cells + 1), generator=g)
    pal = torch.tensor(_PALETTES["pan"])
    tex = pal[idx].permute(2, 0, 1).repeat_interleave(cells, 1).repeat_interleave(cells, 2)[:, :big, :big]
    speed = (torch.rand(2, generator=g) - 0.5) * 6 + torch.sign(torch.rand(2, generator=g) - 0.5) * 1.5
    start = torch.randint(0, size, (2,), generator=g).float()
    frames = []
    for t in range(n):
        oy, ox = ((start + speed * t).round().long() % (big - size)).tolist()
        frames.append(tex[:, oy:oy + size, ox:ox + size].clone())
    return frames


def _scene_bars(g, size, n):
    """Vertical or horizontal bars sweeping fast across a grey gradient."""
    yy, xx = _grid(size)
    horizontal = bool(torch.randint(2, (1,), generator=g))
    coord = yy if horizontal else xx
    bg = (0.25 + 0.3 * (xx if horizontal else yy)).expand(3, size, size).clone()
    k = int(torch.randint(2, 4, (1,), generator=g))
    pos, vel = torch.rand(k, generator=g), (torch.rand(k, generator=g) - 0.5) * 0.25
    width = 0.05 + torch.rand(k, generator=g) * 0.08
    cols = [_colour(g, "bars") for _ in range(k)]
    frames = []
    for t in range(n):
        img = bg.clone()
        for j in range(k):
            c = (pos[j] + vel[j] * t) % 1.0
            m = (coord - c).abs() < width[j]
            img = torch.where(m, cols[j].view(3, 1, 1), img)
        frames.append(img)
    return frames


_SCENES = {"discs": _scene_discs, "squares": _scene_squares, "pan": _scene_pan, "bars": _scene_bars}


def choose_cuts(g: torch.Generator, frames: int) -> tuple[int, ...]:
    """0, 1 or 2 cuts, each scene at least 3 frames long."""
    n_cuts = int(torch.randint(3, (1,), generator=g)) if frames >= 9 else 0
    cuts: list[int] = []
    for _ in range(n_cuts):
        for _try in range(20):
            c = int(torch.randint(3, frames - 2, (1,), generator=g))
            if all(abs(c - o) >= 3 for o in cuts):
                cuts.append(c)
                break
    return tuple(sorted(cuts))


def render_video(spec: VideoSpec) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Render ``[3, T, H, W]`` pixels in [0, 1] and the frames where a new scene starts."""
    if not 0 <= spec.cls < len(CLASSES):
        raise ValueError(f"render_video: cls={spec.cls} is not a class index; accepted 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    if spec.frames < 1 or spec.size < 4 or spec.size % 2:
        raise ValueError(f"render_video: frames={spec.frames}, size={spec.size}; need frames >= 1 and an even size >= 4")
    g = torch.Generator().manual_seed(int(spec.seed) * 7919 + spec.cls)
    cuts = choose_cuts(g, spec.frames) if spec.cuts is None else tuple(sorted(spec.cuts))
    if any(not 0 < c < spec.frames for c in cuts):
        raise ValueError(f"render_video: cuts={cuts} must lie in 1..{spec.frames - 1}")
    bounds = (0, *cuts, spec.frames)
    scene = _SCENES[CLASSES[spec.cls]]
    frames: list[torch.Tensor] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        frames += scene(g, spec.size, b - a)
    return torch.stack(frames, dim=1).clamp(0, 1), cuts
