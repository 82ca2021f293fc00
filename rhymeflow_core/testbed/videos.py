"""Videos made from real photographs: a moving camera, sprites that move and occlude, scene cuts at known frames.

Why this data: a real video model's sampling is sensitive to the number of steps because its data is
strongly multi-modal given the prompt, so small early changes in a trajectory grow into a different
video. Here the prompt names a scene (two photographs and a kind of sprite, ``imagery.py``); where the
camera starts, how it pans and zooms, which faces / digits / shapes appear, where they start, how fast
they move and where the cuts fall are all random. Cuts give real semantic transitions (a new photograph,
new sprites) for keyframe selection to find.

Every video is a pure function of (scene, seed, frames, size): ``render_video`` returns pixels in
[0, 1] shaped ``[3, T, H, W]`` plus the frame indices where a new scene starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import imagery
from .conditioning import CLASSES

FRAME_SIZE = 64  # pixels; the pseudo-VAE maps 4 x 4 pixel patches to one latent pixel
_SPRITE_COLOURS = torch.tensor([(1.0, 0.9, 0.2), (0.2, 0.95, 1.0), (1.0, 0.3, 0.8), (1.0, 1.0, 1.0), (0.3, 1.0, 0.4), (1.0, 0.5, 0.1)])


@dataclass(frozen=True)
class VideoSpec:
    """What to render. ``cuts=None`` lets the seed choose 0-2 cuts; a tuple fixes them."""

    cls: int
    seed: int
    frames: int = 16
    size: int = FRAME_SIZE
    cuts: tuple[int, ...] | None = None


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _bounce(p: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float) -> torch.Tensor:
    """Fold positions into ``[lo, hi]`` as a ball bouncing between two walls."""
    span = torch.as_tensor(hi - lo).clamp_min(1e-6)
    u = ((p - lo) / span).remainder(2)
    return lo + span * (1 - (1 - u).abs())


def _camera(g: torch.Generator, canvas: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """``n`` frames of a camera panning (and sometimes zooming) over ``canvas [3, C, C]``."""
    c = canvas.shape[-1]
    view = _uniform(g, 0.45, 0.8) * c  # window side in canvas pixels
    zoom = _uniform(g, -0.012, 0.012) if float(torch.rand((), generator=g)) < 0.5 else 0.0
    sides = (view * torch.exp(zoom * torch.arange(n, dtype=torch.float32))).clamp(0.35 * c, 0.95 * c)
    angle = _uniform(g, 0, 2 * math.pi)
    speed = _uniform(g, 0.6, 3.0)
    start = torch.tensor([_uniform(g, 0, c), _uniform(g, 0, c)])
    t = torch.arange(n, dtype=torch.float32)[:, None]
    centre = start + t * speed * torch.tensor([math.cos(angle), math.sin(angle)])
    half = sides[:, None] / 2
    centre = _bounce(centre, half, c - half)  # the window stays inside the photograph
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = sides / c
    theta[:, :, 2] = centre / c * 2 - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(canvas.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)


def _sprite(g: torch.Generator, kind: str, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One sprite: colour ``[3, s, s]`` and alpha ``[1, s, s]``."""
    yy, xx = torch.meshgrid(*(torch.linspace(-1, 1, side),) * 2, indexing="ij")
    colour = _SPRITE_COLOURS[int(torch.randint(len(_SPRITE_COLOURS), (), generator=g))].view(3, 1, 1)
    if kind == "faces":
        pool = imagery.faces()
        face = pool[int(torch.randint(len(pool), (), generator=g))]
        grey = F.interpolate(face[None, None], size=(side, side), mode="bilinear", align_corners=False)[0]
        rgb = grey * torch.tensor([1.0, 0.85, 0.72]).view(3, 1, 1)
        alpha = ((xx / 0.85) ** 2 + (yy / 1.0) ** 2 < 1).float()[None]
        return rgb, alpha
    if kind == "digits":
        pool = imagery.digits()
        digit = pool[int(torch.randint(len(pool), (), generator=g))]
        alpha = F.interpolate(digit[None, None], size=(side, side), mode="nearest")[0]
        return colour.expand(3, side, side), (alpha * 1.5).clamp(0, 1)
    if kind == "discs":
        return colour.expand(3, side, side), (xx**2 + yy**2 < 1).float()[None]
    a = _uniform(g, 0, math.pi / 2)  # squares, at a random angle
    u, v = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
    return colour.expand(3, side, side), ((u.abs() < 0.7) & (v.abs() < 0.7)).float()[None]


def _add_sprites(g: torch.Generator, frames: torch.Tensor, kind: str) -> torch.Tensor:
    """1-3 sprites moving in straight lines at random speeds, bouncing off the edges; later ones occlude earlier ones."""
    n, _, size, _ = frames.shape
    out = frames.clone()
    t = torch.arange(n, dtype=torch.float32)[:, None]
    for _ in range(int(torch.randint(1, 4, (), generator=g))):
        side = int(torch.randint(size // 5, size // 3 + 1, (), generator=g))
        rgb, alpha = _sprite(g, kind, side)
        angle, speed = _uniform(g, 0, 2 * math.pi), _uniform(g, 1.0, 4.0)
        start = torch.tensor([_uniform(g, 0, size - side), _uniform(g, 0, size - side)])
        pos = _bounce(start + t * speed * torch.tensor([math.cos(angle), math.sin(angle)]), 0.0, float(size - side)).round().long()
        for f in range(n):
            x, y = int(pos[f, 0]), int(pos[f, 1])
            patch = out[f, :, y:y + side, x:x + side]
            out[f, :, y:y + side, x:x + side] = patch * (1 - alpha) + rgb * alpha
    return out


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
    if spec.frames < 1 or spec.size < 16 or spec.size % 4:
        raise ValueError(f"render_video: frames={spec.frames}, size={spec.size}; need frames >= 1 and a size >= 16 divisible by 4")
    g, cuts, first = _opening(spec)
    scene = CLASSES[spec.cls]
    photos = [imagery.photo(p) for p in imagery.SCENE_PHOTOS[scene]]
    bounds = (0, *cuts, spec.frames)
    shots = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        shot = _camera(g, photos[(first + k) % 2], b - a, spec.size)
        shots.append(_add_sprites(g, shot, imagery.SCENE_SPRITES[scene]))
    return torch.cat(shots).permute(1, 0, 2, 3).clamp(0, 1).contiguous(), cuts


def frame_photos(spec: VideoSpec) -> tuple[int, ...]:
    """Which of the scene's two photographs (0 or 1, as in ``imagery.SCENE_PHOTOS``) each frame of
    ``render_video(spec)`` shows; the labels ``coverage.py`` learns the photographs from."""
    _, cuts, first = _opening(spec)
    return tuple((first + sum(f >= c for c in cuts)) % 2 for f in range(spec.frames))


def _opening(spec: VideoSpec) -> tuple[torch.Generator, tuple[int, ...], int]:
    """The seeded generator after the clip's first draws, its cuts, and which photograph opens it."""
    g = torch.Generator().manual_seed(int(spec.seed) * 7919 + spec.cls)
    cuts = choose_cuts(g, spec.frames) if spec.cuts is None else tuple(sorted(spec.cuts))
    if any(not 0 < c < spec.frames for c in cuts):
        raise ValueError(f"render_video: cuts={cuts} must lie in 1..{spec.frames - 1}")
    return g, cuts, int(torch.randint(2, (), generator=g))
