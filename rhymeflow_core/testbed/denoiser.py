"""The test bed's stand-in for ComfyUI's guided model call: ``model(x, sigma, **extra_args) -> denoised``.

Why: RhymeFlow's sampler is written against the k-diffusion contract ComfyUI hands to a KSAMPLER
function (CFG already applied, x0 returned, ``extra_args["model_options"]["transformer_options"]``
reaching the DiT). This class gives the same contract on the bare test-bed model, with cond and
uncond batched in one DiT call and ``cond_or_uncond`` set as ComfyUI sets it, and ``apply_model``
running APPLY_MODEL wrappers as ComfyUI's ``BaseModel.apply_model`` does, so the sampler and the
model patches run in CI exactly as they run in ComfyUI.
"""
from __future__ import annotations

import torch

from .conditioning import class_context, null_context
from .wan_dit import WanModel, _Executor


class TestbedDenoiser:
    """CFG-guided x0 prediction for one class; counts DiT calls (one per CFG batch)."""

    def __init__(self, model: WanModel, cls: int, cfg_scale: float = 3.0, batch_cfg: bool = True):
        self.diffusion_model = model  # the attribute name ComfyUI's BaseModel uses
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
            self.calls += 1
            for br, out in zip(group, self.apply_model(xin, s.to(x.dtype), None, ctx, None, to).chunk(len(group))):
                x0[br] = out
        if len(branches) == 1:
            return x0[0]
        return x0[1] + self.cfg_scale * (x0[0] - x0[1])

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_concat=None, c_crossattn=None, control=None,
                    transformer_options: dict | None = None, **kwargs) -> torch.Tensor:
        """ComfyUI's ``BaseModel.apply_model`` for a CONST (flow) model: x0 = x - sigma * v, wrappers outermost-first."""
        to = {} if transformer_options is None else transformer_options
        wrappers = [fn for fns in to.get("wrappers", {}).get("apply_model", {}).values() for fn in fns]
        return _Executor(self, self._apply_model, wrappers)(x, t, c_concat, c_crossattn, control, to, **kwargs)

    def _apply_model(self, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs) -> torch.Tensor:
        dtype = self.cond.dtype
        v = self.diffusion_model(x.to(dtype), t.to(dtype) * 1000, c_crossattn, transformer_options=transformer_options).to(x.dtype)
        return x - t.view(-1, 1, 1, 1, 1).to(x.dtype) * v
