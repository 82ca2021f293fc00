"""Mochi 1 block forwards for RhymeFlow: the full joint block with its visual K/V, and the keyframe-only block.

Covers ComfyUI's ``AsymmDiTJoint`` (Genmo Mochi 1 preview, text-to-video; ComfyUI's only Mochi variant).
Its ``AsymmetricJointBlock`` has two streams of different widths: visual tokens (``hidden_size_x``,
which is also the attention width) and T5 text tokens (``hidden_size_y``), each with its own
modulation, QKV projection, output projection and FFN. Attention is joint over
``[visual; the first num_tokens text tokens]`` (ComfyUI crops the padded text instead of masking it),
so key order does not matter and no mask has to follow a reordering. The last block (``update_y``
False) only reads the text. The code reads only the attribute names ComfyUI's block has (``mod_x``,
``mod_y``, ``update_y``, ``attn.{qkv_x,qkv_y,q_norm_x,k_norm_x,q_norm_y,k_norm_y,proj_x,proj_y,
num_heads}``, ``ff_block_x``, ``ff_block_y``); attention, RoPE and RMS norm are injected: in ComfyUI
they are ``optimized_attention`` (attention overrides such as AsymRnR keep working),
``apply_rotary_emb_qk_real`` and ``common_dit.rms_norm``.

The keyframe-only block computes the visual stream (queries, gated residual, FFN) for keyframe tokens
only; the text stream is computed in full every pass (its queries attend to every frame). Visual keys
and values cover every frame: keyframe rows now, non-keyframe rows from the context cache. Positions:
block 0 of a sync pass records the keyframe rows of Mochi's mixed RoPE, so keyframe tokens keep their
original temporal positions. Only context mode ``kv`` exists: ``hidden`` would run the fused
``qkv_x`` (queries included) on every cached row, half again the K/V cost the FLOP model assumes.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..asymrnr.layout import TokenLayout
from ..flops import ModelDims
from .base import BlockKey
from .blocks import BlockAdapter

AttentionFn = Callable[..., torch.Tensor]
RopeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
RmsNormFn = Callable[..., torch.Tensor]

FAMILY = "mochi"
SUPPORTED = "Mochi 1 (Genmo AsymmDiTJoint) text-to-video, context mode 'kv' only"
EPS = 1e-6  # the eps of Mochi's modulated and gated RMS norms


class MochiAdapter(BlockAdapter):
    """Block-level math for ComfyUI's ``AsymmDiTJoint`` (blocks: ``AsymmetricJointBlock``)."""

    family = FAMILY
    dit_class, description, supported = "AsymmDiTJoint", "a Mochi DiT with asymmetric joint blocks", SUPPORTED
    context_modes = ("kv",)
    frame_kwargs = ()  # Mochi's DiT takes no per-frame conditioning besides the latent

    def __init__(self, attention: AttentionFn, apply_rope: RopeFn, rms_norm: RmsNormFn):
        self.attention = attention
        self.apply_rope = apply_rope
        self.rms_norm = rms_norm

    def is_plain(self, dit: torch.nn.Module) -> bool:
        blocks = getattr(dit, "blocks", None)
        return bool(blocks) and all(hasattr(b, "mod_x") and hasattr(b, "update_y") and hasattr(getattr(b, "attn", None), "qkv_y")
                                    for b in blocks)

    def model_dims(self, dit: torch.nn.Module, x: torch.Tensor, text_tokens: int) -> ModelDims:
        """FLOP-model dims: text joins the attention sequence through its own, narrower stream.

        SwiGLU FFNs (``w1: D -> 2h``, ``w2: h -> D``) cost what a plain FFN of width ``1.5 h`` does.
        """
        text_mlp = next((b.mlp_y for b in dit.blocks if b.update_y), None)
        return ModelDims(name=type(dit).__name__, layers=len(dit.blocks), dim=int(dit.hidden_size_x),
                         ffn_dim=3 * dit.blocks[0].mlp_x.hidden_dim // 2, tokens_per_frame=self.tokens_per_frame(dit, x),
                         frames=int(x.shape[2]), text_tokens=int(text_tokens), text_in_sequence=True,
                         text_dim=int(dit.hidden_size_y), text_ffn_dim=0 if text_mlp is None else 3 * text_mlp.hidden_dim // 2)

    def block_keys(self, dit: torch.nn.Module) -> list[BlockKey]:
        return [("double_block", i) for i in range(len(dit.blocks))]

    def token_layout(self, dit: torch.nn.Module) -> TokenLayout:
        """AsymRnR: joint attention on ``[video; first num_tokens text rows]`` (text kept); no block index, so the
        n-th video self-attention call is block n."""
        return TokenLayout(FAMILY, (1, int(dit.patch_size), int(dit.patch_size)), len(dit.blocks), joint_text=True, block_of=None)

    def tokens_per_frame(self, dit: torch.nn.Module, x: torch.Tensor) -> int:
        p = dit.patch_size
        return (x.shape[3] // p) * (x.shape[4] // p)

    def prepare_call(self, kwargs: dict, run) -> None:
        """Nothing to refuse: Mochi's call carries text features, their mask and the valid-token count only."""

    # ---------------------------------------------------------------------------------- block math

    @staticmethod
    def modulation(block: torch.nn.Module, c: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Visual (scale/gate for attention and MLP) and text terms; the last block has only the text scale."""
        c = F.silu(c)
        mod_y = block.mod_y(c)
        return block.mod_x(c).chunk(4, dim=1), (mod_y.chunk(4, dim=1) if block.update_y else (mod_y,))

    def _modulated(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.rms_norm(x, eps=EPS) * (1 + scale.unsqueeze(1))

    def _gated(self, x: torch.Tensor, res: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return x + self.rms_norm(res, eps=EPS) * torch.tanh(gate).unsqueeze(1)

    def _qkv_x(self, attn, x, scale, cos, sin) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Visual queries, post-RoPE keys and values, each ``[B, N, heads, head_dim]``."""
        q, k, v = attn.qkv_x(self._modulated(x, scale)).view(x.shape[0], x.shape[1], 3, attn.num_heads, -1).unbind(2)
        return self.apply_rope(attn.q_norm_x(q), cos, sin), self.apply_rope(attn.k_norm_x(k), cos, sin), v

    def block_forward(self, block, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      num_tokens, to: dict, kv_ctx: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block for visual rows ``x`` (with RoPE rows ``cos``/``sin``) and the full text ``y``.

        ``kv_ctx``: post-RoPE visual K/V of the other frames, appended to the keys (keyframe-only pass);
        ``None`` on a full pass, where the result equals ComfyUI's block. Returns ``(x, y, k_x, v_x)``.
        """
        attn = block.attn
        (scale_x, gate_x, scale_mlp_x, gate_mlp_x), mod_y = self.modulation(block, c)
        q_y, k_y, v_y = attn.qkv_y(self._modulated(y, mod_y[0])).view(y.shape[0], y.shape[1], 3, attn.num_heads, -1).unbind(2)
        q_y, k_y = attn.q_norm_y(q_y), attn.k_norm_y(k_y)
        q_x, k_x, v_x = self._qkv_x(attn, x, scale_x, cos, sin)
        ctx_k, ctx_v = (k_x, v_x) if kv_ctx is None else (torch.cat([k_x, kv_ctx[0]], dim=1), torch.cat([v_x, kv_ctx[1]], dim=1))
        q = torch.cat([q_x, q_y[:, :num_tokens]], dim=1).transpose(1, 2)
        k = torch.cat([ctx_k, k_y[:, :num_tokens]], dim=1).transpose(1, 2)
        v = torch.cat([ctx_v, v_y[:, :num_tokens]], dim=1).transpose(1, 2)
        out = self.attention(q, k, v, attn.num_heads, skip_reshape=True, transformer_options=to)
        x_att, y_att = torch.tensor_split(out, (x.shape[1],), dim=1)
        x = self._gated(x, attn.proj_x(x_att), gate_x)
        x = block.ff_block_x(x, scale_mlp_x, gate_mlp_x)
        if block.update_y:  # padded text rows get a zero attention output, as in ComfyUI
            y_att = attn.proj_y(F.pad(y_att, (0, 0, 0, y.shape[1] - y_att.shape[1])))
            y = block.ff_block_y(self._gated(y, y_att, mod_y[1]), mod_y[2], mod_y[3])
        return x, y, k_x, v_x

    # ---------------------------------------------------------------------------------- patch entry points

    def record_rope(self, args: dict, run) -> None:
        run.rope["cos"] = args["rope_cos"].index_select(0, run.key_tok)
        run.rope["sin"] = args["rope_sin"].index_select(0, run.key_tok)

    def full_block(self, key: BlockKey, args: dict, run) -> tuple:
        x, y, k, v = self.block_forward(run.dit.blocks[key[1]], args["img"], args["vec"], args["txt"], args["rope_cos"],
                                        args["rope_sin"], args["num_tokens"], args["transformer_options"])
        return {"img": x, "txt": y}, args["img"], k, v

    def keyframe_forward(self, key: BlockKey, args: dict, run, ctx: tuple) -> dict:
        x, y, _, _ = self.block_forward(run.dit.blocks[key[1]], args["img"], args["vec"], args["txt"], run.rope["cos"], run.rope["sin"],
                                        args["num_tokens"], args["transformer_options"], ctx)
        return {"img": x, "txt": y}


def comfyui_adapter() -> MochiAdapter:
    """The adapter with ComfyUI's attention (honours attention overrides), Mochi's RoPE and RMS norm."""
    import comfy.ldm.common_dit
    import comfy.ldm.genmo.joint_model.temporal_rope
    import comfy.ldm.modules.attention

    return MochiAdapter(comfy.ldm.modules.attention.optimized_attention,
                        comfy.ldm.genmo.joint_model.temporal_rope.apply_rotary_emb_qk_real, comfy.ldm.common_dit.rms_norm)
