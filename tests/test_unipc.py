"""The UniPC port (``rhymeflow_core.unipc``) as a solver: exact where UniPC is exact, high order where the field is
smooth. That it equals ComfyUI's own function is checked in ``tests/comfyui/test_unipc_port.py``."""
from __future__ import annotations

import pytest
import torch

from rhymeflow_core.flow import simple_sigmas
from rhymeflow_core.sampler import sample_dense
from rhymeflow_core.unipc import FINAL_SIGMA, ksampler_sigmas, sample_unipc

MU, S = 0.7, 0.3  # one-dimensional Gaussian data per element: the flow ODE's solution is known in closed form


def _start() -> torch.Tensor:
    return torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
    """E[x0 | x] for x = (1 - sigma) x0 + sigma eps, x0 ~ N(MU, S^2): what a perfect flow model predicts."""
    sg = sigma.view(-1, *([1] * (x.dim() - 1)))
    a = 1 - sg
    return MU + a * S**2 / (a**2 * S**2 + sg**2) * (x - a * MU)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("steps", [2, 3, 10, 30])
def test_a_constant_x0_is_integrated_exactly(steps, variant):
    """An exponential integrator is exact for a constant x0: every step lands on x0 + sigma * eps, and the port
    stops at sigma 0.001 as ComfyUI's does."""
    x, x0 = _start(), torch.randn(2, 4, 8, dtype=torch.float64)
    out = sample_unipc(lambda *_a, **_k: x0, x.clone(), ksampler_sigmas(steps, 3.0).double(), variant=variant)
    assert torch.allclose(out, x0 + FINAL_SIGMA * (x - x0), atol=1e-10), float((out - x0).abs().max())


def test_high_order_on_a_smooth_field():
    """On Gaussian data the exact end point is MU + S * noise; UniPC's error falls much faster than Euler's."""
    x = _start()
    exact = MU + S * x

    def err(sampler, n):
        return float((sampler(_gaussian_denoiser, x.clone(), simple_sigmas(n, 3.0).double()) - exact).abs().max())

    unipc_20, unipc_40, euler_40 = err(sample_unipc, 20), err(sample_unipc, 40), err(sample_dense, 40)
    assert unipc_40 < unipc_20 / 4, (unipc_20, unipc_40)  # better than second order from 20 to 40 steps
    assert unipc_40 < euler_40 / 5, (unipc_40, euler_40)


def test_ksampler_schedule_drops_the_penultimate_sigma():
    s = ksampler_sigmas(30, 3.0)
    longer = simple_sigmas(31, 3.0)
    assert len(s) == 31 and float(s[-1]) == 0.0
    assert torch.equal(s[:-1], longer[:-2])


def test_bad_settings_are_refused():
    x = _start()
    with pytest.raises(ValueError, match="variant='bh3'; accepted: bh1, bh2"):
        sample_unipc(_gaussian_denoiser, x, simple_sigmas(10, 3.0).double(), variant="bh3")
    with pytest.raises(ValueError, match="at least 2 steps"):
        sample_unipc(_gaussian_denoiser, x, simple_sigmas(1, 3.0).double())
