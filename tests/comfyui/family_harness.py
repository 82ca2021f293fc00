"""Shared checks for one model family's adapter on ComfyUI's own model class (used by test_family_*.py).

Every family test builds a tiny random model of ComfyUI's class, wraps it in a ModelPatcher, and hands
``check_adapter`` the ``apply_model`` inputs of one CFG batch. The checks, per context mode:
  1. the patched MODEL with no RhymeFlow run (and in ``full`` mode) is bit-identical to the input MODEL;
  2. a sync (``record``) pass equals the dense forward;
  3. a keyframe-only pass with every frame a keyframe equals the dense forward;
  4. after a sync pass on the same input, a keyframe-only pass reproduces the dense output on the
     keyframe rows (the cached keys/values are exactly the dense ones, so only rounding differs);
  5. the keyframe-only pass computes only keyframe query rows: every attention call's queries have
     ``keyframes x tokens_per_frame`` visual rows while its keys cover every frame; and the FLOPs
     counted inside the DiT blocks, over the dense pass's, match the FLOP model's ratio
     (``flops.pass_flops``, which leaves out embeddings and the head, as this count does).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from rhymeflow_core.flops import count_flops
from rhymeflow_core.flops import pass_flops


@dataclass
class Inputs:
    """``apply_model`` arguments: ``x [B, C, F, H, W]``, ``sigma [B]`` and everything else by keyword."""

    x: torch.Tensor
    sigma: torch.Tensor
    kwargs: dict = field(default_factory=dict)
    text_tokens: int = 0  # length of the text context the FLOP model should assume
    branches: tuple[int, ...] = (0,)


def random_state_dict(dm: torch.nn.Module, scale: float = 0.2) -> dict:
    """N(0, scale) weights (from the global torch seed) for a model built with ComfyUI's no-init operations,
    as the state dict a checkpoint file would hold."""
    with torch.no_grad():
        for p in dm.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return {k: v.contiguous() for k, v in dm.state_dict().items()}


def _options(patcher) -> dict:
    """transformer_options as ComfyUI's sampler builds them: the MODEL's options plus its wrappers."""
    import comfy.patcher_extension

    to = comfy.patcher_extension.copy_nested_dicts(patcher.model_options.get("transformer_options", {}))
    comfy.patcher_extension.merge_nested_dicts(to.setdefault("wrappers", {}), patcher.wrappers, copy_dict1=False)
    return to


def call(patcher, inputs: Inputs, extra_options: dict | None = None) -> torch.Tensor:
    to = _options(patcher)
    to["cond_or_uncond"] = list(inputs.branches)
    to.update(extra_options or {})
    with torch.no_grad():
        return patcher.model.apply_model(inputs.x, inputs.sigma, transformer_options=to, **inputs.kwargs)


class BlockFlops:
    """Wraps every block's replace patch (or the original block) and counts the FLOPs spent inside blocks."""

    def __init__(self, inner):
        self.inner, self.flops = inner, 0

    def __call__(self, args: dict, extra: dict) -> dict:
        out = {}

        def block():
            out.update(self.inner(args, extra) if self.inner is not None else extra["original_block"](args))

        self.flops += count_flops(block)
        return out


def block_flops(patcher, inputs: Inputs, keys) -> int:
    """FLOPs inside the DiT blocks of one ``apply_model`` call."""
    to = _options(patcher)
    replace = {k: dict(v) for k, v in to.get("patches_replace", {}).items()}
    dit = replace.setdefault("dit", {})
    counters = [BlockFlops(dit.get(key)) for key in keys]
    for key, counter in zip(keys, counters):
        dit[key] = counter
    call(patcher, inputs, {"patches_replace": replace})
    return sum(c.flops for c in counters)


class AttentionSpy:
    """An ``optimized_attention_override`` that records (query rows, key rows) of every attention call."""

    def __init__(self):
        self.shapes: list[tuple[int, int]] = []

    def __call__(self, func, q, k, v, *args, **kwargs):
        self.shapes.append((q.shape[-2] if kwargs.get("skip_reshape") else q.shape[1],
                            k.shape[-2] if kwargs.get("skip_reshape") else k.shape[1]))
        return func(q, k, v, *args, **kwargs)


def _run(pack, patched, mode: str, keyframes: list[int]):
    holder = pack.glue.holder_of(patched)
    run = holder.run or holder.new_run()
    run.mode = mode
    run.set_keyframes(torch.tensor(keyframes, dtype=torch.long))
    return holder, run


def _close(got: torch.Tensor, ref: torch.Tensor, rtol: float, what: str) -> None:
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    err = (got.float() - ref.float()).abs().max().item()
    scale = max(1.0, ref.float().abs().max().item())
    assert err <= rtol * scale, f"{what}: max |patched - dense| = {err:.3g} > {rtol} * {scale:.3g}"


def check_adapter(pack, patcher, inputs: Inputs, keyframes: list[int], context_modes=("kv", "hidden"),
                  rtol: float = 1e-4, flop_tolerance: float = 0.02, text_rows: int = 0) -> dict:
    """Run checks 1-5 (module docstring); returns the measured figures for the test's report.

    ``text_rows``: text tokens that are part of every self-attention query set (joint-attention families).
    """
    frames = inputs.x.shape[2]
    base_before = copy.copy(patcher.model_options)
    dense = call(patcher, inputs)
    assert torch.isfinite(dense).all()
    figures = {}
    for mode in context_modes:
        patched = pack.glue.patch_model(patcher, pack.patch.PatchConfig(context_mode=mode))
        holder = pack.glue.holder_of(patched)
        assert torch.equal(call(patched, inputs), dense), "patched MODEL without a run must be bit-identical"
        _run(pack, patched, "full", keyframes)
        assert torch.equal(call(patched, inputs), dense), "full mode must be bit-identical"

        _run(pack, patched, "record", list(range(frames)))
        _close(call(patched, inputs), dense, rtol, f"{mode}: sync pass")
        _run(pack, patched, "keyframe", list(range(frames)))
        _close(call(patched, inputs), dense, rtol, f"{mode}: every frame a keyframe")

        _run(pack, patched, "record", keyframes)
        _close(call(patched, inputs), dense, rtol, f"{mode}: sync pass before keyframes {keyframes}")
        _, run = _run(pack, patched, "keyframe", keyframes)
        spy = AttentionSpy()
        out = call(patched, inputs, {"optimized_attention_override": spy})
        idx = torch.tensor(keyframes)
        _close(out.index_select(2, idx), dense.index_select(2, idx), rtol, f"{mode}: keyframe rows {keyframes}")
        tpf = run.tokens_per_frame
        self_calls = [s for s in spy.shapes if s[1] == frames * tpf + text_rows]
        assert self_calls, f"no self-attention call saw keys of all {frames} frames: {spy.shapes}"
        assert all(q == len(keyframes) * tpf + text_rows for q, _ in self_calls), spy.shapes
        assert not [s for s in spy.shapes if s[0] == frames * tpf + text_rows], f"a full-length query ran: {spy.shapes}"

        _run(pack, patched, "record", keyframes)
        call(patched, inputs)
        _run(pack, patched, "keyframe", keyframes)
        dm = patcher.model.diffusion_model
        keys = holder.adapter.block_keys(dm)
        key_flops = block_flops(patched, inputs, keys)
        holder.end_run()
        dense_flops = block_flops(patcher, inputs, keys)
        dims = holder.adapter.model_dims(dm, inputs.x, inputs.text_tokens)
        predicted = pass_flops(dims, len(keyframes), kv_cached=mode == "kv") / pass_flops(dims, frames)
        measured = key_flops / dense_flops
        assert abs(measured - predicted) <= flop_tolerance, (
            f"{mode}: keyframe/dense FLOPs measured {measured:.3f}, FLOP model {predicted:.3f}")
        figures[mode] = {"measured_flop_ratio": round(measured, 3), "model_flop_ratio": round(predicted, 3),
                         "attention_calls": len(spy.shapes)}
    assert patcher.model_options == base_before, "the input MODEL's options were mutated"
    return figures
