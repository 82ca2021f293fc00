"""Wan block forwards for RhymeFlow: the full block with its K/V, and the keyframe-only block.

Covers ComfyUI's plain ``WanModel`` in every variant that uses its block unchanged: Wan 2.1 T2V,
I2V and FLF2V (CLIP image tokens in cross-attention, image latents concatenated on channels), Wan 2.2
T2V/I2V A14B (one model per expert) and Wan 2.2 TI2V-5B (per-frame timesteps from the first-frame
mask). It reads only the attribute names ComfyUI's ``WanAttentionBlock`` has (``norm1``,
``self_attn.{q,k,v,o,norm_q,norm_k,num_heads}``, ``norm3``, ``cross_attn``, ``norm2``, ``ffn``,
``modulation``), so the same code runs on ComfyUI's model and on the test bed. Attention and RoPE are
injected: in ComfyUI they are ``optimized_attention`` (which keeps attention overrides such as AsymRnR
working) and ``apply_rope1``.

The keyframe-only block computes queries, the gated residual, cross-attention and the FFN for the
keyframe tokens only; keys/values cover every frame: keyframe rows are computed now, non-keyframe
rows come from the context cache. Every token keeps its original 3D RoPE position because block 0 of
the sync pass records the RoPE rows of both sets.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..asymrnr.layout import TokenLayout, from_block_index
from ..flops import ModelDims
from .base import BlockKey
from .blocks import BlockAdapter

AttentionFn = Callable[..., torch.Tensor]
RopeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FAMILY = "wan"
SUPPORTED = ("Wan 2.1 T2V / I2V / FLF2V, Wan 2.2 T2V / I2V A14B (either expert) and TI2V-5B; "
             "not VACE, Fun-Control/reference, Phantom, camera, HuMo, Animate or S2V variants")


def repeat_e(e: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-frame modulation ``[B, F, D]`` repeated to ``x``'s tokens (ComfyUI's ``repeat_e``)."""
    if e.shape[1] in (1, x.shape[1]):
        return e
    return torch.repeat_interleave(e, x.shape[1] // e.shape[1], dim=1)


class WanAdapter(BlockAdapter):
    """Block-level math for Wan DiTs whose blocks are ComfyUI's ``WanAttentionBlock``."""

    family = FAMILY
    dit_class, description, supported = "WanModel", "a plain Wan DiT", SUPPORTED
    context_modes = ("kv", "hidden")
    frame_kwargs = ("denoise_mask",)  # Wan 2.2 TI2V: per-frame timesteps are computed from it

    def __init__(self, attention: AttentionFn, apply_rope: RopeFn):
        self.attention = attention
        self.apply_rope = apply_rope

    def is_plain(self, dit: torch.nn.Module) -> bool:
        blocks = getattr(dit, "blocks", None)
        return blocks is not None and hasattr(blocks[0], "modulation")

    def check_variant(self, dit: torch.nn.Module) -> None:
        if getattr(dit, "ref_conv", None) is not None:
            raise ValueError(f"Wan models with a reference-image input (Fun-Control / ref_conv) are not supported; supported: {SUPPORTED}")

    def model_dims(self, dit: torch.nn.Module, x: torch.Tensor, text_tokens: int) -> ModelDims:
        """FLOP-model dims for latent ``x``: text (and CLIP image tokens) enter through cross-attention."""
        return ModelDims(name=type(dit).__name__, layers=len(dit.blocks), dim=int(dit.dim), ffn_dim=int(dit.ffn_dim),
                         tokens_per_frame=self.tokens_per_frame(dit, x), frames=int(x.shape[2]), text_tokens=int(text_tokens))

    def block_keys(self, dit: torch.nn.Module) -> list[BlockKey]:
        return [("double_block", i) for i in range(len(dit.blocks))]

    def tokens_per_frame(self, dit: torch.nn.Module, x: torch.Tensor) -> int:
        ph, pw = tuple(dit.patch_size)[1:]
        return -(-x.shape[3] // ph) * -(-x.shape[4] // pw)

    def token_layout(self, dit: torch.nn.Module) -> TokenLayout:
        """AsymRnR: self-attention is video rows only; every block sets ``block_index``."""
        return TokenLayout(FAMILY, tuple(int(p) for p in dit.patch_size), len(dit.blocks), joint_text=False,
                           block_of=from_block_index,
                           token_kwargs={"time_dim_concat": "Phantom reference frames concatenated in time",
                                         "reference_latent": "reference frames prepended to the video tokens"})

    def prepare_call(self, kwargs: dict, run) -> None:
        if kwargs.get("time_dim_concat") is not None:
            raise ValueError("RhymeFlow: Wan reference frames concatenated in time (Phantom, time_dim_concat) are not supported "
                             f"by keyframe-only passes; supported: {SUPPORTED}")
        for name in ("reference_latent", "vace_context", "camera_conditions"):
            if kwargs.get(name) is not None:
                raise ValueError(f"RhymeFlow: Wan conditioning '{name}' is not supported by keyframe-only passes; supported: {SUPPORTED}")
        clip_fea = kwargs.get("clip_fea")
        run.call["context_img_len"] = None if clip_fea is None else clip_fea.shape[-2]

    # ---------------------------------------------------------------------------------- block math

    @staticmethod
    def modulation(block: torch.nn.Module, e0: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The six adaLN terms, each ``[B, 1 or F, D]`` (F: Wan 2.2 TI2V's per-frame timesteps)."""
        return (block.modulation.to(device=x.device, dtype=x.dtype).unsqueeze(0) + e0).unbind(2)

    def _project_kv(self, attn: torch.nn.Module, x_mod: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = x_mod.shape[:2]
        n, d = attn.num_heads, attn.head_dim
        k = self.apply_rope(attn.norm_k(attn.k(x_mod)).view(b, s, n, d), freqs).view(b, s, n * d)
        return k, attn.v(x_mod)

    def _project_q(self, attn: torch.nn.Module, x_mod: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        b, s = x_mod.shape[:2]
        n, d = attn.num_heads, attn.head_dim
        return self.apply_rope(attn.norm_q(attn.q(x_mod)).view(b, s, n, d), freqs).view(b, s, n * d)

    def _pre(self, block, x, e0):
        e = [repeat_e(t, x) for t in self.modulation(block, e0, x)]
        return e, torch.addcmul(e[0], block.norm1(x), 1 + e[1])

    def _finish(self, block, x, y, e, context, context_img_len, to) -> torch.Tensor:
        """Gated residual, cross-attention and FFN: per token, so valid on any subset of rows."""
        x = torch.addcmul(x, y, e[2])
        x = x + block.cross_attn(block.norm3(x), context, context_img_len=context_img_len, transformer_options=to)
        y = block.ffn(torch.addcmul(e[3], block.norm2(x), 1 + e[4]))
        return torch.addcmul(x, y, e[5])

    def kv_from_hidden(self, block, h: torch.Tensor, e0: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of cached block inputs ``h`` under the current step's modulation (the authors' ``hidden`` mode)."""
        if e0.shape[1] != 1:
            raise ValueError("RhymeFlow: context_mode 'hidden' needs one timestep per sample; this Wan model uses per-frame "
                             "timesteps (Wan 2.2 TI2V): use context_mode 'kv'")
        _, x_mod = self._pre(block, h, e0)
        return self._project_kv(block.self_attn, x_mod, freqs)

    def block_forward(self, block, x: torch.Tensor, e0: torch.Tensor, freqs: torch.Tensor, context: torch.Tensor,
                      to: dict, context_img_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full block (equal to Wan's own forward) and the post-RoPE K/V it computed."""
        attn = block.self_attn
        e, x_mod = self._pre(block, x, e0)
        q = self._project_q(attn, x_mod, freqs)
        k, v = self._project_kv(attn, x_mod, freqs)
        y = attn.o(self.attention(q, k, v, heads=attn.num_heads, transformer_options=to))
        return self._finish(block, x, y, e, context, context_img_len, to), k, v

    def keyframe_block_forward(self, block, x_key: torch.Tensor, e0: torch.Tensor, freqs_key: torch.Tensor, context: torch.Tensor,
                               k_ctx: torch.Tensor, v_ctx: torch.Tensor, to: dict, context_img_len: int | None = None) -> torch.Tensor:
        """The block for keyframe tokens ``x_key``; attention keys are ``[keyframe rows; k_ctx]``."""
        attn = block.self_attn
        e, x_mod = self._pre(block, x_key, e0)
        q = self._project_q(attn, x_mod, freqs_key)
        k, v = self._project_kv(attn, x_mod, freqs_key)
        k = torch.cat([k, k_ctx], dim=1)
        v = torch.cat([v, v_ctx], dim=1)
        y = attn.o(self.attention(q, k, v, heads=attn.num_heads, transformer_options=to))
        return self._finish(block, x_key, y, e, context, context_img_len, to)

    # ---------------------------------------------------------------------------------- patch entry points

    def record_rope(self, args: dict, run) -> None:
        run.rope["key"], run.rope["other"] = args["pe"][:, run.key_tok], args["pe"][:, run.other_tok]

    def full_block(self, key: BlockKey, args: dict, run) -> tuple:
        x = args["img"]
        out, k, v = self.block_forward(run.dit.blocks[key[1]], x, args["vec"], args["pe"], args["txt"], args["transformer_options"],
                                       run.call["context_img_len"])
        return {"img": out}, x, k, v

    def kv_from_hidden_fn(self, key: BlockKey, args: dict, run):
        block, e0 = run.dit.blocks[key[1]], args["vec"]
        return lambda h: self.kv_from_hidden(block, h, e0, run.rope["other"])

    def keyframe_forward(self, key: BlockKey, args: dict, run, ctx: tuple) -> dict:
        k_ctx, v_ctx = ctx
        return {"img": self.keyframe_block_forward(run.dit.blocks[key[1]], args["img"], args["vec"], run.rope["key"], args["txt"],
                                                   k_ctx, v_ctx, args["transformer_options"], run.call["context_img_len"])}


def comfyui_adapter() -> WanAdapter:
    """The adapter with ComfyUI's attention (honours attention overrides) and Wan RoPE."""
    import comfy.ldm.flux.math
    import comfy.ldm.modules.attention

    return WanAdapter(comfy.ldm.modules.attention.optimized_attention, comfy.ldm.flux.math.apply_rope1)
