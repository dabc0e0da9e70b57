//! kip's errors as Python exceptions: a missing file is `FileNotFoundError`,
//! other I/O failures `OSError`, everything else (bad values, shapes,
//! specs, data that does not fit) `ValueError`, each with kip's message.

use std::io::ErrorKind;
use std::path::Path;

use kip_data::DataError;
use kip_meta::MetaError;
use pyo3::exceptions::{PyFileNotFoundError, PyNotADirectoryError, PyOSError, PyValueError};
use pyo3::PyErr;

fn io_err(kind: ErrorKind, msg: String) -> PyErr {
    if kind == ErrorKind::NotFound {
        PyFileNotFoundError::new_err(msg)
    } else {
        PyOSError::new_err(msg)
    }
}

/// A data error as the Python exception that fits it.
pub fn data_err(e: DataError) -> PyErr {
    let msg = e.to_string();
    match &e {
        DataError::Io { source, .. } => io_err(source.kind(), msg),
        DataError::Missing { .. } => PyFileNotFoundError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// A library error as the Python exception that fits it.
pub fn meta_err(e: MetaError) -> PyErr {
    match e {
        MetaError::Data(d) => data_err(d),
        MetaError::Io { ref source, .. } => io_err(source.kind(), e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Any other kip error (kernels, KRR): `ValueError`.
pub fn value_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// `FileNotFoundError` (nothing there) or `NotADirectoryError` (a file)
/// unless `dir` is a folder.
pub fn require_dir(dir: &Path, what: &str) -> Result<(), PyErr> {
    if dir.is_dir() {
        Ok(())
    } else if dir.exists() {
        Err(PyNotADirectoryError::new_err(format!(
            "{what} {}: not a directory",
            dir.display()
        )))
    } else {
        Err(PyFileNotFoundError::new_err(format!(
            "{what} {}: no such directory",
            dir.display()
        )))
    }
}
