//! `kip.Kernel`: any kernel spec kip parses, with its Gram matrices and
//! vector-Jacobian products on numpy arrays.

use kip_core::ImageShape;
use kip_kernels::{AnyKernel, Kernel, KernelSpec};
use nalgebra::DMatrix;
use numpy::{PyArray1, PyArray2, PyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{count, explain, matrix_to_py, points_to_py, vec_to_py, PointsArg};

/// An infinite-width network kernel (or RBF / linear), named by a spec
/// string such as ``"fc3-ntk"``, ``"fc1-nngp"``, ``"convvec3-ntk"``,
/// ``"convnet3-ntk"`` or ``"conv-ntk:layers=CRCRFD"``.
///
/// Points are ``(n, d)`` arrays, or image arrays ``(n, h, w, c)`` /
/// ``(n, h, w)``; float64 C- or F-ordered arrays are read without a copy,
/// float32 arrays are widened to float64 (the kernels compute in float64).
/// Convolutional kernels read each point as an image: pass image-shaped
/// arrays, or flat ones with ``image_shape=(h, w, c)``. The GIL is released
/// while a kernel computes.
#[pyclass(name = "Kernel", module = "kip", frozen)]
pub struct PyKernel {
    kernel: AnyKernel,
    image_shape: Option<ImageShape>,
}

impl PyKernel {
    /// The kernel from a spec string.
    pub fn from_spec(spec: &str, image_shape: Option<(usize, usize, usize)>) -> PyResult<Self> {
        let parsed: KernelSpec = spec
            .parse()
            .map_err(|e| PyValueError::new_err(format!("kernel spec {spec:?}: {e}")))?;
        Ok(Self {
            kernel: parsed.build(),
            image_shape: image_shape.map(|(h, w, c)| ImageShape::new(h, w, c)),
        })
    }

    /// A `Kernel` object or a spec string.
    pub fn extract_any(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(k) = obj.cast::<PyKernel>() {
            let k = k.get();
            return Ok(Self {
                kernel: k.kernel.clone(),
                image_shape: k.image_shape,
            });
        }
        match obj.extract::<String>() {
            Ok(spec) => Self::from_spec(&spec, None),
            Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(
                "kernel: expected a kip.Kernel or a spec string such as \"fc1-ntk\"",
            )),
        }
    }

    /// The kernel ready for points of this shape (conv kernels get their
    /// image shape from the kernel's `image_shape` or the array's).
    pub fn bind(&self, pts: &PointsArg<'_>, name: &str) -> PyResult<AnyKernel> {
        if !self.kernel.needs_image_shape() {
            return Ok(self.kernel.clone());
        }
        if let (Some(given), Some(seen)) = (self.image_shape, pts.image_shape()) {
            if given != seen {
                return Err(PyValueError::new_err(format!(
                    "{name}: images of shape {seen}, but the kernel was created with image_shape {given}"
                )));
            }
        }
        let shape = self.image_shape.or(pts.image_shape()).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{name}: kernel {} reads images, but the points are flat (shape (n, {})); \
                 pass (n, h, w, c) arrays or create the kernel with image_shape=(h, w, c)",
                self.kernel.spec(),
                pts.d
            ))
        })?;
        if shape.dim() != pts.d {
            return Err(PyValueError::new_err(format!(
                "{name}: image shape {shape} holds {} values per image, the points have {}",
                shape.dim(),
                pts.d
            )));
        }
        Ok(self.kernel.clone().for_images(shape))
    }
}

/// Both point sets must have points of the same shape.
pub fn same_dims(a: &PointsArg<'_>, b: &PointsArg<'_>, na: &str, nb: &str) -> PyResult<()> {
    if a.dims == b.dims {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{na} holds points of shape {:?} but {nb} holds {:?}: both need the same point shape",
            a.dims, b.dims
        )))
    }
}

#[pymethods]
impl PyKernel {
    #[new]
    #[pyo3(signature = (spec, image_shape = None))]
    fn new(spec: &str, image_shape: Option<(i64, i64, i64)>) -> PyResult<Self> {
        let shape = match image_shape {
            Some((h, w, c)) if h >= 1 && w >= 1 && c >= 1 => Some((count("h", h)?, count("w", w)?, count("c", c)?)),
            Some((h, w, c)) => {
                return Err(PyValueError::new_err(format!(
                    "image_shape ({h}, {w}, {c}): every size must be >= 1"
                )))
            }
            None => None,
        };
        Self::from_spec(spec, shape)
    }

    /// The spec in kip's canonical form.
    #[getter]
    fn spec(&self) -> String {
        self.kernel.spec().to_string()
    }

    /// ``(h, w, c)`` given at construction, or ``None``.
    #[getter]
    fn image_shape(&self) -> Option<(usize, usize, usize)> {
        self.image_shape.map(|s| (s.h, s.w, s.c))
    }

    /// Whether the kernel reads its points as images (convolutional).
    #[getter]
    fn is_convolutional(&self) -> bool {
        self.kernel.needs_image_shape()
    }

    /// ``K(x1, x2)``: an ``(n1, n2)`` float64 array.
    fn gram<'py>(
        &self,
        py: Python<'py>,
        x1: &Bound<'py, PyAny>,
        x2: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (a, b) = (PointsArg::extract(x1, "x1")?, PointsArg::extract(x2, "x2")?);
        same_dims(&a, &b, "x1", "x2")?;
        let k = self.bind(&a, "x1")?;
        let (va, vb) = (a.view(), b.view());
        let out = py.detach(|| {
            let mut out = DMatrix::zeros(0, 0);
            k.gram_into(va, vb, &mut out).map(|_| out)
        });
        Ok(matrix_to_py(
            py,
            out.map_err(|e| explain(e, &[("x1", &a), ("x2", &b)]))?,
        ))
    }

    /// ``K(x, x)``, computed once per pair and mirrored: ``(n, n)``.
    fn gram_sym<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let a = PointsArg::extract(x, "x")?;
        let k = self.bind(&a, "x")?;
        let va = a.view();
        let out = py.detach(|| {
            let mut out = DMatrix::zeros(0, 0);
            k.gram_sym_into(va, &mut out).map(|_| out)
        });
        Ok(matrix_to_py(py, out.map_err(|e| explain(e, &[("x", &a)]))?))
    }

    /// ``K(x_i, x_i)`` for each point: ``(n,)``.
    fn diag<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let a = PointsArg::extract(x, "x")?;
        let k = self.bind(&a, "x")?;
        let va = a.view();
        let out = py.detach(|| k.gram_diag(va));
        Ok(vec_to_py(py, out.map_err(|e| explain(e, &[("x", &a)]))?))
    }

    /// Vector-Jacobian product of ``K(x1, x2)`` with the cotangent ``g``
    /// (``(n1, n2)``, e.g. ``dL/dK``): returns ``(dL/dx1, dL/dx2)``, each
    /// shaped like its points.
    #[allow(clippy::type_complexity)]
    fn vjp<'py>(
        &self,
        py: Python<'py>,
        x1: &Bound<'py, PyAny>,
        x2: &Bound<'py, PyAny>,
        g: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArrayDyn<f64>>, Bound<'py, PyArrayDyn<f64>>)> {
        let (a, b) = (PointsArg::extract(x1, "x1")?, PointsArg::extract(x2, "x2")?);
        same_dims(&a, &b, "x1", "x2")?;
        let g = cotangent(g, a.n, b.n)?;
        let k = self.bind(&a, "x1")?;
        let (va, vb) = (a.view(), b.view());
        let out = py.detach(|| {
            let (mut da, mut db) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
            k.vjp_into(va, vb, &g, Some(&mut da), Some(&mut db)).map(|_| (da, db))
        });
        let (da, db) = out.map_err(|e| explain(e, &[("x1", &a), ("x2", &b)]))?;
        Ok((points_to_py(py, &da, &a.dims), points_to_py(py, &db, &b.dims)))
    }

    /// Vector-Jacobian product of ``K(x, x)`` with ``g`` (``(n, n)``):
    /// ``dL/dx``, shaped like ``x``.
    fn vjp_sym<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        g: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let a = PointsArg::extract(x, "x")?;
        let g = cotangent(g, a.n, a.n)?;
        let k = self.bind(&a, "x")?;
        let va = a.view();
        let out = py.detach(|| {
            let mut da = DMatrix::zeros(0, 0);
            k.vjp_sym_into(va, &g, &mut da).map(|_| da)
        });
        Ok(points_to_py(py, &out.map_err(|e| explain(e, &[("x", &a)]))?, &a.dims))
    }

    /// Pickling (multiprocessing, joblib): a kernel is its spec and image
    /// shape.
    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, pyo3::types::PyType>, (String, Option<(usize, usize, usize)>)) {
        (py.get_type::<PyKernel>(), (self.spec(), self.image_shape()))
    }

    fn __repr__(&self) -> String {
        match self.image_shape {
            Some(s) => format!("Kernel('{}', image_shape=({}, {}, {}))", self.spec(), s.h, s.w, s.c),
            None => format!("Kernel('{}')", self.spec()),
        }
    }
}

/// The cotangent `g`: a finite `(n1, n2)` float array.
fn cotangent(obj: &Bound<'_, PyAny>, n1: usize, n2: usize) -> PyResult<DMatrix<f64>> {
    let g = PointsArg::extract(obj, "g")?;
    if g.dims.len() != 1 || g.n != n1 || g.d != n2 {
        let mut shape = vec![g.n];
        shape.extend(&g.dims);
        return Err(PyValueError::new_err(format!(
            "g: expected shape ({n1}, {n2}), got {shape:?}"
        )));
    }
    let v = g.view();
    Ok(DMatrix::from_fn(n1, n2, |i, j| v[(i, j)]))
}
