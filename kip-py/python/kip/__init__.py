"""kip: dataset distillation by kernel ridge regression.

Exact infinite-width kernels (fully connected and convolutional NNGP/NTK),
kernel ridge regression, Label Solve and Kernel Inducing Points (KIP), from
the Rust library of the same name. Arrays are numpy arrays; heavy work
releases the GIL. See ``help(kip.distill)`` and the stubs in
``kip/__init__.pyi`` for every parameter.
"""

from __future__ import annotations

import numpy as _np

from ._kip import (
    Kernel,
    KrrModel,
    Run,
    __version__,
    distill,
    evaluate_dc,
    krr_fit,
    krr_predict,
    label_solve,
    load_dataset,
    load_run,
)

__all__ = [
    "evaluate_dc",
    "Kernel",
    "KernelRidge",
    "KrrModel",
    "Run",
    "__version__",
    "distill",
    "krr_fit",
    "krr_predict",
    "label_solve",
    "load_dataset",
    "load_run",
]


class KernelRidge:
    """Kernel ridge regression classifier in the scikit-learn idiom.

    ``KernelRidge("fc3-ntk").fit(x, y).score(x_test, y_test)``: ``y`` holds
    class ids (centred one-hot targets, as KIP uses) or an ``(n, C)`` label
    matrix such as :attr:`Run.y`; ``reg`` is the trace-scaled ridge
    ``λ = reg · tr(K)/n``.
    """

    def __init__(self, kernel="fc1-ntk", reg=1e-6):
        self.kernel = kernel
        self.reg = reg
        self.model_ = None

    def fit(self, x, y):
        """Fit on support points ``x`` and labels ``y``; returns ``self``."""
        self.model_ = krr_fit(self.kernel, x, y, reg=self.reg)
        return self

    def _model(self):
        if self.model_ is None:
            raise ValueError("KernelRidge: call fit(x, y) before predict/score")
        return self.model_

    def decision_function(self, x):
        """KRR outputs ``(n, C)``."""
        return self._model().predict(x)

    def predict(self, x):
        """Predicted class ids ``(n,)`` (argmax of the KRR outputs)."""
        return _np.argmax(self.decision_function(x), axis=1)

    def score(self, x, y):
        """Accuracy on points ``x`` with class ids ``y``."""
        y = _np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y: expected class ids of shape (n,), got shape {y.shape}")
        pred = self.predict(x)
        if pred.shape[0] != y.shape[0]:
            raise ValueError(f"y: {y.shape[0]} labels for {pred.shape[0]} points")
        return float(_np.mean(pred == y))

    def __repr__(self):
        return f"KernelRidge(kernel={self.kernel!r}, reg={self.reg!r})"
