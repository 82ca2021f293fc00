"""HunyuanVideo block forwards for RhymeFlow: the full block with its K/V, and the keyframe-only block.

Covers ComfyUI's ``HunyuanVideo`` class with 3D patches: HunyuanVideo T2V, its I2V models (v1 with the
image latent concatenated on channels, v2 "replace" with the first frame's tokens modulated by
``guiding_frame_index``), SkyReels I2V (concatenated channels) and HunyuanVideo 1.5 (ByT5 glyph tokens,
SigLIP vision tokens and the condition-type embedding all live in the text stream; super-resolution and
distilled mean-flow checkpoints only change the input channels and the timestep vector).

Joint attention: text tokens are part of every self-attention sequence. Double-stream blocks keep image
and text streams apart outside attention (image first inside it); single-stream blocks see
``[image; text]``. A keyframe-only block computes every text row (queries, K/V, MLP) and the keyframe
image rows; the keys and values of the other frames' image rows are the post-RoPE ones recorded at
the sync pass. Cached keys are appended after the text keys, so the text-padding mask gets zeros for
them (image keys are never masked). RoPE rows of the keyframe tokens are recorded at the sync pass
because the keyframe-only call numbers its frames ``0..M-1``.

Attention, RoPE and modulation are injected: in ComfyUI they are ``optimized_attention`` (attention
overrides keep working), Flux's ``apply_rope`` and ``apply_mod`` (which honours ``modulation_dims``, the
per-token-range modulation of I2V v2).
"""
from __future__ import annotations

from typing import Callable

import torch

import functools

from ..asymrnr.layout import TokenLayout
from ..flops import ModelDims
from .base import BlockKey
from .blocks import BlockAdapter

AttentionFn = Callable[..., torch.Tensor]
RopeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
ModFn = Callable[..., torch.Tensor]

FAMILY = "hunyuan_video"
SUPPORTED = ("HunyuanVideo T2V, I2V v1 (concat) and v2 (replace, with frame 0 among the keyframes), SkyReels I2V, "
             "HunyuanVideo 1.5 T2V / I2V / SR (ByT5 and vision tokens); not the 'custom' reference-latent I2V or "
             "HunyuanImage 2.1")


def _split_heads(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, S, 3*H*D]`` -> ``[3, B, H, S, D]`` (ComfyUI's layout for ``skip_reshape`` attention)."""
    return qkv.view(qkv.shape[0], qkv.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)


def block_of(to: dict, doubles: int) -> int | None:
    """AsymRnR's block index: double-stream blocks first, then single-stream ones (``None`` outside blocks, e.g. the text refiner)."""
    index = to.get("block_index")
    if index is None:
        return None
    return int(index) + (doubles if to.get("block_type") == "single" else 0)


def _with_context(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, ctx) -> tuple:
    """Keys/values with the cached rows appended; the text-padding mask extended with zeros for them."""
    if ctx is None:
        return k, v, mask
    k_ctx, v_ctx = ctx
    if mask is not None:
        mask = torch.cat((mask, mask.new_zeros(*mask.shape[:-1], k_ctx.shape[2])), dim=-1)
    return torch.cat((k, k_ctx), dim=2), torch.cat((v, v_ctx), dim=2), mask


class HunyuanVideoAdapter(BlockAdapter):
    """Block-level math for ComfyUI's ``HunyuanVideo`` (Flux ``DoubleStreamBlock`` / ``SingleStreamBlock``)."""

    family = FAMILY
    dit_class, description, supported = "HunyuanVideo", "a HunyuanVideo DiT", SUPPORTED
    kv_dim = 2  # K/V are [B, heads, rows, head_dim]
    context_modes = ("kv",)  # single blocks fuse QKV with the MLP input: re-projecting cached inputs costs a full row
    frame_kwargs = ()

    def __init__(self, attention: AttentionFn, apply_rope: RopeFn, apply_mod: ModFn):
        self.attention = attention
        self.apply_rope = apply_rope
        self.apply_mod = apply_mod

    def is_plain(self, dit: torch.nn.Module) -> bool:
        return hasattr(dit, "double_blocks")

    def check_variant(self, dit: torch.nn.Module) -> None:
        patch = list(dit.patch_size)
        if len(patch) != 3 or patch[0] != 1:
            raise ValueError(f"this HunyuanVideo-class model has patch size {patch} (an image model such as HunyuanImage 2.1 has "
                             f"no frames); keyframe-only passes need one token frame per latent frame; supported: {SUPPORTED}")

    def model_dims(self, dit: torch.nn.Module, x: torch.Tensor, text_tokens: int) -> ModelDims:
        """Double and single blocks cost the same per row (4 dim^2 + 2 dim ffn multiply-adds)."""
        return ModelDims(name=type(dit).__name__, layers=len(dit.double_blocks) + len(dit.single_blocks), dim=int(dit.hidden_size),
                         ffn_dim=int(dit.hidden_size * dit.params.mlp_ratio), tokens_per_frame=self.tokens_per_frame(dit, x),
                         frames=int(x.shape[2]), text_tokens=int(text_tokens), text_in_sequence=True)

    def block_keys(self, dit: torch.nn.Module) -> list[BlockKey]:
        return ([("double_block", i) for i in range(len(dit.double_blocks))]
                + [("single_block", i) for i in range(len(dit.single_blocks))])

    def token_layout(self, dit: torch.nn.Module) -> TokenLayout:
        """AsymRnR: joint attention on ``[video; text]`` in double and single blocks (text kept); the text refiner's
        attention (before the blocks, no ``block_index``) passes through."""
        doubles = len(dit.double_blocks)
        return TokenLayout(FAMILY, tuple(int(p) for p in dit.patch_size), doubles + len(dit.single_blocks), joint_text=True,
                           block_of=functools.partial(block_of, doubles=doubles),
                           token_kwargs={"ref_latent": "reference-latent tokens prepended to the video tokens (I2V 'custom')"})

    def tokens_per_frame(self, dit: torch.nn.Module, x: torch.Tensor) -> int:
        ph, pw = tuple(dit.patch_size)[1:]  # the patch embedding pads H and W up to whole patches
        return -(-x.shape[3] // ph) * -(-x.shape[4] // pw)

    def prepare_call(self, kwargs: dict, run) -> None:
        if kwargs.get("ref_latent") is not None:
            raise ValueError("RhymeFlow: HunyuanVideo 'ref_latent' conditioning (I2V guidance 'custom') prepends reference tokens to "
                             f"the sequence, which keyframe-only passes do not support; supported: {SUPPORTED}")
        if kwargs.get("guiding_frame_index") is not None and run.mode == "keyframe" and not bool((run.keyframes == 0).any()):
            # forward_orig gives the first frame_tokens rows of the call (here: the first keyframe) the
            # guiding-frame modulation, in the blocks and in the final layer: right only if that is frame 0
            raise ValueError("RhymeFlow: HunyuanVideo I2V v2 (replace, guiding_frame_index) modulates frame 0 differently and needs "
                             "frame 0 among the keyframes; enable force_first or add frame 0 to the keyframes")
        run.call["pe"] = None  # keyframe-pass RoPE rows, built by the first block of this call

    # ---------------------------------------------------------------------------------- block math

    def _attend(self, q, k, v, pe, mask, to, ctx):
        """RoPE, then attention over ``[k; cached k]``; returns the output and the post-RoPE keys of this call."""
        q, k = self.apply_rope(q, k, pe)
        k_all, v_all, mask = _with_context(k, v, mask, ctx)
        return self.attention(q, k_all, v_all, q.shape[1], skip_reshape=True, mask=mask, transformer_options=to), k

    def _stream_in(self, norm, attn, x, m, dims, heads: int) -> tuple:
        """One stream's modulated pre-norm, fused QKV projection and QK-norm."""
        q, k, v = _split_heads(attn.qkv(self.apply_mod(norm(x), 1 + m.scale, m.shift, dims)), heads)
        q, k = attn.norm(q, k, v)
        return q, k, v

    def _stream_out(self, attn, norm2, mlp, x, y, m1, m2, dims) -> torch.Tensor:
        """One stream's gated attention residual, then its gated, modulated MLP residual (per row)."""
        x = x + self.apply_mod(attn.proj(y), m1.gate, None, dims)
        return x + self.apply_mod(mlp(self.apply_mod(norm2(x), 1 + m2.scale, m2.shift, dims)), m2.gate, None, dims)

    def double_forward(self, block, img, txt, vec, pe, mask, dims_img, dims_txt, to: dict, ctx=None) -> tuple:
        """ComfyUI's ``DoubleStreamBlock`` (image first in attention) with cached image K/V ``ctx`` appended.

        Returns ``img, txt`` and the post-RoPE image keys/values of the rows it computed."""
        img_mod1, img_mod2 = block.img_mod(vec)
        txt_mod1, txt_mod2 = block.txt_mod(vec)
        img_q, img_k, img_v = self._stream_in(block.img_norm1, block.img_attn, img, img_mod1, dims_img, block.num_heads)
        txt_q, txt_k, txt_v = self._stream_in(block.txt_norm1, block.txt_attn, txt, txt_mod1, dims_txt, block.num_heads)
        n = img.shape[1]
        v = torch.cat((img_v, txt_v), dim=2)
        attn, k = self._attend(torch.cat((img_q, txt_q), dim=2), torch.cat((img_k, txt_k), dim=2), v, pe, mask, to, ctx)
        img = self._stream_out(block.img_attn, block.img_norm2, block.img_mlp, img, attn[:, :n], img_mod1, img_mod2, dims_img)
        txt = self._stream_out(block.txt_attn, block.txt_norm2, block.txt_mlp, txt, attn[:, n:], txt_mod1, txt_mod2, dims_txt)
        if txt.dtype == torch.float16:
            txt = torch.nan_to_num(txt, nan=0.0, posinf=65504, neginf=-65504)
        return img, txt, k[:, :, :n], v[:, :, :n]

    def single_forward(self, block, x, vec, pe, mask, dims, n_img: int, to: dict, ctx=None) -> tuple:
        """ComfyUI's ``SingleStreamBlock`` on ``[image; text]`` with cached image K/V ``ctx`` appended.

        Returns ``x`` and the post-RoPE keys/values of its first ``n_img`` (image) rows."""
        mod, _ = block.modulation(vec)
        qkv, mlp = torch.split(block.linear1(self.apply_mod(block.pre_norm(x), 1 + mod.scale, mod.shift, dims)),
                               [3 * block.hidden_size, block.mlp_hidden_dim_first], dim=-1)
        q, k, v = _split_heads(qkv, block.num_heads)
        q, k = block.norm(q, k, v)
        attn, k = self._attend(q, k, v, pe, mask, to, ctx)
        x = x + self.apply_mod(block.linear2(torch.cat((attn, block.mlp_act(mlp)), 2)), mod.gate, None, dims)
        if x.dtype == torch.float16:
            x = torch.nan_to_num(x, nan=0.0, posinf=65504, neginf=-65504)
        return x, k[:, :, :n_img], v[:, :, :n_img]

    # ---------------------------------------------------------------------------------- patch entry points

    def _forward(self, key: BlockKey, args: dict, run, pe, n_img: int, ctx=None) -> tuple[dict, torch.Tensor, torch.Tensor]:
        to = args["transformer_options"]
        kind, i = key
        if kind == "double_block":
            img, txt, k, v = self.double_forward(run.dit.double_blocks[i], args["img"], args["txt"], args["vec"], pe, args["attention_mask"],
                                                 args["modulation_dims_img"], args["modulation_dims_txt"], to, ctx)
            return {"img": img, "txt": txt}, k, v
        x, k, v = self.single_forward(run.dit.single_blocks[i], args["img"], args["vec"], pe, args["attention_mask"],
                                      args["modulation_dims"], n_img, to, ctx)
        return {"img": x}, k, v

    def record_rope(self, args: dict, run) -> None:
        run.rope["key"] = args["pe"][:1].index_select(2, run.key_tok)  # image rows come first in pe, equal in every batch row

    def full_block(self, key: BlockKey, args: dict, run) -> tuple:
        out, k, v = self._forward(key, args, run, args["pe"], run.num_frames * run.tokens_per_frame)
        return out, None, k, v

    def keyframe_forward(self, key: BlockKey, args: dict, run, ctx: tuple) -> dict:
        n_key = run.key_tok.shape[0]
        if run.call["pe"] is None:  # recorded keyframe rows, then this call's text rows (text lengths may differ per call)
            pe = args["pe"]
            rows = run.rope["key"].to(pe.device).expand(pe.shape[0], *run.rope["key"].shape[1:])
            run.call["pe"] = torch.cat((rows, pe[:, :, n_key:]), dim=2)
        return self._forward(key, args, run, run.call["pe"], n_key, ctx)[0]


def comfyui_adapter() -> HunyuanVideoAdapter:
    """The adapter with ComfyUI's attention (honours attention overrides), Flux RoPE and modulation."""
    import comfy.ldm.flux.layers
    import comfy.ldm.flux.math
    import comfy.ldm.modules.attention

    return HunyuanVideoAdapter(comfy.ldm.modules.attention.optimized_attention, comfy.ldm.flux.math.apply_rope,
                               comfy.ldm.flux.layers.apply_mod)
