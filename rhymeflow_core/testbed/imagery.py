"""Real imagery that ships inside packages: photographs and faces from scikit-image, digits from scikit-learn.

Why: a proxy model trained on coloured noise teaches nothing about a real video model, and nothing
may be downloaded at run time. These arrays are inside the wheels (``skimage.data``'s bundled files,
``lfw_subset`` and ``load_digits``), so the test bed's videos are real pictures on every machine.
Both packages are development dependencies only: the ComfyUI pack never imports this module.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

CANVAS = 128  # photographs are cropped square and resized to CANVAS x CANVAS; the camera looks at part of it

# Two photographs per scene (the clip cuts from one to the other) and the sprites that move over them.
SCENE_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut", "rocket"),
    "cat": ("chelsea", "coffee"),
    "cosmos": ("hubble_deep_field", "retina"),
    "lab": ("immunohistochemistry", "coins"),
}
SCENE_SPRITES: dict[str, str] = {"astronaut": "faces", "cat": "digits", "cosmos": "discs", "lab": "squares"}


def scenes() -> dict[str, dict]:
    """What each scene is made of, as a model card records it: weights are only judged on the data they learned."""
    return {s: {"photographs": list(photos), "sprites": SCENE_SPRITES[s]} for s, photos in SCENE_PHOTOS.items()}


def _needs(package: str, extra: str):
    try:
        return __import__(package)
    except ImportError as e:  # pragma: no cover - only without the dev requirements
        raise ImportError(f"the test-bed video generator needs {extra} (pip install -r requirements-dev.txt)") from e


@lru_cache(maxsize=None)
def photo(name: str) -> torch.Tensor:
    """``[3, CANVAS, CANVAS]`` in [0, 1]: the named ``skimage.data`` photograph, centre-cropped square."""
    _needs("skimage", "scikit-image")
    import skimage.data

    img = torch.as_tensor(getattr(skimage.data, name)()).float() / 255.0
    img = img[..., None].expand(*img.shape, 3) if img.ndim == 2 else img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].permute(2, 0, 1)
    return F.interpolate(img[None], size=(CANVAS, CANVAS), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


@lru_cache(maxsize=None)
def faces() -> torch.Tensor:
    """``[200, 25, 25]`` grey face crops in [0, 1] (Labeled Faces in the Wild subset)."""
    _needs("skimage", "scikit-image")
    import skimage.data

    return torch.as_tensor(skimage.data.lfw_subset()).float()


@lru_cache(maxsize=None)
def digits() -> torch.Tensor:
    """``[1797, 8, 8]`` handwritten digits in [0, 1]."""
    _needs("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().images).float() / 16.0
