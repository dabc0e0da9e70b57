//! The crate's error type.

use std::path::PathBuf;

/// Result alias used throughout `kip-data`.
pub type Result<T> = std::result::Result<T, DataError>;

/// Everything that can go wrong while loading, transforming or writing data.
///
/// Every variant that concerns a file names it; format errors carry the byte
/// offset where the problem was found when one is meaningful.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An operating-system level I/O failure (open, read, write, rename).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or folder being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was read but its contents are not what the format requires
    /// (wrong magic number, truncated data, count mismatch, label out of range).
    #[error("{}: bad format{}: {what}", path.display(), offset_suffix(*.offset))]
    Format {
        /// The offending file.
        path: PathBuf,
        /// Byte offset (in the decompressed stream) where the problem was found.
        offset: Option<u64>,
        /// What is wrong, with expected versus found values.
        what: String,
    },
    /// The file starts with the gzip magic bytes but the stream is corrupt.
    #[error("{}: corrupt gzip stream: {source}", path.display())]
    Gzip {
        /// The offending file.
        path: PathBuf,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// An `.npz` archive or one of its arrays could not be used.
    #[error("{}: npz{}: {what}", path.display(), array_suffix(.array))]
    Npz {
        /// The archive.
        path: PathBuf,
        /// The array concerned, when the problem is specific to one.
        array: Option<String>,
        /// What is wrong.
        what: String,
    },
    /// A readable array that is not what the command reads (a dtype,
    /// shape or values it cannot use) — the file is intact.
    #[error("{}: npz array `{array}`: {what}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// The array.
        array: String,
        /// What does not fit.
        what: String,
    },
    /// A CSV field could not be parsed (1-based row and column).
    #[error("{}: row {row}, column {column}: {what}", path.display())]
    Csv {
        /// The CSV file (or `<embedded digits.csv.gz>`).
        path: PathBuf,
        /// 1-based row number.
        row: usize,
        /// 1-based column number.
        column: usize,
        /// What is wrong with the field.
        what: String,
    },
    /// A dataset's files were not found (or only some of them were).
    #[error(
        "dataset `{dataset}` not found: expected files [{}] in one of [{}]{}",
        expected.join(", "),
        list_paths(.looked_in),
        missing_hint(.looked_in)
    )]
    Missing {
        /// Dataset name as requested (`mnist`, `cifar10`, ...).
        dataset: String,
        /// Every folder that was searched, in order.
        looked_in: Vec<PathBuf>,
        /// The file names that a complete folder holds (`[.gz]` = optional suffix).
        expected: Vec<String>,
    },
    /// The dataset name is not one this crate knows.
    #[error("unknown dataset `{name}`; accepted names: {}", accepted.join(", "))]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The accepted names and forms.
        accepted: Vec<String>,
    },
    /// A held-out test set that leaves no training image (or holds none).
    #[error("a holdout of {holdout} images from a training set of {len}: need 0 < holdout < {len}")]
    Holdout {
        /// Images asked for.
        holdout: usize,
        /// Training images available.
        len: usize,
    },
    /// A validation split larger than the training images left (after
    /// any holdout).
    #[error("a validation set of {val} images from the {len} training images left: need 0 < val < {len}")]
    ValSplit {
        /// Images asked for.
        val: usize,
        /// Training images left.
        len: usize,
    },
    /// A class-balanced draw asks a class for more images than it has.
    #[error("{n} class-balanced images over {classes} classes need {needed} of class {class}, which has {available}")]
    TooFewInClass {
        /// Images requested in all.
        n: usize,
        /// Number of classes.
        classes: usize,
        /// The first class that falls short.
        class: usize,
        /// Images of that class.
        available: usize,
        /// Images of that class the draw needs.
        needed: usize,
    },
    /// A parameter or an in-memory argument is invalid (bad probability,
    /// mismatched lengths, empty dataset, non-finite pixel, ...).
    #[error("invalid argument: {what}")]
    Invalid {
        /// What is wrong.
        what: String,
    },
}

impl DataError {
    /// Whether the input as given cannot be used (a missing file or data
    /// folder, an unknown dataset, an array or argument of the wrong kind)
    /// rather than a failure while reading it (a damaged file, an I/O error
    /// other than "not found"): the CLI's exit code 2 versus 1.
    pub fn is_usage(&self) -> bool {
        match self {
            DataError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            DataError::Missing { .. }
            | DataError::UnknownDataset { .. }
            | DataError::Holdout { .. }
            | DataError::ValSplit { .. }
            | DataError::TooFewInClass { .. }
            | DataError::Unusable { .. }
            | DataError::Invalid { .. } => true,
            _ => false,
        }
    }
}

fn offset_suffix(offset: Option<u64>) -> String {
    match offset {
        Some(o) => format!(" at byte offset {o}"),
        None => String::new(),
    }
}

fn array_suffix(array: &Option<String>) -> String {
    match array {
        Some(a) => format!(" array `{a}`"),
        None => String::new(),
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing_hint(looked_in: &[PathBuf]) -> &'static str {
    if looked_in.is_empty() {
        " (no folder to search: pass a data directory or set KIP_DATA_DIR)"
    } else {
        ""
    }
}

impl DataError {
    /// Shorthand for [`DataError::Invalid`].
    pub fn invalid(what: impl Into<String>) -> Self {
        DataError::Invalid { what: what.into() }
    }

    pub(crate) fn format(path: &std::path::Path, offset: Option<u64>, what: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            offset,
            what: what.into(),
        }
    }

    /// Shorthand for [`DataError::Io`] on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_and_offset() {
        let e = DataError::format(std::path::Path::new("/x/y.bin"), Some(12), "truncated");
        let s = e.to_string();
        assert!(
            s.contains("/x/y.bin") && s.contains("offset 12") && s.contains("truncated"),
            "{s}"
        );
        let m = DataError::Missing {
            dataset: "mnist".into(),
            looked_in: vec![],
            expected: vec!["a".into()],
        };
        assert!(m.to_string().contains("KIP_DATA_DIR"));
    }
}
