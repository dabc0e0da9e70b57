//! Errors of the KRR crate.

/// Everything that can go wrong in kernel ridge regression and Label Solve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KrrError {
    /// `K + ridge·I` is not numerically positive definite, even after every
    /// jitter retry of [`crate::Cholesky::factor`].
    #[error(
        "matrix is not positive definite (pivot {index} non-positive) even with a total diagonal shift of {ridge:e}; \
         duplicate or collinear support points with reg = 0? increase reg"
    )]
    NotPositiveDefinite {
        /// Index of the first non-positive pivot in the last attempt.
        index: usize,
        /// Total diagonal shift of the last attempt (ridge + largest jitter).
        ridge: f64,
    },
    /// Two inputs disagree on their shape.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Expected shape, in words.
        expected: String,
        /// Actual shape.
        got: String,
    },
    /// An input holds NaN or an infinity.
    #[error("non-finite value (NaN or infinity) in {what}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
    },
    /// A parameter is out of its range.
    #[error("invalid parameter {name} = {value}: expected {expected}")]
    InvalidParam {
        /// Parameter name (`reg`, `ridge`, `block`, ...).
        name: &'static str,
        /// The offending value.
        value: f64,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// The kernel failed (bad points, shapes, non-finite inputs).
    #[error(transparent)]
    Kernel(#[from] kip_kernels::KernelError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, KrrError>;

/// `Shape` error for an `r × c` matrix that should have been `er × ec`.
pub(crate) fn shape_err(what: &'static str, expected: String, got: (usize, usize)) -> KrrError {
    KrrError::Shape {
        what,
        expected,
        got: format!("{} x {}", got.0, got.1),
    }
}

/// `NonFinite` error unless every entry is finite.
pub(crate) fn check_finite(what: &'static str, data: &[f64]) -> Result<()> {
    if data.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(KrrError::NonFinite { what })
    }
}
