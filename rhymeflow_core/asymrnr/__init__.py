"""AsymRnR (arXiv 2412.11706): asymmetric token reduction inside video self-attention, in pure torch.

After projection, QK-norm and RoPE, queries and keys/values are shortened separately, each at its own
rate per (block, step). Tokens are split into destinations (one random token per ``dst_stride``
chunk of the (frames, h, w) token grid) and sources; every source finds its nearest destination in
the whole video (squared Euclidean distance, per sample and per head), and the most redundant
sources are reduced. Q is matched on post-RoPE Q; K and V are matched on V and reduced together.
Attention runs on the shorter sequences; query outputs are then restored to full length.

Choices, as in the authors' code unless noted:
- Drop mode ("replace"): a reduced source is dropped and its destination stands in for it; a dropped
  query receives its destination's output. No averaging, no size bias.
- Cached: the dst/src partition and the source->destination matching, per (block, feature, CFG
  branch), for ``cache_steps`` sampler steps. Steps are counted from sigma, not calls, so batched or
  separate cond/uncond calls and multi-call solvers agree; a token-count change invalidates the cache.
- Every family through one override: the family adapter's ``TokenLayout`` (``layout.py``) says where the
  video rows of a self-attention call are; in joint attention (HunyuanVideo, Mochi) text rows are kept.
- Never reduced: cross-attention and text tokens, projections, FFN (only the attention core shrinks),
  and RhymeFlow keyframe-only passes (q shorter than k: passed through, see ``attention_override``).
- Deterministic: partitions come from a generator seeded by (seed, block, feature, cache window),
  not the global RNG (the authors use the global CUDA RNG).
- Schedules are calibrated per model (``rhymeflow_core.asymrnr.calibrate``, imported on demand; the test
  bed's run and CLI: ``rhymeflow_core.testbed.calibrate_asymrnr``):
  the authors' tier tables exist for other models only, and their generating code is unreleased.
"""
from .attention_override import KEY, grid_wrapper, install, override
from .layout import TESTBED_LAYOUT, TokenLayout
from .matching import DEFAULT_STRIDE, Match, dst_partition, match_tokens, nearest_dst
from .reduce import Reduction, kept_sources, plan_reduction, reduce_tokens, restore_tokens
from .schedule import FEATURES, ReductionSchedule
from .state import AsymRnRState, CalibrationSink, ReductionStats

__all__ = [
    "KEY", "grid_wrapper", "install", "override", "TESTBED_LAYOUT", "TokenLayout",
    "DEFAULT_STRIDE", "Match", "dst_partition", "match_tokens", "nearest_dst",
    "Reduction", "kept_sources", "plan_reduction", "reduce_tokens", "restore_tokens",
    "FEATURES", "ReductionSchedule", "AsymRnRState", "CalibrationSink", "ReductionStats",
]
