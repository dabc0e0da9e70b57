"""``Kernel.vjp`` / ``Kernel.vjp_sym`` against central finite differences of
``gram`` / ``gram_sym`` on small random inputs."""

from __future__ import annotations

import numpy as np
import pytest

import kip

EPS = 1e-5
TOL = 1e-6  # max |vjp - fd| / max |fd|; central differences reach ~1e-9 here


def fd_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar ``f`` at ``x`` (any shape)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f(x)
        flat[i] = old - EPS
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return grad


def assert_close_to_fd(got: np.ndarray, fd: np.ndarray, what: str):
    assert got.shape == fd.shape, (what, got.shape, fd.shape)
    err = np.abs(got - fd).max() / np.abs(fd).max()
    assert err < TOL, f"{what}: rel err vs central differences {err:.2e}"


CASES = [
    # (spec, image_shape kwarg, shape of x1, shape of x2)
    ("fc3-ntk", None, (4, 5), (3, 5)),
    ("fc1-nngp:act=erf", None, (3, 6), (4, 6)),
    ("convvec2-ntk", None, (3, 6, 6, 2), (2, 6, 6, 2)),
    ("convvec2-ntk", (6, 6, 2), (3, 72), (2, 72)),  # flat points + image_shape
]


@pytest.mark.parametrize("spec, image_shape, s1, s2", CASES)
def test_vjp_matches_finite_differences(spec, image_shape, s1, s2):
    rng = np.random.default_rng(11)
    k = kip.Kernel(spec, image_shape=image_shape)
    x1, x2 = rng.standard_normal(s1), rng.standard_normal(s2)
    g = rng.standard_normal((s1[0], s2[0]))
    dx1, dx2 = k.vjp(x1, x2, g)
    # Each gradient is shaped like its points.
    assert dx1.shape == x1.shape and dx2.shape == x2.shape
    assert dx1.dtype == np.float64 and dx2.dtype == np.float64
    assert_close_to_fd(dx1, fd_grad(lambda a: np.sum(g * k.gram(a, x2)), x1.copy()), "dL/dx1")
    assert_close_to_fd(dx2, fd_grad(lambda b: np.sum(g * k.gram(x1, b)), x2.copy()), "dL/dx2")


@pytest.mark.parametrize("spec, image_shape, s1, s2", CASES)
def test_vjp_sym_matches_finite_differences(spec, image_shape, s1, s2):
    rng = np.random.default_rng(12)
    k = kip.Kernel(spec, image_shape=image_shape)
    x = rng.standard_normal(s1)
    # Any n × n cotangent, not necessarily symmetric (kip's documented contract).
    g = rng.standard_normal((s1[0], s1[0]))
    dx = k.vjp_sym(x, g)
    assert dx.shape == x.shape
    assert_close_to_fd(dx, fd_grad(lambda a: np.sum(g * k.gram_sym(a)), x.copy()), "dL/dx (sym)")
    # vjp_sym is the sum of both sides of vjp(x, x, g).
    d1, d2 = k.vjp(x, x, g)
    np.testing.assert_allclose(dx, d1 + d2, rtol=1e-9, atol=1e-12 * np.abs(dx).max())


def test_conv_vjp_flat_and_image_layouts_agree():
    rng = np.random.default_rng(13)
    x1, x2 = rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((2, 6, 6, 2))
    g = rng.standard_normal((3, 2))
    img = kip.Kernel("convvec2-ntk").vjp(x1, x2, g)
    flat = kip.Kernel("convvec2-ntk", image_shape=(6, 6, 2)).vjp(x1.reshape(3, -1), x2.reshape(2, -1), g)
    assert flat[0].shape == (3, 72) and flat[1].shape == (2, 72)
    np.testing.assert_array_equal(flat[0], img[0].reshape(3, -1))
    np.testing.assert_array_equal(flat[1], img[1].reshape(2, -1))


def test_vjp_accepts_float32_and_fortran_cotangents():
    rng = np.random.default_rng(14)
    k = kip.Kernel("fc3-ntk")
    x1, x2 = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    g = rng.standard_normal((4, 3))
    ref = k.vjp(x1, x2, g)
    for variant in (np.asfortranarray(g), g.tolist()):
        got = k.vjp(x1, x2, variant)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    g32 = g.astype(np.float32)
    got = k.vjp(x1, x2, g32)
    want = k.vjp(x1, x2, g32.astype(np.float64))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_vjp_of_strided_points_matches_contiguous():
    rng = np.random.default_rng(15)
    k = kip.Kernel("fc3-ntk")
    x1 = np.asfortranarray(rng.standard_normal((5, 6)))
    wide = rng.standard_normal((4, 12))
    x2 = wide[:, ::2]
    g = rng.standard_normal((5, 4))
    got = k.vjp(x1, x2, g)
    want = k.vjp(np.ascontiguousarray(x1), np.ascontiguousarray(x2), g)
    for a, b in zip(got, want):
        assert a.flags.c_contiguous
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    gs = rng.standard_normal((5, 5))
    np.testing.assert_allclose(k.vjp_sym(x1, gs), k.vjp_sym(np.ascontiguousarray(x1), gs), rtol=1e-12, atol=1e-14)
