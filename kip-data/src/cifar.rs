//! CIFAR-10 binary batches (gzip or raw).
//!
//! Each record is 3073 bytes: one label byte, then the red, green and blue
//! 32×32 planes (row-major). Records are converted to HWC.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dataset::{Dataset, ImageShape, Split};
use crate::error::{DataError, Result};
use crate::io::{find_plain_or_gz, read_maybe_gz};

/// Bytes per CIFAR-10 record (1 label + 3 · 1024 pixels).
pub const CIFAR_RECORD: usize = 3073;

/// The standard CIFAR-10 class names, index = label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Checks CIFAR-10 records in memory (whole records, labels in range) and
/// returns their count.
fn check_records(path: &Path, b: &[u8], n_classes: usize) -> Result<usize> {
    if b.is_empty() {
        return Err(DataError::format(path, Some(0), "file holds 0 records (empty dataset)"));
    }
    if b.len() % CIFAR_RECORD != 0 {
        let full = b.len() / CIFAR_RECORD;
        return Err(DataError::format(
            path,
            Some((full * CIFAR_RECORD) as u64),
            format!(
                "length {} is not a multiple of the {CIFAR_RECORD}-byte record: {full} full records, then a partial record of {} bytes (truncated)",
                b.len(),
                b.len() - full * CIFAR_RECORD
            ),
        ));
    }
    let n = b.len() / CIFAR_RECORD;
    if let Some(i) = (0..n).find(|&i| b[i * CIFAR_RECORD] as usize >= n_classes) {
        return Err(DataError::format(
            path,
            Some((i * CIFAR_RECORD) as u64),
            format!(
                "label byte {} of record {i} is out of range for {n_classes} classes",
                b[i * CIFAR_RECORD]
            ),
        ));
    }
    Ok(n)
}

/// Appends checked records ([`check_records`]) to `pixels` (HWC f32) and
/// `labels`.
fn decode_records(b: &[u8], pixels: &mut Vec<f32>, labels: &mut Vec<usize>) {
    let n = b.len() / CIFAR_RECORD;
    labels.extend((0..n).map(|i| b[i * CIFAR_RECORD] as usize));
    let start = pixels.len();
    pixels.resize(start + n * 3072, 0.0);
    pixels[start..]
        .par_chunks_mut(3072)
        .zip(b.par_chunks(CIFAR_RECORD))
        .for_each(|(out, rec)| {
            let (r, g, bl) = (&rec[1..1025], &rec[1025..2049], &rec[2049..3073]);
            for (p, px) in out.chunks_exact_mut(3).enumerate() {
                px[0] = r[p] as f32;
                px[1] = g[p] as f32;
                px[2] = bl[p] as f32;
            }
        });
}

/// Reads and checks one batch file: its bytes and record count.
fn read_records(path: &Path, n_classes: usize) -> Result<(Vec<u8>, usize)> {
    let b = read_maybe_gz(path)?;
    let n = check_records(path, &b, n_classes)?;
    Ok((b, n))
}

/// Decodes checked batches into one 32×32×3 dataset, storage allocated once.
fn decode_batches(batches: &[(Vec<u8>, usize)], class_names: &[String]) -> Dataset {
    let n: usize = batches.iter().map(|b| b.1).sum();
    let (mut pixels, mut labels) = (Vec::with_capacity(n * 3072), Vec::with_capacity(n));
    for (b, _) in batches {
        decode_records(b, &mut pixels, &mut labels);
    }
    Dataset::from_trusted(ImageShape::new(32, 32, 3), pixels, labels, class_names.to_vec())
}

/// Loads one CIFAR-10 binary batch file (gzip or raw) as a 32×32×3 dataset
/// with pixel values 0..255 in HWC order.
///
/// # Errors
/// [`DataError::Io`]/[`DataError::Gzip`] on unreadable files;
/// [`DataError::Format`] if the (decompressed) length is zero or not a
/// multiple of 3073 (naming the offset of the partial record), or a label
/// byte is `>= class_names.len()` (naming the record's offset);
/// [`DataError::Invalid`] if `class_names` is empty.
pub fn load_cifar_batch(path: &Path, class_names: &[String]) -> Result<Dataset> {
    if class_names.is_empty() {
        return Err(DataError::invalid("load_cifar_batch: no class names"));
    }
    Ok(decode_batches(&[read_records(path, class_names.len())?], class_names))
}

/// Reads `batches.meta.txt` (one class name per line; blank lines ignored).
fn read_meta(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() || names.len() > 256 {
        return Err(DataError::format(
            path,
            None,
            format!("expected 1..=256 class names, one per line, found {}", names.len()),
        ));
    }
    Ok(names)
}

/// The file names a CIFAR-10 folder must hold (`[.gz]` = optional suffix).
pub fn cifar10_expected_files() -> Vec<String> {
    let mut v: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin[.gz]")).collect();
    v.push("test_batch.bin[.gz] (or a partial test_batch*.bin[.gz])".to_string());
    v
}

/// Locates `(train batches, test file, is_partial)`; `None` if incomplete.
pub(crate) fn cifar_paths(dir: &Path) -> Option<([PathBuf; 5], PathBuf, bool)> {
    let mut train = Vec::with_capacity(5);
    for i in 1..=5 {
        train.push(find_plain_or_gz(dir, &format!("data_batch_{i}.bin"))?);
    }
    let (test, partial) = match find_plain_or_gz(dir, "test_batch.bin") {
        Some(p) => (p, false),
        None => {
            let mut cands: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.starts_with("test_batch") && (n.ends_with(".bin") || n.ends_with(".bin.gz"))
                        })
                })
                .collect();
            cands.sort();
            (cands.into_iter().next()?, true)
        }
    };
    let train: [PathBuf; 5] = train.try_into().ok()?;
    Some((train, test, partial))
}

/// Loads a CIFAR-10 folder: `data_batch_1..5.bin[.gz]` as training set (in
/// order, 50 000 images) and `test_batch.bin[.gz]` as test set. If the full
/// test file is absent, the first (by name) `test_batch*.bin[.gz]` is used as a
/// partial test set and a note in [`Split::notes`] says how many records it
/// holds. Class names come from `batches.meta.txt` when present, else
/// [`CIFAR10_CLASSES`]. The six files are decoded in parallel.
///
/// # Errors
/// [`DataError::Missing`] if a batch or every test file is absent; otherwise
/// as [`load_cifar_batch`] (plus [`DataError::Format`] for a bad meta file).
pub fn load_cifar10_dir(dir: &Path) -> Result<Split> {
    let (train_paths, test_path, partial) = cifar_paths(dir).ok_or_else(|| DataError::Missing {
        dataset: "cifar10".to_string(),
        looked_in: vec![dir.to_path_buf()],
        expected: cifar10_expected_files(),
    })?;
    let meta = dir.join("batches.meta.txt");
    let class_names = if meta.is_file() {
        read_meta(&meta)?
    } else {
        CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
    };
    let mut all: Vec<&PathBuf> = train_paths.iter().collect();
    all.push(&test_path);
    // The files are read and checked in parallel (bytes: a quarter of the
    // decoded size), then decoded into storage allocated once.
    let read: Vec<Result<_>> = all.par_iter().map(|p| read_records(p, class_names.len())).collect();
    let mut loaded = read.into_iter().collect::<Result<Vec<_>>>()?;
    let test_bytes = loaded.pop().expect("six files were read");
    let test = decode_batches(&[test_bytes], &class_names);
    let train = decode_batches(&loaded, &class_names);
    drop(loaded);
    let mut notes = Vec::new();
    if partial {
        notes.push(format!(
            "CIFAR-10 test file is partial: {} records found in {} (the full test_batch.bin has 10000)",
            test.len(),
            test_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
    }
    Ok(Split { train, test, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_to_hwc() {
        let mut rec = vec![3u8];
        rec.extend(std::iter::repeat_n(10u8, 1024));
        rec.extend(std::iter::repeat_n(20u8, 1024));
        rec.extend(std::iter::repeat_n(30u8, 1024));
        rec[1 + 5] = 11; // red of pixel 5
        assert_eq!(check_records(Path::new("t"), &rec, 10).unwrap(), 1);
        let (mut px, mut lb) = (vec![], vec![]);
        decode_records(&rec, &mut px, &mut lb);
        assert_eq!(lb, vec![3]);
        assert_eq!(&px[15..18], &[11.0, 20.0, 30.0]);
        assert_eq!(&px[0..3], &[10.0, 20.0, 30.0]);
    }
}
