"""LTX-Video block forwards for RhymeFlow: the full block with its K/V, and the keyframe-only block.

Covers ComfyUI's ``LTXVModel`` (LTX-Video 0.9.x, 2B and 13B, distilled or not, either RoPE layout):
text-to-video, and image-to-video through the first-frame denoise mask (``LTXVImgToVideo``,
``LTXVImgToVideoInplace``). There ``model_base.LTXV.process_timestep`` turns the mask
``[B, C, F, H, W]`` into one timestep per token (``patchify(mask[:, :1] * t)``, frame-major), so
listing ``denoise_mask`` in ``frame_kwargs`` gives the keyframe pass exactly the keyframe tokens'
timesteps. Refused: guide latents appended to the sequence (``LTXVAddGuide``: ``keyframe_idxs``),
whose extra tokens are no frames of the video grid; LTX-2 (``LTXAVModel``, audio and video streams)
is another class with other blocks and is not in the adapter registry.

Block structure read from ComfyUI's ``BasicTransformerBlock``: ``scale_shift_table`` (6 adaLN terms
added to the per-sample or per-token timestep embedding), self-attention ``attn1`` (``to_q/k/v``,
``q_norm/k_norm`` over all heads, RoPE, ``to_out``, ``heads``, ``attn_precision``), text
cross-attention ``attn2`` and ``ff``. Attention, RoPE (``apply_rotary_emb``, interleaved or split
layout) and the parameter-free RMS norm are injected: in ComfyUI they are ``optimized_attention``
(which keeps attention overrides working), ``comfy.ldm.lightricks.model.apply_rotary_emb`` and
``comfy.ldm.common_dit.rms_norm``.

RoPE: the model computes ``pe = (cos, sin, split)`` from pixel coordinates of the patchified grid
(time scaled by the frame rate, causal first-frame fix). A keyframe pass sees only M frames, so its
own ``pe`` would place them at frames 0..M-1; block 0 of every sync pass therefore records the cos/sin
rows of keyframe and other tokens (token axis 1 for the interleaved ``[B, T, D]`` layout, 2 for the
split ``[B, H, T, D/2]`` one), and the keyframe pass uses them. Positions are the same for every
sample of a batch, so one sample's rows are kept and expanded to the batch of each call.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..asymrnr.layout import TokenLayout
from ..flops import ModelDims
from .base import BlockKey
from .blocks import BlockAdapter

AttentionFn = Callable[..., torch.Tensor]
RopeFn = Callable[[torch.Tensor, tuple], torch.Tensor]
NormFn = Callable[[torch.Tensor], torch.Tensor]

FAMILY = "ltxv"
SUPPORTED = ("LTX-Video 0.9.x (LTXVModel, 2B / 13B, interleaved or split RoPE) text-to-video and image-to-video by "
             "first-frame denoise mask (LTXVImgToVideo, LTXVImgToVideoInplace), not guide frames appended to the "
             "sequence (LTXVAddGuide, keyframe_idxs) nor LTX-2 audio-video (LTXAVModel)")


def pe_rows(pe: tuple, rows: torch.Tensor) -> tuple:
    """RoPE ``(cos, sin, split)`` restricted to token ``rows`` of the first sample (token axis = ``ndim - 2``)."""
    cos, sin, *rest = pe
    return (cos[:1].index_select(cos.ndim - 2, rows), sin[:1].index_select(sin.ndim - 2, rows), *rest)


def pe_batch(pe: tuple, batch: int) -> tuple:
    """Recorded RoPE rows expanded to ``batch`` samples (the split layout reshapes by cos's batch size)."""
    cos, sin, *rest = pe
    return (cos.expand(batch, *cos.shape[1:]), sin.expand(batch, *sin.shape[1:]), *rest)


class LTXVAdapter(BlockAdapter):
    """Block-level math for ComfyUI's ``LTXVModel`` (``BasicTransformerBlock``)."""

    family = FAMILY
    dit_class, description, supported = "LTXVModel", "a plain LTX-Video DiT", SUPPORTED
    context_modes = ("kv", "hidden")
    frame_kwargs = ("denoise_mask",)  # image-to-video: per-token timesteps are patchified from it

    def __init__(self, attention: AttentionFn, apply_rope: RopeFn, rms_norm: NormFn):
        self.attention = attention
        self.apply_rope = apply_rope
        self.rms_norm = rms_norm

    def is_plain(self, dit: torch.nn.Module) -> bool:
        blocks = getattr(dit, "transformer_blocks", None)
        return bool(blocks) and hasattr(blocks[0], "scale_shift_table") and hasattr(blocks[0], "attn1")

    def model_dims(self, dit: torch.nn.Module, x: torch.Tensor, text_tokens: int) -> ModelDims:
        """FLOP-model dims for latent ``x``: text enters through cross-attention, as in Wan."""
        return ModelDims(name=type(dit).__name__, layers=len(dit.transformer_blocks), dim=int(dit.inner_dim),
                         ffn_dim=int(dit.transformer_blocks[0].ff.net[0].proj.out_features),
                         tokens_per_frame=self.tokens_per_frame(dit, x), frames=int(x.shape[2]), text_tokens=int(text_tokens))

    def block_keys(self, dit: torch.nn.Module) -> list[BlockKey]:
        return [("double_block", i) for i in range(len(dit.transformer_blocks))]

    def token_layout(self, dit: torch.nn.Module) -> TokenLayout:
        """AsymRnR: ``attn1`` is video rows only; blocks set no index, so the n-th video self-attention call is block n."""
        return TokenLayout(FAMILY, tuple(int(p) for p in dit.patchifier.patch_size), len(dit.transformer_blocks),
                           joint_text=False, block_of=None,
                           token_kwargs={"keyframe_idxs": "guide-frame tokens appended to the sequence (LTXVAddGuide)"})

    def tokens_per_frame(self, dit: torch.nn.Module, x: torch.Tensor) -> int:
        ph, pw = tuple(dit.patchifier.patch_size)[1:]
        return (x.shape[3] // ph) * (x.shape[4] // pw)

    def prepare_call(self, kwargs: dict, run) -> None:
        if kwargs.get("keyframe_idxs") is not None:
            raise ValueError("RhymeFlow: LTX-Video guide frames appended to the sequence (LTXVAddGuide, keyframe_idxs) are not "
                             "supported by keyframe-only passes; condition the first frame with LTXVImgToVideo instead; "
                             f"supported: {SUPPORTED}")
        if run.context_mode == "hidden" and kwargs.get("denoise_mask") is not None:
            raise ValueError("RhymeFlow: context_mode 'hidden' needs one timestep per sample; this LTX-Video call has "
                             "per-token timesteps (image-to-video denoise mask): use context_mode 'kv'")

    # ---------------------------------------------------------------------------------- block math

    @staticmethod
    def modulation(block: torch.nn.Module, vec: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The six adaLN terms, each ``[B, 1 or tokens, D]`` (tokens: per-token timesteps)."""
        table = block.scale_shift_table
        return (table[None, None].to(device=x.device, dtype=x.dtype)
                + vec.reshape(x.shape[0], vec.shape[1], table.shape[0], -1)).unbind(dim=2)

    def _pre(self, block, x, vec):
        e = self.modulation(block, vec, x)
        h = self.rms_norm(x)
        return e, torch.addcmul(h, h, e[1]).add_(e[0])

    def _project_kv(self, attn: torch.nn.Module, h: torch.Tensor, pe: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        return self.apply_rope(attn.k_norm(attn.to_k(h)), pe), attn.to_v(h)

    def _attend(self, attn, h, pe, k, v, to) -> torch.Tensor:
        q = self.apply_rope(attn.q_norm(attn.to_q(h)), pe)
        return attn.to_out(self.attention(q, k, v, attn.heads, attn_precision=attn.attn_precision, transformer_options=to))

    def _finish(self, block, x, y, e, context, mask, to) -> torch.Tensor:
        """Gated residual, text cross-attention and FFN: per token, so valid on any subset of rows."""
        x = torch.addcmul(x, y, e[2])
        x = x + block.attn2(x, context=context, mask=mask, transformer_options=to)
        h = self.rms_norm(x)
        return torch.addcmul(x, block.ff(torch.addcmul(h, h, e[4]).add_(e[3])), e[5])

    def kv_from_hidden(self, block, h: torch.Tensor, vec: torch.Tensor, pe: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of cached block inputs ``h`` under the current step's modulation (the authors' ``hidden`` mode)."""
        _, x_mod = self._pre(block, h, vec)
        return self._project_kv(block.attn1, x_mod, pe)

    def block_forward(self, block, x: torch.Tensor, vec: torch.Tensor, pe: tuple, context: torch.Tensor,
                      mask: torch.Tensor | None, to: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full block (equal to ComfyUI's ``BasicTransformerBlock.forward``) and the post-RoPE K/V it computed."""
        e, x_mod = self._pre(block, x, vec)
        k, v = self._project_kv(block.attn1, x_mod, pe)
        y = self._attend(block.attn1, x_mod, pe, k, v, to)
        return self._finish(block, x, y, e, context, mask, to), k, v

    def keyframe_block_forward(self, block, x_key: torch.Tensor, vec: torch.Tensor, pe_key: tuple, context: torch.Tensor,
                               mask: torch.Tensor | None, k_ctx: torch.Tensor, v_ctx: torch.Tensor, to: dict) -> torch.Tensor:
        """The block for keyframe tokens ``x_key``; attention keys are ``[keyframe rows; k_ctx]``."""
        e, x_mod = self._pre(block, x_key, vec)
        k, v = self._project_kv(block.attn1, x_mod, pe_key)
        y = self._attend(block.attn1, x_mod, pe_key, torch.cat([k, k_ctx], dim=1), torch.cat([v, v_ctx], dim=1), to)
        return self._finish(block, x_key, y, e, context, mask, to)

    # ---------------------------------------------------------------------------------- patch entry points

    def record_rope(self, args: dict, run) -> None:
        run.rope["key"], run.rope["other"] = pe_rows(args["pe"], run.key_tok), pe_rows(args["pe"], run.other_tok)

    def full_block(self, key: BlockKey, args: dict, run) -> tuple:
        x = args["img"]
        out, k, v = self.block_forward(run.dit.transformer_blocks[key[1]], x, args["vec"], args["pe"], args["txt"],
                                       args["attention_mask"], args["transformer_options"])
        return {"img": out}, x, k, v

    def kv_from_hidden_fn(self, key: BlockKey, args: dict, run):
        block, vec = run.dit.transformer_blocks[key[1]], args["vec"]
        return lambda h: self.kv_from_hidden(block, h, vec, pe_batch(run.rope["other"], h.shape[0]))

    def keyframe_forward(self, key: BlockKey, args: dict, run, ctx: tuple) -> dict:
        k_ctx, v_ctx = ctx
        x = args["img"]
        out = self.keyframe_block_forward(run.dit.transformer_blocks[key[1]], x, args["vec"], pe_batch(run.rope["key"], x.shape[0]),
                                          args["txt"], args["attention_mask"], k_ctx, v_ctx, args["transformer_options"])
        return {"img": out}


def comfyui_adapter() -> LTXVAdapter:
    """The adapter with ComfyUI's attention (honours attention overrides), LTX RoPE and RMS norm."""
    import comfy.ldm.common_dit
    import comfy.ldm.lightricks.model
    import comfy.ldm.modules.attention

    return LTXVAdapter(comfy.ldm.modules.attention.optimized_attention, comfy.ldm.lightricks.model.apply_rotary_emb,
                       comfy.ldm.common_dit.rms_norm)
