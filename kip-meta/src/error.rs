//! Errors of KIP, its run driver and its files.

use std::path::PathBuf;

/// Everything that can stop a KIP run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A parameter is out of range (see [`crate::KipParams`] and
    /// [`crate::RunConfig`]).
    #[error("invalid parameter {name} = {value}: expected {expected}")]
    Param {
        /// The field, as the parameter structs name it (`n_target`,
        /// `adam.lr`, `init.std`, ...).
        name: &'static str,
        /// The offending value.
        value: String,
        /// The allowed range.
        expected: String,
    },
    /// Labels or targets whose shape does not fit the points.
    #[error("{what} is {got}, expected {expected}")]
    Shape {
        /// The argument (`y_s`, `y_t`, `test_labels`, ...).
        what: &'static str,
        /// The shape it must have.
        expected: String,
        /// The shape it has.
        got: String,
    },
    /// A class id outside `0..C`.
    #[error("{what}: class {label} at position {index} is out of range for {classes} classes")]
    Label {
        /// The argument (`test_labels`, ...).
        what: &'static str,
        /// Position of the first bad label.
        index: usize,
        /// Its value.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// The loss or gradient became NaN or infinite; the state is left as it
    /// was before the step.
    #[error(
        "non-finite {what} at step {step}; the state before this step is kept (a smaller learning rate or a larger reg may help)"
    )]
    NonFinite {
        /// `loss`, `gradient`, `support update`, ...
        what: &'static str,
        /// The step that produced it (0-based: the number of steps done).
        step: usize,
    },
    /// Another rank of a run spread over processes failed (its message);
    /// every rank stops at the same point.
    #[error("rank {rank} failed: {message}")]
    Rank {
        /// The (lowest) failing rank.
        rank: usize,
        /// Its error.
        message: String,
    },
    /// A step of a run failed; the last good state was saved first.
    #[error("{}", step_failure(source, *step, dir))]
    StepFailed {
        /// Steps done (the state on disk).
        step: usize,
        /// The run directory that holds it.
        dir: PathBuf,
        /// What failed.
        source: Box<MetaError>,
    },
    /// A checkpoint could not be read or does not fit this run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A run directory cannot be used as asked (not a run, already a run,
    /// a configuration that does not fit the data).
    #[error("{}: {reason}", path.display())]
    RunDir {
        /// The directory or the file in it.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of a run directory whose contents do not parse (a damaged
    /// `config.json` or metrics log).
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// I/O failure.
    #[error("{}: {source}", path.display())]
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

/// The message of [`MetaError::StepFailed`]: the cause (with its step
/// unless it names one itself) and where the last good state is.
fn step_failure(source: &MetaError, step: usize, dir: &std::path::Path) -> String {
    let cause = match source {
        e @ MetaError::NonFinite { .. } => e.to_string(),
        e => format!("{e} (at step {step})"),
    };
    format!(
        "{cause}; the last good support set (step {step}) is in {}",
        dir.display()
    )
}

impl MetaError {
    /// [`MetaError::RunDir`] for `path`.
    pub(crate) fn run_dir(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        MetaError::RunDir {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// [`MetaError::Param`].
    pub(crate) fn param(name: &'static str, value: impl ToString, expected: impl Into<String>) -> Self {
        MetaError::Param {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MetaError>;
