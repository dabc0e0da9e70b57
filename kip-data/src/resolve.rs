//! Dataset names to loaded splits.

use std::path::{Path, PathBuf};

use crate::cifar::{cifar10_expected_files, cifar_paths, load_cifar10_dir};
use crate::dataset::Split;
use crate::digits::digits;
use crate::error::{DataError, Result};
use crate::idx::{idx_paths, load_idx_dir, FASHION_MNIST_CLASSES, IDX_FILES, MNIST_CLASSES};
use crate::npz::{load_npz_split, NpzLayout};

/// Environment variable naming the parent folder of the datasets.
pub const DATA_DIR_ENV: &str = "KIP_DATA_DIR";

/// The dataset name a run records when its images were handed over in
/// memory (e.g. numpy arrays from Python): no loader can read it again,
/// so such a run is resumed by handing the same arrays over again.
pub const IN_MEMORY_DATASET: &str = "in-memory";

/// The accepted dataset names.
pub const DATASET_NAMES: [&str; 5] = ["digits", "mnist", "fashion-mnist", "cifar10", "npz:PATH"];

#[derive(Clone, Copy)]
enum Kind {
    Mnist,
    Fashion,
    Cifar,
}

impl Kind {
    fn subdirs(self) -> &'static [&'static str] {
        match self {
            Kind::Mnist => &["mnist"],
            Kind::Fashion => &["fashion-mnist", "fashion_mnist"],
            Kind::Cifar => &["cifar10", "cifar-10"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Mnist => "mnist",
            Kind::Fashion => "fashion-mnist",
            Kind::Cifar => "cifar10",
        }
    }

    fn complete(self, dir: &Path) -> bool {
        match self {
            Kind::Mnist | Kind::Fashion => idx_paths(dir).is_ok(),
            Kind::Cifar => cifar_paths(dir).is_some(),
        }
    }

    fn expected(self) -> Vec<String> {
        match self {
            Kind::Mnist | Kind::Fashion => IDX_FILES.iter().map(|n| format!("{n}[.gz]")).collect(),
            Kind::Cifar => cifar10_expected_files(),
        }
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    match name.to_ascii_lowercase().as_str() {
        "mnist" => Some(Kind::Mnist),
        "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Some(Kind::Fashion),
        "cifar10" | "cifar-10" => Some(Kind::Cifar),
        _ => None,
    }
}

fn unknown(name: &str) -> DataError {
    if name == IN_MEMORY_DATASET {
        return DataError::invalid(format!(
            "dataset `{IN_MEMORY_DATASET}`: this run's images were handed over in memory \
             (from Python), so no loader can read them again; resume it from Python with \
             the same arrays (kip.distill(x, y, out=RUN, resume=True))"
        ));
    }
    DataError::UnknownDataset {
        name: name.to_string(),
        accepted: DATASET_NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

/// Candidate folders in search order: with `data_dir`: `data_dir/<sub>`
/// then `data_dir` itself; else `$KIP_DATA_DIR/<sub>` then `$KIP_DATA_DIR`.
fn candidates(kind: Kind, data_dir: Option<&Path>) -> Vec<PathBuf> {
    let base: Option<PathBuf> = match data_dir {
        Some(d) => Some(d.to_path_buf()),
        None => std::env::var_os(DATA_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let Some(base) = base else { return Vec::new() };
    let mut v: Vec<PathBuf> = kind.subdirs().iter().map(|s| base.join(s)).collect();
    v.push(base);
    v
}

fn find(kind: Kind, data_dir: Option<&Path>) -> Result<PathBuf> {
    let looked_in = candidates(kind, data_dir);
    looked_in
        .iter()
        .find(|d| kind.complete(d))
        .cloned()
        .ok_or_else(|| DataError::Missing {
            dataset: kind.name().to_string(),
            looked_in,
            expected: kind.expected(),
        })
}

/// Checks that dataset `name` can be found, without reading it (cheap; for
/// validating command lines before heavy work). Returns the folder (or npz
/// file) that [`resolve`] would load; for `digits`, `<embedded>`.
///
/// # Errors
/// As [`resolve`], but only [`DataError::UnknownDataset`],
/// [`DataError::Missing`] and (for `npz:`) [`DataError::Io`].
pub fn check_available(name: &str, data_dir: Option<&Path>) -> Result<PathBuf> {
    if name.eq_ignore_ascii_case("digits") {
        return Ok(PathBuf::from("<embedded>"));
    }
    if let Some(p) = name.strip_prefix("npz:") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(DataError::io(
            &p,
            std::io::Error::new(std::io::ErrorKind::NotFound, "npz file not found"),
        ));
    }
    let kind = kind_of(name).ok_or_else(|| unknown(name))?;
    find(kind, data_dir)
}

/// Loads a dataset by name.
///
/// | name | source |
/// |---|---|
/// | `digits` | embedded sklearn digits, fixed split (see [`crate::digits()`]); `data_dir` ignored |
/// | `mnist` | IDX folder ([`crate::load_idx_dir`]), classes `"0".."9"` |
/// | `fashion-mnist` (also `fashion_mnist`) | IDX folder, Fashion-MNIST class names |
/// | `cifar10` | CIFAR-10 binary folder ([`crate::load_cifar10_dir`]) |
/// | `npz:PATH` | [`crate::load_npz_split`] with NHWC layout |
///
/// Folder search: `data_dir` may be the folder holding the files or its
/// parent; the order is `data_dir/mnist` (resp. `fashion-mnist`,
/// `fashion_mnist`, `cifar10`, `cifar-10`) then `data_dir`. Without
/// `data_dir`, the same under `$KIP_DATA_DIR`.
///
/// # Errors
/// [`DataError::UnknownDataset`] listing the accepted names;
/// [`DataError::Missing`] listing the expected files and every folder
/// searched; any loader error.
pub fn resolve(name: &str, data_dir: Option<&Path>) -> Result<Split> {
    if name.eq_ignore_ascii_case("digits") {
        return Ok(digits());
    }
    if let Some(p) = name.strip_prefix("npz:") {
        return load_npz_split(Path::new(p), NpzLayout::Nhwc);
    }
    let kind = kind_of(name).ok_or_else(|| unknown(name))?;
    let dir = find(kind, data_dir)?;
    match kind {
        Kind::Mnist => load_idx_dir(&dir, &MNIST_CLASSES, "mnist"),
        Kind::Fashion => load_idx_dir(&dir, &FASHION_MNIST_CLASSES, "fashion-mnist"),
        Kind::Cifar => load_cifar10_dir(&dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_accepted() {
        let e = resolve("svhn", None).unwrap_err().to_string();
        assert!(
            e.contains("svhn") && e.contains("fashion-mnist") && e.contains("npz:PATH"),
            "{e}"
        );
        let e = resolve(IN_MEMORY_DATASET, None).unwrap_err().to_string();
        assert!(e.contains("handed over in memory") && e.contains("resume=True"), "{e}");
    }

    #[test]
    fn missing_lists_folders_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve("mnist", Some(dir.path())).unwrap_err();
        assert!(matches!(e, DataError::Missing { ref looked_in, .. } if looked_in.len() == 2));
        let s = e.to_string();
        assert!(s.contains("train-images-idx3-ubyte[.gz]"), "{s}");
        assert!(s.contains(&dir.path().join("mnist").display().to_string()), "{s}");
        assert_eq!(check_available("digits", None).unwrap(), PathBuf::from("<embedded>"));
    }
}
