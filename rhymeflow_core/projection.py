"""Trajectory projection for frames that skip steps: where a non-keyframe latent is at sigma.

``linear`` is the paper's Eq. 3 as the authors' code computes it: an Euler extrapolation with the
velocity of the last sync point, ``z + (sigma - sigma_i) v_i``. ``quadratic`` is ours: a second-order
Taylor step whose curvature ``dv/dsigma`` is the finite difference of the velocities at the last two
full passes. Flow trajectories bend most where detail forms, which is where long strides hurt.
"""
from __future__ import annotations

import torch

PROJECTIONS = ("linear", "quadratic")


def project(z: torch.Tensor, v: torch.Tensor, sigma_from: float, sigma_to: float, method: str = "linear",
            v_prev: torch.Tensor | None = None, sigma_prev: float | None = None) -> torch.Tensor:
    """Latent at ``sigma_to`` on the trajectory through ``z`` at ``sigma_from`` with velocity ``v``.

    ``quadratic`` needs ``v_prev`` at ``sigma_prev`` (the previous full pass); without it, it is linear.
    ``sigma_to == sigma_from`` returns ``z`` unchanged.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"projection method={method!r}; accepted: {', '.join(PROJECTIONS)}")
    h = sigma_to - sigma_from
    if h == 0:
        return z
    out = z + h * v
    if method == "quadratic" and v_prev is not None and sigma_prev is not None and sigma_prev != sigma_from:
        curvature = (v - v_prev) / (sigma_from - sigma_prev)
        out = out + (0.5 * h * h) * curvature
    return out
