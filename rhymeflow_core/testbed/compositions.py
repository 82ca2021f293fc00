"""Other MODEL patches an artist's graph may carry, built on a ComfyUI test-bed model the way ComfyUI builds them.

Why here: the drop-in tests (``tests/comfyui/test_dropin_compositions.py``) check that RhymeFlow Accelerate
composes with each, and the drop-in benchmark (``benchmarks/dropin_benchmark.py``) measures what each
composition costs and gains; both must build the same patch. ComfyUI is imported inside the functions, so
this module imports without it.
"""
from __future__ import annotations

from typing import Callable

import torch


def random_lora(model, strength: float, rank: int = 4, scale: float = 0.05, seed: int = 0):
    """``model`` with a seeded random rank-``rank`` LoRA on every block's self-attention query, applied by
    ``comfy.sd.load_lora_for_models`` (what LoraLoaderModelOnly calls)."""
    import comfy.sd

    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for i, block in enumerate(model.model.diffusion_model.blocks):
        dim = block.self_attn.q.weight.shape[0]
        lora[f"diffusion_model.blocks.{i}.self_attn.q.lora_up.weight"] = torch.randn(dim, rank, generator=gen) * scale
        lora[f"diffusion_model.blocks.{i}.self_attn.q.lora_down.weight"] = torch.randn(rank, dim, generator=gen) * scale
    return comfy.sd.load_lora_for_models(model, None, lora, strength, 0)[0]


def torch_compiled(model, keys: tuple[str, ...] = ("diffusion_model.head",)):
    """A clone of ``model`` with core TorchCompileModel's wrapper; the eager backend and one compiled module keep
    it cheap on a CPU (what is checked is that the wrapper composes, not inductor's speed)."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    m = model.clone()
    set_torch_compile_wrapper(m, backend="eager", keys=list(keys))
    return m


def with_attention_override(model, seen: list[int] | None = None):
    """A clone of ``model`` with a pass-through ``optimized_attention_override``, the hook SageAttention-style packs
    set; it records each call's query rows in ``seen`` when given."""

    def override(func: Callable, *args, **kwargs):
        if seen is not None:
            seen.append(int(args[0].shape[1]))
        return func(*args, **kwargs)

    m = model.clone()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    return m
