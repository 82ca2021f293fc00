"""Run samplers on the test bed exactly as ComfyUI would: same noise scaling, sigmas and extra_args.

Why: demo, benchmark and tests all need "sample class c with seed s by method m"; this keeps them on
one code path, and the patch goes in through the same hooks ComfyUI uses (wrapper + block replace).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters.wan import WanAdapter
from ..flow import simple_sigmas
from ..patch import PatchConfig, RhymeFlowHolder, install
from . import pseudo_vae
from .denoiser import TestbedDenoiser
from .model_io import SAMPLE_CFG, SAMPLE_SHIFT
from .wan_dit import WanModel, apply_rope, attention

LATENT_SIZE = 16  # 64 x 64 pixels (pseudo-VAE: 4 x 4 pixel patches)


@dataclass
class Job:
    cls: int
    seed: int
    frames: int = 16
    steps: int = 30
    cfg: float = SAMPLE_CFG
    shift: float = SAMPLE_SHIFT
    batch_cfg: bool = True  # False: cond and uncond in separate DiT calls


def initial_noise(job: Job, batch: int = 1) -> torch.Tensor:
    """ComfyUI-style noise: seeded, ``[B, 16, T, h, w]``; a flow model starts from sigma_max * noise."""
    g = torch.Generator().manual_seed(job.seed)
    return torch.randn(batch, pseudo_vae.LATENT_CHANNELS, job.frames, LATENT_SIZE, LATENT_SIZE, generator=g)


def patched_call(model: WanModel, job: Job, config: PatchConfig | None = None, transformer_options: dict | None = None):
    """``(denoiser, extra_args, holder)``; with ``config`` the RhymeFlow projection patch is installed."""
    to = dict(transformer_options or {})
    holder = None
    if config is not None:
        adapter = WanAdapter(attention, apply_rope)
        holder = RhymeFlowHolder(config, adapter)
        to = install(to, holder, adapter.block_keys(model))
    return TestbedDenoiser(model, job.cls, job.cfg, job.batch_cfg), {"model_options": {"transformer_options": to}, "seed": job.seed}, holder


def run_sampler(sampler, model: WanModel, job: Job, config: PatchConfig | None = None, transformer_options: dict | None = None,
                sigmas: torch.Tensor | None = None, **sampler_kwargs) -> tuple[torch.Tensor, TestbedDenoiser, RhymeFlowHolder | None]:
    """Final latent (sigma 0) of ``sampler(model, x, sigmas, extra_args, ...)`` started from the job's noise; ``sigmas``
    defaults to the simple schedule of the job's steps and shift."""
    denoiser, extra_args, holder = patched_call(model, job, config, transformer_options)
    sigmas = simple_sigmas(job.steps, job.shift) if sigmas is None else sigmas
    x = initial_noise(job) * sigmas[0]
    return sampler(denoiser, x, sigmas, extra_args, **sampler_kwargs), denoiser, holder
