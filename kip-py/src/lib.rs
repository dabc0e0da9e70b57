//! `kip._kip`: the native half of the `kip` Python package (PyO3 + numpy,
//! built with maturin). The Python API is documented in
//! `python/kip/__init__.pyi`; this crate turns numpy arrays into the
//! library's point views (no copies where the layout allows), releases the
//! GIL while computing, and turns every kip error into a Python exception.

mod arrays;
mod errors;
mod kernel;
mod krr;
mod run;

// Python signatures need literal defaults (pyo3 shows any other expression
// as `...` in help() and inspect.signature; test_api checks it): the
// literals of `distill`, `krr_fit` and `label_solve` are checked against
// their owners when this crate compiles.
const _: () = assert!(kip_krr::DEFAULT_REG == 1e-6, "reg = 1e-6 in the pyo3 signatures");
const _: () = assert!(
    kip_meta::DEFAULT_STEPS == 300,
    "steps = 300 in distill's pyo3 signature"
);
mod transfer;

use std::path::PathBuf;

use kip_data::DataSpec;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::count;
use crate::run::{DataArgs, DistillOptions, PyRun};

/// Run Kernel Inducing Points and return the distilled support set.
///
/// Data: numpy arrays ``x`` ``(n, d)`` / ``(n, h, w[, c])`` with int class
/// ids ``y``, and ``x_test``/``y_test`` or ``holdout=N``; or a named
/// ``dataset`` (``"digits"``, ``"mnist"``, ``"cifar10"``, ...) exactly as
/// ``kip distill --dataset`` reads it. ``callback(metrics: dict)`` runs
/// after every step; returning ``True`` stops the run (a checkpoint is
/// written, ``Run.stopped`` is ``True``). Ctrl-C stops it the same way and
/// raises ``KeyboardInterrupt``. With ``out`` the run directory is kept
/// (``kip eval``, ``kip transfer`` and ``resume=True`` read it).
#[pyfunction]
#[pyo3(signature = (
    x = None, y = None, *, x_test = None, y_test = None, class_names = None,
    dataset = "digits", data_dir = None, preprocess = "standard", holdout = 0, val = 0,
    support = 100, kernel = "fc1-ntk", steps = 300, lr = 0.01, lr_schedule = "constant",
    target_batch = None, learn_labels = false, reg = 1e-6, precision = "f64",
    init = "real", init_std = 1.0, corrupt = 0.0, seed = 0, target_shards = 1, augment = "none",
    augment_support = "none", eval_kernel = None, loss = "mse", eval_every = 100, checkpoint_every = 100, eval_block = 2000,
    keep_best = None, callback = None, out = None, resume = false
))]
#[allow(clippy::too_many_arguments)]
fn distill(
    py: Python<'_>,
    x: Option<&Bound<'_, PyAny>>,
    y: Option<&Bound<'_, PyAny>>,
    x_test: Option<&Bound<'_, PyAny>>,
    y_test: Option<&Bound<'_, PyAny>>,
    class_names: Option<Vec<String>>,
    dataset: &str,
    data_dir: Option<PathBuf>,
    preprocess: &str,
    holdout: i64,
    val: i64,
    support: i64,
    kernel: &str,
    steps: i64,
    lr: f64,
    lr_schedule: &str,
    target_batch: Option<i64>,
    learn_labels: bool,
    reg: f64,
    precision: &str,
    init: &str,
    init_std: f64,
    corrupt: f64,
    seed: i64,
    target_shards: i64,
    augment: &str,
    augment_support: &str,
    eval_kernel: Option<&str>,
    loss: &str,
    eval_every: i64,
    checkpoint_every: i64,
    eval_block: i64,
    keep_best: Option<&str>,
    callback: Option<Py<PyAny>>,
    out: Option<PathBuf>,
    resume: bool,
) -> PyResult<PyRun> {
    let mut kip = run::kip_params(
        kernel,
        count("support", support)?,
        count("steps", steps)?,
        lr,
        lr_schedule,
        precision,
        learn_labels,
        reg,
        init,
        init_std,
        corrupt,
        count("seed", seed)? as u64,
        count("target_shards", target_shards)?,
        augment,
        eval_kernel,
        loss,
    )?;
    kip.augment_support = augment_support
        .parse()
        .map_err(|e| PyValueError::new_err(format!("augment_support {augment_support:?}: {e}")))?;
    let spec = DataSpec {
        dataset: dataset.to_string(),
        data_dir,
        preprocess: preprocess
            .parse()
            .map_err(|e| PyValueError::new_err(format!("preprocess {preprocess:?}: {e}")))?,
        holdout: count("holdout", holdout)?,
        val: count("val", val)?,
    };
    let needs_images = kip
        .kernels
        .iter()
        .filter_map(|k| k.parse::<kip_kernels::KernelSpec>().ok())
        .any(|k| k.build().needs_image_shape());
    let data = DataArgs {
        x,
        y,
        x_test,
        y_test,
        class_names,
        spec,
        needs_images,
    };
    let opts = DistillOptions {
        kip,
        target_batch: target_batch.map(|t| count("target_batch", t)).transpose()?,
        eval_every: count("eval_every", eval_every)?,
        checkpoint_every: count("checkpoint_every", checkpoint_every)?,
        eval_block: count("eval_block", eval_block)?,
        keep_best: match keep_best {
            None => false,
            Some("val") => true,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "keep_best {other:?}: expected \"val\" (the set is chosen on the validation split) or None"
                )))
            }
        },
    };
    run::distill(py, data, opts, out, resume, callback)
}

/// The native module: `kip._kip` (re-exported by the `kip` package).
#[pymodule]
fn _kip(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<kernel::PyKernel>()?;
    m.add_class::<krr::PyKrrModel>()?;
    m.add_class::<PyRun>()?;
    m.add_function(wrap_pyfunction!(krr::krr_fit, m)?)?;
    m.add_function(wrap_pyfunction!(krr::krr_predict, m)?)?;
    m.add_function(wrap_pyfunction!(krr::label_solve, m)?)?;
    m.add_function(wrap_pyfunction!(distill, m)?)?;
    m.add_function(wrap_pyfunction!(run::load_run, m)?)?;
    m.add_function(wrap_pyfunction!(run::load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(transfer::evaluate_dc, m)?)?;
    Ok(())
}
