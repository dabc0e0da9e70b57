"""Helpers shared by the kip-py tests (imported as ``kiptest``)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parents[1]
GOLDEN_DIR = REPO / "kip-kernels" / "tests" / "data"


def load_golden(name: str) -> dict:
    with open(GOLDEN_DIR / name) as f:
        return json.load(f)


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is PyO3's ``PanicException`` (a Rust panic)."""
    return any(t.__name__ == "PanicException" for t in type(exc).__mro__)


def _fail(msg: str):
    """pytest.fail without the implicit "During handling of the above
    exception" chain (the caught exception is described in ``msg``)."""
    try:
        pytest.fail(msg, pytrace=False)
    except BaseException as failure:  # noqa: BLE001
        raise failure from None


@contextlib.contextmanager
def raises(exc_type, match: str):
    """Like ``pytest.raises(exc_type, match=match)``, but a Rust panic
    (``pyo3_runtime.PanicException``, a ``BaseException``) or any other
    exception type fails with a clear message instead of escaping."""
    caught = None
    try:
        yield
    except BaseException as e:  # noqa: BLE001 - the type is checked below
        caught = e
    if caught is None:
        _fail(f"did not raise {exc_type.__name__} (expected message matching {match!r})")
    name = type(caught).__name__
    if is_panic(caught):
        _fail(f"Rust panic instead of {exc_type.__name__}: {caught!r}")
    if not isinstance(caught, exc_type):
        _fail(f"expected {exc_type.__name__} matching {match!r}, got {name}: {caught}")
    if not re.search(match, str(caught)):
        _fail(f"{name} message {str(caught)!r} does not match {match!r}")


def rel_err_split(got: np.ndarray, want: np.ndarray, sym: bool) -> tuple[float, float]:
    """The Rust golden tests' error: max |got - want| / max(|want|, 1e-3 max|want|),
    split into (diagonal, off-diagonal); the diagonal only for a symmetric block."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max()
    err = np.abs(got - want) / np.maximum(np.abs(want), 1e-3 * scale)
    if sym:
        mask = np.eye(*want.shape, dtype=bool)
        return float(err[mask].max(initial=0.0)), float(err[~mask].max(initial=0.0))
    return 0.0, float(err.max())


def rel_max(got, want) -> float:
    """max |got - want| / max |want|."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / np.abs(want).max())


def centred_one_hot(ids, n_classes: int) -> np.ndarray:
    """kip's KRR targets: one_hot - 1/C (kip-data ``one_hot(.., centred=true)``)."""
    return np.eye(n_classes)[np.asarray(ids)] - 1.0 / n_classes


def strip_elapsed(metrics):
    return [{k: v for k, v in m.items() if k != "elapsed_s"} for m in metrics]
