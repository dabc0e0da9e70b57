//! kip's errors as Python exceptions: a missing file is `FileNotFoundError`,
//! other I/O failures `OSError`, a request larger than the memory available
//! (kip's memory rule) `MemoryError`, everything else (bad values, shapes,
//! specs, data that does not fit) `ValueError`, each with kip's message.

use std::io::ErrorKind;
use std::path::Path;

use kip_data::DataError;
use kip_meta::MetaError;
use std::any::Any;

use kip_kernels::KernelError;
use pyo3::exceptions::{PyFileNotFoundError, PyMemoryError, PyNotADirectoryError, PyOSError, PyValueError};
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

/// `MemoryError` for a refusal under kip's memory rule, from whichever
/// crate's error carries it; `None` for any other error.
pub fn memory_err(e: &dyn Any) -> Option<PyErr> {
    let kernel = |k: &KernelError| match k {
        KernelError::Memory(m) => Some(PyMemoryError::new_err(m.to_string())),
        _ => None,
    };
    if let Some(k) = e.downcast_ref::<KernelError>() {
        return kernel(k);
    }
    if let Some(kip_krr::KrrError::Kernel(k)) = e.downcast_ref::<kip_krr::KrrError>() {
        return kernel(k);
    }
    if let Some(MetaError::Kernel(k) | MetaError::Krr(kip_krr::KrrError::Kernel(k))) = e.downcast_ref::<MetaError>() {
        return kernel(k);
    }
    if let Some(kip_nn::NnError::Memory(m)) = e.downcast_ref::<kip_nn::NnError>() {
        return Some(PyMemoryError::new_err(m.to_string()));
    }
    None
}

/// A library error as the Python exception that fits it.
pub fn meta_err(e: MetaError) -> PyErr {
    if let Some(m) = memory_err(&e) {
        return m;
    }
    match e {
        MetaError::Data(d) => data_err(d),
        MetaError::Io { ref source, .. } => io_err(source.kind(), e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Any other kip error (kernels, KRR, networks): `ValueError`, or
/// `MemoryError` for a memory refusal.
pub fn value_err<E: std::fmt::Display + 'static>(e: E) -> PyErr {
    memory_err(&e).unwrap_or_else(|| PyValueError::new_err(e.to_string()))
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
