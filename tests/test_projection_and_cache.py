"""Trajectory projection and the per-branch context cache."""
import pytest
import torch

from rhymeflow_core.context_cache import ContextCache
from rhymeflow_core.projection import project


def test_zero_length_projection_is_the_identity():
    z, v = torch.randn(2, 3), torch.randn(2, 3)
    for method in ("linear", "quadratic"):
        assert torch.equal(project(z, v, 0.7, 0.7, method, v_prev=torch.randn(2, 3), sigma_prev=0.9), z)


def test_linear_projection_is_an_euler_step():
    z, v = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(project(z, v, 0.8, 0.5), z - 0.3 * v)


def test_quadratic_projection_is_exact_on_a_quadratic_trajectory():
    """z(s) = a + b s + c s^2 has v = b + 2 c s; two velocities recover it exactly, linear does not."""
    a, b, c = torch.randn(5), torch.randn(5), torch.randn(5)
    z = lambda s: a + b * s + c * s * s  # noqa: E731
    v = lambda s: b + 2 * c * s  # noqa: E731
    got = project(z(0.6), v(0.6), 0.6, 0.2, "quadratic", v_prev=v(0.8), sigma_prev=0.8)
    torch.testing.assert_close(got, z(0.2))
    assert not torch.allclose(project(z(0.6), v(0.6), 0.6, 0.2, "linear"), z(0.2))


def test_unknown_projection_is_refused():
    with pytest.raises(ValueError, match="accepted: linear, quadratic"):
        project(torch.zeros(1), torch.zeros(1), 1.0, 0.5, "spline")


def test_cache_reassembles_branches_in_the_order_asked():
    cache = ContextCache()
    cond, uncond = torch.full((1, 4, 2), 1.0), torch.full((1, 4, 2), 2.0)
    cache.put(3, [0, 1], (torch.cat([cond, uncond]),))
    (swapped,) = cache.get(3, [1, 0], torch.device("cpu"), torch.float32)
    assert torch.equal(swapped, torch.cat([uncond, cond]))
    (alone,) = cache.get(3, [1], torch.device("cpu"), torch.float32)
    assert torch.equal(alone, uncond)
    assert cache.nbytes() == 2 * 4 * 2 * 4


def test_cache_placement_dtype_and_errors():
    cache = ContextCache("cpu", torch.float16)
    cache.put(0, [0], (torch.randn(1, 3, 2),))
    (got,) = cache.get(0, [0], torch.device("cpu"), torch.float32)
    assert got.dtype == torch.float32 and cache.nbytes() == 3 * 2 * 2
    with pytest.raises(RuntimeError, match="no entry for block 1"):
        cache.get(1, [0], torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="accepted: device, cpu"):
        ContextCache("disk")
