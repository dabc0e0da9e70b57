"""kip.evaluate_dc: the field's standard finite-ConvNet evaluation on numpy
arrays (kip transfer --protocol dc)."""

from __future__ import annotations

import numpy as np
import pytest

import kip


def digits():
    (x, y), (xt, yt) = kip.load_dataset("digits")
    mean, std = x.mean(), x.std()
    return (x - mean) / std, y, (xt - mean) / std, yt


def test_trains_reproducibly_and_beats_chance():
    x, y, xt, yt = digits()
    # 10 images per class: a small run learns the digits well above chance.
    idx = np.concatenate([np.where(y == c)[0][:10] for c in range(10)])
    r = kip.evaluate_dc(x[idx], y[idx], xt, yt, epochs=100, runs=2, width=16, depth=2)
    assert set(r) == {"test_acc", "mean", "std", "seconds"}
    assert len(r["test_acc"]) == 2
    assert all(0.0 <= a <= 1.0 for a in r["test_acc"])
    assert r["mean"] > 0.5, r
    again = kip.evaluate_dc(x[idx], y[idx], xt, yt, epochs=100, runs=2, width=16, depth=2)
    assert again["test_acc"] == r["test_acc"], "same seed, same accuracies"
    # A label matrix is read by its argmax (hard labels).
    onehot = np.eye(10)[y[idx]] - 0.1
    same = kip.evaluate_dc(x[idx], onehot, xt, yt, epochs=100, runs=1, width=16, depth=2)
    assert same["test_acc"][0] == r["test_acc"][0]


def test_bad_arguments_are_clear_errors():
    x, y, xt, yt = digits()
    idx = np.concatenate([np.where(y == c)[0][:2] for c in range(10)])
    x, y = x[idx], y[idx]
    with pytest.raises(ValueError, match="epochs"):
        kip.evaluate_dc(x, y, xt, yt, epochs=0)
    with pytest.raises(ValueError, match="runs"):
        kip.evaluate_dc(x, y, xt, yt, runs=0, epochs=1)
    with pytest.raises(ValueError, match="images"):
        kip.evaluate_dc(x.reshape(20, -1), y, xt.reshape(len(xt), -1), yt, epochs=1)
    with pytest.raises(ValueError, match="x_test"):
        kip.evaluate_dc(x, y, xt[:, :4], yt, epochs=1)
    with pytest.raises(ValueError, match="depth"):
        kip.evaluate_dc(x, y, xt, yt, epochs=1, depth=4, width=4)
