"""Bad input: each case raises the right exception type with a message that
says what is wrong, and never a Rust panic (``pyo3_runtime.PanicException``,
caught and reported by ``kiptest.raises``)."""

from __future__ import annotations

import numpy as np
import pytest

import kip
from kiptest import raises

RNG = np.random.default_rng(31)
X = RNG.standard_normal((4, 5))
X3 = RNG.standard_normal((3, 5))
IDS = np.array([0, 1, 1, 0])
FC = kip.Kernel("fc1-ntk")
CONV = kip.Kernel("convvec2-ntk")
IMGS = RNG.standard_normal((3, 4, 4, 1))


def with_nan(a, i, j):
    a = a.copy()
    a[i, j] = np.nan
    return a


# (id, callable, exception type, message pattern)
KERNEL_CASES = [
    ("unknown kernel kind", lambda: kip.Kernel("fc1-foo"), ValueError, r"kernel spec \"fc1-foo\".*kind `foo`"),
    ("unknown kernel name", lambda: kip.Kernel("bogus"), ValueError, r"unknown kernel `bogus`"),
    ("bad activation", lambda: kip.Kernel("fc1-ntk:act=tanh"), ValueError, r"activation `tanh`"),
    ("bad w_std", lambda: kip.Kernel("fc1-ntk:w_std=-1"), ValueError, r"w_std"),
    ("image_shape zero", lambda: kip.Kernel("convvec2-ntk", image_shape=(0, 2, 2)), ValueError, r"image_shape \(0, 2, 2\).*>= 1"),
    ("image_shape 2-tuple", lambda: kip.Kernel("convvec2-ntk", image_shape=(2, 2)), ValueError, r"length 3"),
    ("int array", lambda: FC.gram(np.ones((3, 5), dtype=np.int64), X), TypeError, r"x1: expected a float32 or float64 array, got dtype int64"),
    ("int list", lambda: FC.gram(X, [[1, 2, 3, 4, 5]]), TypeError, r"x2: expected a float32 or float64 array"),
    ("bool array", lambda: FC.gram_sym(np.ones((3, 5), dtype=bool)), TypeError, r"x: expected a float32 or float64 array, got dtype bool"),
    ("complex array", lambda: FC.diag(np.ones((3, 5), dtype=complex)), TypeError, r"complex"),
    ("1-D points", lambda: FC.gram(np.ones(5), X), ValueError, r"x1: expected points of shape \(n, d\), \(n, h, w\) or \(n, h, w, c\), got shape \[5\]"),
    ("5-D points", lambda: FC.gram(X, np.ones((2, 2, 2, 2, 2))), ValueError, r"x2: expected points of shape .* got shape \[2, 2, 2, 2, 2\]"),
    ("0-d points", lambda: FC.gram_sym(np.float64(1.0)), ValueError, r"got shape \[\]"),
    ("points with no values", lambda: FC.gram(np.ones((3, 0)), np.ones((3, 0))), ValueError, r"no values"),
    ("different point shapes", lambda: FC.gram(X, np.ones((3, 6))), ValueError, r"x1 holds points of shape \[5\] but x2 holds \[6\]"),
    ("conv on flat points", lambda: CONV.gram(X, X), ValueError, r"reads images.*image_shape=\(h, w, c\)"),
    ("image_shape vs d", lambda: kip.Kernel("convvec2-ntk", image_shape=(2, 2, 2)).gram(X, X), ValueError, r"image shape 2x2x2 holds 8 values per image, the points have 5"),
    ("vjp g wrong shape", lambda: FC.vjp(X, X3, np.ones((4, 4))), ValueError, r"g: expected shape \(4, 3\), got \[4, 4\]"),
    ("vjp g 1-D", lambda: FC.vjp(X, X3, np.ones(12)), ValueError, r"g: expected"),
    ("vjp g int", lambda: FC.vjp(X, X3, np.ones((4, 3), dtype=int)), TypeError, r"g: expected a float32 or float64 array"),
    ("vjp g NaN", lambda: FC.vjp(X, X3, np.full((4, 3), np.nan)), ValueError, r"non-finite value in g"),
    ("vjp_sym g wrong shape", lambda: FC.vjp_sym(X, np.ones((3, 3))), ValueError, r"g: expected shape \(4, 4\), got \[3, 3\]"),
    ("NaN in points", lambda: FC.gram(with_nan(X, 1, 2), X3), ValueError, r"x1: non-finite value NaN at point 1, index 2"),
    ("inf in points", lambda: FC.gram_sym(X * np.inf), ValueError, r"non-finite value"),
    ("NaN in conv images", lambda: CONV.gram_sym(np.full((2, 4, 4, 1), np.nan)), ValueError, r"non-finite|NaN"),
    ("empty points", lambda: FC.gram(np.ones((0, 5)), X), ValueError, r"x1: no points \(shape \[0, 5\]\)"),
    # kip's memory rule: refused before allocating, not an abort of the interpreter.
    ("Gram larger than memory", lambda: FC.gram_sym(np.zeros((2_000_000, 1))), MemoryError, r"2000000 x 2000000 points.*needs .* TB of memory, but .* is available"),
    ("KRR fit larger than memory", lambda: kip.krr_fit("fc1-ntk", np.zeros((2_000_000, 1)), np.zeros(2_000_000, dtype=int)), MemoryError, r"needs .* TB of memory"),
    ("random features larger than memory", lambda: kip.Kernel("rf-convnet3:channels=4096,models=4096").gram_sym(np.zeros((2, 8, 8, 1))), MemoryError, r"4096 networks of .* parameters .* needs .* of memory"),
]


KRR_CASES = [
    ("y length mismatch", lambda: kip.krr_fit("fc1-ntk", X, np.array([0, 1, 0])), ValueError, r"y: 3 rows for 4 points"),
    ("negative class id", lambda: kip.krr_fit("fc1-ntk", X, np.array([0, 1, -1, 0])), ValueError, r"y\[2\] = -1: class ids must be >= 0"),
    ("float class ids", lambda: kip.krr_fit("fc1-ntk", X, np.array([0.0, 1.0, 1.0, 0.0])), TypeError, r"y: expected integer class ids, got dtype float64"),
    ("NaN label matrix", lambda: kip.krr_fit("fc1-ntk", X, np.full((4, 2), np.nan)), ValueError, r"y: holds NaN"),
    ("3-D labels", lambda: kip.krr_fit("fc1-ntk", X, np.ones((4, 2, 2))), ValueError, r"class ids \(n,\) or a label matrix \(n, C\)"),
    ("negative reg", lambda: kip.krr_fit("fc1-ntk", X, IDS, reg=-1.0), ValueError, r"reg = -1"),
    ("NaN reg", lambda: kip.krr_fit("fc1-ntk", X, IDS, reg=float("nan")), ValueError, r"reg = NaN"),
    ("kernel not a spec", lambda: kip.krr_fit(3, X, IDS), TypeError, r"kernel: expected a kip.Kernel or a spec string"),
    ("bad kernel spec", lambda: kip.krr_fit("nope", X, IDS), ValueError, r"unknown kernel `nope`"),
    ("predict other point shape", lambda: kip.krr_fit("fc1-ntk", X, IDS).predict(np.ones((2, 6))), ValueError, r"x holds points of shape \[6\] but the model was fitted on \[5\]"),
    ("predict block 0", lambda: kip.krr_fit("fc1-ntk", X, IDS).predict(X, block=0), ValueError, r"block = 0: expected an integer >= 1"),
    ("krr_predict block 0", lambda: kip.krr_predict(kip.krr_fit("fc1-ntk", X, IDS), X, block=0), ValueError, r"block"),
    ("krr_predict not a model", lambda: kip.krr_predict("fc1-ntk", X), TypeError, r"KrrModel"),
    ("label_solve block 0", lambda: kip.label_solve("fc1-ntk", X, X, IDS, block=0), ValueError, r"block = 0: expected an integer >= 1"),
    ("label_solve y length", lambda: kip.label_solve("fc1-ntk", X3, X, IDS[:3]), ValueError, r"y_target: 3 rows for 4 points"),
    ("label_solve shapes", lambda: kip.label_solve("fc1-ntk", X, np.ones((4, 6)), IDS), ValueError, r"x_support holds points of shape \[5\] but x_target holds \[6\]"),
    ("KernelRidge before fit", lambda: kip.KernelRidge().predict(X), ValueError, r"call fit\(x, y\) before"),
    ("KernelRidge.score 2-D y", lambda: kip.KernelRidge().fit(X, IDS).score(X, np.ones((4, 2))), ValueError, r"class ids of shape \(n,\)"),
    ("KernelRidge.score y length", lambda: kip.KernelRidge().fit(X, IDS).score(X, IDS[:3]), ValueError, r"3 labels for 4 points"),
]


@pytest.mark.parametrize("name, call, exc, match", KERNEL_CASES + KRR_CASES, ids=[c[0] for c in KERNEL_CASES + KRR_CASES])
def test_bad_kernel_and_krr_input(name, call, exc, match):
    with raises(exc, match):
        call()


# ------------------------------------------------------------------ distill


@pytest.fixture(scope="module")
def data():
    return kip.load_dataset("digits")


def distill_cases(tmp_path, data):
    (xt, yt), (xs, ys) = data
    quick = dict(support=10, steps=1)
    existing = tmp_path / "existing"
    kip.distill(dataset="digits", out=existing, **quick)
    empty = tmp_path / "empty_data"
    empty.mkdir()
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    return [
        ("y_test without x_test", lambda: kip.distill(xt, yt, y_test=ys, **quick), ValueError, r"x_test and y_test go together"),
        ("x_test without y_test", lambda: kip.distill(xt, yt, x_test=xs, **quick), ValueError, r"x_test and y_test go together"),
        ("neither x_test nor holdout", lambda: kip.distill(xt, yt, **quick), ValueError, r"no test set: give x_test and y_test, or holdout=N"),
        ("both x_test and holdout", lambda: kip.distill(xt, yt, x_test=xs, y_test=ys, holdout=100, **quick), ValueError, r"not both"),
        ("x without y", lambda: kip.distill(xt, **quick), ValueError, r"x and y go together"),
        ("test arrays without x", lambda: kip.distill(x_test=xs, y_test=ys, **quick), ValueError, r"need x and y"),
        ("unknown dataset", lambda: kip.distill(dataset="nope", **quick), ValueError, r"unknown dataset `nope`"),
        ("bad lr_schedule", lambda: kip.distill(lr_schedule="bogus", **quick), ValueError, r"lr_schedule \"bogus\""),
        ("bad precision", lambda: kip.distill(precision="f16", **quick), ValueError, r"precision.*f16"),
        ("bad preprocess", lambda: kip.distill(preprocess="whiten", **quick), ValueError, r"preprocess.*whiten"),
        ("bad init", lambda: kip.distill(init="zeros", **quick), ValueError, r"init `zeros`"),
        ("bad kernel", lambda: kip.distill(kernel="fc1-xyz", support=10, steps=1), ValueError, r"kernel \"fc1-xyz\""),
        ("support 0", lambda: kip.distill(support=0, steps=1), ValueError, r"n_support = 0"),
        ("support below classes", lambda: kip.distill(support=5, steps=1), ValueError, r"n_support = 5.*one image per class"),
        ("support too large", lambda: kip.distill(support=100_000, steps=1), ValueError, r"n_support = 100000"),
        ("steps 0", lambda: kip.distill(support=10, steps=0), ValueError, r"steps = 0"),
        ("negative lr", lambda: kip.distill(lr=-1.0, **quick), ValueError, r"lr = -1"),
        ("corrupt 1", lambda: kip.distill(corrupt=1.0, **quick), ValueError, r"corrupt = 1"),
        ("target_batch 0", lambda: kip.distill(target_batch=0, **quick), ValueError, r"n_target = 0"),
        ("eval_block 0", lambda: kip.distill(eval_block=0, **quick), ValueError, r"eval_block = 0"),
        ("callback not callable", lambda: kip.distill(callback=3, **quick), TypeError, r"callback: expected a callable"),
        ("callback wrong arity", lambda: kip.distill(callback=lambda: None, **quick), TypeError, r"positional argument"),
        ("int pixels", lambda: kip.distill(xt.astype(np.int64), yt, x_test=xs, y_test=ys, **quick), TypeError, r"x: expected a float32 or float64 array"),
        ("float labels", lambda: kip.distill(xt, yt.astype(float), x_test=xs, y_test=ys, **quick), TypeError, r"y: expected integer class ids"),
        ("negative labels", lambda: kip.distill(xt, -yt, x_test=xs, y_test=ys, **quick), ValueError, r"class ids must be >= 0"),
        ("label count", lambda: kip.distill(xt, yt[:-1], x_test=xs, y_test=ys, **quick), ValueError, r"y: 1437 labels for 1438 images"),
        ("class id 99", lambda: kip.distill(xt, np.where(np.arange(len(yt)) == 3, 99, yt), x_test=xs, y_test=ys, **quick), ValueError, r"y: class ids run up to 99, but 89 of the classes 0..=99 have no training image \(the first: 10\)"),
        ("NaN pixels", lambda: kip.distill(np.where(xt > 0, xt, np.nan), yt, x_test=xs, y_test=ys, **quick), ValueError, r"not finite"),
        ("test image shape", lambda: kip.distill(xt, yt, x_test=xs[:, :4], y_test=ys, **quick), ValueError, r"x holds points of shape \[8, 8, 1\] but x_test holds \[4, 8, 1\]"),
        ("holdout too large", lambda: kip.distill(xt, yt, holdout=10_000, **quick), ValueError, r"holdout of 10000"),
        ("class_names too short", lambda: kip.distill(xt, yt, x_test=xs, y_test=ys, class_names=["a"], **quick), ValueError, r"out of range for 1 classes"),
        ("out holds a run", lambda: kip.distill(dataset="digits", out=existing, **quick), ValueError, r"already holds a run"),
        ("resume missing dir", lambda: kip.distill(out=tmp_path / "missing", resume=True, **quick), FileNotFoundError, r"no such directory"),
        ("resume a non-run", lambda: kip.distill(out=not_a_run, resume=True, **quick), ValueError, r"not a kip run directory"),
        ("mnist in empty data_dir", lambda: kip.distill(dataset="mnist", data_dir=empty, **quick), FileNotFoundError, r"dataset `mnist` not found"),
        ("load_dataset mnist in empty data_dir", lambda: kip.load_dataset("mnist", data_dir=empty), FileNotFoundError, r"train-images-idx3-ubyte"),
        ("load_dataset unknown", lambda: kip.load_dataset("nope"), ValueError, r"unknown dataset `nope`"),
        ("load_run missing dir", lambda: kip.load_run(tmp_path / "missing"), FileNotFoundError, r"no such directory"),
        ("load_run not a run", lambda: kip.load_run(not_a_run), ValueError, r"not a kip run directory \(no config.json\)"),
    ]


DISTILL_IDS = [
    "y_test without x_test", "x_test without y_test", "neither x_test nor holdout", "both x_test and holdout",
    "x without y", "test arrays without x", "unknown dataset", "bad lr_schedule", "bad precision",
    "bad preprocess", "bad init", "bad kernel", "support 0", "support below classes", "support too large",
    "steps 0", "negative lr", "corrupt 1", "target_batch 0", "eval_block 0", "callback not callable",
    "callback wrong arity", "int pixels", "float labels", "negative labels", "label count", "class id 99", "NaN pixels",
    "test image shape", "holdout too large", "class_names too short", "out holds a run",
    "resume missing dir", "resume a non-run", "mnist in empty data_dir",
    "load_dataset mnist in empty data_dir", "load_dataset unknown", "load_run missing dir", "load_run not a run",
]


@pytest.mark.parametrize("case", DISTILL_IDS)
def test_bad_distill_input(case, tmp_path, data):
    cases = {c[0]: c for c in distill_cases(tmp_path, data)}
    assert set(cases) == set(DISTILL_IDS)
    _, call, exc, match = cases[case]
    with raises(exc, match):
        call()


def test_failed_distill_leaves_out_usable(tmp_path, data):
    """A call refused for bad input leaves no half-made run behind."""
    (xt, yt), (xs, ys) = data
    out = tmp_path / "run"
    bad = [
        dict(support=100_000),
        dict(x=xt, y=yt),
        dict(x=np.where(xt > 0, xt, np.nan), y=yt, x_test=xs, y_test=ys),
        dict(eval_block=0),
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            kip.distill(**{"support": 10, "steps": 2, "out": out, **kw})
    run = kip.distill(support=10, steps=2, out=out)
    assert run.step == 2


# ------------------------------------ image shapes, argument names, types


@pytest.fixture
def flat_digits(data):
    (xt, yt), (xs, ys) = data
    return xt.reshape(len(xt), -1), yt, xs.reshape(len(xs), -1), ys


def test_conflicting_image_shape_is_refused():
    """A kernel created with image_shape=(2, 3, 1) refuses (n, 3, 2, 1) images
    instead of reinterpreting any array with the same number of values."""
    k = kip.Kernel("convvec2-ntk", image_shape=(2, 3, 1))
    a = RNG.standard_normal((2, 3, 2, 1))
    with raises(ValueError, r"image"):
        k.gram(a, a)


def test_distill_conv_kernel_on_flat_points_is_refused(flat_digits):
    """kip.distill with a convolutional kernel refuses flat (n, d) points, as
    Kernel.gram does, rather than convolving over a 1 x d strip."""
    x, y, xs, ys = flat_digits
    with raises(ValueError, r"image"):
        kip.distill(x, y, x_test=xs, y_test=ys, support=10, steps=1, kernel="convvec1-ntk")


def test_resume_without_out_names_the_problem():
    """resume=True without out= is refused with a message saying that resume
    needs out, not an error about an internal temporary directory."""
    with raises(ValueError, r"resume.*out|out.*resume"):
        kip.distill(support=10, steps=2, resume=True)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: FC.gram(X, with_nan(X3, 1, 2)), r"x2"),
        (lambda: FC.gram_sym(with_nan(X, 0, 0)), r"\bx\b"),
        (lambda: FC.gram(np.ones((0, 5)), X), r"x1"),
        (lambda: kip.krr_fit("fc1-ntk", with_nan(X, 0, 1), IDS), r"\bx\b"),
        (lambda: kip.label_solve("fc1-ntk", X, with_nan(X, 2, 0), IDS), r"x_target"),
    ],
    ids=["NaN in x2", "NaN in gram_sym x", "empty x1", "NaN in krr_fit x", "NaN in label_solve x_target"],
)
def test_errors_in_points_name_the_argument(call, match):
    """Errors found inside the kernels name the Python argument the user passed
    (x1/x2/x/x_support/x_target), not an internal operand."""
    with raises(ValueError, match):
        call()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: kip.distill(support=-1, steps=1), ValueError, r"support"),
        (lambda: kip.Kernel("convvec2-ntk", image_shape=(-1, 2, 2)), ValueError, r"image_shape"),
        (lambda: FC.gram(None, X), TypeError, r"x1"),
        (lambda: FC.gram([[1.0, 2.0], [3.0]], X), ValueError, r"x1.*(inhomogeneous|ragged|same length)"),
        (lambda: kip.load_run(__file__), NotADirectoryError, r"not a directory"),
    ],
    ids=["negative support", "negative image_shape", "None points", "ragged list", "load_run on a file"],
)
def test_exception_type_matches_the_problem(call, exc, match):
    """Each kind of bad value raises the exception type callers expect:
    negative sizes a ValueError naming the parameter, None as points a
    TypeError, a ragged list a ValueError with numpy's inhomogeneous-shape
    message, and load_run on a file NotADirectoryError."""
    with raises(exc, match):
        call()
