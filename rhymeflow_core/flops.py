"""Counting a callable's FLOPs with torch's FlopCounterMode, attention included on every device.

Why: torch's counter has formulas for the CUDA SDPA kernels but not for the CPU flash kernel, so on
CPU a DiT's attention would count as zero and every FLOP ratio would be wrong.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query.shape if hasattr(query, "shape") else query, key.shape if hasattr(key, "shape") else key,
                           value.shape if hasattr(value, "shape") else value)


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of ``fn()`` (2 x multiply-adds of matmuls, convolutions and attention)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()
