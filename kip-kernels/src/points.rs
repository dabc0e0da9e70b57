//! The point sets the kernels take: `n × d` views of `f64` points with any
//! strides (column-major nalgebra matrices, their transposes, row-major
//! buffers: no copies), row-major `f32` points for the single-precision
//! products, and points with their norms supplied by the caller.

use kip_core::MatRef;
use nalgebra::{DMatrix, Dyn, MatrixView};

/// An `n × d` view of points with arbitrary (non-negative) strides: a
/// column-major [`DMatrix`], a transposed one, or a row-major buffer.
pub type PointsView<'a> = MatrixView<'a, f64, Dyn, Dyn, Dyn, Dyn>;

/// View a column-major matrix as points (one row per point).
pub fn points(m: &DMatrix<f64>) -> PointsView<'_> {
    let (n, d) = m.shape();
    let (rs, cs) = empty_safe_strides(n, d, 1, n);
    PointsView::from_slice_with_strides_generic(m.as_slice(), Dyn(n), Dyn(d), Dyn(rs), Dyn(cs))
}

/// Strides that nalgebra's bounds check accepts for empty views too.
fn empty_safe_strides(n: usize, d: usize, rs: usize, cs: usize) -> (usize, usize) {
    match (n, d) {
        (0, _) => (1, 0),
        (_, 0) => (0, 1),
        _ => (rs, cs),
    }
}

/// View a row-major `n × d` buffer (each point contiguous) as points.
///
/// # Panics
/// If `data.len() != n * d`.
pub fn points_row_major(data: &[f64], n: usize, d: usize) -> PointsView<'_> {
    assert_eq!(data.len(), n * d, "row-major buffer length");
    let (rs, cs) = empty_safe_strides(n, d, d, 1);
    PointsView::from_slice_with_strides_generic(data, Dyn(n), Dyn(d), Dyn(rs), Dyn(cs))
}

/// `n × d` points stored row-major in `f32` (each point contiguous): the
/// operand of the single-precision products of
/// [`Linearization::compute`](crate::Linearization::compute).
#[derive(Clone, Copy, Debug)]
pub struct PointsF32<'a> {
    data: &'a [f32],
    n: usize,
    d: usize,
}

impl<'a> PointsF32<'a> {
    /// View a row-major `n × d` buffer.
    ///
    /// # Panics
    /// If `data.len() != n * d`.
    pub fn new(data: &'a [f32], n: usize, d: usize) -> Self {
        assert_eq!(data.len(), n * d, "PointsF32: buffer length");
        Self { data, n, d }
    }
    /// Number of points.
    pub fn nrows(&self) -> usize {
        self.n
    }
    /// Dimension.
    pub fn ncols(&self) -> usize {
        self.d
    }
    /// The row-major values.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
    /// As a matrix view.
    pub fn mat(&self) -> MatRef<'a, f32> {
        MatRef::row_major(self.data, self.n, self.d)
    }
}

/// Points in either precision: what selects the exact (`f64`) or the
/// single-precision-GEMM path of
/// [`Linearization::compute`](crate::Linearization::compute).
#[derive(Clone, Copy, Debug)]
pub enum AnyPoints<'a> {
    /// Exact: any strides, `f64`.
    F64(PointsView<'a>),
    /// Row-major `f32`: the inner products run as an f32 GEMM.
    F32(PointsF32<'a>),
}

impl AnyPoints<'_> {
    /// Number of points.
    pub fn nrows(&self) -> usize {
        match self {
            AnyPoints::F64(p) => p.nrows(),
            AnyPoints::F32(p) => p.nrows(),
        }
    }
    /// Dimension.
    pub fn ncols(&self) -> usize {
        match self {
            AnyPoints::F64(p) => p.ncols(),
            AnyPoints::F32(p) => p.ncols(),
        }
    }
}

impl<'a> From<PointsView<'a>> for AnyPoints<'a> {
    fn from(p: PointsView<'a>) -> Self {
        AnyPoints::F64(p)
    }
}

impl<'a> From<PointsF32<'a>> for AnyPoints<'a> {
    fn from(p: PointsF32<'a>) -> Self {
        AnyPoints::F32(p)
    }
}

/// Points with their squared norms `‖x_i‖²/d` supplied by the caller (as
/// [`row_norms`](crate::row_norms) computes them), so that a caller
/// drawing batches from a fixed pool (KIP's targets from the training set)
/// computes the norms once instead of in a pass over every batch.
/// `Linearization::compute` takes this (and converts any point type into it
/// with `norms: None`: computed there). Supplied norms are checked for
/// length and finiteness only; the points themselves are then not scanned
/// for NaN/∞ (norms from `row_norms` carry that check: it fails on them).
#[derive(Clone, Copy, Debug)]
pub struct NormedPoints<'a> {
    /// The points.
    pub points: AnyPoints<'a>,
    /// `‖x_i‖²/d` for every point, or `None` to compute them.
    pub norms: Option<&'a [f64]>,
}

impl<'a> AnyPoints<'a> {
    /// These points with their norms `‖x_i‖²/d` (see [`NormedPoints`]).
    pub fn with_norms(self, norms: &'a [f64]) -> NormedPoints<'a> {
        NormedPoints {
            points: self,
            norms: Some(norms),
        }
    }
}

impl NormedPoints<'_> {
    /// Rows `start..start + len` (a view, with their slice of the norms).
    ///
    /// # Panics
    /// If the rows are out of range.
    pub fn rows(&self, start: usize, len: usize) -> NormedPoints<'_> {
        let points = match &self.points {
            AnyPoints::F64(p) => AnyPoints::F64(p.rows(start, len)),
            AnyPoints::F32(p) => {
                let d = p.ncols();
                AnyPoints::F32(PointsF32::new(&p.data()[start * d..(start + len) * d], len, d))
            }
        };
        NormedPoints {
            points,
            norms: self.norms.map(|n| &n[start..start + len]),
        }
    }
}

impl<'a, P: Into<AnyPoints<'a>>> From<P> for NormedPoints<'a> {
    fn from(p: P) -> Self {
        NormedPoints {
            points: p.into(),
            norms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_views_agree_with_column_major() {
        let a = DMatrix::from_fn(5, 4, |i, j| (i * 4 + j) as f64);
        let rm: Vec<f64> = (0..20).map(|x| x as f64).collect();
        let v1 = points(&a);
        let v2 = points_row_major(&rm, 5, 4);
        assert_eq!(v1, v2);
        assert_eq!(MatRef::from(v2).at(3, 2), 14.0);
    }
}
