"""One adapter per model family: the only code that knows a family's block structure.

``comfyui_adapter(dit)`` picks the adapter for a ComfyUI diffusion model by its class and returns it
built with ComfyUI's own attention/RoPE functions; anything else gets an error naming what works.
"""
from __future__ import annotations

import importlib

import torch

from .base import FamilyAdapter

# diffusion-model class name -> adapter module (imported lazily: modules import ComfyUI functions)
MODULES = {
    "WanModel": "wan",
    "HunyuanVideo": "hunyuan_video",
    "LTXVModel": "ltxv",
    "AsymmDiTJoint": "mochi",
}


def supported_text() -> str:
    lines = []
    for name in sorted(set(MODULES.values())):
        lines.append(importlib.import_module(f"{__name__}.{name}").SUPPORTED)
    return "; ".join(lines)


def comfyui_adapter(dit: torch.nn.Module) -> FamilyAdapter:
    """The adapter for ComfyUI diffusion model ``dit``; ``ValueError`` naming the supported families otherwise."""
    name = MODULES.get(type(dit).__name__)
    if name is None:
        raise ValueError(f"model {type(dit).__name__} is not supported; supported: {supported_text()}")
    adapter = importlib.import_module(f"{__name__}.{name}").comfyui_adapter()
    adapter.check_model(dit)
    return adapter
