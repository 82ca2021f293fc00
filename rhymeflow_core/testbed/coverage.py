"""Do samples cover a scene's modes? The share of frames that show each of the scene's two photographs.

Why: the test bed is meant to be step-sensitive like a real model because its data is multi-modal given
the scene (issue "Test bed v2"), and the plainest mode of a scene is its photograph: a generator clip
opens on either of the two with equal odds and cuts between them, so each shows in about half the frames.
A model that has dropped one photograph (classifier-free guidance trades diversity for fidelity) samples
near copies of the other, and fewer steps then rarely land on a different video. The evaluation prints
the rarer photograph's share of sample frames beside the data's: a diagnostic beside the three targets.

A softmax on the scene classifier's frame features, fitted on generator frames labelled by
``videos.frame_photos`` (seeds 500+), tells a scene's two photographs apart; its accuracy on held-out
generator frames (seeds 900+) is reported with it, so the measure is checked before it judges a model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import pseudo_vae
from .classifier import FIT_SEED_BASE, HELDOUT_SEED_BASE, fit_softmax, frame_features
from .conditioning import CLASSES
from .videos import VideoSpec, frame_photos, render_video


@dataclass
class PhotoClassifier:
    weight: torch.Tensor  # [2 * scenes, F]: scene c's photographs are rows 2c and 2c + 1
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    heldout_accuracy: float  # share of held-out generator frames given their photograph

    def photos(self, video: torch.Tensor, cls: int) -> torch.Tensor:
        """``[T]``: which of scene ``cls``'s two photographs (0 or 1) each frame of ``video [3, T, H, W]`` shows."""
        logits = ((frame_features(video) - self.mean) / self.std) @ self.weight.T + self.bias
        return logits[:, 2 * cls:2 * cls + 2].argmax(1)

    def second_share(self, videos: list[torch.Tensor], classes: list[int]) -> dict[str, float]:
        """Per scene: the share of its videos' frames that show its second photograph."""
        shown: dict[str, list[torch.Tensor]] = {}
        for v, c in zip(videos, classes):
            shown.setdefault(CLASSES[c], []).append(self.photos(v, c).float())
        return {scene: round(float(torch.cat(f).mean()), 3) for scene, f in shown.items()}


def _frames(seed_base: int, per_class: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of generator frames as the pseudo-VAE represents them, labelled ``2 * scene + photograph``."""
    feats, labels = [], []
    for c in range(len(CLASSES)):
        for s in range(per_class):
            spec = VideoSpec(c, seed_base + s, frames)
            v = pseudo_vae.decode(pseudo_vae.encode(render_video(spec)[0][None]))[0]
            feats.append(frame_features(v))
            labels.append(torch.tensor([2 * c + p for p in frame_photos(spec)]))
    return torch.cat(feats), torch.cat(labels)


def fit_photos(per_class: int = 40, frames: int = 12, heldout: int = 12) -> PhotoClassifier:
    """Fit on generator frames (seeds 500+), score on other generator frames (seeds 900+); deterministic."""
    x, y = _frames(FIT_SEED_BASE, per_class, frames)
    w, b, mean, std = fit_softmax(x, y, 2 * len(CLASSES))
    clf = PhotoClassifier(w, b, mean, std, 0.0)
    xt, yt = _frames(HELDOUT_SEED_BASE, heldout, frames)
    scene = yt // 2
    logits = ((xt - mean) / std) @ w.T + b
    pair = logits.view(len(yt), len(CLASSES), 2)[torch.arange(len(yt)), scene]
    clf.heldout_accuracy = float((pair.argmax(1) == yt % 2).float().mean())
    return clf
