//! The binary's error: a usage problem (exit 2) or a failure at run time
//! (exit 1), with the libraries' parameter names turned into flags.

use kip_data::DataError;
use kip_meta::MetaError;

/// What can end a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value the libraries rejected, missing data files, a folder
    /// that is not what the command needs (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Data errors (exit 2 for missing or unknown datasets, else 1).
    #[error(transparent)]
    Data(DataError),
    /// KIP and run-directory errors.
    #[error(transparent)]
    Meta(MetaError),
    /// KRR errors.
    #[error(transparent)]
    Krr(kip_krr::KrrError),
    /// Network training errors.
    #[error(transparent)]
    Nn(kip_nn::NnError),
    /// Kernel errors on the data (shapes, non-finite values).
    #[error(transparent)]
    Kernel(kip_kernels::KernelError),
    /// A request refused under the memory rule (exit 3).
    #[error("{0}")]
    Memory(String),
}

/// Result alias of the binary.
pub type Result<T> = std::result::Result<T, CliError>;

/// The flag that sets a library parameter (`n_target` → `--target-batch`).
fn flag(name: &str) -> String {
    let flag = match name {
        "kernels" => "kernel",
        "n_support" => "support",
        "n_target" => "target-batch",
        "adam.lr" => "lr",
        "adam.first_step_index" => "adam-first-step",
        "init.std" => "init-std",
        other => other,
    };
    format!("--{}", flag.replace(['_', '.'], "-"))
}

/// A usage error naming the flag, its value and what it should be.
fn flag_error(name: &str, value: &str, expected: &str) -> CliError {
    CliError::Usage(format!("{} {value}: expected {expected}", flag(name)))
}

impl From<MetaError> for CliError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Param { name, value, expected } => flag_error(name, &value, &expected),
            MetaError::Kernel(k) => k.into(),
            MetaError::RunDir { .. } => CliError::Usage(e.to_string()),
            MetaError::Data(d) => d.into(),
            MetaError::Krr(k) => k.into(),
            e => CliError::Meta(e),
        }
    }
}

impl From<DataError> for CliError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Holdout { holdout, .. } => CliError::Usage(format!("--holdout {holdout}: {e}")),
            DataError::ValSplit { val, .. } => CliError::Usage(format!("--val {val}: {e}")),
            e => CliError::Data(e),
        }
    }
}

impl From<kip_krr::KrrError> for CliError {
    fn from(e: kip_krr::KrrError) -> Self {
        match e {
            // The ridge is not a flag: it comes from --reg and the data.
            kip_krr::KrrError::InvalidParam {
                name: "ridge",
                value,
                expected,
            } => CliError::Usage(format!(
                "--reg: the ridge reg · tr(K_ss)/n_s is {value:?}: expected {expected}; choose a smaller --reg"
            )),
            kip_krr::KrrError::InvalidParam { name, value, expected } => flag_error(name, &value.to_string(), expected),
            kip_krr::KrrError::Kernel(k) => k.into(),
            e => CliError::Krr(e),
        }
    }
}

impl From<kip_kernels::KernelError> for CliError {
    /// A bad spec is a bad `--kernel`; other kernel errors are about the data.
    fn from(e: kip_kernels::KernelError) -> Self {
        match e {
            kip_kernels::KernelError::Spec { .. } | kip_kernels::KernelError::Param { .. } => {
                CliError::Usage(format!("--kernel: {e}"))
            }
            e => CliError::Kernel(e),
        }
    }
}

impl From<kip_nn::NnError> for CliError {
    fn from(e: kip_nn::NnError) -> Self {
        match e {
            kip_nn::NnError::InvalidParam { name, value, expected } => flag_error(name, &value, expected),
            e => CliError::Nn(e),
        }
    }
}

impl CliError {
    /// A usage error about `flag`.
    pub fn flag(flag: &str, e: impl std::fmt::Display) -> Self {
        CliError::Usage(format!("{flag}: {e}"))
    }

    /// 2 for usage errors (bad flags, missing data files, a folder that is
    /// not a run), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Memory(_) => 3,
            CliError::Kernel(kip_kernels::KernelError::Memory(_)) | CliError::Nn(kip_nn::NnError::Memory(_)) => 3,
            CliError::Data(d) if d.is_usage() => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names_become_flags() {
        for (name, want) in [
            ("n_support", "--support"),
            ("n_target", "--target-batch"),
            ("adam.lr", "--lr"),
            ("adam.first_step_index", "--adam-first-step"),
            ("lr_schedule", "--lr-schedule"),
            ("init.std", "--init-std"),
            ("eval_block", "--eval-block"),
            ("width", "--width"),
        ] {
            assert_eq!(flag(name), want);
        }
        let e = CliError::from(MetaError::Param {
            name: "n_target",
            value: "0".into(),
            expected: ">= 1".into(),
        });
        assert_eq!(
            (e.to_string().as_str(), e.exit_code()),
            ("--target-batch 0: expected >= 1", 2)
        );
        // The ridge is no flag: its error names --reg.
        let e = CliError::from(kip_krr::KrrError::InvalidParam {
            name: "ridge",
            value: f64::INFINITY,
            expected: "a finite number >= 0",
        });
        assert!(e.to_string().starts_with("--reg: the ridge"), "{e}");
    }
}
