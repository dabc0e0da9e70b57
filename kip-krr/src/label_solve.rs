//! Label Solve: the support labels that minimise the KRR loss on the targets.
//!
//! The paper (Sec. 3, "Label Solve") takes, for fixed support points, the
//! labels
//!
//! ```text
//! y_s* = A⁺ y_t,   A = K_ts (K_ss + λI)⁻¹   (n_t × n_s, n_s ≤ n_t),
//! ```
//!
//! the minimum-norm minimiser of `‖A y_s − y_t‖²`, i.e. of the KIP loss
//! `½·mean((K_ts (K_ss+λI)⁻¹ y_s − y_t)²)` over `y_s`.
//!
//! # The route taken (no inverse of anything ill-conditioned)
//!
//! With `C = K_ss + λI` (SPD) and `K_ts` of full column rank,
//! `A⁺ = (AᵀA)⁻¹Aᵀ = C (K_st K_ts)⁻¹ K_st = C K_ts⁺`, so
//!
//! ```text
//! y_s* = C z,   z = argmin ‖K_ts z − y_t‖   (least squares).
//! ```
//!
//! `C` is only *multiplied*, never inverted. `z` comes from the normal
//! equations `G z = b` with `G = K_st K_ts` and `b = K_st y_t`, which are sums
//! over target blocks — this is what lets all 50,000 CIFAR-10 training images
//! be the targets without a `50000 × n_s` matrix in memory
//! ([`LabelSolveAccumulator`], [`label_solve_streaming`]). The dense
//! [`label_solve`] runs the very same code with one block, so the dense and
//! streaming results agree to rounding (tested), and both cost one GEMM
//! (`n_t·n_s²` flops) instead of a Householder QR.
//!
//! Forming `G` squares the condition number of `K_ts`, so the solve is
//! stabilised by *iterated Tikhonov*: factor `G + μI` once (Cholesky, with
//! `μ = 1e-10 · tr(G)/n_s`, [`LS_TIKHONOV`]) and solve
//! `z₀ = (G+μI)⁻¹ b`, then refine `z ← z + (G+μI)⁻¹ (b − G z)`
//! [`LS_REFINEMENTS`] times. After `k` refinements the residual of the normal
//! equations is `(μ (G+μI)⁻¹)^(k+1) b`: directions of `K_ts` with squared
//! singular value `σ² ≫ μ` are solved to rounding (so the loss gradient
//! vanishes, tested to 1e-8 relative), while directions with `σ² ≲ μ`, which
//! the plain pseudo-inverse would amplify by `1/σ`, stay damped. Where
//! `n_t < n_s` the result interpolates the targets (`A y_s* ≈ y_t`) but is not
//! the minimum-norm solution.

use kip_core::{gemm, MatMut, MatRef};
use kip_kernels::{Kernel, PointsView};
use nalgebra::DMatrix;

use crate::cholesky::Cholesky;
use crate::error::{check_finite, shape_err, KrrError, Result};
use crate::predict::check_block;
use crate::ridge::Ridge;

/// Relative Tikhonov term of the Label Solve normal equations:
/// `μ = LS_TIKHONOV · tr(K_st K_ts)/n_s`.
pub const LS_TIKHONOV: f64 = 1e-10;

/// Iterative-refinement sweeps after the first Tikhonov solve (iterated
/// Tikhonov; each costs one `n_s × n_s × C` product and two triangular
/// solves).
pub const LS_REFINEMENTS: usize = 2;

/// Streaming accumulator of the Label Solve normal equations
/// `G = Σ_blocks K_stK_ts` and `b = Σ_blocks K_st y_t`.
///
/// Feed target blocks with [`LabelSolveAccumulator::add_block`] (any block
/// sizes, any order — the sums do not depend on the blocking beyond
/// rounding), then call [`LabelSolveAccumulator::finish`].
///
/// # Examples
/// ```
/// use kip_krr::{label_solve, LabelSolveAccumulator, Ridge};
/// use nalgebra::DMatrix;
/// let k_ss = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 2.0]);
/// let k_ts = DMatrix::from_row_slice(3, 2, &[1.0, 0.2, 0.3, 1.0, 0.5, 0.5]);
/// let y_t = DMatrix::from_row_slice(3, 1, &[1.0, -1.0, 0.0]);
/// let mut acc = LabelSolveAccumulator::new(2, 1);
/// acc.add_block(&k_ts.rows(0, 2).into_owned(), &y_t.rows(0, 2).into_owned())?;
/// acc.add_block(&k_ts.rows(2, 1).into_owned(), &y_t.rows(2, 1).into_owned())?;
/// let y_s = acc.finish(&k_ss, Ridge::default())?;
/// let dense = label_solve(&k_ss, &k_ts, &y_t, Ridge::default())?;
/// assert!((y_s - dense).abs().max() < 1e-12);
/// # Ok::<(), kip_krr::KrrError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LabelSolveAccumulator {
    /// `Σ K_stK_ts`, `n_s × n_s`.
    gram: DMatrix<f64>,
    /// `Σ K_st y_t`, `n_s × C`.
    rhs: DMatrix<f64>,
    /// Targets seen so far.
    n_target: usize,
    /// First argument found holding NaN/∞ (reported by `finish`).
    non_finite: Option<&'static str>,
}

impl LabelSolveAccumulator {
    /// An empty accumulator for `n_s` support points and `n_classes` label
    /// columns.
    pub fn new(n_s: usize, n_classes: usize) -> Self {
        Self {
            gram: DMatrix::zeros(n_s, n_s),
            rhs: DMatrix::zeros(n_s, n_classes),
            n_target: 0,
            non_finite: None,
        }
    }

    /// Number of targets accumulated so far.
    pub fn n_target(&self) -> usize {
        self.n_target
    }

    /// Add one block of targets: `G += K_stK_ts`, `b += K_st y_t` (GEMMs on a
    /// free transposed view). A block holding NaN or an infinity is skipped
    /// and reported as [`KrrError::NonFinite`] by
    /// [`LabelSolveAccumulator::finish`].
    ///
    /// # Shapes
    /// `k_ts_block`: `m × n_s`; `y_t_block`: `m × C`.
    ///
    /// # Errors
    /// [`KrrError::Shape`] if `k_ts_block` does not have `n_s` columns or
    /// `y_t_block` is not `m × C` (nothing is accumulated then).
    pub fn add_block(&mut self, k_ts_block: &DMatrix<f64>, y_t_block: &DMatrix<f64>) -> Result<()> {
        let (n_s, c) = self.rhs.shape();
        let m = k_ts_block.nrows();
        if k_ts_block.ncols() != n_s {
            return Err(shape_err(
                "k_ts_block",
                format!("m x {n_s} (one column per support point)"),
                k_ts_block.shape(),
            ));
        }
        if y_t_block.shape() != (m, c) {
            return Err(shape_err(
                "y_t_block",
                format!("{m} x {c} (as k_ts_block, C labels)"),
                y_t_block.shape(),
            ));
        }
        if self.non_finite.is_none() {
            if !k_ts_block.iter().all(|v| v.is_finite()) {
                self.non_finite = Some("k_ts");
            } else if !y_t_block.iter().all(|v| v.is_finite()) {
                self.non_finite = Some("y_t");
            }
        }
        if self.non_finite.is_some() || m == 0 {
            return Ok(());
        }
        let kt = MatRef::from(k_ts_block).t();
        gemm(1.0, kt, MatRef::from(k_ts_block), 1.0, MatMut::from(&mut self.gram));
        gemm(1.0, kt, MatRef::from(y_t_block), 1.0, MatMut::from(&mut self.rhs));
        self.n_target += m;
        Ok(())
    }

    /// Solve for the labels `y_s* = (K_ss + λI) z`, `z` the (iterated
    /// Tikhonov) least-squares solution of `K_ts z = y_t` from the
    /// accumulated normal equations (see the [module docs](self)).
    ///
    /// # Shapes
    /// `k_ss`: `n_s × n_s` → `n_s × C`.
    ///
    /// # Errors
    /// [`KrrError::InvalidParam`] (bad ridge); [`KrrError::Shape`] (`k_ss`
    /// not `n_s × n_s`, no targets added); [`KrrError::NonFinite`] (in
    /// `k_ss` or any block); [`KrrError::NotPositiveDefinite`] if even the
    /// jittered normal matrix cannot be factored.
    pub fn finish(self, k_ss: &DMatrix<f64>, ridge: Ridge) -> Result<DMatrix<f64>> {
        let ridge = ridge.check()?;
        let n_s = self.gram.nrows();
        if k_ss.shape() != (n_s, n_s) {
            return Err(shape_err("k_ss", format!("{n_s} x {n_s}"), k_ss.shape()));
        }
        check_finite("k_ss", k_ss.as_slice())?;
        if let Some(what) = self.non_finite {
            return Err(KrrError::NonFinite { what });
        }
        if self.n_target == 0 || n_s == 0 {
            return Err(KrrError::Shape {
                what: "targets",
                expected: "at least one target and one support point".into(),
                got: format!("{} targets, {n_s} support points", self.n_target),
            });
        }
        let Self { gram, rhs, .. } = self;
        let mu = LS_TIKHONOV * gram.trace() / n_s as f64;
        let chol = Cholesky::factor(&gram, mu)?;
        let mut z = chol.solve(&rhs);
        let mut r = rhs.clone();
        for _ in 0..LS_REFINEMENTS {
            // r = b − G z, then z += (G + μI)⁻¹ r.
            r.copy_from(&rhs);
            gemm(-1.0, MatRef::from(&gram), MatRef::from(&z), 1.0, MatMut::from(&mut r));
            chol.solve_in_place(&mut r);
            z += &r;
        }
        // y_s* = (K_ss + λI) z: C is multiplied, never inverted.
        let lambda = ridge.value(k_ss);
        let mut y = z.clone();
        gemm(1.0, MatRef::from(k_ss), MatRef::from(&z), lambda, MatMut::from(&mut y));
        Ok(y)
    }
}

/// Label Solve on dense kernels: `y_s* = (K_ts (K_ss+λI)⁻¹)⁺ y_t` (the
/// paper's Label Solve, Sec. 3), computed as `(K_ss+λI) K_ts⁺ y_t` with the
/// stabilised normal equations described in the [module docs](self).
///
/// # Shapes
/// `k_ss`: `n_s × n_s`; `k_ts`: `n_t × n_s`; `y_t`: `n_t × C` → `n_s × C`.
///
/// # Errors
/// [`KrrError::Shape`] on mismatched shapes; otherwise as
/// [`LabelSolveAccumulator::finish`].
pub fn label_solve(k_ss: &DMatrix<f64>, k_ts: &DMatrix<f64>, y_t: &DMatrix<f64>, ridge: Ridge) -> Result<DMatrix<f64>> {
    let n_s = k_ss.nrows();
    if k_ts.ncols() != n_s {
        return Err(shape_err(
            "k_ts",
            format!("n_t x {n_s} (one column per support point)"),
            k_ts.shape(),
        ));
    }
    if y_t.nrows() != k_ts.nrows() {
        return Err(shape_err(
            "y_t",
            format!("{} x C (one row per target)", k_ts.nrows()),
            y_t.shape(),
        ));
    }
    let mut acc = LabelSolveAccumulator::new(n_s, y_t.ncols());
    acc.add_block(k_ts, y_t)?;
    acc.finish(k_ss, ridge)
}

/// Streaming Label Solve straight from the points: `K_ts` is formed `block`
/// targets at a time (one reused buffer) and folded into the normal
/// equations, so `n_t` can be all 50,000 CIFAR-10 training images.
///
/// Same result as [`label_solve`]`(K_ss, K_ts, y_t)` up to rounding.
///
/// # Shapes
/// `x_support`: `n_s × d`; `x_target`: `n_t × d`; `y_target`: `n_t × C` →
/// `n_s × C`.
///
/// # Errors
/// [`KrrError::InvalidParam`] (`block == 0`, bad ridge);
/// [`KrrError::Shape`] (`y_target` rows ≠ `n_t`); [`KrrError::Kernel`] (bad
/// points); otherwise as [`LabelSolveAccumulator::finish`].
pub fn label_solve_streaming(
    kernel: &dyn Kernel,
    x_support: PointsView<'_>,
    x_target: PointsView<'_>,
    y_target: &DMatrix<f64>,
    ridge: Ridge,
    block: usize,
) -> Result<DMatrix<f64>> {
    check_block(block)?;
    let ridge = ridge.check()?;
    let n_t = x_target.nrows();
    if y_target.nrows() != n_t {
        return Err(shape_err(
            "y_target",
            format!("{n_t} x C (one row per target)"),
            y_target.shape(),
        ));
    }
    let mut k_ss = DMatrix::zeros(0, 0);
    kernel.gram_sym_into(x_support, &mut k_ss)?;
    let (n_s, c) = (k_ss.nrows(), y_target.ncols());
    let mut acc = LabelSolveAccumulator::new(n_s, c);
    let mut k_block = DMatrix::zeros(block.min(n_t), n_s);
    let mut y_block = DMatrix::zeros(block.min(n_t), c);
    let mut start = 0;
    while start < n_t {
        let len = block.min(n_t - start);
        kernel.gram_into(x_target.rows(start, len), x_support, &mut k_block)?;
        if y_block.nrows() != len {
            y_block = DMatrix::zeros(len, c);
        }
        y_block.copy_from(&y_target.rows(start, len));
        acc.add_block(&k_block, &y_block)?;
        start += len;
    }
    acc.finish(&k_ss, ridge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes_and_values() {
        let k_ss = DMatrix::<f64>::identity(2, 2);
        let k_ts = DMatrix::from_element(3, 2, 0.5);
        let y = DMatrix::zeros(3, 1);
        assert!(matches!(
            label_solve(&k_ss, &DMatrix::zeros(3, 3), &y, Ridge::default()),
            Err(KrrError::Shape { what: "k_ts", .. })
        ));
        assert!(matches!(
            label_solve(&k_ss, &k_ts, &DMatrix::zeros(2, 1), Ridge::default()),
            Err(KrrError::Shape { what: "y_t", .. })
        ));
        let mut bad = k_ts.clone();
        bad[(1, 1)] = f64::NAN;
        assert!(matches!(
            label_solve(&k_ss, &bad, &y, Ridge::default()),
            Err(KrrError::NonFinite { what: "k_ts" })
        ));
        assert!(matches!(
            label_solve(&k_ss, &k_ts, &y, Ridge::Absolute(-1.0)),
            Err(KrrError::InvalidParam { .. })
        ));
        let mut acc = LabelSolveAccumulator::new(2, 1);
        assert!(matches!(
            acc.add_block(&DMatrix::zeros(3, 3), &y),
            Err(KrrError::Shape { what: "k_ts_block", .. })
        ));
        assert!(matches!(
            acc.add_block(&k_ts, &DMatrix::zeros(3, 2)),
            Err(KrrError::Shape { what: "y_t_block", .. })
        ));
        assert_eq!(acc.n_target(), 0);
        assert!(matches!(
            acc.finish(&k_ss, Ridge::default()),
            Err(KrrError::Shape { what: "targets", .. })
        ));
    }
}
