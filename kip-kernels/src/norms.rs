//! Squared norms of point sets, and the input checks that come with them
//! (empty inputs, dimensions, non-finite values named by row and column).

use kip_core::{dot, multiversion, MatRef};
use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::points::{AnyPoints, PointsF32, PointsView};

/// Column groups of the column-major norm pass (fixed: thread-independent
/// summation order).
pub(crate) const NORM_COL_GROUPS: usize = 8;

/// The checks [`checked_pair`] makes, for [`tiled_gram`](crate::tiles::tiled_gram), which checks
/// the rows of `a` itself: `a` has columns, `b`'s norms into `nb`, the
/// dimensions agree.
pub(crate) fn checked_b_for_tiles(a: &PointsView<'_>, b: &PointsView<'_>, nb: &mut Vec<f64>) -> Result<()> {
    if a.ncols() == 0 {
        return Err(KernelError::Empty {
            what: "a",
            rows: a.nrows(),
            cols: 0,
        });
    }
    norms_into("b", b, nb)?;
    same_dim(a.ncols(), b)
}

/// Rows per task of the norm pass.
pub(crate) const NORM_ROWS: usize = 512;

/// `‖x_i‖²/d` for every row into `out`, checking the points on the way: an
/// empty input or a non-finite entry (NaN, ±∞, or squares that overflow) is
/// an error naming the first bad row and column. Parallel over blocks of
/// rows, each in [`sq_norms_rows`]'s fixed summation order.
pub(crate) fn norms_into(what: &'static str, x: &PointsView<'_>, out: &mut Vec<f64>) -> Result<()> {
    let (n, d) = x.shape();
    if n == 0 || d == 0 {
        return Err(KernelError::Empty { what, rows: n, cols: d });
    }
    let xr = MatRef::from(*x);
    out.clear();
    out.resize(n, 0.0);
    out.par_chunks_mut(NORM_ROWS)
        .enumerate()
        .for_each(|(blk, o)| sq_norms_rows(&xr, blk * NORM_ROWS, o));
    scale_checked(what, out, 0, d, |row, j| xr.at(row, j).is_finite())
}

/// `‖x_i‖²` of rows `r0..r0 + out.len()` of `x` into `out`, in an order that
/// depends on the layout only (never on the blocking or the threads): a dot
/// product per row when rows are contiguous; for column-major points
/// [`col_major_sq_norms`].
pub(crate) fn sq_norms_rows(x: &MatRef<'_>, r0: usize, out: &mut [f64]) {
    let d = x.cols();
    if x.col_stride() == 1 {
        for (i, o) in out.iter_mut().enumerate() {
            let row = x.row_slice(r0 + i).expect("rows are contiguous");
            *o = dot(row, row);
        }
    } else if x.row_stride() == 1 {
        col_major_sq_norms(x, r0, out);
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..d).map(|j| x.at(r0 + i, j) * x.at(r0 + i, j)).sum();
        }
    }
}

/// Rows per register block of [`col_major_sq_norms`] (four AVX-512
/// vectors).
pub(crate) const NORM_LANES: usize = 32;

#[inline(always)]
pub(crate) fn col_major_sq_norms_impl(x: &MatRef<'_>, r0: usize, out: &mut [f64]) {
    let (m, d) = (out.len(), x.cols());
    let per = d.div_ceil(NORM_COL_GROUPS);
    out.fill(0.0);
    for c0 in (0..m).step_by(NORM_LANES) {
        let w = NORM_LANES.min(m - c0);
        for k in 0..d.div_ceil(per) {
            let mut acc = [0.0f64; NORM_LANES];
            for j in k * per..((k + 1) * per).min(d) {
                let col = &x.col_slice(j).expect("columns are contiguous")[r0 + c0..r0 + c0 + w];
                if let Ok(col) = <&[f64; NORM_LANES]>::try_from(col) {
                    for (a, v) in acc.iter_mut().zip(col) {
                        *a += v * v;
                    }
                } else {
                    for (a, v) in acc.iter_mut().zip(col) {
                        *a += v * v;
                    }
                }
            }
            for (o, a) in out[c0..c0 + w].iter_mut().zip(&acc) {
                *o += a;
            }
        }
    }
}

multiversion! {
    /// `‖x_i‖²` of rows `r0..r0 + out.len()` of column-major points `x`
    /// (row stride 1): the columns in [`NORM_COL_GROUPS`]
    /// fixed groups, each summed in column order, then the groups added in
    /// order. Register blocks of [`NORM_LANES`] rows keep the sums in
    /// registers across a group's columns.
    fn col_major_sq_norms(x: &MatRef<'_>, r0: usize, out: &mut [f64]) => col_major_sq_norms_impl
}

/// `‖x_i‖²/d` (accumulated in f64) of single-precision points, checked as
/// [`norms_into`].
pub(crate) fn norms_f32_into(what: &'static str, x: &PointsF32<'_>, out: &mut Vec<f64>) -> Result<()> {
    let (n, d) = (x.nrows(), x.ncols());
    if n == 0 || d == 0 {
        return Err(KernelError::Empty { what, rows: n, cols: d });
    }
    let data = x.data();
    out.clear();
    out.resize(n, 0.0);
    out.par_iter_mut().enumerate().with_min_len(64).for_each(|(i, o)| {
        let row = &data[i * d..(i + 1) * d];
        *o = dot(row, row);
    });
    scale_checked(what, out, 0, d, |row, j| data[row * d + j].is_finite())
}

/// Divide the squared norms of rows `r0..r0 + out.len()` by `d`; a
/// non-finite one is an error naming the first bad row and (via
/// `finite(row, col)`) its first bad column.
pub(crate) fn scale_checked(
    what: &'static str,
    out: &mut [f64],
    r0: usize,
    d: usize,
    finite: impl Fn(usize, usize) -> bool,
) -> Result<()> {
    let inv_d = 1.0 / d as f64;
    let mut bad = None;
    for (i, o) in out.iter_mut().enumerate() {
        if !o.is_finite() && bad.is_none() {
            bad = Some(r0 + i);
        }
        *o *= inv_d;
    }
    if let Some(row) = bad {
        return Err(match (0..d).position(|j| !finite(row, j)) {
            Some(col) => KernelError::NonFinite { what, row, col },
            None => KernelError::NormOverflow { what, row },
        });
    }
    Ok(())
}

/// Checked norms of one point set.
pub(crate) fn checked_norms(what: &'static str, x: &PointsView<'_>) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    norms_into(what, x, &mut v)?;
    Ok(v)
}

/// `‖x_i‖²/d` of every point (f64 accumulation, the values
/// [`Linearization::compute`](crate::Linearization::compute) computes itself), for [`NormedPoints`](crate::NormedPoints).
///
/// # Errors
/// Empty points; a non-finite entry (named by row and column).
pub fn row_norms<'a>(x: impl Into<AnyPoints<'a>>) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    match x.into() {
        AnyPoints::F64(p) => norms_into("points", &p, &mut v)?,
        AnyPoints::F32(p) => norms_f32_into("points", &p, &mut v)?,
    }
    Ok(v)
}

/// Caller-supplied norms of `n` points of dimension `d` into `out`, checked
/// for length and finiteness (and the points for emptiness).
pub(crate) fn supplied_norms(norms: &[f64], n: usize, d: usize, out: &mut Vec<f64>) -> Result<()> {
    if n == 0 || d == 0 {
        return Err(KernelError::Empty {
            what: "a",
            rows: n,
            cols: d,
        });
    }
    if norms.len() != n {
        return Err(KernelError::Shape {
            what: "a norms",
            expected: format!("{n} values (one per point)"),
            got: format!("{} values", norms.len()),
        });
    }
    if let Some(row) = norms.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "a norms",
            row,
            col: 0,
        });
    }
    out.clear();
    out.extend_from_slice(norms);
    Ok(())
}

/// Checked norms of two point sets of the same dimension.
pub(crate) fn checked_pair(a: &PointsView<'_>, b: &PointsView<'_>, na: &mut Vec<f64>, nb: &mut Vec<f64>) -> Result<()> {
    norms_into("a", a, na)?;
    norms_into("b", b, nb)?;
    same_dim(a.ncols(), b)
}

/// `b` has the dimension `d` of `a`.
pub(crate) fn same_dim(d: usize, b: &PointsView<'_>) -> Result<()> {
    if b.ncols() != d {
        return Err(KernelError::Shape {
            what: "b",
            expected: format!("{d} columns (as a)"),
            got: format!("{} columns", b.ncols()),
        });
    }
    Ok(())
}

pub(crate) fn check_g(g: &DMatrix<f64>, n1: usize, n2: usize) -> Result<()> {
    if g.shape() != (n1, n2) {
        return Err(KernelError::Shape {
            what: "g",
            expected: format!("{n1} x {n2}"),
            got: format!("{} x {}", g.nrows(), g.ncols()),
        });
    }
    if let Some(idx) = g.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "g",
            row: idx % n1,
            col: idx / n1,
        });
    }
    Ok(())
}
