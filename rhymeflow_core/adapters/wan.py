"""Wan 2.1 T2V block forwards for RhymeFlow: the full block with its K/V, and the keyframe-only block.

Everything that knows Wan's block structure lives here. It reads only the attribute names ComfyUI's
``WanAttentionBlock`` has (``norm1``, ``self_attn.{q,k,v,o,norm_q,norm_k,num_heads}``, ``norm3``,
``cross_attn``, ``norm2``, ``ffn``, ``modulation``), so the same code runs on ComfyUI's model and on
the test bed. Attention and RoPE are injected: in ComfyUI they are ``optimized_attention`` (which keeps
attention overrides such as AsymRnR working) and ``apply_rope1``.

The keyframe-only block computes queries, the gated residual, cross-attention and the FFN for the
keyframe tokens only; keys/values cover every frame: keyframe rows are computed now, non-keyframe
rows come from the context cache. Every token keeps its original 3D RoPE position because the
caller passes RoPE rows gathered from the full sequence.
"""
from __future__ import annotations

from typing import Callable

import torch

AttentionFn = Callable[..., torch.Tensor]
RopeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FAMILY = "wan2.1-t2v"


class WanAdapter:
    """Block-level math for Wan 2.1 text-to-video DiTs."""

    family = FAMILY

    def __init__(self, attention: AttentionFn, apply_rope: RopeFn):
        self.attention = attention
        self.apply_rope = apply_rope

    @staticmethod
    def check_model(dit: torch.nn.Module) -> None:
        """Refuse models whose blocks this adapter cannot run exactly."""
        blocks = getattr(dit, "blocks", None)
        if blocks is None or not hasattr(blocks[0], "self_attn") or not hasattr(blocks[0], "modulation"):
            raise ValueError(f"RhymeFlow Projection Patch: model {type(dit).__name__} is not a Wan DiT; supported families: {FAMILY}")
        if getattr(dit, "model_type", "t2v") != "t2v" or getattr(dit, "ref_conv", None) is not None:
            raise ValueError(f"RhymeFlow Projection Patch: Wan model_type={getattr(dit, 'model_type', '?')!r} is not supported yet; supported: {FAMILY}")

    @staticmethod
    def modulation(block: torch.nn.Module, e0: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The six adaLN terms ``[B, 1, D]``; per-frame modulation (Wan 2.2 TI2V) is refused."""
        if e0.ndim != 4 or e0.shape[1] != 1:
            raise ValueError("RhymeFlow: per-frame timesteps (Wan 2.2 TI2V) are not supported by the Wan 2.1 adapter")
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

    def _finish(self, block, x, y, e, context, to) -> torch.Tensor:
        """Gated residual, cross-attention and FFN: per token, so valid on any subset of rows."""
        x = torch.addcmul(x, y, e[2])
        x = x + block.cross_attn(block.norm3(x), context, context_img_len=None, transformer_options=to)
        y = block.ffn(torch.addcmul(e[3], block.norm2(x), 1 + e[4]))
        return torch.addcmul(x, y, e[5])

    def kv_from_hidden(self, block, h: torch.Tensor, e0: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of cached block inputs ``h`` under the current step's modulation (the authors' ``hidden`` mode)."""
        e = self.modulation(block, e0, h)
        return self._project_kv(block.self_attn, torch.addcmul(e[0], block.norm1(h), 1 + e[1]), freqs)

    def block_forward(self, block, x: torch.Tensor, e0: torch.Tensor, freqs: torch.Tensor, context: torch.Tensor,
                      to: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full block (equal to Wan's own forward) and the post-RoPE K/V it computed."""
        e = self.modulation(block, e0, x)
        attn = block.self_attn
        x_mod = torch.addcmul(e[0], block.norm1(x), 1 + e[1])
        q = self._project_q(attn, x_mod, freqs)
        k, v = self._project_kv(attn, x_mod, freqs)
        y = attn.o(self.attention(q, k, v, heads=attn.num_heads, transformer_options=to))
        return self._finish(block, x, y, e, context, to), k, v

    def keyframe_block_forward(self, block, x_key: torch.Tensor, e0: torch.Tensor, freqs_key: torch.Tensor, context: torch.Tensor,
                               k_ctx: torch.Tensor, v_ctx: torch.Tensor, to: dict) -> torch.Tensor:
        """The block for keyframe tokens ``x_key``; attention keys are ``[keyframe rows; k_ctx]``."""
        e = self.modulation(block, e0, x_key)
        attn = block.self_attn
        x_mod = torch.addcmul(e[0], block.norm1(x_key), 1 + e[1])
        q = self._project_q(attn, x_mod, freqs_key)
        k, v = self._project_kv(attn, x_mod, freqs_key)
        k = torch.cat([k, k_ctx], dim=1)
        v = torch.cat([v, v_ctx], dim=1)
        y = attn.o(self.attention(q, k, v, heads=attn.num_heads, transformer_options=to))
        return self._finish(block, x_key, y, e, context, to)
