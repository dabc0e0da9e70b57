//! The workspace's one wrapper around the `gemm` crate.

use crate::mat::{MatMut, MatRef, Scalar};

/// Flop count (`2·m·n·k`) from which [`gemm()`] runs on the rayon pool.
const PARALLEL_FLOPS: usize = 1 << 20;

/// `c ← alpha·a·b + beta·c` (BLAS's `gemm`, in BLAS's argument order).
/// `beta = 0` never reads `c`, so an uninitialised or NaN-holding
/// destination is fine.
///
/// Runs on the `gemm` crate (AVX-512 or AVX2 kernels chosen at run time),
/// on the current rayon pool when the product is large. The result does not
/// depend on the thread count: the crate splits the output, never the inner
/// dimension.
///
/// # Panics
/// If the shapes do not agree (before anything is written).
///
/// # Examples
/// ```
/// use kip_core::{gemm, MatMut, MatRef};
/// let (a, b) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]);
/// let mut c = [10.0; 4];
/// gemm(1.0, MatRef::row_major(&a, 2, 2), MatRef::row_major(&b, 2, 2), 0.5, MatMut::row_major(&mut c, 2, 2));
/// assert_eq!(c, [6.0, 7.0, 8.0, 9.0]);
/// ```
pub fn gemm<T: Scalar>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, mut c: MatMut<'_, T>) {
    assert_eq!(a.cols(), b.rows(), "gemm: inner dimensions");
    assert_eq!((c.rows(), c.cols()), (a.rows(), b.cols()), "gemm: output shape");
    let flops = 2usize
        .saturating_mul(c.rows())
        .saturating_mul(c.cols())
        .saturating_mul(a.cols());
    let parallel = flops >= PARALLEL_FLOPS && rayon::current_num_threads() > 1;
    let (rs, cs) = (c.row_stride(), c.col_stride());
    // SAFETY: `c` is a checked, non-aliasing view that is uniquely borrowed,
    // so every element it addresses is valid for writes and is read or
    // written by nothing else (in particular not through `a` or `b`, which
    // are shared borrows); the shapes agree (asserted above).
    unsafe { gemm_raw(c.as_mut_ptr(), rs, cs, alpha, a, b, beta, parallel) }
}

/// [`gemm()`] on the calling thread only, whatever its size: for work that
/// is already split over the rayon pool (one task per chunk of images), so
/// that no product nests a second level of parallelism.
///
/// # Panics
/// If the shapes do not agree (before anything is written).
pub fn gemm_seq<T: Scalar>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, mut c: MatMut<'_, T>) {
    assert_eq!(a.cols(), b.rows(), "gemm: inner dimensions");
    assert_eq!((c.rows(), c.cols()), (a.rows(), b.cols()), "gemm: output shape");
    let (rs, cs) = (c.row_stride(), c.col_stride());
    // SAFETY: as in `gemm`: a checked, uniquely borrowed destination whose
    // shape agrees with the operands.
    unsafe { gemm_raw(c.as_mut_ptr(), rs, cs, alpha, a, b, beta, false) }
}

/// [`gemm()`] with `beta = 0` on the calling thread only, into a destination
/// given by its pointer and strides: for parallel tasks that each write a
/// disjoint, interleaved part of one matrix (rows of a column-major matrix),
/// which no `&mut` slice can describe.
///
/// # Safety
/// Element `(i, j)` of the destination, `c.add(i·rs + j·cs)`, must be valid
/// for writes for every `i < a.rows()`, `j < b.cols()`; these elements must
/// be distinct, and nothing else may read or write them during the call.
///
/// # Panics
/// If the inner dimensions differ.
pub unsafe fn gemm_seq_raw<T: Scalar>(c: *mut T, rs: usize, cs: usize, alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>) {
    assert_eq!(a.cols(), b.rows(), "gemm: inner dimensions");
    // SAFETY: forwarded from the caller.
    unsafe { gemm_raw(c, rs, cs, alpha, a, b, T::ZERO, false) }
}

/// The one call into the `gemm` crate.
///
/// # Safety
/// As [`gemm_seq_raw`], for the `a.rows() × b.cols()` destination; the
/// inner dimensions agree.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Scalar>(
    c: *mut T,
    rs: usize,
    cs: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    parallel: bool,
) {
    let (m, n, k) = (a.rows(), b.cols(), a.cols());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: an element of the destination (caller's contract).
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
    // The views' strides are at most their buffers' lengths (or normalised
    // to 1), so they fit an isize.
    let s = |x: usize| x as isize;
    // SAFETY: the caller guarantees the destination; `a` and `b` are valid
    // for reads over their shapes and strides (MatRef's invariant). The
    // `gemm` crate's naming is reversed from BLAS: dst = alpha·dst +
    // beta·lhs·rhs, so BLAS's beta goes in its `alpha` and vice versa.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            s(cs),
            s(rs),
            beta != T::ZERO,
            a.as_ptr(),
            s(a.col_stride()),
            s(a.row_stride()),
            b.as_ptr(),
            s(b.col_stride()),
            s(b.row_stride()),
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
    use nalgebra::DMatrix;

    #[test]
    fn gemm_matches_nalgebra_with_transposes_and_accumulate() {
        let a = DMatrix::from_fn(37, 19, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let b = DMatrix::from_fn(23, 19, |i, j| ((i * 5 + j) % 13) as f64 * 0.25);
        let at = a.transpose();
        let want = DMatrix::from_element(37, 23, 0.5) + 2.0 * &a * b.transpose();
        for lhs in [MatRef::from(&a), MatRef::from(&at).t()] {
            let mut c = DMatrix::from_element(37, 23, 1.0);
            gemm(2.0, lhs, MatRef::from(&b).t(), 0.5, MatMut::from(&mut c));
            assert!((c - &want).abs().max() < 1e-12);
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_the_destination_and_k_zero_scales() {
        let a = DMatrix::<f32>::from_fn(70, 90, |i, j| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = DMatrix::<f32>::from_fn(90, 80, |i, j| ((i + j * 5) % 13) as f32 - 6.0);
        let mut c = DMatrix::<f32>::from_element(70, 80, f32::NAN);
        gemm(1.0, MatRef::from(&a), MatRef::from(&b), 0.0, MatMut::from(&mut c));
        assert_eq!(c, &a * &b);
        let e = DMatrix::<f64>::zeros(3, 0);
        let mut d = DMatrix::<f64>::from_element(3, 3, 2.0);
        gemm(1.0, MatRef::from(&e), MatRef::from(&e).t(), 0.5, MatMut::from(&mut d));
        assert_eq!(d, DMatrix::from_element(3, 3, 1.0));
    }

    #[test]
    fn nalgebra_sub_views_are_operands_and_destinations() {
        let a = DMatrix::from_fn(6, 5, |i, j| (i * 5 + j) as f64);
        let mut c = DMatrix::from_element(6, 6, -1.0);
        {
            let (mut top, _bottom) = c.rows_range_pair_mut(0..3, 3..6);
            let dst = top.columns_mut(1, 3);
            gemm(
                1.0,
                MatRef::from(a.rows(0, 3)),
                MatRef::from(a.rows(2, 3)).t(),
                0.0,
                MatMut::from(dst),
            );
        }
        let want = a.rows(0, 3) * a.rows(2, 3).transpose();
        assert_eq!(c.view((0, 1), (3, 3)), want);
        assert_eq!(c[(0, 0)], -1.0);
        assert_eq!(c[(3, 1)], -1.0);
    }

    #[test]
    #[should_panic(expected = "output shape")]
    fn shape_mismatch_panics_before_writing() {
        let a = DMatrix::<f64>::zeros(2, 3);
        let mut c = DMatrix::<f64>::zeros(3, 3);
        gemm(1.0, MatRef::from(&a), MatRef::from(&a).t(), 0.0, MatMut::from(&mut c));
    }
}
