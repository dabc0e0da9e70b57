//! Errors of the KIP loop.

use std::path::PathBuf;

/// Everything that can stop a KIP run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A parameter is out of range (see [`crate::KipParams`]).
    #[error("invalid parameter {name} = {value}: expected {expected}")]
    Param {
        /// Parameter name, as the CLI flag without dashes.
        name: &'static str,
        /// The offending value.
        value: String,
        /// The allowed range.
        expected: String,
    },
    /// The loss or gradient became NaN or infinite; the state is left as it
    /// was before the step.
    #[error(
        "non-finite {what} at step {step} (lower the learning rate or raise --reg); the state before this step is kept"
    )]
    NonFinite {
        /// `loss` or `gradient`.
        what: &'static str,
        /// The step that produced it (0-based).
        step: usize,
    },
    /// A checkpoint could not be read or does not fit this run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// From the kernel crate.
    #[error(transparent)]
    Kernel(#[from] kip_kernels::KernelError),
    /// From the KRR crate (e.g. a kernel that stays indefinite after jitter).
    #[error(transparent)]
    Krr(#[from] kip_krr::KrrError),
    /// From the data crate.
    #[error(transparent)]
    Data(#[from] kip_data::DataError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MetaError>;
