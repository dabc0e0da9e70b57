//! Zero-copy matrix views and one safe wrapper around the `gemm` crate.
//!
//! nalgebra stays the public matrix type; the heavy products run on the
//! `gemm` crate (AVX-512 kernels selected at run time, AVX2/SSE fallback), on
//! strided views of nalgebra buffers, so transposes and row-major buffers cost
//! no copies.

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

/// An element type [`gemm()`] multiplies: `f64` (everything by default) or
/// `f32` (the optional single-precision products of the KIP step).
pub trait Scalar: Copy + PartialEq + Send + Sync + std::fmt::Debug + std::ops::Mul<Output = Self> + 'static {
    /// Zero.
    const ZERO: Self;
    /// The nearest value of this type (`as` semantics: overflow gives ±∞).
    fn from_f64(v: f64) -> Self;
}

impl Scalar for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
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
    /// As a [`gemm()`] operand.
    pub fn mat(&self) -> MatRef<'a, f32> {
        MatRef::new(self.data, self.n, self.d, self.d, 1)
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

/// Buffers from this many bytes are advised onto huge pages.
const HUGE_MIN_BYTES: usize = 8 << 20;

/// `len` zeros in a fresh allocation: `calloc`'s zero pages, nothing written
/// yet (`DMatrix::zeros` writes every element first). On Linux a buffer of
/// 8 MB or more is also advised onto transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, a hint the kernel may ignore), so filling it
/// takes 2 MB page faults instead of 4 KiB ones: for the 128 MB Cholesky
/// factor of n = 4000 the 4 KiB faults cost an eighth of the factorisation.
pub fn zeroed_huge(len: usize) -> Vec<f64> {
    let v = vec![0.0; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = len * std::mem::size_of::<f64>();
        let start = v.as_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if bytes >= HUGE_MIN_BYTES && end > aligned {
            // SAFETY: [aligned, end) lies inside `v`'s allocation, which
            // outlives the call; MADV_HUGEPAGE changes no contents (the pages
            // stay zero) and its failure is harmless (the advice is a hint,
            // the result is ignored).
            unsafe {
                libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

/// An `n1 × n2` zero matrix on [`zeroed_huge`] storage.
pub fn zeroed_matrix(n1: usize, n2: usize) -> DMatrix<f64> {
    DMatrix::from_vec(n1, n2, zeroed_huge(n1 * n2))
}

/// Points with their squared norms `‖x_i‖²/d` supplied by the caller (as
/// [`row_norms`](crate::kernel::row_norms) computes them), so that a caller
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

impl<'a, P: Into<AnyPoints<'a>>> From<P> for NormedPoints<'a> {
    fn from(p: P) -> Self {
        NormedPoints {
            points: p.into(),
            norms: None,
        }
    }
}

/// A read-only strided matrix, the operand type of [`gemm()`].
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T: Scalar = f64> {
    pub(crate) data: &'a [T],
    rows: usize,
    cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a, T: Scalar> MatRef<'a, T> {
    /// A strided view over `data`: element `(i, j)` is `data[i*rs + j*cs]`.
    ///
    /// # Panics
    /// If the last element lies outside `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * rs + (cols - 1) * cs < data.len(), "MatRef out of bounds");
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
    /// A column-major nalgebra matrix.
    pub fn from_dmatrix(m: &'a DMatrix<T>) -> Self {
        Self::new(m.as_slice(), m.nrows(), m.ncols(), 1, m.nrows())
    }
    /// A row-major `rows × cols` buffer.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
    /// The transpose (free: swaps the strides).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            data: self.data,
        }
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Element `(i, j)`.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.rs + j * self.cs]
    }
    /// Rows `r0..r0 + m` (same data, same strides).
    ///
    /// # Panics
    /// If the rows lie outside the view.
    pub(crate) fn row_range(self, r0: usize, m: usize) -> Self {
        assert!(r0 + m <= self.rows, "MatRef rows out of range");
        Self::new(
            &self.data[(r0 * self.rs).min(self.data.len())..],
            m,
            self.cols,
            self.rs,
            self.cs,
        )
    }
}

impl<'a> MatRef<'a, f64> {
    /// A points view (any strides).
    pub fn from_points(v: &PointsView<'a>) -> Self {
        let (rs, cs) = v.strides();
        let (rows, cols) = v.shape();
        // Safety of the slice: the view was built from a slice covering all
        // its elements; rebuild that slice from its data pointer.
        let len = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        };
        // SAFETY: nalgebra guarantees the view's elements lie within one
        // allocation starting at `as_ptr()`; `len` covers exactly them.
        let data = unsafe { std::slice::from_raw_parts(v.as_ptr(), len) };
        Self::new(data, rows, cols, rs, cs)
    }
}

/// A mutable strided matrix, the destination of [`gemm()`].
#[derive(Debug)]
pub struct MatMut<'a, T: Scalar = f64> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T: Scalar> MatMut<'a, T> {
    /// A strided mutable view over `data`.
    ///
    /// # Panics
    /// If the last element lies outside `data`. Strides must not make two
    /// elements alias (the constructors below never do).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * rs + (cols - 1) * cs < data.len(), "MatMut out of bounds");
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
    /// A column-major nalgebra matrix.
    pub fn from_dmatrix(m: &'a mut DMatrix<T>) -> Self {
        let (r, c) = m.shape();
        Self::new(m.as_mut_slice(), r, c, 1, r)
    }
    /// The underlying buffer (all of it, whatever the strides).
    pub(crate) fn into_slice(self) -> &'a mut [T] {
        self.data
    }
    /// A row-major `rows × cols` buffer.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
    /// The transpose (free).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            data: self.data,
        }
    }
}

/// `Σ a_i b_i` in f64 with eight independent accumulators, so that the loop
/// vectorises instead of waiting on one add chain (a fixed order: the
/// result depends on the inputs only, never on threads).
///
/// # Panics
/// If the lengths differ.
#[inline]
pub fn dot<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths");
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k].into() * y[k].into();
        }
    }
    let mut tail = 0.0;
    for (&x, &y) in ra.iter().zip(rb) {
        tail += x.into() * y.into();
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Flop count above which [`gemm()`] runs on the rayon pool.
const PARALLEL_FLOPS: usize = 1 << 20;

/// `c ← beta·c + alpha·a·b` (BLAS semantics; `beta = 0` never reads `c`, so
/// an uninitialised or NaN-holding destination is fine).
///
/// Runs on the `gemm` crate, in parallel on the current rayon pool when the
/// product is large; results do not depend on the thread count (the crate
/// splits the output, never the inner dimension).
///
/// # Panics
/// If the shapes do not agree.
pub fn gemm<T: Scalar>(c: MatMut<'_, T>, alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions");
    assert_eq!((c.rows, c.cols), (a.rows, b.cols), "gemm: output shape");
    let flops = 2 * c.rows * c.cols * a.cols;
    let parallel = flops >= PARALLEL_FLOPS && rayon::current_num_threads() > 1;
    let (rows, cols, rs, cs) = (c.rows, c.cols, c.rs, c.cs);
    // SAFETY: `c` was bounds-checked at construction and is a unique borrow,
    // so every element it addresses is valid for writes and aliases neither
    // `a` nor `b`.
    unsafe { gemm_raw(c.data.as_mut_ptr(), rows, cols, rs, cs, alpha, a, b, beta, parallel) }
}

/// [`gemm()`] with `beta = 0` on the calling thread only, into a destination
/// given by its pointer and strides: for parallel tasks that each write a
/// disjoint, interleaved part of one matrix (rows of a column-major matrix),
/// which no `&mut` slice can describe.
///
/// # Safety
/// Element `(i, j)` of the destination, `c.add(i*rs + j*cs)`, must be valid
/// for writes for every `i < a.rows()`, `j < b.cols()`, and nothing else may
/// read or write those elements during the call.
///
/// # Panics
/// If the inner dimensions differ.
pub(crate) unsafe fn gemm_seq_raw<T: Scalar>(
    c: *mut T,
    rs: usize,
    cs: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions");
    // SAFETY: forwarded from the caller.
    unsafe { gemm_raw(c, a.rows, b.cols, rs, cs, alpha, a, b, T::ZERO, false) }
}

/// The one call into the `gemm` crate.
///
/// # Safety
/// As [`gemm_seq_raw`], for a `rows × cols` destination; the shapes agree.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Scalar>(
    c: *mut T,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    parallel: bool,
) {
    let (m, n, k) = (rows, cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: in bounds by the caller's contract.
                let x = unsafe { &mut *c.add(i * rs + j * cs) };
                *x = if beta == T::ZERO { T::ZERO } else { beta * *x };
            }
        }
        return;
    }
    let par = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller guarantees the destination; `a` and `b` were
    // bounds-checked at construction. The gemm crate's naming is reversed
    // from BLAS: dst = alpha·dst + beta·lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            cs as isize,
            rs as isize,
            beta != T::ZERO,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_nalgebra_with_transposes_and_accumulate() {
        let a = DMatrix::from_fn(37, 19, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let b = DMatrix::from_fn(23, 19, |i, j| ((i * 5 + j) % 13) as f64 * 0.25);
        let mut c = DMatrix::from_element(37, 23, 1.0);
        gemm(
            MatMut::from_dmatrix(&mut c),
            2.0,
            MatRef::from_dmatrix(&a),
            MatRef::from_dmatrix(&b).t(),
            0.5,
        );
        let want = DMatrix::from_element(37, 23, 0.5) + 2.0 * &a * b.transpose();
        assert!((c - want).abs().max() < 1e-12);
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0usize, 1, 7, 8, 9, 63, 784] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, &y)| x * f64::from(y)).sum();
            let b64: Vec<f64> = b.iter().map(|&y| f64::from(y)).collect();
            assert!((dot(&a, &b64) - want).abs() <= 1e-12 * (1.0 + want.abs()), "{n}");
            let sq: f64 = b.iter().map(|&y| f64::from(y) * f64::from(y)).sum();
            assert!((dot(&b, &b) - sq).abs() <= 1e-12 * (1.0 + sq), "{n}");
        }
    }

    #[test]
    fn row_major_views_agree_with_column_major() {
        let a = DMatrix::from_fn(5, 4, |i, j| (i * 4 + j) as f64);
        let rm: Vec<f64> = (0..20).map(|x| x as f64).collect();
        let v1 = points(&a);
        let v2 = points_row_major(&rm, 5, 4);
        assert_eq!(v1, v2);
        let r = MatRef::from_points(&v2);
        assert_eq!(r.at(3, 2), 14.0);
    }
}
