"""Which scene does a video show? A softmax classifier on colour and layout features, fitted on generator videos only.

Why this measure: it is the test bed's reference-free quality score (a VBench analogue) and its
"recognisable" check. The scenes differ by their photographs (palette and layout) and sprites, so
per-frame colour histograms, a coarse colour layout and edge statistics separate them; a linear
softmax on those features has nothing to overfit to the model's samples, because it never sees one.
A video's class scores are the mean of its frames' log-probabilities. A linear classifier also
labels garbage confidently (uniform noise comes out as one class at p > 0.99), so each frame is
also checked for being *typical*: its feature distance to the nearest training frame of the predicted
scene must be within the 99th percentile of that distance for held-out generator frames. A video is
recognised as scene c only if c wins and most of its frames are typical. Generator videos are
seen through the pseudo-VAE (``decode(encode(v))``), the space the model's samples live in. ``fit``
reports accuracy on held-out generator videos, so the measure itself is checked before it judges a model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import pseudo_vae
from .conditioning import CLASSES
from .videos import VideoSpec, render_video

FIT_SEED_BASE, HELDOUT_SEED_BASE = 500, 900


def frame_features(video: torch.Tensor) -> torch.Tensor:
    """``[3, T, H, W]`` pixels in [0, 1] -> ``[T, F]``: colour histogram, 4x4 colour layout, edge statistics."""
    v = video.clamp(0, 1).permute(1, 0, 2, 3).float()  # [T, 3, H, W]
    t = v.shape[0]
    bins = (v * 3.999).long()
    idx = (bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2]).flatten(1)
    hist = torch.zeros(t, 64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float32)) / idx.shape[1]
    layout = F.adaptive_avg_pool2d(v, 4).flatten(1)
    gray = v.mean(1)
    dx, dy = (gray[:, :, 1:] - gray[:, :, :-1]).abs(), (gray[:, 1:] - gray[:, :-1]).abs()
    edges = torch.stack([dx.mean((1, 2)), dy.mean((1, 2)), (dx > 0.15).float().mean((1, 2)), (dy > 0.15).float().mean((1, 2))], 1)
    return torch.cat([hist.sqrt(), layout, edges * 4], 1)


@dataclass
class SceneClassifier:
    weight: torch.Tensor  # [classes, F]
    bias: torch.Tensor  # [classes]
    mean: torch.Tensor  # [F] feature standardisation
    std: torch.Tensor
    bank: torch.Tensor  # [N, F] standardised training frames
    bank_labels: torch.Tensor  # [N]
    typical_distance: float  # 99th percentile of held-out generator frames' nearest-frame distance
    heldout_accuracy: float

    def _standard(self, video: torch.Tensor) -> torch.Tensor:
        return (frame_features(video) - self.mean) / self.std

    def log_probs(self, video: torch.Tensor) -> torch.Tensor:
        """``[classes]``: mean over frames of the per-frame log-probabilities."""
        x = self._standard(video)
        return F.log_softmax(x @ self.weight.T + self.bias, dim=1).mean(0)

    def predict(self, video: torch.Tensor) -> int:
        return int(self.log_probs(video).argmax())

    def typical_fraction(self, video: torch.Tensor, cls: int) -> float:
        """Share of frames whose nearest training frame of scene ``cls`` lies within ``typical_distance``."""
        return float((self._nearest(self._standard(video), cls) <= self.typical_distance).float().mean())

    def recognised(self, video: torch.Tensor, cls: int) -> bool:
        """Scene ``cls`` wins and at least half the frames look like generator frames of it."""
        return self.predict(video) == cls and self.typical_fraction(video, cls) >= 0.5

    def _nearest(self, x: torch.Tensor, cls: int) -> torch.Tensor:
        return torch.cdist(x, self.bank[self.bank_labels == cls]).min(1).values

    def confidence(self, video: torch.Tensor, cls: int) -> float:
        """Mean per-frame probability of scene ``cls`` (geometric mean over frames)."""
        return float(self.log_probs(video)[cls].exp())


def generator_videos(seed_base: int, per_class: int, frames: int) -> list[tuple[VideoSpec, torch.Tensor]]:
    """``per_class`` generator videos of every scene (seeds from ``seed_base``) as the pseudo-VAE represents them,
    each with its spec (which carries its scene and, through ``videos.frame_photos``, its photographs)."""
    specs = [VideoSpec(c, seed_base + s, frames) for c in range(len(CLASSES)) for s in range(per_class)]
    return [(spec, pseudo_vae.project(render_video(spec)[0])) for spec in specs]


def fit(per_class: int = 40, frames: int = 12, heldout: int = 12, epochs: int = 300) -> SceneClassifier:
    """Fit on generator videos (seeds 500+), score on other generator videos (seeds 900+); deterministic."""
    feats = [(spec.cls, frame_features(v)) for spec, v in generator_videos(FIT_SEED_BASE, per_class, frames)]
    x = torch.cat([f for _, f in feats])
    y = torch.cat([torch.full((f.shape[0],), c) for c, f in feats])
    w, b, mean, std = fit_softmax(x, y, len(CLASSES), epochs)
    clf = SceneClassifier(w, b, mean, std, (x - mean) / std, y, 0.0, 0.0)
    test = generator_videos(HELDOUT_SEED_BASE, heldout, frames)
    dists = torch.cat([clf._nearest(clf._standard(v), spec.cls) for spec, v in test])
    clf.typical_distance = float(dists.quantile(0.99))
    clf.heldout_accuracy = sum(clf.recognised(v, spec.cls) for spec, v in test) / len(test)
    return clf


def fit_softmax(x: torch.Tensor, y: torch.Tensor, classes: int, epochs: int = 300) -> tuple[torch.Tensor, ...]:
    """A linear softmax on standardised features ``x [N, F]`` with labels ``y [N]``, full batch, seeded:
    ``(weight [classes, F], bias [classes], mean [F], std [F])``."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-4)
    x = (x - mean) / std
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(classes, x.shape[1], generator=g) * 0.01).requires_grad_()
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(epochs):
        loss = F.cross_entropy(x @ w.T + b, y) + 1e-3 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach(), mean, std
