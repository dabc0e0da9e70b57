//! The ridge `λ` and the kernel ridge regression fit `α = (K_ss + λI)⁻¹ y_s`.

use nalgebra::DMatrix;

use crate::cholesky::Cholesky;
use crate::error::{check_finite, shape_err, KrrError, Result};

/// The reference's default relative ridge (`reg` in the paper's code).
pub const DEFAULT_REG: f64 = 1e-6;

/// The ridge `λ` added to the diagonal of `K_ss`.
///
/// | variant | default | meaning | range |
/// |---|---|---|---|
/// | `Relative(reg)` | `1e-6` | `λ = reg · tr(K_ss)/n_s` (the reference's trace-scaled ridge) | finite, `≥ 0` |
/// | `Absolute(λ)` | — | `λ` itself | finite, `≥ 0` |
///
/// The trace scaling makes `reg` independent of the kernel's overall scale
/// (deeper NTKs have larger entries).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ridge {
    /// `λ = reg · tr(K_ss)/n_s`.
    Relative(f64),
    /// `λ` as given.
    Absolute(f64),
}

impl Default for Ridge {
    /// `Relative(1e-6)`, the reference's default.
    fn default() -> Self {
        Ridge::Relative(DEFAULT_REG)
    }
}

impl Ridge {
    /// The ridge `λ` for the support kernel `k`: `reg · tr(K)/n` for
    /// [`Ridge::Relative`] (0 for an empty `k`), `λ` for [`Ridge::Absolute`].
    ///
    /// Call [`Ridge::check`] first: this does not validate.
    ///
    /// # Shapes
    /// `k`: `n × n`.
    pub fn value(&self, k: &DMatrix<f64>) -> f64 {
        match *self {
            Ridge::Relative(reg) => {
                let n = k.nrows().min(k.ncols());
                if n == 0 {
                    0.0
                } else {
                    reg * k.trace() / n as f64
                }
            }
            Ridge::Absolute(lambda) => lambda,
        }
    }

    /// Validate: the coefficient must be finite and non-negative. Returns the
    /// ridge itself, so `let r = params.ridge.check()?;` reads naturally.
    ///
    /// # Errors
    /// [`KrrError::InvalidParam`] naming `reg` (relative) or `ridge`
    /// (absolute).
    pub fn check(&self) -> Result<Self> {
        let (name, value) = match *self {
            Ridge::Relative(reg) => ("reg", reg),
            Ridge::Absolute(lambda) => ("ridge", lambda),
        };
        if value.is_finite() && value >= 0.0 {
            Ok(*self)
        } else {
            Err(KrrError::InvalidParam {
                name,
                value,
                expected: "a finite number >= 0",
            })
        }
    }
}

/// A fitted kernel ridge regression model.
#[derive(Clone, Debug, PartialEq)]
pub struct KrrModel {
    /// Dual coefficients `α = (K_ss + λI)⁻¹ y_s`, `n_s × C`.
    pub alpha: DMatrix<f64>,
    /// The ridge `λ` that was asked for (after the trace scaling).
    pub ridge: f64,
    /// Extra diagonal added by the Cholesky jitter retries (0 if none);
    /// the solve used `K_ss + (ridge + jitter)·I`.
    pub jitter: f64,
}

impl KrrModel {
    /// `K_ts α` (see [`crate::predict()`]).
    ///
    /// # Panics
    /// If `k_ts` does not have `n_s` columns.
    pub fn predict(&self, k_ts: &DMatrix<f64>) -> DMatrix<f64> {
        crate::predict::predict(k_ts, &self.alpha)
    }
}

/// Fit kernel ridge regression: solve `(K_ss + λI) α = y_s` by Cholesky.
///
/// This is the inner solve of the paper's KRR predictor (Eq. 2):
/// `f(x_t) = K_ts (K_ss + λI)⁻¹ y_s = K_ts α`. With [`Ridge::Relative`],
/// `λ = reg · tr(K_ss)/n_s`. If `K_ss + λI` is not numerically positive
/// definite, [`Cholesky::factor`] retries with a small documented jitter and
/// the model records it in [`KrrModel::jitter`].
///
/// # Shapes
/// `k_ss`: `n_s × n_s`; `y_s`: `n_s × C` → `alpha`: `n_s × C`.
///
/// # Errors
/// [`KrrError::InvalidParam`] (bad ridge), [`KrrError::Shape`],
/// [`KrrError::NonFinite`] (in `k_ss` or `y_s`),
/// [`KrrError::NotPositiveDefinite`] (after all jitter retries).
///
/// # Examples
/// ```
/// use kip_krr::{fit, Ridge};
/// use nalgebra::DMatrix;
/// let k = DMatrix::from_row_slice(2, 2, &[2.0, 1.0, 1.0, 2.0]);
/// let y = DMatrix::from_row_slice(2, 1, &[1.0, -1.0]);
/// let m = fit(&k, &y, Ridge::Absolute(0.0))?;
/// assert!((m.alpha[(0, 0)] - 1.0).abs() < 1e-12 && (m.alpha[(1, 0)] + 1.0).abs() < 1e-12);
/// # Ok::<(), kip_krr::KrrError>(())
/// ```
pub fn fit(k_ss: &DMatrix<f64>, y_s: &DMatrix<f64>, ridge: Ridge) -> Result<KrrModel> {
    let ridge = ridge.check()?;
    let n = k_ss.nrows();
    if n == 0 || k_ss.ncols() != n {
        return Err(shape_err("k_ss", "a non-empty square matrix".into(), k_ss.shape()));
    }
    if y_s.nrows() != n {
        return Err(shape_err(
            "y_s",
            format!("{n} x C (one row per support point)"),
            y_s.shape(),
        ));
    }
    check_finite("k_ss", k_ss.as_slice())?;
    check_finite("y_s", y_s.as_slice())?;
    let lambda = ridge.value(k_ss);
    let chol = Cholesky::factor(k_ss, lambda)?;
    let alpha = chol.solve(y_s);
    Ok(KrrModel {
        alpha,
        ridge: lambda,
        jitter: chol.jitter(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_ridge_is_trace_scaled() {
        let k = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 2.0, 3.0, 6.0]));
        assert_eq!(Ridge::Relative(0.5).value(&k), 0.5 * 12.0 / 4.0);
        assert_eq!(Ridge::Absolute(0.25).value(&k), 0.25);
        assert_eq!(Ridge::default(), Ridge::Relative(1e-6));
    }

    #[test]
    fn check_trips_on_each_bad_value() {
        for bad in [-1e-9, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Ridge::Relative(bad).check(),
                Err(KrrError::InvalidParam { name: "reg", .. })
            ));
            assert!(matches!(
                Ridge::Absolute(bad).check(),
                Err(KrrError::InvalidParam { name: "ridge", .. })
            ));
        }
        assert_eq!(Ridge::Relative(0.0).check().unwrap(), Ridge::Relative(0.0));
    }

    #[test]
    fn fit_rejects_bad_inputs() {
        let k = DMatrix::<f64>::identity(3, 3);
        let y = DMatrix::zeros(3, 2);
        assert!(matches!(
            fit(&k, &y, Ridge::Relative(-1.0)),
            Err(KrrError::InvalidParam { .. })
        ));
        assert!(matches!(
            fit(&k, &DMatrix::zeros(2, 2), Ridge::default()),
            Err(KrrError::Shape { what: "y_s", .. })
        ));
        let mut yn = y.clone();
        yn[(1, 1)] = f64::NAN;
        assert!(matches!(
            fit(&k, &yn, Ridge::default()),
            Err(KrrError::NonFinite { what: "y_s" })
        ));
        let mut kn = k.clone();
        kn[(0, 1)] = f64::NAN;
        assert!(matches!(
            fit(&kn, &y, Ridge::default()),
            Err(KrrError::NonFinite { what: "k_ss" })
        ));
    }
}
