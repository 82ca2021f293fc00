"""ComfyUI's ``uni_pc`` sampler (UniPC, variant B(h) = h: "bh1"), ported so the test bed can be sampled the way
ComfyUI's Wan templates sample (KSampler ``uni_pc``) without ComfyUI installed.

Why here: the Wan pipeline, ComfyUI's Wan 2.1/2.2 templates and the published Wan figures the test bed is
compared with all sample with UniPC, a third-order multistep predictor-corrector; Euler (``sampler.sample_dense``)
is far more forgiving of fewer steps on this model. The port follows ``comfy/extra_samplers/uni_pc.py``
(``sample_unipc``: ``predict_x0``, multistep, order ``min(3, steps - 1)``, lower order on the last two steps, no
corrector after the last) step for step, including its sigma conversion (it treats a model's sigma as a VE
sigma: ``alpha = 1 / sqrt(1 + sigma^2)``, ``lambda = -log sigma``) and its final sigma 0.001 in place of 0.
``tests/comfyui/test_unipc_port.py`` checks it against ComfyUI's own function.

``model(x, sigma, **extra_args) -> denoised`` as ComfyUI's KSAMPLER calls it; one model call per step.
KSampler (the node the templates use) gives uni_pc a schedule one step longer with its penultimate sigma
dropped (``ksampler_sigmas``); SamplerCustom with BasicScheduler gives it the plain one.
"""
from __future__ import annotations

import math

import torch

from .flow import simple_sigmas

FINAL_SIGMA = 0.001  # what ComfyUI's uni_pc evaluates the lambda of, where the schedule ends at 0
VARIANTS = ("bh1", "bh2")


def ksampler_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The simple-scheduler sigmas KSampler gives uni_pc for ``steps`` steps: those of ``steps + 1`` without the
    penultimate one (``comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS``), so the last step is longer."""
    s = simple_sigmas(steps + 1, shift)
    return torch.cat([s[:-2], s[-1:]])


def _log_alpha(sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log(1 / (sigma * sigma + 1))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    log_alpha = _log_alpha(sigma)
    return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def _std(sigma: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_alpha(sigma)))


def _update(x: torch.Tensor, history: list[tuple[torch.Tensor, torch.Tensor]], t: torch.Tensor, order: int,
            variant: str, data_prediction, corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One UniPC step from the newest history entry to ``t`` (predictor, then corrector from a model call at ``t``).

    ``history`` holds ``(t, x0 prediction)`` pairs, oldest first; returns the new ``x`` and the call's x0 (``None``
    without the corrector).
    """
    t0, m0 = history[-1]
    lambda0, lambda_t = _lambda(t0), _lambda(t)
    alpha_t = torch.exp(_log_alpha(t))
    h = lambda_t - lambda0
    rks, d1s = [], []
    for i in range(1, order):
        ti, mi = history[-(i + 1)]
        rk = (_lambda(ti) - lambda0) / h
        rks.append(rk)
        d1s.append((mi - m0) / rk)
    rks.append(torch.ones_like(h))
    rks_t = torch.stack(rks)
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, b, factorial = [], [], 1
    for i in range(1, order + 1):
        rows.append(torch.pow(rks_t, i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r_mat, b_vec = torch.stack(rows), torch.stack(b)
    x_base = (_std(t) / _std(t0)) * x - (alpha_t * h_phi_1) * m0
    pred = 0
    if d1s:
        rhos_p = torch.tensor([0.5], dtype=h.dtype) if order == 2 else torch.linalg.solve(r_mat[:-1, :-1], b_vec[:-1])
        pred = sum(r * d for r, d in zip(rhos_p, d1s))
    x_t = x_base - (alpha_t * b_h) * pred
    if not corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5], dtype=h.dtype) if order == 1 else torch.linalg.solve(r_mat, b_vec)
    m_t = data_prediction(x_t, t)
    corr = sum(r * d for r, d in zip(rhos_c[:-1], d1s)) if d1s else 0
    return x_base - (alpha_t * b_h) * (corr + rhos_c[-1] * (m_t - m0)), m_t


@torch.no_grad()
def sample_unipc(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 variant: str = "bh1") -> torch.Tensor:
    """UniPC over ``sigmas`` (a schedule ending at 0, as BasicScheduler gives it), ``x`` the noised start latent."""
    if variant not in VARIANTS:
        raise ValueError(f"sample_unipc: variant={variant!r}; accepted: {', '.join(VARIANTS)}")
    extra_args = {} if extra_args is None else extra_args
    t_all = sigmas.clone()
    if float(t_all[-1]) == 0:
        t_all[-1] = FINAL_SIGMA
    steps = len(t_all) - 1
    order = min(3, steps - 1)
    if order < 1:
        raise ValueError(f"sample_unipc: needs at least 2 steps, got {steps}")
    s_in = x.new_ones([x.shape[0]])

    def data_prediction(x_vp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's x0 at a VP-scaled state (ComfyUI's ``predict_eps_sigma`` then ``data_prediction_fn``)."""
        scale = torch.sqrt(t * t + 1.0)
        x_model = x_vp * scale
        eps = (x_model - model(x_model, t * s_in, **extra_args)) / t
        return (x_vp - _std(t) * eps) / torch.exp(_log_alpha(t))

    x = x / math.sqrt(1.0 + float(t_all[0]) ** 2)
    history = [(t_all[0], data_prediction(x, t_all[0]))]
    for index in range(1, steps + 1):
        t = t_all[index]
        step_order = min(index, order, steps + 1 - index)  # lower order at the start (history) and the end
        last = index == steps
        x, m_t = _update(x, history, t, step_order, variant, data_prediction, corrector=not last)
        if not last:
            history = (history + [(t, m_t)])[-order:]
    return x / torch.exp(_log_alpha(t_all[-1]))
