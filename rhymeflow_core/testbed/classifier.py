"""Which class does a video look like? A nearest-centroid classifier on hand-made features.

Why this measure: the classes differ by construction in palette (warm discs, cool squares, mosaic
colours, white/yellow/cyan bars) and in structure (round vs axis-aligned edges, texture density,
edge orientation). Colour histograms plus gradient statistics capture exactly those differences, and
a nearest-centroid rule fitted on the generator's own videos has no parameters to tune against the
model's samples: a sample counts as its class only if it is closer to that class's centroid than to
any other. ``fit`` reports held-out accuracy on generator videos, so the measure itself is checked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .videos import CLASSES, VideoSpec, render_video


def features(video: torch.Tensor) -> torch.Tensor:
    """``[3, T, H, W]`` pixels in [0, 1] -> a feature vector (colour histogram + edge statistics)."""
    px = video.clamp(0, 1).permute(1, 2, 3, 0).reshape(-1, 3)
    bins = (px * 3.999).long()
    idx = bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2]
    hist = torch.bincount(idx, minlength=64).float() / idx.numel()
    gray = video.mean(0)
    dx = (gray[:, :, 1:] - gray[:, :, :-1]).abs()
    dy = (gray[:, 1:, :] - gray[:, :-1, :]).abs()
    dt = (gray[1:] - gray[:-1]).abs().mean() if gray.shape[0] > 1 else gray.new_zeros(())
    edges = torch.stack([dx.mean(), dy.mean(), (dx > 0.2).float().mean(), (dy > 0.2).float().mean(), dt])
    return torch.cat([hist.sqrt(), edges * 4])


@dataclass
class CentroidClassifier:
    centroids: torch.Tensor  # [classes, features]
    heldout_accuracy: float

    def distances(self, video: torch.Tensor) -> torch.Tensor:
        return (self.centroids - features(video)).norm(dim=1)

    def predict(self, video: torch.Tensor) -> int:
        return int(self.distances(video).argmin())


def fit(per_class: int = 12, frames: int = 16, heldout: int = 6) -> CentroidClassifier:
    """Centroids from generator videos (seeds 500+), accuracy on other generator videos (seeds 900+)."""
    cents = []
    for c in range(len(CLASSES)):
        feats = torch.stack([features(render_video(VideoSpec(c, 500 + s, frames))[0]) for s in range(per_class)])
        cents.append(feats.mean(0))
    clf = CentroidClassifier(torch.stack(cents), 0.0)
    hits = [clf.predict(render_video(VideoSpec(c, 900 + s, frames))[0]) == c for c in range(len(CLASSES)) for s in range(heldout)]
    clf.heldout_accuracy = sum(hits) / len(hits)
    return clf
