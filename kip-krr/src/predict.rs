//! Prediction `K_ts α`, one-shot or in blocks of test points, and evaluation.

use kip_core::{gemm, MatMut, MatRef};
use kip_kernels::{Kernel, PointsView};
use nalgebra::DMatrix;

use crate::error::{check_finite, shape_err, KrrError, Result};
use crate::metrics::{accuracy, mse_loss};
use crate::ridge::{fit, Ridge};

/// KRR prediction `ŷ_t = K_ts α` (the paper's Eq. 2 with
/// `α = (K_ss + λI)⁻¹ y_s`), one GEMM.
///
/// # Shapes
/// `k_ts`: `n_t × n_s`; `alpha`: `n_s × C` → `n_t × C`.
///
/// # Panics
/// If `k_ts.ncols() != alpha.nrows()`.
///
/// # Examples
/// ```
/// use nalgebra::DMatrix;
/// let k_ts = DMatrix::from_row_slice(1, 2, &[1.0, 2.0]);
/// let alpha = DMatrix::from_row_slice(2, 1, &[3.0, 4.0]);
/// assert!((kip_krr::predict(&k_ts, &alpha)[(0, 0)] - 11.0).abs() < 1e-12);
/// ```
pub fn predict(k_ts: &DMatrix<f64>, alpha: &DMatrix<f64>) -> DMatrix<f64> {
    assert_eq!(
        k_ts.ncols(),
        alpha.nrows(),
        "predict: k_ts columns must equal alpha rows"
    );
    let mut out = DMatrix::zeros(k_ts.nrows(), alpha.ncols());
    gemm(
        1.0,
        MatRef::from(k_ts),
        MatRef::from(alpha),
        0.0,
        MatMut::from(&mut out),
    );
    out
}

/// Check `block` and the shapes shared by the blocked routines.
pub(crate) fn check_block(block: usize) -> Result<()> {
    if block == 0 {
        return Err(KrrError::InvalidParam {
            name: "block",
            value: 0.0,
            expected: "at least 1 row per block",
        });
    }
    Ok(())
}

/// KRR prediction `K_ts α` computed `block` test points at a time, so that at
/// most `block × n_s` entries of `K_ts` exist at once (one reused buffer).
///
/// Blocks run one after the other; each block's Gram matrix and GEMM are
/// parallel inside (no nested pools). The result equals
/// [`predict`]`(&kernel.gram(x_test, x_support), alpha)` up to rounding
/// (the same products, cut into row blocks).
///
/// Arguments come in the order of [`evaluate`]: the support side (points,
/// then what was fitted on them), then the test points.
///
/// # Shapes
/// `x_support`: `n_s × d`; `alpha`: `n_s × C`; `x_test`: `n_t × d` →
/// `n_t × C`.
///
/// # Errors
/// [`KrrError::InvalidParam`] if `block == 0`; [`KrrError::Shape`] if
/// `alpha` does not have `n_s` rows; [`KrrError::NonFinite`] for `alpha`;
/// [`KrrError::Kernel`] for bad points (empty, dimension mismatch,
/// non-finite).
pub fn predict_blocked(
    kernel: &dyn Kernel,
    x_support: PointsView<'_>,
    alpha: &DMatrix<f64>,
    x_test: PointsView<'_>,
    block: usize,
) -> Result<DMatrix<f64>> {
    check_block(block)?;
    let n_s = x_support.nrows();
    if alpha.nrows() != n_s {
        return Err(shape_err(
            "alpha",
            format!("{n_s} x C (one row per support point)"),
            alpha.shape(),
        ));
    }
    check_finite("alpha", alpha.as_slice())?;
    let n_t = x_test.nrows();
    let c = alpha.ncols();
    let mut out = DMatrix::zeros(n_t, c);
    if n_t == 0 {
        // Still validate the support points through the kernel's checks.
        kernel.gram_diag(x_support)?;
        return Ok(out);
    }
    let mut k_block = DMatrix::zeros(block.min(n_t), n_s);
    let mut start = 0;
    while start < n_t {
        let len = block.min(n_t - start);
        kernel.gram_into(x_test.rows(start, len), x_support, &mut k_block)?;
        // Rows start..start+len of the column-major n_t × C output.
        let dst = MatMut::new(&mut out.as_mut_slice()[start..], len, c, 1, n_t);
        gemm(1.0, MatRef::from(&k_block), MatRef::from(alpha), 0.0, dst);
        start += len;
    }
    Ok(out)
}

/// Result of [`evaluate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eval {
    /// Fraction of test points whose argmax prediction is their label.
    pub accuracy: f64,
    /// `½·mean((ŷ − y)²)` over all entries, when targets were given.
    pub loss: Option<f64>,
}

/// Fit KRR on the support set and score it on a test set: accuracy (argmax
/// of `K_ts (K_ss + λI)⁻¹ y_s`, the paper's Eq. 2) and, when targets are
/// given, the reference's loss `½·mean((ŷ − y_t)²)` (Eq. 3's objective).
///
/// `K_ts` is formed `block` test points at a time ([`predict_blocked`]).
///
/// # Shapes
/// `x_support`: `n_s × d`; `y_support`: `n_s × C`; `x_test`: `n_t × d`;
/// `test_labels`: `n_t`; `y_test`: `n_t × C`.
///
/// # Errors
/// As [`fit`] and [`predict_blocked`]; [`KrrError::Shape`] if
/// `test_labels` or `y_test` do not match `n_t` (and `C`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    kernel: &dyn Kernel,
    x_support: PointsView<'_>,
    y_support: &DMatrix<f64>,
    ridge: Ridge,
    x_test: PointsView<'_>,
    test_labels: &[usize],
    y_test: Option<&DMatrix<f64>>,
    block: usize,
) -> Result<Eval> {
    check_block(block)?;
    let n_t = x_test.nrows();
    if test_labels.len() != n_t {
        return Err(KrrError::Shape {
            what: "test_labels",
            expected: format!("{n_t} labels (one per test point)"),
            got: format!("{} labels", test_labels.len()),
        });
    }
    if let Some(y) = y_test {
        if y.shape() != (n_t, y_support.ncols()) {
            return Err(shape_err("y_test", format!("{n_t} x {}", y_support.ncols()), y.shape()));
        }
        check_finite("y_test", y.as_slice())?;
    }
    let mut k_ss = DMatrix::zeros(0, 0);
    kernel.gram_sym_into(x_support, &mut k_ss)?;
    let model = fit(&k_ss, y_support, ridge)?;
    let pred = predict_blocked(kernel, x_support, &model.alpha, x_test, block)?;
    Ok(Eval {
        accuracy: accuracy(&pred, test_labels),
        loss: y_test.map(|y| mse_loss(&pred, y)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kip_kernels::{points, KernelSpec};

    fn data(n: usize, d: usize, seed: usize) -> DMatrix<f64> {
        DMatrix::from_fn(n, d, |i, j| (((i * 131 + j * 71 + seed * 29) % 97) as f64 / 48.0) - 1.0)
    }

    #[test]
    fn blocked_prediction_handles_ragged_blocks_and_errors() {
        let kernel = KernelSpec::fc_ntk(1).build();
        let (xs, xt) = (data(7, 5, 1), data(23, 5, 2));
        let alpha = data(7, 3, 3);
        let full = predict(&kernel.gram(&xt, &xs).unwrap(), &alpha);
        for block in [1, 5, 23, 100] {
            let b = predict_blocked(&kernel, points(&xs), &alpha, points(&xt), block).unwrap();
            assert!((&b - &full).abs().max() <= 1e-12 * full.abs().max());
        }
        assert!(matches!(
            predict_blocked(&kernel, points(&xs), &alpha, points(&xt), 0),
            Err(KrrError::InvalidParam { name: "block", .. })
        ));
        assert!(matches!(
            predict_blocked(&kernel, points(&xs), &data(6, 3, 0), points(&xt), 4),
            Err(KrrError::Shape { what: "alpha", .. })
        ));
        assert!(matches!(
            predict_blocked(&kernel, points(&xs), &alpha, points(&data(3, 4, 0)), 4),
            Err(KrrError::Kernel(_))
        ));
    }

    #[test]
    fn evaluate_checks_label_count() {
        let kernel = KernelSpec::fc_ntk(1).build();
        let (xs, xt) = (data(7, 5, 1), data(9, 5, 2));
        let y = data(7, 3, 3);
        let r = evaluate(
            &kernel,
            points(&xs),
            &y,
            Ridge::default(),
            points(&xt),
            &[0; 8],
            None,
            4,
        );
        assert!(matches!(
            r,
            Err(KrrError::Shape {
                what: "test_labels",
                ..
            })
        ));
    }
}
