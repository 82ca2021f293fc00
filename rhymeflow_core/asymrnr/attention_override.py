"""The attention override (ComfyUI's ``transformer_options["optimized_attention_override"]``) and the
APPLY_MODEL wrapper that tells it the token grid.

What is reduced: only video self-attention inside the DiT blocks, as the family's ``TokenLayout``
(``layout.py``, built by the family adapter) describes it: calls whose q, k and v have one length, equal
to the video token count ``T*H*W`` the wrapper recorded (Wan, LTX-Video), or to the video rows followed
by text rows (HunyuanVideo, Mochi: joint attention). Only video rows are matched and reduced; text rows
of q, k and v are always kept whole and in place, so no text token is ever merged with a video token. A
key mask is followed (gathered with the kept keys) when it is the same for every query (HunyuanVideo's
text-padding mask); any other mask, cross-attention (k/v = text), text refiners, pre-reshaped outputs and
anything else pass through untouched, as do (block, step) cells whose rates are 0, so a zero schedule is
bit-exact with the unpatched model. Both q layouts ComfyUI passes are handled: ``[B, L, heads*d]`` and,
with ``skip_reshape``, ``[B, heads, L, d]``.

The state is looked up in ``transformer_options["asymrnr"]`` at every call, not captured: each clone of
a patched MODEL carries its own state (``state.py``), and the options of the MODEL being sampled are the
ones the call sees, whatever chain of overrides other packs put around this one.

RhymeFlow keyframe-only passes (q = keyframe rows, k/v = all frames, so q is shorter than k) also pass
through, deliberately: there k/v are ``[live keyframe rows; cached context rows]``, an order only
RhymeFlow's holder knows, so neither the strided dst partition nor a matching cached from a dense pass
applies; their queries are already a fraction of the frames; and schedules are calibrated on dense
passes. ``stats.unequal_passthrough`` counts these calls.
"""
from __future__ import annotations

from typing import Callable

import torch

from .matching import Match, dst_partition, match_tokens, partition_seed
from .reduce import gather_rows, kept_sources, plan_reduction
from .state import AsymRnRState

KEY = "asymrnr"


def grid_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
    """APPLY_MODEL wrapper: record the token grid of latent ``x`` and the step, refuse token-adding inputs, run the model.

    APPLY_MODEL rather than DIFFUSION_MODEL: every family has it with one signature (Mochi's DiT has no
    DIFFUSION_MODEL wrapper)."""
    to = transformer_options if transformer_options is not None else {}
    state = to.get(KEY)
    if isinstance(state, AsymRnRState):
        state.layout.check_call(kwargs)
        if state.begin_call(x.shape, to):
            state.check_size()
    return executor(x, t, c_concat, c_crossattn, control, to, **kwargs)


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
    """Calibration: fresh matchings of the video rows of Q and V (``[B, N, H, d]``) at every step, handed to the recorder."""
    for feature, x in (("q", q), ("kv", v)):
        gen = torch.Generator().manual_seed(partition_seed(state.seed, block, feature, step))
        dst, src = dst_partition(state.grid, state.schedule.dst_stride, gen, x.device)
        _, dist = match_tokens(x, dst, src, state.max_match_elements)
        state.recorder.add(feature, block, step, dist, x, dst.numel())


def _heads_first(x: torch.Tensor, heads: int, skip_reshape: bool) -> torch.Tensor:
    """``[B, heads, L, d]`` (a view) of a q/k/v in either of ComfyUI's layouts."""
    if skip_reshape:
        return x
    b, n, hd = x.shape
    return x.view(b, n, heads, hd // heads).transpose(1, 2)


def _with_text(index: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """``index [B, H, L]`` followed by the ``count`` text rows from ``start`` on, unchanged and in order."""
    if count == 0:
        return index
    text = torch.arange(start, start + count, device=index.device).expand(*index.shape[:2], count)
    return torch.cat((index, text), dim=-1)


def _key_mask(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """``mask`` as ``[B or 1, H or 1, 1, L]`` when it is a per-key mask over ``length`` keys (the same for every query);
    ``None`` for no mask; raises ``LookupError`` for a mask this override does not follow."""
    if mask is None:
        return None
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3, 4) or mask.shape[-1] != length or mask.shape[-2] != 1:
        raise LookupError
    return mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape)) if mask.ndim == 2 else (mask[:, None] if mask.ndim == 3 else mask)


def _reduced_attention(state: AsymRnRState, call: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       heads: int, skip_reshape: bool, mask: torch.Tensor | None, block: int, to: dict) -> torch.Tensor:
    """Video self-attention at this (block, step)'s rates: reduce the video rows of Q and/or K/V, attend, restore Q's length.

    Each reduced tensor is one row selection (``gather_rows``) of ``[kept video rows; text rows]`` written straight
    into the layout the call came in."""
    step, total = max(0, state.clock.step), state.clock.total
    sched = state.schedule
    rq, rkv = sched.rate("q", block, step, total), sched.rate("kv", block, step, total)
    qh, kh, vh = (_heads_first(t, heads, skip_reshape) for t in (q, k, v))
    b, _, length, d = qh.shape
    n = state.num_tokens
    text = length - n
    if state.recorder is not None:
        _record(state, block, step, qh[:, :, :n].transpose(1, 2), vh[:, :, :n].transpose(1, 2))
    if rq == 0 and rkv == 0:
        state.stats.add(block, step, b, heads, d, n, n, n, text)
        return call(q, k, v, mask)
    window, branch = step // sched.cache_steps, tuple(to.get("cond_or_uncond", ()))
    red_q, lq, lkv = None, n, n
    if rq > 0:
        m = _match(state, "q", qh[:, :, :n].transpose(1, 2), block, window, branch)
        red_q = plan_reduction(m, kept_sources(n, m.dst_idx.numel(), m.src_idx.numel(), rq), n, with_restore=True)
        lq = red_q.gather.shape[1]
        q = gather_rows(qh, _with_text(red_q.gather.transpose(1, 2), n, text), heads_first=skip_reshape)
    if rkv > 0:
        m = _match(state, "kv", vh[:, :, :n].transpose(1, 2), block, window, branch)
        red_kv = plan_reduction(m, kept_sources(n, m.dst_idx.numel(), m.src_idx.numel(), rkv), n, with_restore=False)
        lkv = red_kv.gather.shape[1]
        index = _with_text(red_kv.gather.transpose(1, 2), n, text)
        k, v = gather_rows(kh, index, heads_first=skip_reshape), gather_rows(vh, index, heads_first=skip_reshape)
        keys = _key_mask(mask, length)
        if keys is not None:
            mask = keys.expand(b, heads, 1, length).gather(-1, index.unsqueeze(2))
    state.stats.add(block, step, b, heads, d, n, lq, lkv, text)
    out = call(q, k, v, mask)
    if red_q is None:
        return out
    rows = out.view(b, lq + text, heads, -1).transpose(1, 2)
    return gather_rows(rows, _with_text(red_q.restore.transpose(1, 2), lq, text), heads_first=False)


def override(func: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``override(func, q, k, v, heads, transformer_options=..., **kw)`` as ComfyUI's ``wrap_attn`` calls it.

    Extra positional and keyword arguments (``heads``, ``mask``, ``_inside_attn_wrapper``, ...) reach
    ``func`` unchanged; the override that was installed before AsymRnR (``state.previous_override``) is chained.
    """
    to = kwargs.get("transformer_options") or {}
    state = to.get(KEY)
    nxt = state.previous_override if isinstance(state, AsymRnRState) else None
    has_mask = "mask" in kwargs

    def call(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor, mask_=None) -> torch.Tensor:
        kw = dict(kwargs, mask=mask_) if has_mask else kwargs
        if nxt is not None:
            return nxt(func, q_, k_, v_, *args, **kw)
        return func(q_, k_, v_, *args, **kw)

    n = state.num_tokens if isinstance(state, AsymRnRState) else None
    skip = bool(kwargs.get("skip_reshape"))
    row = 2 if skip else 1
    ok = (n is not None and q.ndim == k.ndim == v.ndim == (4 if skip else 3) and not kwargs.get("skip_output_reshape")
          and k.shape[row] == v.shape[row])
    if not ok:
        return call(q, k, v, kwargs.get("mask"))
    lq, lk = q.shape[row], k.shape[row]
    layout = state.layout
    if lq == lk and (lq >= n if layout.joint_text else lq == n):
        block = layout.block_of(to) if layout.block_of is not None else state.calls_in_pass
        try:
            _key_mask(kwargs.get("mask"), lk)
        except LookupError:
            return call(q, k, v, kwargs.get("mask"))
        if block is None:  # outside the DiT blocks (e.g. a text refiner of that length)
            return call(q, k, v, kwargs.get("mask"))
        state.calls_in_pass += 1
        heads = kwargs["heads"] if "heads" in kwargs else args[0]
        return _reduced_attention(state, call, q, k, v, int(heads), skip, kwargs.get("mask"), int(block), to)
    if lq < lk and (n <= lk if layout.joint_text else n in (lq, lk)):  # keyframe-only pass: documented pass-through
        state.stats.unequal_passthrough += 1
    return call(q, k, v, kwargs.get("mask"))


def install(transformer_options: dict, state: AsymRnRState) -> dict:
    """A copy of ``transformer_options`` with AsymRnR installed: the grid wrapper, the override (chained to
    any override already there) and the state under ``"asymrnr"`` (the test bed's equivalent of the node's
    ``clone()`` + ``add_wrapper_with_key`` + setting ``optimized_attention_override``)."""
    to = dict(transformer_options)
    previous = to.get("optimized_attention_override")
    old = to.get(KEY)
    if previous is override and isinstance(old, AsymRnRState):  # AsymRnR again: replaced, not chained to itself
        previous = old.previous_override
    state.previous_override = previous
    wrappers = {k: dict(v) for k, v in to.get("wrappers", {}).items()}
    wrappers.setdefault("apply_model", {})[KEY] = [grid_wrapper]
    to["wrappers"] = wrappers
    to["optimized_attention_override"] = override
    to[KEY] = state
    return to
