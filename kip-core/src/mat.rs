//! Strided matrix views, checked when they are made.
//!
//! Element `(i, j)` of a view lives at `i·rs + j·cs` elements from its
//! start, so a transpose is the same buffer with its strides swapped and a
//! row-major buffer needs no copy. The views hold a pointer, not a slice:
//! a view of rows `0..5` of a column-major matrix spans, between its
//! columns, elements that another view (rows `5..10`) may borrow mutably at
//! the same time; only the view's own elements are ever touched.
//!
//! # Invariants (what [`gemm()`](crate::gemm()) relies on)
//!
//! * Every element `(i, j)`, `i < rows`, `j < cols`, lies inside the buffer
//!   the view borrows. [`MatRef::new`] and [`MatMut::new`] check it with
//!   overflow-checked arithmetic; views converted from nalgebra carry
//!   nalgebra's guarantee.
//! * No two elements of a [`MatMut`] share memory. [`MatMut::new`] accepts
//!   strides in which one stride is at least 1 and the other at least that
//!   stride times the extent of its dimension (column-major, row-major and
//!   sub-blocks of either); nalgebra's mutable views are checked by nalgebra
//!   for the same property.
//! * The stride of a dimension of extent 0 or 1 is never used; it is stored
//!   as 1, so every stride handed on fits an `isize`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Mul;

use nalgebra::{DMatrix, Dim, MatrixView, MatrixViewMut};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type of the views and of [`gemm()`](crate::gemm()): `f64`
/// (everything by default) or `f32` (the single-precision products).
///
/// Sealed: the `gemm` crate's kernels exist for exactly these two types,
/// so no other crate can implement it (E0277: the private supertrait is
/// missing):
///
/// ```compile_fail,E0277
/// #[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
/// struct Half(f32);
/// impl std::ops::Mul for Half {
///     type Output = Half;
///     fn mul(self, o: Half) -> Half {
///         Half(self.0 * o.0)
///     }
/// }
/// impl kip_core::Scalar for Half {
///     const ZERO: Self = Half(0.0);
///     const ONE: Self = Half(1.0);
///     fn of_f64(v: f64) -> Self {
///         Half(v as f32)
///     }
///     fn as_f64(self) -> f64 {
///         f64::from(self.0)
///     }
/// }
/// ```
pub trait Scalar:
    sealed::Sealed + nalgebra::Scalar + Copy + PartialEq + PartialOrd + Send + Sync + fmt::Debug + Mul<Output = Self>
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The nearest value of this type (`as` semantics: overflow gives ±∞).
    fn of_f64(v: f64) -> Self;
    /// The value as `f64` (exact).
    fn as_f64(self) -> f64;
    /// `dst[k] = of_f64(src[k])` (equal lengths; AVX-512 / AVX2 where the
    /// CPU has them: for conversions inside parallel closures, which do not
    /// inherit a caller's target features).
    fn slice_of_f64(src: &[f64], dst: &mut [Self]);
    /// `dst[k] = src[k] as f64` (equal lengths; vectorised as above).
    fn slice_as_f64(src: &[Self], dst: &mut [f64]);
    /// `dst[k] = src[k]` in this type, from `f32` (exact; vectorised as
    /// above): how stored images are gathered.
    fn slice_from_f32(src: &[f32], dst: &mut [Self]);
}

#[inline(always)]
fn narrow_impl(src: &[f64], dst: &mut [f32]) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = v as f32;
    }
}

#[inline(always)]
fn widen_impl(src: &[f32], dst: &mut [f64]) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = f64::from(v);
    }
}

crate::multiversion! {
    /// `f64` to `f32`, rounding to nearest.
    fn narrow(src: &[f64], dst: &mut [f32]) => narrow_impl
}

crate::multiversion! {
    /// `f32` to `f64`, exactly.
    fn widen(src: &[f32], dst: &mut [f64]) => widen_impl
}

impl Scalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    fn slice_of_f64(src: &[f64], dst: &mut [f64]) {
        dst.copy_from_slice(src);
    }
    fn slice_as_f64(src: &[f64], dst: &mut [f64]) {
        dst.copy_from_slice(src);
    }
    fn slice_from_f32(src: &[f32], dst: &mut [f64]) {
        assert_eq!(src.len(), dst.len(), "slice_from_f32: lengths");
        widen(src, dst);
    }
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
    fn slice_of_f64(src: &[f64], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "slice_of_f64: lengths");
        narrow(src, dst);
    }
    fn slice_as_f64(src: &[f32], dst: &mut [f64]) {
        assert_eq!(src.len(), dst.len(), "slice_as_f64: lengths");
        widen(src, dst);
    }
    fn slice_from_f32(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

/// Why a view was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// An element of the view lies outside the buffer (or its offset does
    /// not fit a `usize`).
    #[error("a {rows} x {cols} view with strides ({rs}, {cs}) does not fit a buffer of {len} elements")]
    OutOfBounds {
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Row stride.
        rs: usize,
        /// Column stride.
        cs: usize,
        /// Length of the buffer.
        len: usize,
    },
    /// Two elements of a mutable view would share memory.
    #[error("a mutable {rows} x {cols} view with strides ({rs}, {cs}) would alias its own elements")]
    Aliasing {
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Row stride.
        rs: usize,
        /// Column stride.
        cs: usize,
    },
}

/// Strides with the stride of every dimension of extent ≤ 1 set to 1 (it
/// is never used to address an element).
fn normalised(rows: usize, cols: usize, rs: usize, cs: usize) -> (usize, usize) {
    (if rows <= 1 { 1 } else { rs }, if cols <= 1 { 1 } else { cs })
}

/// Elements from the first to one past the last element of the view
/// (0 for an empty view); `None` on overflow.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// The bounds check of both view types.
fn check_bounds(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<(), ViewError> {
    match span(rows, cols, rs, cs) {
        Some(s) if s <= len => Ok(()),
        _ => Err(ViewError::OutOfBounds {
            rows,
            cols,
            rs,
            cs,
            len,
        }),
    }
}

/// The non-aliasing rule of [`MatMut::new`] (strides already normalised):
/// with the smaller stride `s` over `n` elements and the larger `S`,
/// `s ≥ 1` and `S ≥ s·n` make `i·s + j·S` distinct for distinct `(i, j)`.
fn check_no_alias(rows: usize, cols: usize, rs: usize, cs: usize) -> Result<(), ViewError> {
    let ok = if rows <= 1 || cols <= 1 {
        // One line of elements: distinct as long as it advances.
        rows.saturating_mul(cols) <= 1 || (if rows <= 1 { cs } else { rs }) >= 1
    } else {
        let ((small, n_small), big) = if rs <= cs { ((rs, rows), cs) } else { ((cs, cols), rs) };
        small >= 1 && small.checked_mul(n_small).is_some_and(|need| big >= need)
    };
    if ok {
        Ok(())
    } else {
        Err(ViewError::Aliasing { rows, cols, rs, cs })
    }
}

/// The shape methods both view types share: the dense constructors, the
/// transpose, the extents and the strides.
macro_rules! view_shape {
    ($data:ty) => {
        /// A row-major `rows × cols` buffer.
        ///
        /// # Panics
        /// If `data` holds fewer than `rows·cols` elements.
        pub fn row_major(data: $data, rows: usize, cols: usize) -> Self {
            Self::new(data, rows, cols, cols, 1)
        }

        /// A column-major `rows × cols` buffer.
        ///
        /// # Panics
        /// If `data` holds fewer than `rows·cols` elements.
        pub fn col_major(data: $data, rows: usize, cols: usize) -> Self {
            Self::new(data, rows, cols, 1, rows)
        }

        /// The transpose (free: swaps the strides).
        pub fn t(self) -> Self {
            Self {
                rows: self.cols,
                cols: self.rows,
                rs: self.cs,
                cs: self.rs,
                ..self
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

        /// Distance between consecutive rows, in elements (1 for a view of
        /// at most one row).
        pub fn row_stride(&self) -> usize {
            self.rs
        }

        /// Distance between consecutive columns, in elements (1 for a view
        /// of at most one column).
        pub fn col_stride(&self) -> usize {
            self.cs
        }
    };
}

/// A read-only strided matrix: an operand of [`gemm()`](crate::gemm()).
///
/// Cheap to copy (a pointer and four numbers); `Send` and `Sync` like the
/// `&[T]` it borrows.
pub struct MatRef<'a, T: Scalar = f64> {
    ptr: *const T,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    _borrow: PhantomData<&'a [T]>,
}

// SAFETY: a MatRef is a shared borrow of `T`s (as `&'a [T]`), which is
// `Send`/`Sync` exactly when `T: Sync`.
unsafe impl<T: Scalar> Send for MatRef<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Scalar> Sync for MatRef<'_, T> {}

impl<T: Scalar> Clone for MatRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Scalar> Copy for MatRef<'_, T> {}

impl<T: Scalar> fmt::Debug for MatRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatRef")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("strides", &(self.rs, self.cs))
            .finish()
    }
}

impl<'a, T: Scalar> MatRef<'a, T> {
    /// A strided view over `data`: element `(i, j)` is `data[i·rs + j·cs]`.
    ///
    /// # Errors
    /// [`ViewError::OutOfBounds`] if an element lies outside `data` (checked
    /// without overflow).
    pub fn try_new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self, ViewError> {
        check_bounds(data.len(), rows, cols, rs, cs)?;
        let (rs, cs) = normalised(rows, cols, rs, cs);
        Ok(Self {
            ptr: data.as_ptr(),
            rows,
            cols,
            rs,
            cs,
            _borrow: PhantomData,
        })
    }

    /// [`MatRef::try_new`] for strides known to fit.
    ///
    /// # Panics
    /// Where [`MatRef::try_new`] returns an error.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self::try_new(data, rows, cols, rs, cs).unwrap_or_else(|e| panic!("MatRef::new: {e}"))
    }

    view_shape!(&'a [T]);

    /// Pointer to element `(0, 0)`; elements are addressed as the module
    /// docs say and valid for reads for the view's lifetime.
    pub fn as_ptr(&self) -> *const T {
        self.ptr
    }

    /// Element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` lies outside the view.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> T {
        assert!(
            i < self.rows && j < self.cols,
            "MatRef::at({i}, {j}) outside a {} x {} view",
            self.rows,
            self.cols
        );
        // SAFETY: (i, j) is an element of the view (checked just above),
        // which lies inside the borrowed buffer (type invariant).
        unsafe { *self.ptr.add(i * self.rs + j * self.cs) }
    }

    /// Rows `r0..r0 + m` (same strides).
    ///
    /// # Panics
    /// If the rows lie outside the view.
    pub fn row_range(self, r0: usize, m: usize) -> Self {
        assert!(
            r0.checked_add(m).is_some_and(|end| end <= self.rows),
            "MatRef::row_range({r0}, {m}) outside {} rows",
            self.rows
        );
        let ptr = if m == 0 || self.cols == 0 {
            self.ptr
        } else {
            // SAFETY: row r0 < rows is part of the view, so its offset lies
            // inside the borrowed buffer.
            unsafe { self.ptr.add(r0 * self.rs) }
        };
        Self { ptr, rows: m, ..self }
    }

    /// Row `i` as a slice, when rows are contiguous (column stride 1, or a
    /// single column); `None` otherwise.
    ///
    /// # Panics
    /// If `i` is not a row of the view.
    pub fn row_slice(&self, i: usize) -> Option<&'a [T]> {
        assert!(i < self.rows, "MatRef::row_slice({i}) outside {} rows", self.rows);
        // SAFETY: with column stride 1 the row's `cols` elements are
        // consecutive elements of the view, inside the borrowed buffer.
        (self.cs == 1).then(|| unsafe { std::slice::from_raw_parts(self.ptr.add(i * self.rs), self.cols) })
    }

    /// Column `j` as a slice, when columns are contiguous (row stride 1, or
    /// a single row); `None` otherwise.
    ///
    /// # Panics
    /// If `j` is not a column of the view.
    pub fn col_slice(&self, j: usize) -> Option<&'a [T]> {
        self.t().row_slice(j)
    }
}

impl<'a, T: Scalar> From<&'a DMatrix<T>> for MatRef<'a, T> {
    /// A column-major nalgebra matrix.
    fn from(m: &'a DMatrix<T>) -> Self {
        Self::col_major(m.as_slice(), m.nrows(), m.ncols())
    }
}

impl<'a, T: Scalar, R: Dim, C: Dim, RS: Dim, CS: Dim> From<MatrixView<'a, T, R, C, RS, CS>> for MatRef<'a, T> {
    /// Any nalgebra view (any strides).
    fn from(v: MatrixView<'a, T, R, C, RS, CS>) -> Self {
        let (rows, cols) = v.shape();
        let (rs, cs) = v.strides();
        let (rs, cs) = normalised(rows, cols, rs, cs);
        Self {
            // nalgebra's invariant: every element of the view lies in one
            // allocation that outlives 'a and may be read.
            ptr: v.as_ptr(),
            rows,
            cols,
            rs,
            cs,
            _borrow: PhantomData,
        }
    }
}

/// A mutable strided matrix: the destination of [`gemm()`](crate::gemm()).
///
/// No two of its elements share memory (checked by [`MatMut::new`]).
pub struct MatMut<'a, T: Scalar = f64> {
    ptr: *mut T,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: a MatMut is a unique borrow of `T`s (as `&'a mut [T]`), which is
// `Send` when `T: Send` and `Sync` when `T: Sync`.
unsafe impl<T: Scalar> Send for MatMut<'_, T> {}
// SAFETY: as above (shared access to a MatMut gives no access to its data).
unsafe impl<T: Scalar> Sync for MatMut<'_, T> {}

impl<T: Scalar> fmt::Debug for MatMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatMut")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("strides", &(self.rs, self.cs))
            .finish()
    }
}

impl<'a, T: Scalar> MatMut<'a, T> {
    /// A strided mutable view over `data`: element `(i, j)` is
    /// `data[i·rs + j·cs]`.
    ///
    /// # Errors
    /// [`ViewError::OutOfBounds`] if an element lies outside `data`;
    /// [`ViewError::Aliasing`] unless one stride is at least 1 and the other
    /// at least that stride times the extent of its dimension (so that no
    /// two elements share memory).
    pub fn try_new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self, ViewError> {
        check_bounds(data.len(), rows, cols, rs, cs)?;
        let (rs, cs) = normalised(rows, cols, rs, cs);
        check_no_alias(rows, cols, rs, cs)?;
        Ok(Self {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            rs,
            cs,
            _borrow: PhantomData,
        })
    }

    /// [`MatMut::try_new`] for strides known to fit.
    ///
    /// # Panics
    /// Where [`MatMut::try_new`] returns an error (before anything is
    /// written).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self::try_new(data, rows, cols, rs, cs).unwrap_or_else(|e| panic!("MatMut::new: {e}"))
    }

    view_shape!(&'a mut [T]);

    /// Pointer to element `(0, 0)`; the view's elements are valid for
    /// reads and writes, and borrowed by nothing else, for its lifetime.
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr
    }

    /// All elements as one slice in column-major order, when the view is a
    /// dense column-major matrix (row stride 1, column stride = rows);
    /// `None` otherwise.
    pub fn into_col_major_slice(self) -> Option<&'a mut [T]> {
        let dense = self.rows == 0 || self.cols == 0 || (self.rs == 1 && (self.cols == 1 || self.cs == self.rows));
        // SAFETY: a dense column-major view's elements are exactly the
        // `rows·cols` consecutive elements from `ptr`, uniquely borrowed.
        dense.then(|| unsafe { std::slice::from_raw_parts_mut(self.ptr, self.rows * self.cols) })
    }
}

impl<'a, T: Scalar> From<&'a mut DMatrix<T>> for MatMut<'a, T> {
    /// A column-major nalgebra matrix.
    fn from(m: &'a mut DMatrix<T>) -> Self {
        let (r, c) = m.shape();
        Self::col_major(m.as_mut_slice(), r, c)
    }
}

impl<'a, T: Scalar, R: Dim, C: Dim, RS: Dim, CS: Dim> From<MatrixViewMut<'a, T, R, C, RS, CS>> for MatMut<'a, T> {
    /// Any nalgebra mutable view: nalgebra checks at construction that its
    /// elements lie in the buffer and do not alias.
    fn from(mut v: MatrixViewMut<'a, T, R, C, RS, CS>) -> Self {
        let (rows, cols) = v.shape();
        let (rs, cs) = v.strides();
        let (rs, cs) = normalised(rows, cols, rs, cs);
        Self {
            ptr: v.as_mut_ptr(),
            rows,
            cols,
            rs,
            cs,
            _borrow: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_the_elements_their_strides_name() {
        let data: Vec<f64> = (0..20).map(f64::from).collect();
        let rm = MatRef::row_major(&data, 4, 5);
        let cm = MatRef::col_major(&data, 5, 4);
        assert_eq!(rm.at(2, 3), 13.0);
        assert_eq!(cm.t().at(2, 3), 13.0);
        assert_eq!(rm.row_slice(1), Some(&data[5..10]));
        assert_eq!(rm.col_slice(1), None);
        assert_eq!(rm.row_range(1, 2).at(1, 0), 10.0);
        let m = DMatrix::from_fn(3, 4, |i, j| (i * 10 + j) as f64);
        let sub = m.view((1, 1), (2, 2));
        assert_eq!(MatRef::from(sub).at(1, 1), 22.0);
        assert_eq!(MatRef::from(&m).col_slice(2), Some(&m.as_slice()[6..9]));
    }

    #[test]
    fn out_of_bounds_and_overflowing_strides_are_refused() {
        let mut data = vec![0.0f64; 12];
        let oob = |r: Result<MatRef<'_, f64>, ViewError>| matches!(r, Err(ViewError::OutOfBounds { .. }));
        assert!(oob(MatRef::try_new(&data, 4, 4, 1, 4)));
        assert!(oob(MatRef::try_new(&data, 3, 5, 4, 1)));
        // (rows − 1)·rs overflows usize: wrapping arithmetic would accept it.
        assert!(oob(MatRef::try_new(&data, 3, 2, usize::MAX / 2 + 1, 1)));
        assert!(oob(MatRef::try_new(&data, 2, 2, usize::MAX, usize::MAX)));
        assert!(oob(MatRef::try_new(&data, 2, 3, 1, usize::MAX / 2)));
        assert!(matches!(
            MatMut::try_new(&mut data, 2, 2, usize::MAX, 1),
            Err(ViewError::OutOfBounds { .. })
        ));
        assert!(matches!(
            MatMut::try_new(&mut data, 13, 1, 1, 1),
            Err(ViewError::OutOfBounds { .. })
        ));
        // Empty views fit any buffer, including an empty one.
        assert!(MatRef::try_new(&data[..0], 0, 5, 7, 9).is_ok());
        assert!(MatMut::try_new(&mut data[..0], 5, 0, 7, 9).is_ok());
    }

    #[test]
    fn aliasing_mutable_strides_are_refused() {
        let mut data = vec![0.0f64; 16];
        for (rows, cols, rs, cs) in [
            (3, 2, 0, 1), // every row is the same memory
            (2, 3, 1, 0), // every column is the same memory
            (2, 2, 0, 0),
            (4, 3, 1, 2), // column j+1 overlaps column j
            (3, 4, 2, 1), // row i+1 overlaps row i
            (2, 2, 1, 1), // (0, 1) and (1, 0) are one element
        ] {
            assert!(
                matches!(
                    MatMut::try_new(&mut data, rows, cols, rs, cs),
                    Err(ViewError::Aliasing { .. })
                ),
                "{rows}x{cols} strides ({rs}, {cs})"
            );
        }
        // Read-only views may repeat elements (a broadcast row).
        assert!(MatRef::try_new(&data, 3, 2, 0, 1).is_ok());
        // Dense and strided layouts without overlap are accepted.
        for (rows, cols, rs, cs) in [
            (4, 4, 1, 4),
            (4, 4, 4, 1),
            (2, 3, 1, 5),
            (2, 3, 6, 2),
            (1, 8, 0, 2),
            (8, 1, 2, 0),
        ] {
            assert!(
                MatMut::try_new(&mut data, rows, cols, rs, cs).is_ok(),
                "{rows}x{cols} ({rs}, {cs})"
            );
        }
    }

    #[test]
    #[should_panic(expected = "alias")]
    fn new_panics_before_any_write_on_aliasing_strides() {
        let mut data = vec![0.0f64; 4];
        let _ = MatMut::new(&mut data, 2, 2, 0, 1);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn at_panics_outside_the_view() {
        let data = vec![0.0f64; 4];
        let _ = MatRef::row_major(&data, 2, 2).at(0, 2);
    }

    #[test]
    fn unit_dimension_strides_are_normalised() {
        let data = vec![1.0f64; 4];
        let v = MatRef::try_new(&data, 1, 4, usize::MAX, 1).unwrap();
        assert_eq!((v.row_stride(), v.col_stride()), (1, 1));
        let mut data = vec![1.0f64; 4];
        let m = MatMut::try_new(&mut data, 4, 1, 1, usize::MAX).unwrap();
        assert_eq!(m.col_stride(), 1);
        assert!(m.into_col_major_slice().is_some());
    }
}
