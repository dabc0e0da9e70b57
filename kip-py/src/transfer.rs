//! `kip.evaluate_dc`: the field's standard finite-ConvNet evaluation
//! (`kip_nn::dc`, `kip transfer --protocol dc`) on numpy arrays.

use kip_nn::dc::{train_and_test, DcParams};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{count, label_matrix, PointsArg};
use crate::errors::value_err;

/// Class ids of `n` points from `y`: ids `(n,)` as given, a label matrix
/// `(n, C)` by its row argmax (hard labels). Returns the ids and `C`
/// (`max + 1` for ids).
fn hard_labels(y: &Bound<'_, PyAny>, name: &str, n: usize) -> PyResult<(Vec<usize>, usize)> {
    let m = label_matrix(y, name, n, None)?;
    let ids = (0..n).map(|i| kip_core::argmax(m.row(i).iter().copied())).collect();
    Ok((ids, m.ncols()))
}

/// The images of `x` as row-major `f32`, with their shape.
fn images(x: &PointsArg<'_>, name: &str) -> PyResult<(Vec<f32>, kip_core::ImageShape)> {
    let shape = x.image_shape().filter(|s| s.h >= 2 && s.w >= 2).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{name}: expected images of shape (n, h, w) or (n, h, w, c) for a ConvNet, got shape {:?}",
            x.shape()
        ))
    })?;
    Ok((x.to_vec().into_iter().map(|v| v as f32).collect(), shape))
}

/// Train the standard evaluation ConvNet on ``(x, y)`` ``runs`` times and
/// score it on ``(x_test, y_test)``; see ``kip/__init__.pyi``.
#[pyfunction]
#[pyo3(signature = (
    x, y, x_test, y_test, *, epochs = 1000, runs = 5, width = 128, depth = 3, lr = 0.01, batch = 256,
    dsa = true, seed = 0
))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate_dc<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    x_test: &Bound<'py, PyAny>,
    y_test: &Bound<'py, PyAny>,
    epochs: i64,
    runs: i64,
    width: i64,
    depth: i64,
    lr: f64,
    batch: i64,
    dsa: bool,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let d = DcParams::default();
    let params = DcParams {
        epochs: count("epochs", epochs)?,
        runs: count("runs", runs)?,
        width: count("width", width)?,
        depth: count("depth", depth)?,
        lr,
        batch: count("batch", batch)?,
        dsa: if dsa { d.dsa } else { None },
        seed,
        ..d
    };
    params.check().map_err(value_err)?;
    let xs = PointsArg::extract(x, "x")?;
    let xt = PointsArg::extract(x_test, "x_test")?;
    if xs.dims != xt.dims {
        return Err(PyValueError::new_err(format!(
            "x_test: images of shape {:?}, but x has {:?}",
            &xt.dims, &xs.dims
        )));
    }
    let (train_x, shape) = images(&xs, "x")?;
    let (test_x, _) = images(&xt, "x_test")?;
    let (labels, c_train) = hard_labels(y, "y", xs.n)?;
    let (test_labels, c_test) = hard_labels(y_test, "y_test", xt.n)?;
    let classes = c_train.max(c_test);
    let mut accs = Vec::new();
    let mut seconds = 0.0;
    for run in 0..params.runs {
        let r = py.detach(|| {
            train_and_test(
                &params,
                shape,
                classes,
                &train_x,
                &labels,
                &test_x,
                &test_labels,
                run as u64,
                &mut |_| {},
            )
        });
        let r = r.map_err(value_err)?;
        accs.push(r.test_accuracy);
        seconds += r.train_seconds + r.test_seconds;
        // Ctrl-C between networks.
        py.check_signals()?;
    }
    let n = accs.len() as f64;
    let mean = accs.iter().sum::<f64>() / n;
    let std = (accs.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    let out = PyDict::new(py);
    out.set_item("test_acc", accs)?;
    out.set_item("mean", mean)?;
    out.set_item("std", std)?;
    out.set_item("seconds", seconds)?;
    Ok(out)
}
