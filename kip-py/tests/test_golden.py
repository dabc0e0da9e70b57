"""Golden values through Python: the neural-tangents reference files of
kip-kernels, with the tolerances of the Rust tests that read them.

* ``fc_kernels.json`` kernel entries: mirrors ``kip-kernels/tests/golden.rs``
  (relative error ≤ 1e-11 everywhere except the NTK diagonal of symmetric
  blocks, ≤ 1e-7: the reference takes the angle of a point with itself from
  a rounded cosine, see the file's ``check_vs_independent_numpy``);
* ``conv_kernels.json`` kernel entries: mirrors
  ``kip-kernels/tests/conv_golden.rs`` (≤ 1e-10, NTK symmetric blocks ≤ 1e-7),
  images passed as ``(n, h, w, c)`` arrays (the file's NHWC layout);
* the ``kip`` (KRR) cases of both files: ``krr_fit`` α and predictions, as
  ``kip-krr/tests/golden.rs`` and ``kip-meta/tests/conv_golden.rs``, plus
  the KIP loss gradient assembled from ``Kernel.vjp``/``vjp_sym``.

Error measure (``golden_json.rs::rel_err``): ``|got - want| /
max(|want|, 1e-3 · max|want|)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import kip
from kiptest import load_golden, rel_err_split, rel_max

FC = load_golden("fc_kernels.json")
CONV = load_golden("conv_kernels.json")


def fc_spec(arch: dict, kind: str) -> str:
    """The spec of an ``arch`` object (``golden_json.rs::arch_params``): the
    depth-0 archs have no activation and read as ReLU."""
    act = arch["activation"] or "relu"
    return f"fc{arch['depth']}-{kind}:act={act},w_std={arch['W_std']!r},b_std={arch['b_std']!r}"


def conv_spec(tokens: str, kind: str, w_std: float, b_std: float) -> str:
    return f"conv-{kind}:layers={tokens},w_std={w_std!r},b_std={b_std!r}"


def _entry_id(i: int, e: dict) -> str:
    return f"{i}-{e['input']}-{e['arch']['name']}"


# ---------------------------------------------------------------- FC kernels


def test_fc_golden_file_shape():
    assert len(FC["kernels"]) == 56
    assert FC["conventions"]["matrix_layout"].startswith("row-major")
    # The file's own statement of the reference's noise: NTK diagonals ~1e-8.
    noise = FC["check_vs_independent_numpy"]
    assert noise["ntk_symmetric_diagonal"] < 1e-7
    assert max(v for k, v in noise.items() if k != "note" and k != "ntk_symmetric_diagonal") < 1e-11


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize(
    "entry", FC["kernels"], ids=[_entry_id(i, e) for i, e in enumerate(FC["kernels"])]
)
def test_fc_kernel_entry(entry, kind):
    inp = FC["inputs"][entry["input"]]
    x1, x2 = np.array(inp["x1"], dtype=np.float64), np.array(inp["x2"], dtype=np.float64)
    k = kip.Kernel(fc_spec(entry["arch"], kind))
    assert not k.is_convolutional
    diag_tol = 1e-7 if kind == "ntk" else 1e-11
    k11 = k.gram_sym(x1)
    blocks = [(k11, "_11", True), (k.gram(x1, x2), "_12", False), (k.gram_sym(x2), "_22", True)]
    for got, suffix, sym in blocks:
        want = np.array(entry[kind + suffix])
        d, o = rel_err_split(got, want, sym)
        assert d <= diag_tol, f"{kind}{suffix}: diagonal rel err {d:e}"
        assert o <= 1e-11, f"{kind}{suffix}: off-diagonal rel err {o:e}"
    # The non-symmetric path on identical inputs agrees too.
    d, o = rel_err_split(k.gram(x1, x1), np.array(entry[kind + "_11"]), True)
    assert d <= diag_tol and o <= 1e-11, f"cross path on identical points: {d:e} {o:e}"
    # diag() is the diagonal of gram_sym().
    np.testing.assert_allclose(k.diag(x1), np.diag(k11), rtol=1e-13, atol=0)


def test_linear_spec_is_the_depth0_kernel_without_bias():
    inp = FC["inputs"]["random_7x5_4x5"]
    x1, x2 = np.array(inp["x1"]), np.array(inp["x2"])
    lin = kip.Kernel("linear").gram(x1, x2)
    fc0 = kip.Kernel("fc0-nngp:w_std=1,b_std=0").gram(x1, x2)
    assert np.abs(lin - fc0).max() < 1e-15


# -------------------------------------------------------------- conv kernels


def test_conv_golden_file_shape():
    assert len(CONV["kernels"]) == 13
    assert "NHWC" in CONV["conventions"]["matrix_layout"]


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize(
    "entry", CONV["kernels"], ids=[_entry_id(i, e) for i, e in enumerate(CONV["kernels"])]
)
def test_conv_kernel_entry(entry, kind):
    inp = CONV["inputs"][entry["input"]]
    x1, x2 = np.array(inp["x1"], dtype=np.float64), np.array(inp["x2"], dtype=np.float64)
    assert x1.ndim == 4 and x2.ndim == 4  # (n, h, w, c)
    arch = entry["arch"]
    k = kip.Kernel(conv_spec(arch["layer_tokens"], kind, arch["W_std"], arch["b_std"]))
    assert k.is_convolutional
    k11 = k.gram_sym(x1)
    blocks = [(k11, "_11", True), (k.gram(x1, x2), "_12", False), (k.gram_sym(x2), "_22", True)]
    for got, suffix, sym in blocks:
        want = np.array(entry[kind + suffix])
        err = max(rel_err_split(got, want, sym))
        tol = 1e-7 if (sym and kind == "ntk") else 1e-10
        assert err <= tol, f"{kind}{suffix}: rel err {err:e} > {tol:e}"
    diag = k.diag(x1)
    np.testing.assert_allclose(diag, np.diag(k11), rtol=1e-13, atol=0)


# ----------------------------------------------------------------- KRR cases


@pytest.mark.parametrize("case", FC["kip"], ids=[c["name"] for c in FC["kip"]])
def test_fc_krr_case(case):
    """``kip-krr/tests/golden.rs`` end to end: α and predictions from our
    kernels; NNGP ≤ 1e-9, NTK ≤ 5e-8 (the reference's noisy NTK diagonal
    propagates through the solve)."""
    assert case["reg_convention"] == "K_reg = K_ss + |reg| * trace(K_ss) / n_support * I"
    k = kip.Kernel(fc_spec(case["arch"], case["kernel"]))
    xs, xt = np.array(case["x_support"]), np.array(case["x_target"])
    ys = np.array(case["y_support"])
    model = kip.krr_fit(k, xs, ys, reg=case["reg"])
    pred = model.predict(xt)
    tol = 1e-9 if case["kernel"] == "nngp" else 5e-8
    assert rel_max(model.alpha, case["alpha"]) < tol
    assert rel_max(pred, case["pred"]) < tol
    np.testing.assert_array_equal(kip.krr_predict(model, xt), pred)
    # The ridge is reg · tr(K_ss) / n.
    k_ss = k.gram_sym(xs)
    assert model.ridge == pytest.approx(case["reg"] * np.trace(k_ss) / len(xs), rel=1e-14)
    assert model.jitter == 0.0
    loss = 0.5 * np.mean((pred - np.array(case["y_target"])) ** 2)
    exact = case["check_vs_independent_numpy"]["loss_numpy_exact_diagonal"]
    assert abs(loss - exact) / exact < 1e-9


@pytest.mark.parametrize("case", CONV["kip"], ids=[c["name"] for c in CONV["kip"]])
def test_conv_krr_case(case):
    """``kip-meta/tests/conv_golden.rs``: α, predictions ≤ 1e-10."""
    k = kip.Kernel(conv_spec(case["layer_tokens"], case["kernel"], 2**0.5, 0.1))
    xs, xt = np.array(case["x_support"]), np.array(case["x_target"])
    model = kip.krr_fit(k, xs, np.array(case["y_support"]), reg=case["reg"])
    assert rel_max(k.gram_sym(xs), case["k_ss"]) < 1e-12
    assert rel_max(k.gram(xt, xs), case["k_ts"]) < 1e-12
    assert rel_max(model.alpha, case["alpha"]) < 1e-10
    pred = model.predict(xt)
    assert rel_max(pred, case["pred"]) < 1e-10
    loss = 0.5 * np.mean((pred - np.array(case["y_target"])) ** 2)
    assert abs(loss - case["loss"]) / case["loss"] < 1e-10


def kip_loss_grads(k: kip.Kernel, xs, ys, xt, yt, reg):
    """The KIP loss ``½ mean((K_ts (K_ss + λI)⁻¹ y_s − y_t)²)``, ``λ = reg·tr(K_ss)/n``,
    and its gradients with respect to ``x_s`` and ``y_s``, from ``Kernel.vjp`` and
    ``Kernel.vjp_sym`` (the gradient flows through λ too, as jax.grad's does)."""
    n = len(xs)
    k_ss, k_ts = k.gram_sym(xs), k.gram(xt, xs)
    lam = reg * np.trace(k_ss) / n
    a = k_ss + lam * np.eye(n)
    alpha = np.linalg.solve(a, ys)
    pred = k_ts @ alpha
    loss = 0.5 * np.mean((pred - yt) ** 2)
    g_pred = (pred - yt) / pred.size
    beta = np.linalg.solve(a, k_ts.T @ g_pred)  # also dL/dy_s
    g_a = -beta @ alpha.T
    g_ss = g_a + reg / n * np.trace(g_a) * np.eye(n)
    g_ts = g_pred @ alpha.T
    _, dxs_ts = k.vjp(xt, xs, g_ts)
    dxs = dxs_ts + k.vjp_sym(xs, g_ss)
    return loss, dxs, beta


@pytest.mark.parametrize(
    "case, which",
    [(c, "fc") for c in FC["kip"]] + [(c, "conv") for c in CONV["kip"]],
    ids=[c["name"] for c in FC["kip"]] + [c["name"] for c in CONV["kip"]],
)
def test_kip_gradient_from_vjp(case, which):
    """The reference's ``grad_x_support``/``grad_y_support`` (jax.grad) from the
    binding's VJPs: conv ≤ 1e-9 (``kip-meta/tests/conv_golden.rs``), FC ≤ 1e-7
    (``kip-meta/tests/golden.rs``)."""
    if which == "fc":
        k = kip.Kernel(fc_spec(case["arch"], case["kernel"]))
        tol = 1e-7
    else:
        k = kip.Kernel(conv_spec(case["layer_tokens"], case["kernel"], 2**0.5, 0.1))
        tol = 1e-9
    xs, xt = np.array(case["x_support"]), np.array(case["x_target"])
    ys, yt = np.array(case["y_support"]), np.array(case["y_target"])
    loss, gx, gy = kip_loss_grads(k, xs, ys, xt, yt, case["reg"])
    assert gx.shape == xs.shape
    assert rel_max(gx, case["grad_x_support"]) < tol
    assert rel_max(gy, case["grad_y_support"]) < tol
    assert abs(loss - case["loss"]) / case["loss"] < (1e-10 if which == "conv" else 1e-8)
