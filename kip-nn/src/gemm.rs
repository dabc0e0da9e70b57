//! The one safe wrapper around the `gemm` crate's matrix product.
//!
//! `gemm::gemm` computes `dst = alpha·dst + beta·lhs·rhs` (the reverse of
//! BLAS naming) on raw pointers with arbitrary strides, so a transposed
//! operand is the same buffer with its strides swapped: no copies.

use nalgebra::{DMatrixView, DMatrixViewMut};

use crate::real::Real;

/// Products with at least this many multiply-adds run on the rayon pool.
const PARALLEL_FLOPS: usize = 1 << 18;

/// A read-only matrix operand: a zero-copy view, possibly transposed.
pub(crate) struct Operand<'a, T: Real> {
    view: DMatrixView<'a, T>,
    transposed: bool,
}

impl<T: Real> Clone for Operand<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Real> Copy for Operand<'_, T> {}

impl<'a, T: Real> Operand<'a, T> {
    /// The view as it is.
    pub(crate) fn n(view: DMatrixView<'a, T>) -> Self {
        Self {
            view,
            transposed: false,
        }
    }

    /// The view's transpose.
    pub(crate) fn t(view: DMatrixView<'a, T>) -> Self {
        Self { view, transposed: true }
    }

    fn rows(&self) -> usize {
        if self.transposed {
            self.view.ncols()
        } else {
            self.view.nrows()
        }
    }

    fn cols(&self) -> usize {
        if self.transposed {
            self.view.nrows()
        } else {
            self.view.ncols()
        }
    }

    /// (row stride, column stride) of the logical matrix, in elements.
    fn strides(&self) -> (isize, isize) {
        let (rs, cs) = self.view.strides();
        let (rs, cs) = (rs as isize, cs as isize);
        if self.transposed {
            (cs, rs)
        } else {
            (rs, cs)
        }
    }
}

/// `dst = beta·dst + alpha·lhs·rhs` (BLAS order; `beta = 0` does not read
/// `dst`, so it may hold garbage such as NaN).
///
/// # Panics
///
/// If the shapes do not conform.
pub(crate) fn gemm<T: Real>(
    mut dst: DMatrixViewMut<'_, T>,
    beta: T,
    alpha: T,
    lhs: Operand<'_, T>,
    rhs: Operand<'_, T>,
) {
    let (m, n, k) = (dst.nrows(), dst.ncols(), lhs.cols());
    assert_eq!(lhs.rows(), m, "gemm: lhs rows");
    assert_eq!(rhs.rows(), k, "gemm: rhs rows");
    assert_eq!(rhs.cols(), n, "gemm: rhs cols");
    if m == 0 || n == 0 {
        return;
    }
    let read_dst = beta != T::ZERO;
    if k == 0 {
        if read_dst {
            dst.iter_mut().for_each(|v| *v *= beta);
        } else {
            dst.fill(T::ZERO);
        }
        return;
    }
    let (dst_rs, dst_cs) = dst.strides();
    let (lhs_rs, lhs_cs) = lhs.strides();
    let (rhs_rs, rhs_cs) = rhs.strides();
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_FLOPS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views are valid for their shapes and strides (nalgebra
    // guarantees it), `dst` is borrowed mutably so it cannot alias the
    // read-only operands, the shapes were checked above, and `T` is `f32` or
    // `f64` (sealed `Real`), both of which `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            read_dst,
            lhs.view.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.view.as_ptr(),
            rhs_cs,
            rhs_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn matches_nalgebra_in_all_transpose_combinations() {
        let a = DMatrix::<f64>::from_fn(5, 3, |i, j| (i * 3 + j) as f64 * 0.1 - 0.4);
        let b = DMatrix::<f64>::from_fn(3, 4, |i, j| (i + 2 * j) as f64 * 0.3 - 1.0);
        let at = a.transpose();
        let bt = b.transpose();
        let want = &a * &b;
        for (l, r) in [
            (Operand::n(a.as_view()), Operand::n(b.as_view())),
            (Operand::t(at.as_view()), Operand::n(b.as_view())),
            (Operand::n(a.as_view()), Operand::t(bt.as_view())),
            (Operand::t(at.as_view()), Operand::t(bt.as_view())),
        ] {
            let mut c = DMatrix::<f64>::from_element(5, 4, f64::NAN);
            gemm(c.as_view_mut(), 0.0, 1.0, l, r);
            assert!((&c - &want).norm() < 1e-12);
            // accumulate: c = 2c + 0.5 a b = 2.5 a b
            gemm(c.as_view_mut(), 2.0, 0.5, l, r);
            assert!((&c - &want * 2.5).norm() < 1e-12);
        }
    }

    #[test]
    fn large_f32_product_runs_in_parallel_and_matches() {
        let a = DMatrix::<f32>::from_fn(70, 90, |i, j| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = DMatrix::<f32>::from_fn(90, 80, |i, j| ((i + j * 5) % 13) as f32 - 6.0);
        let mut c = DMatrix::<f32>::zeros(70, 80);
        gemm(
            c.as_view_mut(),
            0.0,
            1.0,
            Operand::n(a.as_view()),
            Operand::n(b.as_view()),
        );
        assert_eq!(c, &a * &b);
    }
}
