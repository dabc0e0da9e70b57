//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when building, training or evaluating a
/// network.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NnError {
    /// A network larger than the memory this process can get (kip's
    /// memory rule, [`kip_core::check_memory`]).
    #[error("{0}")]
    Memory(#[from] kip_core::MemoryRefusal),
    /// A hyperparameter (or a string naming one) is out of its range.
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParam {
        /// Field name, as in [`MlpParams`](crate::MlpParams).
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// Two inputs disagree on a dimension.
    #[error("shape mismatch in `{what}`: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which argument (e.g. `"y rows"`).
        what: &'static str,
        /// The size implied by the other arguments.
        expected: usize,
        /// The size found.
        got: usize,
    },
    /// A class id is not below the number of classes.
    #[error("label {label} at row {row} is not below the number of classes {classes}")]
    LabelOutOfRange {
        /// Row of the offending label.
        row: usize,
        /// The label.
        label: usize,
        /// Number of classes (columns of the targets / outputs).
        classes: usize,
    },
    /// An input matrix holds NaN or ±∞.
    #[error("input `{what}` holds a non-finite value at row {row}, column {col}")]
    NonFiniteInput {
        /// Which argument.
        what: &'static str,
        /// Row of the first non-finite entry.
        row: usize,
        /// Column of the first non-finite entry.
        col: usize,
    },
    /// The natural baseline of [`transfer`](crate::transfer) could not be
    /// drawn from the training set.
    #[error("cannot draw a natural class-balanced sample of {n} training images: {reason}")]
    NaturalSample {
        /// Images asked for (the support set's size).
        n: usize,
        /// Why not.
        reason: String,
    },
    /// Training diverged: the loss became NaN or infinite at this step
    /// (0-based; `steps` means the final evaluation). Lower the learning rate.
    #[error("loss became non-finite at step {step} (training diverged; lower the learning rate)")]
    NonFinite {
        /// The step at which the non-finite loss was seen.
        step: usize,
    },
}

/// `Result` with [`NnError`].
pub type Result<T> = std::result::Result<T, NnError>;
