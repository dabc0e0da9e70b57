//! numpy arrays in and out: points as zero-copy views where the layout
//! allows, class ids, label matrices, and results handed to numpy without
//! a copy.

use kip_core::ImageShape;
use kip_kernels::{points_row_major, PointsView};
use nalgebra::{DMatrix, Dyn};
use numpy::ndarray::{Array2, ArrayD, ArrayViewD, IxDyn, ShapeBuilder};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyAnyMethods;

/// `obj` as a numpy array: arrays as they are, anything else through
/// `numpy.asarray` (lists, tuples, array-likes; numpy's own message when
/// it cannot, e.g. a ragged list).
fn as_ndarray<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let type_name = || obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    if obj.is_none() || obj.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(format!("expected an array, got {}", type_name())));
    }
    let np = obj.py().import("numpy")?;
    let converted = np.call_method1("asarray", (obj,))?.cast_into::<PyUntypedArray>()?;
    if converted.dtype().kind() == b'O' {
        return Err(PyTypeError::new_err(format!("expected an array, got {}", type_name())));
    }
    Ok(converted)
}

/// A float array of another byte order or width (big-endian, float16,
/// longdouble) as native float64 (a copy).
fn native_f64<'py>(array: &Bound<'py, PyUntypedArray>) -> PyResult<Option<Bound<'py, PyUntypedArray>>> {
    if array.dtype().kind() != b'f' {
        return Ok(None);
    }
    let np = array.py().import("numpy")?;
    Ok(Some(
        np.call_method1("asarray", (array, "float64"))?
            .cast_into::<PyUntypedArray>()?,
    ))
}

fn dtype_name(a: &Bound<'_, PyUntypedArray>) -> String {
    a.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// The values of a set of points: a view of the caller's float64 array,
/// or a row-major copy (float32 input, or a layout a view cannot describe).
enum Values<'py> {
    Borrowed {
        array: PyReadonlyArrayDyn<'py, f64>,
        row_stride: usize,
        col_stride: usize,
    },
    Owned(Vec<f64>),
}

/// A set of `n` points handed over from Python: shape `(n, d)`, `(n, h, w)`
/// or `(n, h, w, c)`.
pub struct PointsArg<'py> {
    values: Values<'py>,
    /// The array's shape after the point axis.
    pub dims: Vec<usize>,
    /// Points.
    pub n: usize,
    /// Values per point.
    pub d: usize,
}

impl<'py> PointsArg<'py> {
    /// Read argument `name`: float32 or float64, rank 2 to 4, any order.
    pub fn extract(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Self> {
        let array = as_ndarray(obj).map_err(|e| prefix(name, e))?;
        let shape = array.shape().to_vec();
        if !(2..=4).contains(&shape.len()) {
            return Err(PyValueError::new_err(format!(
                "{name}: expected points of shape (n, d), (n, h, w) or (n, h, w, c), got shape {shape:?}"
            )));
        }
        let (n, dims) = (shape[0], shape[1..].to_vec());
        let d: usize = dims.iter().product();
        if d == 0 {
            return Err(PyValueError::new_err(format!(
                "{name}: points have no values (shape {shape:?})"
            )));
        }
        let array = match array.cast::<PyArrayDyn<f64>>().is_ok() || array.cast::<PyArrayDyn<f32>>().is_ok() {
            true => array,
            false => native_f64(&array)?.unwrap_or(array),
        };
        let values = if let Ok(a) = array.cast::<PyArrayDyn<f64>>() {
            let a = a.readonly();
            match view_strides(&a.as_array(), &shape) {
                Some((row_stride, col_stride)) => Values::Borrowed {
                    array: a,
                    row_stride,
                    col_stride,
                },
                None => Values::Owned(row_major(a.as_array(), |v| v)),
            }
        } else if let Ok(a) = array.cast::<PyArrayDyn<f32>>() {
            Values::Owned(row_major(a.readonly().as_array(), f64::from))
        } else {
            return Err(PyTypeError::new_err(format!(
                "{name}: expected a float32 or float64 array, got dtype {}",
                dtype_name(&array)
            )));
        };
        Ok(Self { values, dims, n, d })
    }

    /// The points as the kernels take them (`n × d`, no copy).
    pub fn view(&self) -> PointsView<'_> {
        match &self.values {
            Values::Owned(v) => points_row_major(v, self.n, self.d),
            Values::Borrowed {
                array,
                row_stride,
                col_stride,
            } => {
                let view = array.as_array();
                let len = if self.n == 0 {
                    0
                } else {
                    (self.n - 1) * row_stride + (self.d - 1) * col_stride + 1
                };
                // SAFETY: the strides were checked non-negative and the
                // furthest element of the view is at offset `len - 1`, inside
                // the array the readonly borrow keeps alive and unchanged.
                let data = unsafe { std::slice::from_raw_parts(view.as_ptr(), len) };
                if self.n == 0 {
                    return points_row_major(data, 0, self.d);
                }
                PointsView::from_slice_with_strides_generic(
                    data,
                    Dyn(self.n),
                    Dyn(self.d),
                    Dyn(*row_stride),
                    Dyn(*col_stride),
                )
            }
        }
    }

    /// The array's shape.
    pub fn shape(&self) -> Vec<usize> {
        let mut s = vec![self.n];
        s.extend(&self.dims);
        s
    }

    /// The image shape of image-shaped points (`(n, h, w[, c])`).
    pub fn image_shape(&self) -> Option<ImageShape> {
        ImageShape::of_point_dims(&self.dims)
    }

    /// The points as an owned row-major buffer.
    pub fn to_vec(&self) -> Vec<f64> {
        let v = self.view();
        (0..self.n)
            .flat_map(|i| (0..self.d).map(move |j| (i, j)))
            .map(|(i, j)| v[(i, j)])
            .collect()
    }
}

/// Row and column strides (in elements) of an `n × d` view of `a`, if
/// one exists: non-negative strides, and for image-shaped points each
/// point's values contiguous in C order.
fn view_strides(a: &ArrayViewD<'_, f64>, shape: &[usize]) -> Option<(usize, usize)> {
    let strides = a.strides();
    if strides.iter().any(|&s| s < 0) {
        return None;
    }
    let s: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
    if shape.len() == 2 {
        return Some((s[0], s[1]));
    }
    let mut expected = 1;
    for k in (1..shape.len()).rev() {
        if shape[k] > 1 && s[k] != expected {
            return None;
        }
        expected *= shape[k];
    }
    Some((s[0], 1))
}

/// Copy in C order, converting each value (a straight pass over the
/// memory when the array is C-contiguous; `IxDyn` iteration otherwise).
fn row_major<T: Copy>(a: ArrayViewD<'_, T>, f: impl Fn(T) -> f64) -> Vec<f64> {
    match a.as_slice() {
        Some(s) => s.iter().map(|&v| f(v)).collect(),
        None => a.iter().map(|&v| f(v)).collect(),
    }
}

/// `e` with the argument's name in front of its message (same type).
fn prefix(name: &str, e: PyErr) -> PyErr {
    Python::attach(|py| {
        let msg = format!("{name}: {}", e.value(py));
        if e.is_instance_of::<PyTypeError>(py) {
            PyTypeError::new_err(msg)
        } else {
            PyValueError::new_err(msg)
        }
    })
}

/// What is wrong with the first of `args` that a kernel would refuse (no
/// points, a NaN or infinity, a squared norm that overflows), named as the
/// caller named it; `None` if they all look fine. Run after a kernel
/// error only (the kernels check their inputs in their own passes).
pub fn diagnose(args: &[(&str, &PointsArg<'_>)]) -> Option<PyErr> {
    for (name, p) in args {
        if p.n == 0 {
            return Some(PyValueError::new_err(format!(
                "{name}: no points (shape {:?})",
                p.shape()
            )));
        }
        let v = p.view();
        for i in 0..p.n {
            let mut norm = 0.0;
            for j in 0..p.d {
                let x = v[(i, j)];
                if !x.is_finite() {
                    return Some(PyValueError::new_err(format!(
                        "{name}: non-finite value {x} at point {i}, index {j}"
                    )));
                }
                norm += x * x;
            }
            if !norm.is_finite() {
                return Some(PyValueError::new_err(format!(
                    "{name}: point {i} is too large (its squared norm overflows float64)"
                )));
            }
        }
    }
    None
}

/// A kip error from a call on `args`: the argument's own diagnosis when
/// one applies, else kip's message.
pub fn explain<E: std::fmt::Display + 'static>(e: E, args: &[(&str, &PointsArg<'_>)]) -> PyErr {
    crate::errors::memory_err(&e)
        .or_else(|| diagnose(args))
        .unwrap_or_else(|| PyValueError::new_err(e.to_string()))
}

/// Class ids `(n,)`, integers in `0..` (bool and float arrays are refused).
pub fn class_ids(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<usize>> {
    let array = as_ndarray(obj).map_err(|e| prefix(name, e))?;
    if array.ndim() != 1 {
        return Err(PyValueError::new_err(format!(
            "{name}: expected class ids of shape (n,), got shape {:?}",
            array.shape()
        )));
    }
    let kind = array.dtype().kind();
    if kind != b'i' && kind != b'u' {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected integer class ids, got dtype {}",
            dtype_name(&array)
        )));
    }
    let np = obj.py().import("numpy")?;
    let ids = np.call_method1("asarray", (&array, "int64"))?;
    let ids = ids.cast_into::<PyArrayDyn<i64>>()?;
    let ids = ids.readonly();
    ids.as_array()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name}[{i}] = {v}: class ids must be >= 0")))
        })
        .collect()
}

/// Labels for `n` points: class ids `(n,)` (turned into centred one-hot
/// rows over `n_classes` or `max + 1` classes, as KIP does) or a float
/// label matrix `(n, C)`.
pub fn label_matrix(obj: &Bound<'_, PyAny>, name: &str, n: usize, n_classes: Option<usize>) -> PyResult<DMatrix<f64>> {
    let array = as_ndarray(obj).map_err(|e| prefix(name, e))?;
    let y = if array.ndim() == 1 {
        let ids = class_ids(obj, name)?;
        let c = n_classes.unwrap_or_else(|| ids.iter().max().map_or(1, |m| m + 1));
        if let Some((i, &l)) = ids.iter().enumerate().find(|(_, &l)| l >= c) {
            return Err(PyValueError::new_err(format!(
                "{name}[{i}] = {l}: out of range for {c} classes"
            )));
        }
        kip_data::one_hot(&ids, c, true)
    } else {
        let m = PointsArg::extract(obj, name)?;
        if m.dims.len() != 1 {
            return Err(PyValueError::new_err(format!(
                "{name}: expected class ids (n,) or a label matrix (n, C), got shape {:?}",
                array.shape()
            )));
        }
        let v = m.view();
        DMatrix::from_fn(m.n, m.d, |i, j| v[(i, j)])
    };
    if y.nrows() != n {
        return Err(PyValueError::new_err(format!(
            "{name}: {} rows for {n} points",
            y.nrows()
        )));
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!("{name}: holds NaN or infinite values")));
    }
    Ok(y)
}

/// An `r × c` matrix as a numpy array without a copy (Fortran order).
pub fn matrix_to_py(py: Python<'_>, m: DMatrix<f64>) -> Bound<'_, PyArray2<f64>> {
    let (r, c) = m.shape();
    let data: Vec<f64> = m.data.into();
    Array2::from_shape_vec((r, c).f(), data)
        .expect("column-major data of the matrix's shape")
        .into_pyarray(py)
}

/// The rows of `m` (one point each) as a C-ordered array of shape
/// `(n, *dims)`.
pub fn points_to_py<'py>(py: Python<'py>, m: &DMatrix<f64>, dims: &[usize]) -> Bound<'py, PyArrayDyn<f64>> {
    let mut shape = vec![m.nrows()];
    shape.extend_from_slice(dims);
    let data: Vec<f64> = m.transpose().data.into();
    ArrayD::from_shape_vec(IxDyn(&shape), data)
        .expect("row-major data of the points' shape")
        .into_pyarray(py)
}

/// A vector as a 1-D numpy array.
pub fn vec_to_py<T: numpy::Element>(py: Python<'_>, v: Vec<T>) -> Bound<'_, PyArray1<T>> {
    v.into_pyarray(py)
}

/// A count or size from Python: a non-negative integer, else a
/// `ValueError` naming the parameter.
pub fn count(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} = {v}: expected an integer >= 0")))
}
