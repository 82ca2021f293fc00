"""The test bed's stand-in for ComfyUI's guided model call: ``model(x, sigma, **extra_args) -> denoised``.

Why: RhymeFlow's sampler is written against the k-diffusion contract ComfyUI hands to a KSAMPLER
function (CFG already applied, x0 returned, ``extra_args["model_options"]["transformer_options"]``
reaching the DiT). This class gives the same contract on the bare test-bed model, with cond and
uncond batched in one DiT call and ``cond_or_uncond`` set as ComfyUI sets it, so the sampler and the
model patches run in CI exactly as they run in ComfyUI.
"""
from __future__ import annotations

import torch

from .conditioning import class_context, null_context
from .wan_dit import WanModel


class TestbedDenoiser:
    """CFG-guided x0 prediction for one class; counts DiT calls (one per CFG batch)."""

    def __init__(self, model: WanModel, cls: int, cfg_scale: float = 3.0, batch_cfg: bool = True):
        self.model = model
        self.cfg_scale = float(cfg_scale)
        self.batch_cfg = batch_cfg  # False: cond and uncond in separate DiT calls, as ComfyUI does when memory is short
        dtype = next(model.parameters()).dtype
        self.cond = class_context(cls, dtype=dtype)
        self.uncond = null_context(dtype=dtype)
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, model_options: dict | None = None, seed: int | None = None) -> torch.Tensor:
        base = (model_options or {}).get("transformer_options", {})
        b = x.shape[0]
        sig = sigma.reshape(-1)[:1].expand(b) if torch.is_tensor(sigma) else torch.full((b,), float(sigma))
        branches = [0, 1] if self.cfg_scale != 1.0 else [0]
        groups = [branches] if self.batch_cfg else [[br] for br in branches]
        x0 = {}
        for group in groups:
            to = dict(base, cond_or_uncond=list(group), sigmas=sig[:1])
            ctx = torch.cat([(self.cond if br == 0 else self.uncond).expand(b, -1, -1) for br in group])
            s = sig.repeat(len(group))
            xin = x.repeat(len(group), 1, 1, 1, 1)
            v = self.model(xin.to(self.cond.dtype), s.to(self.cond.dtype) * 1000, ctx, transformer_options=to).to(x.dtype)
            self.calls += 1
            for br, out in zip(group, (xin - s.view(-1, 1, 1, 1, 1).to(x.dtype) * v).chunk(len(group))):
                x0[br] = out
        if len(branches) == 1:
            return x0[0]
        return x0[1] + self.cfg_scale * (x0[0] - x0[1])
