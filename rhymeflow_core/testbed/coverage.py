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

from .classifier import FIT_SEED_BASE, HELDOUT_SEED_BASE, fit_softmax, frame_features, generator_videos
from .conditioning import CLASSES
from .videos import frame_photos


@dataclass
class PhotoClassifier:
    weight: torch.Tensor  # [2 * scenes, F]: scene c's photographs are rows 2c and 2c + 1
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    heldout_accuracy: float  # share of held-out generator frames given their photograph

    def photos(self, video: torch.Tensor, cls: int) -> torch.Tensor:
        """``[T]``: which of scene ``cls``'s two photographs (0 or 1) each frame of ``video [3, T, H, W]`` shows."""
        return self._pick(frame_features(video), torch.full((video.shape[1],), cls))

    def _pick(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``[N]``: the likelier of scene ``classes[i]``'s two photographs for each row of ``features [N, F]``."""
        logits = ((features - self.mean) / self.std) @ self.weight.T + self.bias
        return logits.view(len(features), len(CLASSES), 2)[torch.arange(len(features)), classes].argmax(1)

    def second_share(self, videos: list[torch.Tensor], classes: list[int]) -> dict[str, float]:
        """Per scene: the share of its videos' frames that show its second photograph."""
        shown: dict[str, list[torch.Tensor]] = {}
        for v, c in zip(videos, classes):
            shown.setdefault(CLASSES[c], []).append(self.photos(v, c).float())
        return {scene: round(float(torch.cat(f).mean()), 3) for scene, f in shown.items()}


def _frames(seed_base: int, per_class: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of generator frames as the pseudo-VAE represents them, labelled ``2 * scene + photograph``."""
    videos = generator_videos(seed_base, per_class, frames)
    labels = [torch.tensor([2 * spec.cls + p for p in frame_photos(spec)]) for spec, _ in videos]
    return torch.cat([frame_features(v) for _, v in videos]), torch.cat(labels)


def fit_photos(per_class: int = 40, frames: int = 12, heldout: int = 12) -> PhotoClassifier:
    """Fit on generator frames (seeds 500+), score on other generator frames (seeds 900+); deterministic."""
    x, y = _frames(FIT_SEED_BASE, per_class, frames)
    w, b, mean, std = fit_softmax(x, y, 2 * len(CLASSES))
    clf = PhotoClassifier(w, b, mean, std, 0.0)
    xt, yt = _frames(HELDOUT_SEED_BASE, heldout, frames)
    clf.heldout_accuracy = float((clf._pick(xt, yt // 2) == yt % 2).float().mean())
    return clf
