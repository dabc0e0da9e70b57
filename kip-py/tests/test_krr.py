"""Kernel ridge regression, Label Solve and the scikit-learn style
``KernelRidge`` on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import kip
from kiptest import centred_one_hot


@pytest.fixture
def small():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((12, 7))
    ids = np.array([0, 1, 2, 3] * 3)
    xt = rng.standard_normal((9, 7))
    return x, ids, xt


def test_class_ids_are_centred_one_hot_targets(small):
    x, ids, xt = small
    m_ids = kip.krr_fit("fc2-ntk", x, ids)
    m_oh = kip.krr_fit("fc2-ntk", x, centred_one_hot(ids, 4))
    assert m_ids.alpha.shape == (12, 4)
    np.testing.assert_array_equal(m_ids.alpha, m_oh.alpha)
    np.testing.assert_array_equal(m_ids.predict(xt), m_oh.predict(xt))
    # Any integer dtype, and lists of ints.
    for variant in (ids.astype(np.int32), ids.astype(np.uint8), ids.tolist()):
        np.testing.assert_array_equal(kip.krr_fit("fc2-ntk", x, variant).alpha, m_ids.alpha)


def test_number_of_classes_is_max_id_plus_one(small):
    x, _, _ = small
    ids = np.array([0, 2] * 6)  # class 1 absent: still 3 columns
    m = kip.krr_fit("fc1-ntk", x, ids)
    assert m.alpha.shape == (12, 3)
    np.testing.assert_array_equal(m.alpha, kip.krr_fit("fc1-ntk", x, centred_one_hot(ids, 3)).alpha)


def test_alpha_ridge_and_predictions_follow_the_definition(small):
    x, ids, xt = small
    reg = 1e-3
    k = kip.Kernel("fc3-ntk")
    m = kip.krr_fit(k, x, ids, reg=reg)
    k_ss = k.gram_sym(x)
    lam = reg * np.trace(k_ss) / len(x)
    assert m.ridge == pytest.approx(lam, rel=1e-14)
    assert m.jitter == 0.0
    assert m.kernel == "fc3-ntk"
    alpha = np.linalg.solve(k_ss + lam * np.eye(len(x)), centred_one_hot(ids, 4))
    np.testing.assert_allclose(m.alpha, alpha, rtol=1e-9, atol=1e-12 * np.abs(alpha).max())
    pred = m.predict(xt)
    assert pred.shape == (9, 4) and pred.dtype == np.float64
    want = k.gram(xt, x) @ m.alpha
    np.testing.assert_allclose(pred, want, rtol=1e-12, atol=1e-13 * np.abs(want).max())
    np.testing.assert_array_equal(kip.krr_predict(m, xt), pred)
    for block in (1, 4, 9, 100):
        np.testing.assert_allclose(m.predict(xt, block=block), pred, rtol=1e-13, atol=1e-14)
    # Training points are fitted almost exactly with a small ridge.
    assert "KrrModel(kernel='fc3-ntk', support=12, classes=4" in repr(m)


def test_model_keeps_its_own_copy_of_the_support(small):
    x, ids, xt = small
    m = kip.krr_fit("fc1-ntk", x, ids)
    before = m.predict(xt)
    x[:] = 0.0  # the caller's array changes after the fit
    np.testing.assert_array_equal(m.predict(xt), before)


def test_alpha_is_a_copy(small):
    x, ids, _ = small
    m = kip.krr_fit("fc1-ntk", x, ids)
    a = m.alpha
    a[:] = 0.0
    assert np.abs(m.alpha).max() > 0


def test_label_matrix_and_conv_images():
    rng = np.random.default_rng(22)
    x = rng.standard_normal((6, 6, 6, 1))
    y = rng.standard_normal((6, 2))
    m = kip.krr_fit("convvec2-ntk", x, y)
    assert m.alpha.shape == (6, 2)
    xt = rng.standard_normal((3, 6, 6, 1))
    k = kip.Kernel("convvec2-ntk")
    np.testing.assert_allclose(m.predict(xt), k.gram(xt, x) @ m.alpha, rtol=1e-12, atol=1e-14)
    # A flat-point model on an image_shape kernel predicts the same.
    mf = kip.krr_fit(kip.Kernel("convvec2-ntk", image_shape=(6, 6, 1)), x.reshape(6, -1), y)
    np.testing.assert_array_equal(mf.alpha, m.alpha)
    np.testing.assert_array_equal(mf.predict(xt.reshape(3, -1)), m.predict(xt))


# ------------------------------------------------------------- KernelRidge


def test_kernel_ridge_on_digits(digits):
    (xt, yt), (xs, ys) = digits
    clf = kip.KernelRidge("fc1-ntk")
    assert clf.fit(xt[:100], yt[:100]) is clf
    acc = clf.score(xs, ys)
    assert acc > 0.7, acc
    pred = clf.predict(xs)
    assert pred.shape == (len(xs),) and np.issubdtype(pred.dtype, np.integer)
    np.testing.assert_array_equal(pred, np.argmax(clf.decision_function(xs), axis=1))
    np.testing.assert_array_equal(clf.decision_function(xs), clf.model_.predict(xs))
    assert acc == pytest.approx(np.mean(pred == ys))
    assert repr(clf) == "KernelRidge(kernel='fc1-ntk', reg=1e-06)"


def test_kernel_ridge_accepts_kernel_objects_and_label_matrices(digits):
    (xt, yt), (xs, ys) = digits
    a = kip.KernelRidge(kip.Kernel("convvec1-ntk"), reg=1e-4).fit(xt[:60], yt[:60])
    b = kip.KernelRidge("convvec1-ntk", reg=1e-4).fit(xt[:60], centred_one_hot(yt[:60], 10))
    np.testing.assert_array_equal(a.decision_function(xs[:20]), b.decision_function(xs[:20]))
    assert a.score(xs, ys) > 0.6


# ------------------------------------------------------------- Label Solve


def test_label_solve_beats_one_hot_labels_on_its_targets(digits):
    (xt, yt), _ = digits
    sup, tgt, y_tgt = xt[:50], xt[:600], yt[:600]
    ys = kip.label_solve("fc1-ntk", sup, tgt, y_tgt)
    assert ys.shape == (50, 10) and ys.dtype == np.float64
    assert np.all(np.isfinite(ys))
    oh_t = centred_one_hot(y_tgt, 10)

    def evaluate(labels):
        p = kip.krr_fit("fc1-ntk", sup, labels).predict(tgt)
        return 0.5 * np.mean((p - oh_t) ** 2), np.mean(np.argmax(p, 1) == y_tgt)

    loss_oh, acc_oh = evaluate(centred_one_hot(yt[:50], 10))
    loss_ls, acc_ls = evaluate(ys)
    # Label Solve minimises exactly this loss over the support labels.
    assert loss_ls <= loss_oh
    assert acc_ls >= acc_oh


def test_label_solve_closed_form_and_blocks():
    rng = np.random.default_rng(23)
    xs, xt = rng.standard_normal((8, 12)), rng.standard_normal((40, 12))
    ids = np.arange(40) % 3
    reg = 1e-6
    k = kip.Kernel("fc3-ntk")
    ys = kip.label_solve(k, xs, xt, ids, reg=reg)
    # y_s* = (K_ss + λI) K_ts⁺ y_t.
    k_ss, k_ts = k.gram_sym(xs), k.gram(xt, xs)
    a = k_ss + reg * np.trace(k_ss) / 8 * np.eye(8)
    want = a @ np.linalg.lstsq(k_ts, centred_one_hot(ids, 3), rcond=None)[0]
    assert np.abs(ys - want).max() / np.abs(want).max() < 1e-6
    for block in (1, 7, 40, 10_000):
        got = kip.label_solve(k, xs, xt, ids, reg=reg, block=block)
        assert np.abs(got - ys).max() / np.abs(ys).max() < 1e-9, block
    # A label matrix target gives the same as its class ids.
    np.testing.assert_array_equal(kip.label_solve(k, xs, xt, centred_one_hot(ids, 3), reg=reg), ys)
