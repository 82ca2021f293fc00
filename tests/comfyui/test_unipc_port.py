"""``rhymeflow_core.unipc.sample_unipc`` is ComfyUI's ``uni_pc`` (and ``uni_pc_bh2``): the test bed's evaluation and
benchmarks sample with the port where ComfyUI is absent, so it must compute what KSampler ``uni_pc`` computes.

Two checks: against ComfyUI's own ``sample_unipc`` on a nonlinear field at step counts that exercise the order's
warm-up and the lower-order last steps; and end to end, the shipped test-bed checkpoint through ComfyUI's KSampler
(``nodes.common_ksampler``, which drops the penultimate sigma for uni_pc: ``ksampler_sigmas``) against the core
runner with the port, same seed, scene and CFG.
"""
from __future__ import annotations

import pytest
import torch

from rhymeflow_core.flow import simple_sigmas
from rhymeflow_core.unipc import ksampler_sigmas, sample_unipc

CFG = 5.0
FRAMES = 5
SEED = 3


def _field(x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
    """A denoiser whose x0 prediction depends nonlinearly on x and sigma, so every history term matters."""
    w = torch.linspace(-0.4, 0.4, x.shape[-1] ** 2).reshape(x.shape[-1], x.shape[-1])
    return torch.tanh(x @ w) * (1 - sigma.view(-1, 1, 1)) + 0.1 * torch.sin(3 * x)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("steps", [2, 3, 4, 5, 10, 30])
def test_port_equals_comfyuis_function(comfyui, steps, variant):
    from comfy.extra_samplers.uni_pc import sample_unipc as comfy_unipc

    sigmas = simple_sigmas(steps, 3.0)
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(steps)) * sigmas[0]
    want = comfy_unipc(_field, x.clone(), sigmas.clone(), extra_args={}, variant=variant, disable=True)
    got = sample_unipc(_field, x.clone(), sigmas.clone(), variant=variant)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), float((got - want).abs().max())


@pytest.mark.parametrize("cls", ["astronaut", "cat"])
def test_testbed_ksampler_uni_pc_equals_the_core_runner(pack, testbed, cls):
    import comfy.latent_formats
    import nodes as comfy_nodes

    from rhymeflow_core.testbed import model_io, runner
    from rhymeflow_core.testbed.conditioning import CLASSES

    pos, neg = pack.tb.RhymeFlowTestbedConditioning.execute(cls).args
    latent = {"samples": torch.zeros(1, 16, FRAMES, 16, 16)}
    with torch.inference_mode():
        out = comfy_nodes.common_ksampler(testbed, SEED, 12, CFG, "uni_pc", "simple", pos, neg, latent)[0]["samples"]
    theirs = comfy.latent_formats.Wan21().process_in(out.float())
    job = runner.Job(cls=CLASSES.index(cls), seed=SEED, frames=FRAMES, steps=12, cfg=CFG, shift=model_io.SAMPLE_SHIFT)
    ours = runner.run_sampler(sample_unipc, model_io.load_model(), job, sigmas=ksampler_sigmas(12, model_io.SAMPLE_SHIFT))[0]
    err, scale = float((theirs - ours).abs().max()), max(1.0, float(ours.abs().max()))
    assert err <= 2e-3 * scale, f"max |comfyui - core| = {err:.3g} (scale {scale:.3g})"
