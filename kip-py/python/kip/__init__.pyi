"""Type stubs of the ``kip`` package (the native module ``kip._kip`` and
the pure-Python :class:`KernelRidge`)."""

from os import PathLike
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

#: Points: ``(n, d)``, ``(n, h, w)`` or ``(n, h, w, c)``, float32 or float64,
#: any memory order (float64 arrays with non-negative strides are read
#: without a copy; float32 is widened to float64).
Points = npt.ArrayLike
#: Class ids ``(n,)`` (integers ``>= 0``) or a float label matrix ``(n, C)``.
Labels = npt.ArrayLike
F64Matrix = npt.NDArray[np.float64]
PathArg = Union[str, "PathLike[str]"]

class Kernel:
    """An infinite-width network kernel named by a spec string.

    Specs: ``fcL-ntk|nngp`` (fully connected, depth L, optionally with
    ``:w_std=..,b_std=..``), ``rbf``, ``linear``, ``convvecL-ntk|nngp``,
    ``convnetL-ntk|nngp``, ``conv-ntk|nngp:layers=TOKENS`` (tokens C R E P
    F G D). Convolutional kernels read each point as an ``h × w × c`` image:
    pass image-shaped arrays or give ``image_shape``. Raises ``ValueError``
    for an unknown spec.
    """

    def __init__(self, spec: str, image_shape: Optional[Tuple[int, int, int]] = None) -> None: ...
    @property
    def spec(self) -> str:
        """The spec in kip's canonical form (``"fc1-ntk"``)."""
    @property
    def image_shape(self) -> Optional[Tuple[int, int, int]]: ...
    @property
    def is_convolutional(self) -> bool: ...
    def gram(self, x1: Points, x2: Points) -> F64Matrix:
        """``K(x1, x2)``: ``(n1, n2)`` (Fortran-ordered, no copy)."""
    def gram_sym(self, x: Points) -> F64Matrix:
        """``K(x, x)``: ``(n, n)``, each pair computed once."""
    def diag(self, x: Points) -> npt.NDArray[np.float64]:
        """``K(x_i, x_i)``: ``(n,)``."""
    def vjp(self, x1: Points, x2: Points, g: npt.ArrayLike) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(dL/dx1, dL/dx2)`` for the cotangent ``g = dL/dK`` ``(n1, n2)``,
        each shaped like its points."""
    def vjp_sym(self, x: Points, g: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``dL/dx`` of ``K(x, x)`` for ``g`` ``(n, n)``."""

KernelArg = Union[Kernel, str]

class KrrModel:
    """A fitted kernel ridge regression model (see :func:`krr_fit`)."""

    @property
    def alpha(self) -> F64Matrix:
        """Dual coefficients ``(n, C)``."""
    @property
    def ridge(self) -> float: ...
    @property
    def jitter(self) -> float: ...
    @property
    def kernel(self) -> str: ...
    def predict(self, x: Points, block: int = 2000) -> F64Matrix:
        """``K(x, support) α``: ``(n, C)``, ``block`` test points at a time."""

def krr_fit(kernel: KernelArg, x: Points, y: Labels, reg: float = 1e-6) -> KrrModel:
    """Fit ``α = (K + λI)⁻¹ y`` with ``λ = reg · tr(K)/n``; class ids become
    centred one-hot rows."""

def krr_predict(model: KrrModel, x: Points, block: int = 2000) -> F64Matrix: ...
def label_solve(
    kernel: KernelArg,
    x_support: Points,
    x_target: Points,
    y_target: Labels,
    reg: float = 1e-6,
    block: int = 5000,
) -> F64Matrix:
    """The paper's Label Solve: optimal support labels ``(n_s, C)``."""

class Run:
    """A KIP run's result (from :func:`distill` or :func:`load_run`)."""

    x: npt.NDArray[np.float64]
    """Support images in model space (after preprocessing)."""
    images: npt.NDArray[np.float64]
    """Support images mapped back to the original pixel scale."""
    y: F64Matrix
    """Label vectors ``(n, C)`` (learned with ``learn_labels=True``)."""
    labels: npt.NDArray[np.int64]
    """Class id each support image was initialised from."""
    class_names: list[str]
    metrics: list[dict[str, Any]]
    """The metrics log (``step``, ``loss``, ``target_acc``, ``test_acc``,
    ``test_loss``, ``elapsed_s``); the first line is step 0."""
    summary: Optional[dict[str, Any]]
    """``summary.json`` of a finished run; ``None`` when stopped early."""
    path: Optional["PathLike[str]"]
    """The run directory (a ``pathlib.Path``), ``None`` for a temporary one."""
    stopped: bool
    step: int
    support: int

def distill(
    x: Optional[Points] = None,
    y: Optional[npt.ArrayLike] = None,
    *,
    x_test: Optional[Points] = None,
    y_test: Optional[npt.ArrayLike] = None,
    class_names: Optional[Sequence[str]] = None,
    dataset: str = "digits",
    data_dir: Optional[PathArg] = None,
    preprocess: str = "standard",
    holdout: int = 0,
    val: int = 0,
    support: int = 100,
    kernel: str = "fc1-ntk",
    steps: int = 300,
    lr: float = 0.01,
    lr_schedule: str = "constant",
    target_batch: Optional[int] = None,
    learn_labels: bool = False,
    reg: float = 1e-6,
    precision: str = "f64",
    init: str = "real",
    init_std: float = 1.0,
    corrupt: float = 0.0,
    seed: int = 0,
    target_shards: int = 1,
    augment: str = "none",
    augment_support: str = "none",
    eval_kernel: Optional[str] = None,
    loss: str = "mse",
    eval_every: int = 100,
    checkpoint_every: int = 100,
    eval_block: int = 2000,
    keep_best: Optional[str] = None,
    callback: Optional[Callable[[dict[str, Any]], Optional[bool]]] = None,
    out: Optional[PathArg] = None,
    resume: bool = False,
) -> Run:
    """Run Kernel Inducing Points; the same driver (and, for a named
    ``dataset``, bitwise the same result) as ``kip distill``.

    Data: arrays ``x`` with int class ids ``y`` plus ``x_test``/``y_test``
    or ``holdout=N`` (pixels are stored as float32, like kip's loaders);
    or, without ``x``, the named ``dataset`` (``digits``, ``mnist``,
    ``fashion-mnist``, ``cifar10``, ``npz:PATH``; ``data_dir`` or
    ``$KIP_DATA_DIR``). ``val=N`` sets the last N training images aside
    (never targets; ``val_acc``/``val_loss`` in the metrics). ``preprocess``: ``standard`` (per channel),
    ``zca``, ``zca:STRENGTH``, ``none``. ``lr_schedule``: ``constant``,
    ``cosine`` (to 0 at the last step), ``cosine:M`` (to M·lr).
    ``precision``: ``f64`` or
    ``f32`` (the two big products). ``target_batch`` defaults to 5000 or
    the largest class-balanced batch the data allows. ``kernel`` may list
    several specs (``"fc1-ntk,fc2-nngp"``: one sampled per step).
    ``target_shards``: row shards of each target batch, summed in order
    (what ``mpirun -n R kip distill`` uses; the same value reproduces such
    a run bit for bit). ``augment``: ``none``, ``flip``, ``shift:K`` or
    ``flip,shift:K``: random flips / translations of each target batch.
    ``augment_support``: the same for the support images inside each step
    (drawn afresh every step, the gradient flowing back through them).
    ``keep_best="val"`` (needs ``val``): keep the support set with the best
    validation accuracy of the evaluations in ``out/best`` (a folder
    ``load_run`` reads); ``Run.summary["best"]`` gives its step and test
    accuracy.
    ``eval_kernel``: the kernel of every evaluation when not the training
    kernel (e.g. ``"rf-convnet3:channels=256,models=16"`` for a run trained
    with a cheap random-feature kernel). ``loss``: ``mse`` (the paper's)
    or ``platt`` (RFAD's cross-entropy with a learned temperature).

    ``callback(metrics)`` runs after each step; returning ``True`` stops
    the run (checkpoint written, ``Run.stopped``). Ctrl-C stops it after
    the current step and raises ``KeyboardInterrupt`` (the checkpoint in
    ``out`` is kept; Python raises it only where SIGINT is not ignored — a
    process started in the background by a non-interactive shell inherits it
    ignored: ``signal.signal(signal.SIGINT, signal.default_int_handler)``
    restores it); an exception in the callback does the same and
    propagates. ``out``: the run directory (``None``: a temporary one,
    removed on return). ``resume=True`` continues the run in ``out`` to
    ``steps`` total steps with its recorded settings (arrays runs need
    the same arrays again).
    """

def load_run(path: PathArg) -> Run:
    """Read a run directory written by ``kip distill`` or :func:`distill`."""

def load_dataset(
    name: str = "digits", data_dir: Optional[PathArg] = None
) -> Tuple[Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]], Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    """``((x_train, y_train), (x_test, y_test))``: raw float32 images
    ``(n, h, w, c)`` and int64 class ids."""

def evaluate_dc(
    x: Points,
    y: Labels,
    x_test: Points,
    y_test: Labels,
    *,
    epochs: int = 1000,
    runs: int = 5,
    width: int = 128,
    depth: int = 3,
    lr: float = 0.01,
    batch: int = 256,
    dsa: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """The dataset-distillation field's standard evaluation
    (``kip transfer --protocol dc``): ``runs`` fresh ConvNets (width 128,
    depth 3, instance norm, average pooling, PyTorch initialisation)
    trained on the images ``x`` ``(n, h, w[, c])`` with hard labels (class
    ids, or the argmax of a label matrix) by SGD (momentum 0.9, weight
    decay 5e-4, ``lr`` ×0.1 after epoch ``epochs//2+1``), batch 256, DSA
    augmentation, epochs ``0..=epochs``; each scored on ``(x_test,
    y_test)``. Returns ``{"test_acc": [...], "mean", "std", "seconds"}``.
    Ctrl-C is honoured between networks."""

class KernelRidge:
    """Kernel ridge regression classifier (scikit-learn idiom)."""

    kernel: KernelArg
    reg: float
    model_: Optional[KrrModel]
    def __init__(self, kernel: KernelArg = "fc1-ntk", reg: float = 1e-6) -> None: ...
    def fit(self, x: Points, y: Labels) -> "KernelRidge": ...
    def decision_function(self, x: Points) -> F64Matrix: ...
    def predict(self, x: Points) -> npt.NDArray[np.int64]: ...
    def score(self, x: Points, y: npt.ArrayLike) -> float: ...
