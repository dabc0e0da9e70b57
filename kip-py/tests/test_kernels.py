"""``kip.Kernel`` on numpy arrays of every accepted dtype, shape and memory
layout: the same points give the same kernel.

Equalities are exact where the binding hands the kernels the same row-major
values (copies: float32, lists, C-ordered image arrays, conv kernels), and to
~1e-13 where the points are read through strides (F order, slices): the
GEMM's summation order may then differ in the last bits.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import kip
from kiptest import raises


@pytest.fixture
def pts():
    rng = np.random.default_rng(5)
    return rng.standard_normal((20, 12)), rng.standard_normal((15, 12))


FC_SPECS = ["fc1-ntk", "fc3-ntk", "fc2-nngp:act=erf,w_std=1.5,b_std=0.25", "rbf", "linear"]


def close(a, b, rtol=1e-13):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("spec", FC_SPECS)
def test_fc_gram_layout_variants(spec, pts):
    x, y = pts
    k = kip.Kernel(spec)
    ref = k.gram(x, y)
    assert ref.shape == (20, 15) and ref.dtype == np.float64
    # Fortran order and strided views: same values up to summation order.
    close(k.gram(np.asfortranarray(x), np.asfortranarray(y)), ref)
    close(k.gram(np.asfortranarray(x), y), ref)
    wide = np.repeat(x, 2, axis=1)  # (20, 24): wide[:, ::2] == x
    assert np.array_equal(wide[:, ::2], x)
    close(k.gram(wide[:, ::2], y), ref)
    tall = np.repeat(x, 3, axis=0)  # every third row is x
    close(k.gram(tall[::3], y), ref)
    # Negative strides, transposed views.
    close(k.gram(x[::-1], y), ref[::-1])
    close(k.gram(np.ascontiguousarray(x.T).T, y), ref)
    # Python lists: converted exactly.
    np.testing.assert_array_equal(k.gram(x.tolist(), y.tolist()), ref)
    # Image-shaped points are flattened in C order: exactly the flat kernel.
    np.testing.assert_array_equal(k.gram(x.reshape(20, 2, 3, 2), y.reshape(15, 2, 3, 2)), ref)
    np.testing.assert_array_equal(k.gram(x.reshape(20, 3, 4), y.reshape(15, 3, 4)), ref)


@pytest.mark.parametrize("spec", FC_SPECS)
def test_float32_is_widened_exactly(spec, pts):
    x, y = pts
    k = kip.Kernel(spec)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    x64, y64 = x32.astype(np.float64), y32.astype(np.float64)
    np.testing.assert_array_equal(k.gram(x32, y32), k.gram(x64, y64))
    np.testing.assert_array_equal(k.gram(x32, y64), k.gram(x64, y64))
    np.testing.assert_array_equal(k.gram_sym(x32), k.gram_sym(x64))
    np.testing.assert_array_equal(k.diag(x32), k.diag(x64))
    assert k.gram(x32, y32).dtype == np.float64
    # float32 Fortran order / slices too.
    np.testing.assert_array_equal(k.gram(np.asfortranarray(x32), y32), k.gram(x64, y64))


@pytest.mark.parametrize("spec", FC_SPECS)
def test_gram_sym_and_diag_agree_with_gram(spec, pts):
    x, _ = pts
    k = kip.Kernel(spec)
    s = k.gram_sym(x)
    assert s.shape == (20, 20)
    np.testing.assert_array_equal(s, s.T)  # exactly symmetric
    close(s, k.gram(x, x), rtol=1e-12)
    np.testing.assert_array_equal(k.diag(x), np.diag(s))
    close(k.gram_sym(np.asfortranarray(x)), s)
    np.testing.assert_array_equal(k.gram_sym(x.reshape(20, 3, 4)), s)


def test_image_shaped_views_and_broadcasts(pts):
    x, y = pts
    k = kip.Kernel("fc3-ntk")
    ref = k.gram(x, y)
    img = np.repeat(x.reshape(20, 2, 3, 2), 2, axis=3)[..., ::2]  # non-contiguous points
    np.testing.assert_array_equal(k.gram(img, y.reshape(15, 2, 3, 2)), ref)
    # Zero strides (numpy broadcasts) read the repeated values.
    b = np.broadcast_to(x[:1], (6, 12))
    close(k.gram(b, y), k.gram(np.ascontiguousarray(b), y))
    bc = np.broadcast_to(x[:, :1], (20, 12))
    close(k.gram_sym(bc), k.gram_sym(np.ascontiguousarray(bc)), rtol=1e-11)
    # Read-only and unaligned arrays.
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(k.gram(ro, y), ref)
    raw = bytearray(x.nbytes + 1)
    unaligned = np.frombuffer(raw, dtype=np.float64, count=x.size, offset=1).reshape(x.shape)
    unaligned[:] = x
    assert not unaligned.flags.aligned
    close(k.gram(unaligned, y), ref)


def test_big_endian_float64_is_float64(pts):
    """Byte-swapped float arrays (dtype '>f8'/'>f4', e.g. from big-endian files,
    FITS, some HDF5) are read as the float64/float32 values they hold."""
    x, y = pts
    k = kip.Kernel("fc1-ntk")
    np.testing.assert_array_equal(k.gram(x.astype(">f8"), y), k.gram(x, y))
    np.testing.assert_array_equal(k.gram(x.astype(">f4"), y), k.gram(x.astype("<f4"), y))


def test_overflowing_points_are_reported_as_such(pts):
    """Finite but huge points (1e200: the squared norm overflows) are refused
    with a message naming the argument and the overflow, not a NaN/inf."""
    x, y = pts
    with raises(ValueError, r"x1.*(overflow|too large|norm)"):
        kip.Kernel("fc1-ntk").gram(x * 1e200, y)


def test_result_is_a_writable_owned_array(pts):
    x, y = pts
    out = kip.Kernel("fc1-ntk").gram(x, y)
    assert out.flags.writeable
    out[0, 0] = 123.0  # writing into the result does not crash or alias the input
    assert x[0, 0] != 123.0


def test_inputs_are_not_modified(pts):
    x, y = pts
    x0, y0 = x.copy(), y.copy()
    k = kip.Kernel("fc3-ntk")
    k.gram(x, y)
    k.gram_sym(x)
    k.vjp(x, y, np.ones((20, 15)))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


CONV_SPECS = ["convvec2-ntk", "convnet1-nngp", "conv-ntk:layers=CRCRGD"]


@pytest.mark.parametrize("spec", CONV_SPECS)
def test_conv_image_and_flat_layouts_agree(spec):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((5, 6, 6, 2)), rng.standard_normal((4, 6, 6, 2))
    k = kip.Kernel(spec)
    assert k.is_convolutional and k.image_shape is None
    ref = k.gram(a, b)
    kf = kip.Kernel(spec, image_shape=(6, 6, 2))
    assert kf.image_shape == (6, 6, 2)
    np.testing.assert_array_equal(kf.gram(a.reshape(5, -1), b.reshape(4, -1)), ref)
    np.testing.assert_array_equal(kf.gram_sym(a.reshape(5, -1)), k.gram_sym(a))
    np.testing.assert_array_equal(kf.diag(a.reshape(5, -1)), k.diag(a))
    # A kernel given image_shape takes image arrays of that shape too.
    np.testing.assert_array_equal(kf.gram(a, b), ref)
    # Memory layouts: conv kernels copy each point row-major, so exact.
    np.testing.assert_array_equal(k.gram(np.asfortranarray(a), b), ref)
    np.testing.assert_array_equal(k.gram(a[:, :, :, ::-1].copy()[:, :, :, ::-1], b), ref)
    wide = np.repeat(a, 2, axis=3)
    np.testing.assert_array_equal(k.gram(wide[..., ::2], b), ref)
    np.testing.assert_array_equal(k.gram(a.tolist(), b.tolist()), ref)
    a32 = a.astype(np.float32)
    np.testing.assert_array_equal(k.gram(a32, b), k.gram(a32.astype(np.float64), b))


@pytest.mark.parametrize("spec", CONV_SPECS)
def test_grayscale_images_are_single_channel(spec):
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((4, 6, 6)), rng.standard_normal((3, 6, 6))
    k = kip.Kernel(spec)
    np.testing.assert_array_equal(k.gram(a, b), k.gram(a[..., None], b[..., None]))
    np.testing.assert_array_equal(k.gram_sym(a), k.gram_sym(a[..., None]))
    kf = kip.Kernel(spec, image_shape=(6, 6, 1))
    np.testing.assert_array_equal(kf.gram(a.reshape(4, 36), b.reshape(3, 36)), k.gram(a, b))


def test_conv_kernel_on_digits_images(digits):
    (xt, _), _ = digits
    k = kip.Kernel("convnet1-ntk")
    x = xt[:6]
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.float32
    g = k.gram_sym(x)
    assert g.shape == (6, 6) and np.all(np.isfinite(g))
    np.testing.assert_array_equal(g, k.gram_sym(x.astype(np.float64)))
    np.testing.assert_array_equal(g, k.gram_sym(x[..., 0]))


def test_spec_properties_and_repr():
    k = kip.Kernel("fc1-ntk:w_std=1.4142135623730951,b_std=0.1")
    assert k.spec == "fc1-ntk"  # defaults dropped: the canonical form
    assert not k.is_convolutional and k.image_shape is None
    assert repr(k) == "Kernel('fc1-ntk')"
    k2 = kip.Kernel("fc2-ntk:w_std=1,b_std=0")
    assert k2.spec == "fc2-ntk:w_std=1,b_std=0"
    c = kip.Kernel("conv-ntk:layers=CRCRFD")
    assert c.spec == "convvec2-ntk" and c.is_convolutional
    assert repr(kip.Kernel("convvec2-ntk", image_shape=(8, 8, 1))) == "Kernel('convvec2-ntk', image_shape=(8, 8, 1))"
    # The canonical spec names the same kernel.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4))
    for spec in ["fc2-nngp:act=erf,w_std=1.5", "rbf:gamma=0.5", "linear", "fc0-ntk"]:
        a = kip.Kernel(spec)
        np.testing.assert_array_equal(kip.Kernel(a.spec).gram_sym(x), a.gram_sym(x))


def test_kernel_objects_and_spec_strings_are_interchangeable_in_krr(pts):
    x, _ = pts
    ids = np.arange(20) % 3
    a = kip.krr_fit("fc3-ntk", x, ids)
    b = kip.krr_fit(kip.Kernel("fc3-ntk"), x, ids)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert a.kernel == b.kernel == "fc3-ntk"


def test_kernel_usable_from_threads(pts):
    """A frozen Kernel shared by threads gives each the same result."""
    x, y = pts
    k = kip.Kernel("fc3-ntk")
    ref = k.gram(x, y)
    results = [None] * 4

    def work(i):
        results[i] = k.gram(x, y)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, ref)


def test_kernels_pickle_as_their_spec_and_image_shape():
    import pickle

    for k in [kip.Kernel("fc3-ntk"), kip.Kernel("convvec2-ntk", image_shape=(6, 6, 2))]:
        back = pickle.loads(pickle.dumps(k))
        assert (back.spec, back.image_shape) == (k.spec, k.image_shape)
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2))
    k = kip.Kernel("convvec2-ntk")
    assert np.array_equal(pickle.loads(pickle.dumps(k)).gram_sym(x), k.gram_sym(x))
