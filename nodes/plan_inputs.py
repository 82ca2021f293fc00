"""What the planned step map needs from ComfyUI itself: a scheduler's sigmas and a model file's real FLOP dims.

Why here: the plan must be computed on what the run will see, and only ComfyUI knows its schedulers and how
a checkpoint becomes a diffusion model. ``rhymeflow_core.step_map_query.planned_step_map`` takes these two
functions as ``sigmas_fn`` / ``dims_fn`` (``nodes/routes.py`` passes them), so the core stays importable and
testable without ComfyUI.

A model file is never loaded: its safetensors header (names and shapes) is read, ComfyUI's own model detection
picks the model class and config, and the diffusion model is built on the ``meta`` device (no memory), where the
family adapter reads its dims as it does at a run's first call. Only names ComfyUI's loader lists for its folder
are opened (the same check the loader node makes), so no path outside ComfyUI's model folders can be named.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import torch

from ..rhymeflow_core import adapters
from ..rhymeflow_core.flops import ModelDims

# loader node type -> ComfyUI model folder its file widget lists
LOADERS = {"UNETLoader": "diffusion_models", "CheckpointLoaderSimple": "checkpoints"}
LATENT_CHANNELS = 16  # any: the dims read only the latent's frames and grid


def comfy_sigmas(scheduler: str, steps: int, shift: float) -> Sequence[float]:
    """``steps + 1`` sigmas of ComfyUI's ``scheduler`` on a flow model at ``shift`` (what ModelSamplingSD3 sets)."""
    import comfy.model_sampling
    import comfy.samplers

    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise ValueError(f"scheduler={scheduler[:40]!r} is not known; accepted: {', '.join(comfy.samplers.SCHEDULER_NAMES)}")

    class FlowSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    sampling = FlowSampling()
    sampling.set_parameters(shift=shift, multiplier=1000)
    return comfy.samplers.calculate_sigmas(sampling, scheduler, steps).tolist()


def model_file_dims(loader: str, name: str, grid: tuple[int, int, int], text_tokens: int) -> tuple[ModelDims, str, str]:
    """The FLOP dims of the model in loader ``loader``'s file ``name`` at latent ``grid`` (frames, height, width),
    its family and a label; ``ValueError`` saying why when the file cannot be read or is not a supported model."""
    import folder_paths

    folder = LOADERS.get(loader)
    if folder is None:
        raise ValueError(f"the model comes from {loader[:40]}, whose file is not read here (read: {', '.join(LOADERS)})")
    if name not in folder_paths.get_filename_list(folder):
        raise ValueError(f"{name[:60]!r} is not in ComfyUI's {folder} folder")
    if not name.endswith(".safetensors"):
        raise ValueError(f"{name[:60]!r} is not a .safetensors file (only those are read without loading)")
    path = folder_paths.get_full_path(folder, name)
    stat = os.stat(path)
    dit = _meta_model(path, stat.st_mtime_ns, stat.st_size)
    adapter = adapters.comfyui_adapter(dit)
    x = torch.empty(1, LATENT_CHANNELS, *grid, device="meta")
    return adapter.model_dims(dit, x, int(text_tokens)), adapter.family, f"{type(dit).__name__} read from {name}"


@functools.lru_cache(maxsize=4)
def _meta_model(path: str, mtime_ns: int, size: int) -> torch.nn.Module:
    """The diffusion model of a checkpoint, built on the meta device from its header (cached per file version)."""
    import comfy.model_detection
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        sd = {k: torch.empty(f.get_slice(k).get_shape(), dtype=torch.float16, device="meta") for k in f.keys()}
    prefix = comfy.model_detection.unet_prefix_from_state_dict(sd) if any(k.startswith("model.") for k in sd) else ""
    config = comfy.model_detection.model_config_from_unet(sd, prefix)
    if config is None:
        raise ValueError(f"ComfyUI does not recognise the model in {os.path.basename(path)[:60]!r}")
    with torch.device("meta"):
        return config.get_model(sd, prefix).diffusion_model
