//! The binary's error: a library error or a usage problem, with exit codes.

/// What can end a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value the library rejected or that does not fit the data
    /// (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Anything that failed at run time (exit code 1).
    #[error("{0}")]
    Runtime(String),
    /// Data errors.
    #[error(transparent)]
    Data(#[from] kip_data::DataError),
    /// KIP errors.
    #[error(transparent)]
    Meta(#[from] kip_meta::MetaError),
    /// KRR errors.
    #[error(transparent)]
    Krr(#[from] kip_krr::KrrError),
    /// Kernel errors (a bad --kernel is a usage error).
    #[error("--kernel: {0}")]
    Kernel(#[from] kip_kernels::KernelError),
    /// Network training errors.
    #[error(transparent)]
    Nn(#[from] kip_nn::NnError),
    /// File errors.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl CliError {
    /// 2 for usage errors (bad flags, missing data files), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Kernel(_) => 2,
            CliError::Meta(kip_meta::MetaError::Param { .. }) => 2,
            CliError::Meta(kip_meta::MetaError::Kernel(_)) => 2,
            CliError::Data(e) if is_usage_data_error(e) => 2,
            CliError::Nn(kip_nn::NnError::InvalidParam { .. }) => 2,
            _ => 1,
        }
    }
}

fn is_usage_data_error(e: &kip_data::DataError) -> bool {
    matches!(
        e,
        kip_data::DataError::Missing { .. } | kip_data::DataError::UnknownDataset { .. }
    )
}

/// Result alias of the binary.
pub type Result<T> = std::result::Result<T, CliError>;

/// Wrap an I/O error with its path.
pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}
