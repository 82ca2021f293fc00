"""A small Wan 2.1 T2V diffusion transformer with ComfyUI's exact module names and forward math.

Why it exists: no real video model runs on the project's CPU machines, so the test bed trains this
one. Because its state dict has the names and shapes of ComfyUI's ``WanModel`` (``comfy/ldm/wan``),
the checkpoint loads in ComfyUI as Wan 2.1, and every RhymeFlow/AsymRnR code path that patches a real
Wan model (block replacement, attention override) runs unchanged on it. Written from the
architecture, not copied: patch embed 1x2x2, 3D RoPE split [d-4(d//6), 2(d//6), 2(d//6)], sinusoidal
time embedding -> 6-way adaLN modulation, q/k RMSNorm, cross-attention to a 4096-d text context.

It honours the same two hooks ComfyUI's model offers, read from ``transformer_options``:
``patches_replace["dit"][("double_block", i)]`` and ``optimized_attention_override``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class WanConfig:
    """Hyper-parameters; ComfyUI derives the same values from the state dict."""

    dim: int = 256
    ffn_dim: int = 1024
    num_layers: int = 4
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)

    @property
    def num_heads(self) -> int:
        return self.dim // 128  # ComfyUI's model detection fixes head_dim at 128

    def to_dict(self) -> dict:
        return asdict(self)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, transformer_options: dict | None = None) -> torch.Tensor:
    """Multi-head attention on ``[B, L, heads*d]`` tensors, the signature of ComfyUI's ``optimized_attention``."""
    b, lq, hd = q.shape
    d = hd // heads
    q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, lq, hd)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, transformer_options: dict) -> torch.Tensor:
    """Attention that honours ``optimized_attention_override`` exactly as ComfyUI's ``wrap_attn`` does."""
    override = transformer_options.get("optimized_attention_override")
    if override is not None:
        return override(sdpa_attention, q, k, v, heads=heads, transformer_options=transformer_options)
    return sdpa_attention(q, k, v, heads, transformer_options)


def rope_1d(pos: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """Rotation matrices ``[..., n, dim/2, 2, 2]`` for positions ``pos`` (flux/Wan convention)."""
    scale = torch.linspace(0, (dim - 2) / dim, steps=dim // 2, dtype=torch.float64, device=pos.device)
    omega = 1.0 / (theta ** scale)
    out = torch.einsum("...n,d->...nd", pos.to(torch.float32), omega)
    out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], dim=-1)
    return out.reshape(*out.shape[:-1], 2, 2).float()


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, L, heads, d]`` by ``freqs [1, L, 1, d/2, 2, 2]``."""
    x_ = x.to(freqs.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs[..., 0] * x_[..., 0] + freqs[..., 1] * x_[..., 1]
    return out.reshape(*x.shape).type_as(x)


def sinusoidal_embedding(dim: int, position: torch.Tensor) -> torch.Tensor:
    half = dim // 2
    position = position.float()
    sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half, device=position.device).float().div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def repeat_e(e: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Expand per-frame modulation ``[B, T, C]`` to tokens ``[B, L, C]`` (identity for ``[B, 1, C]``)."""
    if e.size(1) == 1:
        return e
    return torch.repeat_interleave(e, x.size(1) // e.size(1), dim=1)


class WanSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        b, s = x.shape[:2]
        n, d = self.num_heads, self.head_dim
        q = apply_rope(self.norm_q(self.q(x)).view(b, s, n, d), freqs)
        k = apply_rope(self.norm_k(self.k(x)).view(b, s, n, d), freqs)
        out = attention(q.view(b, s, n * d), k.view(b, s, n * d), self.v(x), heads=n, transformer_options=transformer_options)
        return self.o(out)


class WanT2VCrossAttention(WanSelfAttention):
    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img_len=None,  # type: ignore[override]
                transformer_options: dict | None = None) -> torch.Tensor:
        transformer_options = {} if transformer_options is None else transformer_options
        q = self.norm_q(self.q(x))
        k = self.norm_k(self.k(context))
        out = attention(q, k, self.v(context), heads=self.num_heads, transformer_options=transformer_options)
        return self.o(out)


class WanAttentionBlock(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = nn.LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = WanSelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(dim, cfg.eps, elementwise_affine=True)  # cross_attn_norm=True in Wan
        self.cross_attn = WanT2VCrossAttention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = nn.LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, freqs: torch.Tensor, context: torch.Tensor,
                context_img_len=None, transformer_options: dict | None = None) -> torch.Tensor:
        to = transformer_options if transformer_options is not None else {}
        e = (self.modulation.to(x.dtype).unsqueeze(0) + e).unbind(2)
        y = self.self_attn(torch.addcmul(repeat_e(e[0], x), self.norm1(x), 1 + repeat_e(e[1], x)), freqs, to)
        x = torch.addcmul(x, y, repeat_e(e[2], x))
        x = x + self.cross_attn(self.norm3(x), context, transformer_options=to)
        y = self.ffn(torch.addcmul(repeat_e(e[3], x), self.norm2(x), 1 + repeat_e(e[4], x)))
        return torch.addcmul(x, y, repeat_e(e[5], x))


class Head(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        e = (self.modulation.to(x.dtype).unsqueeze(0) + e.unsqueeze(2)).unbind(2)
        return self.head(torch.addcmul(repeat_e(e[0], x), self.norm(x), 1 + repeat_e(e[1], x)))


class _Executor:
    """The part of ComfyUI's ``WrapperExecutor`` a wrapper may use: ``executor(*args)`` and ``executor.class_obj``."""

    def __init__(self, class_obj: nn.Module, fn, wrappers: list):
        self.class_obj, self.fn, self.wrappers = class_obj, fn, wrappers

    def __call__(self, *args, **kwargs):
        if not self.wrappers:
            return self.fn(*args, **kwargs)
        return self.wrappers[0](_Executor(self.class_obj, self.fn, self.wrappers[1:]), *args, **kwargs)


class WanModel(nn.Module):
    """Wan 2.1 T2V backbone. ``forward(x [B,16,T,H,W], timestep [B] = sigma*1000, context [B,L,4096])`` -> velocity."""

    def __init__(self, cfg: WanConfig = WanConfig()):
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.dim, self.freq_dim, self.out_dim, self.num_heads = cfg.dim, cfg.freq_dim, cfg.out_dim, cfg.num_heads
        self.ffn_dim = cfg.ffn_dim  # as ComfyUI's WanModel: the FLOP model reads it
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim * 6))
        self.blocks = nn.ModuleList([WanAttentionBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)
        d = cfg.dim // cfg.num_heads
        self.rope_axes = [d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)]

    def rope_encode(self, t: int, h: int, w: int, t_start: int = 0, device=None, dtype=None) -> torch.Tensor:
        """RoPE for a ``t x h x w`` latent (pixel units of the latent), tokens in (t, h, w) order."""
        pt, ph, pw = self.patch_size
        tl, hl, wl = (t + pt // 2) // pt, (h + ph // 2) // ph, (w + pw // 2) // pw
        ids = torch.zeros(tl, hl, wl, 3, device=device, dtype=dtype)
        ids[..., 0] += torch.linspace(t_start, t_start + tl - 1, tl, device=device, dtype=dtype).view(-1, 1, 1)
        ids[..., 1] += torch.linspace(0, hl - 1, hl, device=device, dtype=dtype).view(1, -1, 1)
        ids[..., 2] += torch.linspace(0, wl - 1, wl, device=device, dtype=dtype).view(1, 1, -1)
        ids = ids.reshape(1, -1, 3)
        emb = torch.cat([rope_1d(ids[..., i], self.rope_axes[i], 10000.0) for i in range(3)], dim=-3)
        return emb.unsqueeze(1).movedim(1, 2)

    def time_modulation(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``e [B, 1, dim]`` for the head and ``e0 [B, 1, 6, dim]`` for the blocks."""
        e = self.time_embedding(sinusoidal_embedding(self.freq_dim, timestep.flatten()).to(dtype))
        e = e.reshape(timestep.shape[0], -1, e.shape[-1])
        return e, self.time_projection(e).unflatten(2, (6, self.dim))

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, clip_fea=None,
                time_dim_concat=None, transformer_options: dict | None = None, **kwargs) -> torch.Tensor:
        """ComfyUI's signature; DIFFUSION_MODEL wrappers in ``transformer_options["wrappers"]`` run outermost-first."""
        to = {} if transformer_options is None else transformer_options
        wrappers = [fn for fns in to.get("wrappers", {}).get("diffusion_model", {}).values() for fn in fns]
        return _Executor(self, self._forward, wrappers)(x, timestep, context, clip_fea, time_dim_concat, to, **kwargs)

    def _forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, clip_fea=None,
                 time_dim_concat=None, transformer_options: dict | None = None, **kwargs) -> torch.Tensor:
        if clip_fea is not None or time_dim_concat is not None:
            raise ValueError("test-bed WanModel is text-to-video only: clip_fea and time_dim_concat are not supported")
        to = {} if transformer_options is None else transformer_options
        b, c, t, h, w = x.shape
        ph, pw = self.patch_size[1:]
        x = F.pad(x, (0, (pw - w % pw) % pw, 0, (ph - h % ph) % ph, 0, 0), mode="circular")  # as ComfyUI pads
        freqs = self.rope_encode(t, x.shape[3], x.shape[4], device=x.device, dtype=x.dtype)

        x = self.patch_embedding(x.float()).to(x.dtype)
        grid = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        e, e0 = self.time_modulation(timestep, x.dtype)
        context = self.text_embedding(context)

        replace = to.get("patches_replace", {}).get("dit", {})
        to["total_blocks"], to["block_type"] = len(self.blocks), "double"
        for i, block in enumerate(self.blocks):
            to["block_index"] = i
            if ("double_block", i) in replace:
                def block_wrap(args, block=block):
                    return {"img": block(args["img"], e=args["vec"], freqs=args["pe"], context=args["txt"], transformer_options=args["transformer_options"])}
                x = replace[("double_block", i)]({"img": x, "txt": context, "vec": e0, "pe": freqs, "transformer_options": to},
                                                 {"original_block": block_wrap})["img"]
            else:
                x = block(x, e=e0, freqs=freqs, context=context, transformer_options=to)
        x = self.head(x, e)
        return self.unpatchify(x, grid)[:, :, :t, :h, :w]

    def unpatchify(self, x: torch.Tensor, grid) -> torch.Tensor:
        b = x.shape[0]
        c = self.out_dim
        u = x[:, : math.prod(grid)].view(b, *grid, *self.patch_size, c)
        u = torch.einsum("bfhwpqrc->bcfphqwr", u)
        return u.reshape(b, c, *[g * p for g, p in zip(grid, self.patch_size)])
