"""The attention override (ComfyUI's ``transformer_options["optimized_attention_override"]``) and the
DIFFUSION_MODEL wrapper that tells it the token grid.

What is reduced: only video self-attention, i.e. calls whose q, k and v all have the video token count
``T*H*W`` the wrapper recorded. Cross-attention (k/v = text tokens), masked or pre-reshaped calls and
anything else pass through untouched, as do (block, step) cells whose rates are 0, so a zero schedule
is bit-exact with the unpatched model.

RhymeFlow keyframe-only passes (q = keyframe tokens, k/v = all frames, so q is shorter than k) also
pass through, deliberately: there k/v are ``[live keyframe rows; cached context rows]``, an order only
RhymeFlow's holder knows, so neither the strided dst partition nor a matching cached from a dense pass
applies; their queries are already a fraction of the frames; and schedules are calibrated on dense
passes. ``stats.unequal_passthrough`` counts these calls.
"""
from __future__ import annotations

from typing import Callable

import torch

from .matching import Match, dst_partition, match_tokens, partition_seed
from .reduce import kept_sources, plan_reduction, reduce_tokens, restore_tokens
from .state import AsymRnRState

KEY = "asymrnr"
DEFAULT_PATCH = (1, 2, 2)


def grid_wrapper(executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options=None, **kwargs):
    """DIFFUSION_MODEL wrapper: record the token grid ``(T, ceil(H/2), ceil(W/2))`` and the step, then run the model."""
    to = transformer_options if transformer_options is not None else {}
    state = to.get(KEY)
    if isinstance(state, AsymRnRState):
        state.begin_call(x.shape, tuple(getattr(executor.class_obj, "patch_size", DEFAULT_PATCH)), to)
    return executor(x, timestep, context, clip_fea, time_dim_concat, to, **kwargs)


def _match(state: AsymRnRState, feature: str, x: torch.Tensor, block: int, window: int, branch: tuple) -> Match:
    """The matching of ``x [B, N, H, d]`` for this cache window: cached, or computed and cached."""
    b, n, heads, _ = x.shape
    key = (block, feature, branch)
    m = state.cache.get(key, window, n, b, heads)
    if m is None:
        gen = torch.Generator().manual_seed(partition_seed(state.seed, block, feature, window))
        dst, src = dst_partition(state.grid, state.schedule.dst_stride, gen, x.device)
        m, _ = match_tokens(x, dst, src, state.max_match_elements)
        state.cache.put(key, window, n, m)
        state.stats.matchings += 1
    return m


def _record(state: AsymRnRState, block: int, step: int, q: torch.Tensor, v: torch.Tensor) -> None:
    """Calibration: fresh matchings of Q and V at every step, handed to the recorder."""
    for feature, x in (("q", q), ("kv", v)):
        gen = torch.Generator().manual_seed(partition_seed(state.seed, block, feature, step))
        dst, src = dst_partition(state.grid, state.schedule.dst_stride, gen, x.device)
        _, dist = match_tokens(x, dst, src, state.max_match_elements)
        state.recorder.add(feature, block, step, dist, x, dst.numel())


def _reduced_attention(state: AsymRnRState, call: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       heads: int, to: dict) -> torch.Tensor:
    """Video self-attention at this (block, step)'s rates: reduce Q and/or K/V, attend, restore Q's length."""
    block = int(to["block_index"])
    step, total = max(0, state.clock.step), state.clock.total
    sched = state.schedule
    rq, rkv = sched.rate("q", block, step, total), sched.rate("kv", block, step, total)
    b, n, hd = q.shape
    d = hd // heads
    if state.recorder is not None:
        _record(state, block, step, q.reshape(b, n, heads, d), v.reshape(b, n, heads, d))
    if rq == 0 and rkv == 0:
        state.stats.add(block, step, b, heads, d, n, n, n)
        return call(q, k, v)
    window, branch = step // sched.cache_steps, tuple(to.get("cond_or_uncond", ()))
    red_q = None
    if rq > 0:
        m = _match(state, "q", q.reshape(b, n, heads, d), block, window, branch)
        red_q = plan_reduction(m, kept_sources(n, m.dst_idx.numel(), m.src_idx.numel(), rq), n, with_restore=True)
        q = reduce_tokens(q, heads, red_q)
    if rkv > 0:
        m = _match(state, "kv", v.reshape(b, n, heads, d), block, window, branch)
        red_kv = plan_reduction(m, kept_sources(n, m.dst_idx.numel(), m.src_idx.numel(), rkv), n, with_restore=False)
        k, v = reduce_tokens(k, heads, red_kv), reduce_tokens(v, heads, red_kv)
    state.stats.add(block, step, b, heads, d, n, q.shape[1], k.shape[1])
    out = call(q, k, v)
    return restore_tokens(out, heads, red_q) if red_q is not None else out


def make_override(state: AsymRnRState) -> Callable[..., torch.Tensor]:
    """``override(func, q, k, v, heads, transformer_options=..., **kw)`` as ComfyUI's ``wrap_attn`` calls it.

    Extra positional and keyword arguments (``heads``, ``mask``, ``_inside_attn_wrapper``, ...) reach
    ``func`` unchanged; a previously installed override (``state.previous_override``) is chained.
    """

    def override(func: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        nxt = state.previous_override

        def call(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor) -> torch.Tensor:
            if nxt is not None:
                return nxt(func, q_, k_, v_, *args, **kwargs)
            return func(q_, k_, v_, *args, **kwargs)

        to = kwargs.get("transformer_options") or {}
        n = state.num_tokens
        plain = (q.ndim == 3 and k.ndim == 3 and kwargs.get("mask") is None and not kwargs.get("skip_reshape")
                 and not kwargs.get("skip_output_reshape") and "block_index" in to and k.shape[1] == v.shape[1])
        if n is None or not plain:
            return call(q, k, v)
        lq, lk = q.shape[1], k.shape[1]
        if lq == lk == n:
            heads = kwargs["heads"] if "heads" in kwargs else args[0]
            return _reduced_attention(state, call, q, k, v, int(heads), to)
        if lq < lk and n in (lq, lk):  # keyframe-only pass: documented pass-through
            state.stats.unequal_passthrough += 1
        return call(q, k, v)

    return override


def install(transformer_options: dict, state: AsymRnRState) -> dict:
    """A copy of ``transformer_options`` with AsymRnR installed: the grid wrapper, the override (chained to
    any override already there) and the state under ``"asymrnr"`` (the test bed's equivalent of the node's
    ``clone()`` + ``add_wrapper_with_key`` + setting ``optimized_attention_override``)."""
    to = dict(transformer_options)
    state.previous_override = to.get("optimized_attention_override")
    wrappers = {k: dict(v) for k, v in to.get("wrappers", {}).items()}
    wrappers.setdefault("diffusion_model", {})[KEY] = [grid_wrapper]
    to["wrappers"] = wrappers
    to["optimized_attention_override"] = make_override(state)
    to[KEY] = state
    return to
