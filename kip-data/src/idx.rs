//! MNIST-style IDX files (MNIST, Fashion-MNIST), gzip or raw.
//!
//! Images: big-endian magic `0x00000803`, count, rows, cols, then
//! `count · rows · cols` bytes. Labels: magic `0x00000801`, count, then
//! `count` bytes.

use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, ImageShape, Split};
use crate::error::{DataError, Result};
use crate::io::{bytes_to_f32, find_plain_or_gz, read_maybe_gz};

/// Class names of MNIST: `"0"` .. `"9"`.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Class names of Fashion-MNIST, index = label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The four IDX file names of an MNIST-style folder (each may also carry `.gz`).
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn be_u32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Parses an IDX image file already in memory; returns `(count, rows, cols, pixel bytes)`.
fn parse_images<'a>(path: &Path, b: &'a [u8]) -> Result<(usize, usize, usize, &'a [u8])> {
    if b.len() < 16 {
        return Err(DataError::format(
            path,
            Some(0),
            format!("IDX image header needs 16 bytes, file has {}", b.len()),
        ));
    }
    let magic = be_u32(b, 0);
    if magic != 0x0000_0803 {
        return Err(DataError::format(
            path,
            Some(0),
            format!("wrong IDX image magic: expected 0x00000803, found 0x{magic:08x}"),
        ));
    }
    let (n, rows, cols) = (be_u32(b, 4) as u64, be_u32(b, 8) as u64, be_u32(b, 12) as u64);
    if n == 0 {
        return Err(DataError::format(path, Some(4), "IDX image count is 0 (empty dataset)"));
    }
    if rows == 0 || cols == 0 {
        return Err(DataError::format(
            path,
            Some(8),
            format!("IDX image size {rows}x{cols} has no pixels"),
        ));
    }
    let found = (b.len() - 16) as u64;
    // Saturating: a header claiming more than 2^64 bytes is simply "too long".
    let expected = n.saturating_mul(rows).saturating_mul(cols);
    if expected != found {
        return Err(DataError::format(
            path,
            Some(16),
            format!(
                "header claims {n} images of {rows}x{cols} = {} pixel bytes, but {found} bytes follow the header{}",
                expected_str(n, rows, cols),
                if found < expected {
                    " (truncated)"
                } else {
                    " (trailing data)"
                }
            ),
        ));
    }
    Ok((n as usize, rows as usize, cols as usize, &b[16..]))
}

fn expected_str(n: u64, rows: u64, cols: u64) -> String {
    match n.checked_mul(rows).and_then(|v| v.checked_mul(cols)) {
        Some(v) => v.to_string(),
        None => "more than 2^64".to_string(),
    }
}

fn parse_labels<'a>(path: &Path, b: &'a [u8], n_classes: usize) -> Result<&'a [u8]> {
    if b.len() < 8 {
        return Err(DataError::format(
            path,
            Some(0),
            format!("IDX label header needs 8 bytes, file has {}", b.len()),
        ));
    }
    let magic = be_u32(b, 0);
    if magic != 0x0000_0801 {
        return Err(DataError::format(
            path,
            Some(0),
            format!("wrong IDX label magic: expected 0x00000801, found 0x{magic:08x}"),
        ));
    }
    let n = be_u32(b, 4) as u64;
    if n == 0 {
        return Err(DataError::format(path, Some(4), "IDX label count is 0 (empty dataset)"));
    }
    let found = (b.len() - 8) as u64;
    if n != found {
        return Err(DataError::format(
            path,
            Some(8),
            format!(
                "header claims {n} labels, but {found} bytes follow the header{}",
                if found < n { " (truncated)" } else { " (trailing data)" }
            ),
        ));
    }
    let labels = &b[8..];
    if let Some(i) = labels.iter().position(|&l| l as usize >= n_classes) {
        return Err(DataError::format(
            path,
            Some(8 + i as u64),
            format!(
                "label {} of item {i} is out of range for {n_classes} classes",
                labels[i]
            ),
        ));
    }
    Ok(labels)
}

/// Loads an IDX image/label file pair (gzip or raw, detected by magic bytes)
/// with the ten MNIST class names `"0"..."9"`.
///
/// Pixels are the raw bytes as `f32` (0..255), shape `rows × cols × 1`.
///
/// # Errors
/// [`DataError::Io`]/[`DataError::Gzip`] on unreadable files;
/// [`DataError::Format`] on a wrong magic number, a zero count, a header
/// count that disagrees with the file length (checked before allocating),
/// image and label counts that differ, or a label `>= 10`.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset> {
    load_idx_with_classes(images, labels, &MNIST_CLASSES)
}

/// [`load_idx`] with explicit class names (labels must be `< class_names.len()`).
///
/// # Errors
/// As [`load_idx`]; [`DataError::Invalid`] if `class_names` is empty.
pub fn load_idx_with_classes(images: &Path, labels: &Path, class_names: &[&str]) -> Result<Dataset> {
    if class_names.is_empty() {
        return Err(DataError::invalid("load_idx: no class names"));
    }
    let (ib, lb) = rayon::join(|| read_maybe_gz(images), || read_maybe_gz(labels));
    let (ib, lb) = (ib?, lb?);
    let lab = parse_labels(labels, &lb, class_names.len())?;
    let (n, rows, cols, px) = parse_images(images, &ib)?;
    if lab.len() != n {
        return Err(DataError::format(
            labels,
            Some(4),
            format!(
                "label count {} does not match image count {n} in {}",
                lab.len(),
                images.display()
            ),
        ));
    }
    let pixels = bytes_to_f32(px);
    let labels_v: Vec<usize> = lab.iter().map(|&l| l as usize).collect();
    Ok(Dataset::from_trusted(
        ImageShape::new(rows, cols, 1),
        pixels,
        labels_v,
        class_names.iter().map(|s| s.to_string()).collect(),
    ))
}

/// Locates the four IDX files in `dir`; on failure returns the missing names.
pub(crate) fn idx_paths(dir: &Path) -> std::result::Result<[PathBuf; 4], Vec<String>> {
    let found: Vec<Option<PathBuf>> = IDX_FILES.iter().map(|f| find_plain_or_gz(dir, f)).collect();
    if found.iter().all(Option::is_some) {
        let v: Vec<PathBuf> = found.into_iter().map(Option::unwrap).collect();
        Ok([v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()])
    } else {
        Err(IDX_FILES
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| format!("{n}[.gz]"))
            .collect())
    }
}

/// Loads an MNIST-style folder holding `train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]` and
/// `t10k-labels-idx1-ubyte[.gz]`.
///
/// Class names: Fashion-MNIST names ([`FASHION_MNIST_CLASSES`]) when the
/// folder's name contains `fashion` (case-insensitive), else `"0"..."9"`.
/// Use [`load_idx_dir`] to choose explicitly. Both splits load in parallel.
///
/// # Errors
/// [`DataError::Missing`] if a file is absent (listing the expected names);
/// otherwise as [`load_idx`].
pub fn load_mnist_dir(dir: &Path) -> Result<Split> {
    let fashion = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase().contains("fashion"))
        .unwrap_or(false);
    let names: &[&str] = if fashion {
        &FASHION_MNIST_CLASSES
    } else {
        &MNIST_CLASSES
    };
    load_idx_dir(dir, names, if fashion { "fashion-mnist" } else { "mnist" })
}

/// Loads an MNIST-style folder (see [`load_mnist_dir`]) with the given class
/// names; `dataset` is the name used in a [`DataError::Missing`].
///
/// # Errors
/// As [`load_mnist_dir`].
pub fn load_idx_dir(dir: &Path, class_names: &[&str], dataset: &str) -> Result<Split> {
    let [tri, trl, tei, tel] = idx_paths(dir).map_err(|_| DataError::Missing {
        dataset: dataset.to_string(),
        looked_in: vec![dir.to_path_buf()],
        expected: IDX_FILES.iter().map(|n| format!("{n}[.gz]")).collect(),
    })?;
    let (train, test) = rayon::join(
        || load_idx_with_classes(&tri, &trl, class_names),
        || load_idx_with_classes(&tei, &tel, class_names),
    );
    Ok(Split {
        train: train?,
        test: test?,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn idx_images(n: u32, r: u32, c: u32, px: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for x in [n, r, c] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(px);
        v
    }

    #[test]
    fn tiny_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let ip = dir.path().join("i");
        let lp = dir.path().join("l");
        std::fs::write(&ip, idx_images(2, 1, 2, &[1, 2, 3, 4])).unwrap();
        std::fs::write(&lp, [0, 0, 8, 1, 0, 0, 0, 2, 7, 9]).unwrap();
        let ds = load_idx(&ip, &lp).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.image(1), &[3.0, 4.0]);
        assert_eq!(ds.labels(), &[7, 9]);
    }
}
