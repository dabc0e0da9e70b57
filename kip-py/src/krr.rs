//! Kernel ridge regression and Label Solve on numpy arrays.

use kip_kernels::{points_row_major, AnyKernel, Kernel};
use kip_krr::{fit, label_solve_streaming, predict_blocked, Ridge};
use nalgebra::DMatrix;
use numpy::PyArray2;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{count, explain, label_matrix, matrix_to_py, PointsArg};
use crate::errors::value_err;
use crate::kernel::{same_dims, PyKernel};

fn check_block(block: i64) -> PyResult<usize> {
    match count("block", block)? {
        0 => Err(PyValueError::new_err("block = 0: expected an integer >= 1")),
        b => Ok(b),
    }
}

/// A fitted kernel ridge regression model: ``α = (K_ss + λI)⁻¹ y`` with
/// ``λ = reg · tr(K_ss)/n`` (the paper's trace-scaled ridge). Made by
/// :func:`kip.krr_fit`.
#[pyclass(name = "KrrModel", module = "kip", frozen)]
pub struct PyKrrModel {
    kernel: AnyKernel,
    support: Vec<f64>,
    dims: Vec<usize>,
    n: usize,
    alpha: DMatrix<f64>,
    ridge: f64,
    jitter: f64,
}

#[pymethods]
impl PyKrrModel {
    /// Predictions ``K(x, support) α``: ``(n, C)``.
    #[pyo3(signature = (x, block = 2000))]
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, block: i64) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let block = check_block(block)?;
        let t = PointsArg::extract(x, "x")?;
        if t.dims != self.dims {
            return Err(PyValueError::new_err(format!(
                "x holds points of shape {:?} but the model was fitted on {:?}",
                t.dims, self.dims
            )));
        }
        let d = self.dims.iter().product();
        let (vs, vt) = (points_row_major(&self.support, self.n, d), t.view());
        let out = py.detach(|| predict_blocked(&self.kernel, vs, &self.alpha, vt, block));
        Ok(matrix_to_py(py, out.map_err(|e| explain(e, &[("x", &t)]))?))
    }

    /// The dual coefficients ``α``: ``(n, C)``.
    #[getter]
    fn alpha<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        matrix_to_py(py, self.alpha.clone())
    }

    /// The ridge ``λ`` that was added (after the trace scaling).
    #[getter]
    fn ridge(&self) -> f64 {
        self.ridge
    }

    /// Extra diagonal the Cholesky needed (0 when none).
    #[getter]
    fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The kernel's spec.
    #[getter]
    fn kernel(&self) -> String {
        self.kernel.spec().to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "KrrModel(kernel='{}', support={}, classes={}, ridge={:e})",
            self.kernel.spec(),
            self.n,
            self.alpha.ncols(),
            self.ridge
        )
    }
}

/// Fit kernel ridge regression on the support points ``x`` with labels
/// ``y``: class ids ``(n,)`` (centred one-hot, as KIP uses) or a label
/// matrix ``(n, C)``. ``kernel`` is a :class:`kip.Kernel` or a spec string.
#[pyfunction]
#[pyo3(signature = (kernel, x, y, reg = 1e-6))]
pub fn krr_fit(
    py: Python<'_>,
    kernel: &Bound<'_, PyAny>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    reg: f64,
) -> PyResult<PyKrrModel> {
    let kernel = PyKernel::extract_any(kernel)?;
    let s = PointsArg::extract(x, "x")?;
    let y = label_matrix(y, "y", s.n, None)?;
    let k = kernel.bind(&s, "x")?;
    let ridge = Ridge::Relative(reg).check().map_err(value_err)?;
    let vs = s.view();
    let model = py.detach(|| -> Result<_, kip_krr::KrrError> {
        let mut k_ss = DMatrix::zeros(0, 0);
        k.gram_sym_into(vs, &mut k_ss)?;
        fit(&k_ss, &y, ridge)
    });
    let model = model.map_err(|e| explain(e, &[("x", &s)]))?;
    Ok(PyKrrModel {
        kernel: k,
        support: s.to_vec(),
        dims: s.dims.clone(),
        n: s.n,
        alpha: model.alpha,
        ridge: model.ridge,
        jitter: model.jitter,
    })
}

/// Predictions of a fitted model on ``x`` (same as ``model.predict(x)``).
#[pyfunction]
#[pyo3(signature = (model, x, block = 2000))]
pub fn krr_predict<'py>(
    py: Python<'py>,
    model: &PyKrrModel,
    x: &Bound<'py, PyAny>,
    block: i64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    model.predict(py, x, block)
}

/// Label Solve (the paper's Sec. 3): the support labels ``(n_s, C)`` that
/// make KRR on ``x_support`` fit the targets best, in closed form.
/// ``y_target`` is class ids ``(n_t,)`` (centred one-hot) or ``(n_t, C)``;
/// ``K_ts`` is formed ``block`` targets at a time.
#[pyfunction]
#[pyo3(signature = (kernel, x_support, x_target, y_target, reg = 1e-6, block = 5000))]
pub fn label_solve<'py>(
    py: Python<'py>,
    kernel: &Bound<'py, PyAny>,
    x_support: &Bound<'py, PyAny>,
    x_target: &Bound<'py, PyAny>,
    y_target: &Bound<'py, PyAny>,
    reg: f64,
    block: i64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let block = check_block(block)?;
    let kernel = PyKernel::extract_any(kernel)?;
    let s = PointsArg::extract(x_support, "x_support")?;
    let t = PointsArg::extract(x_target, "x_target")?;
    same_dims(&s, &t, "x_support", "x_target")?;
    let y = label_matrix(y_target, "y_target", t.n, None)?;
    let k = kernel.bind(&s, "x_support")?;
    let (vs, vt) = (s.view(), t.view());
    let out = py.detach(|| label_solve_streaming(&k, vs, vt, &y, Ridge::Relative(reg), block));
    Ok(matrix_to_py(
        py,
        out.map_err(|e| explain(e, &[("x_support", &s), ("x_target", &t)]))?,
    ))
}
