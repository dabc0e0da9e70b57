//! Point arrays for `kip gram`: read a float array from a `.npy` file or
//! an array of an `.npz` archive (one point per leading index), and write
//! a `float64` matrix as `.npy`.

use std::io::Write;
use std::path::Path;

use crate::dataset::ImageShape;
use crate::error::{DataError, Result};
use crate::io::write_file_atomic;
use crate::npz::{array_names, npz_err, open, read_array, read_npy, Array, ArrayData};

/// A float array of points: `shape[0]` points of `shape[1..]` values each
/// (C order), widened to `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct PointArray {
    /// The array's shape, points first.
    pub shape: Vec<usize>,
    /// The values, row-major (C order).
    pub data: Vec<f64>,
}

impl PointArray {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per point.
    pub fn dim(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The image shape of image arrays: `[n, h, w, c]` → `h × w × c`,
    /// `[n, h, w]` → `h × w × 1`; `None` for flat `[n, d]` points.
    pub fn image_shape(&self) -> Option<ImageShape> {
        ImageShape::of_point_dims(&self.shape[1..])
    }
}

/// Read the points of `path`: a `.npy` file, or array `key` of a `.npz`
/// (default: `x` when present, else the archive's only array).
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read; [`DataError::Npz`]
/// naming the array for: a missing or ambiguous array, a dtype other than
/// float32/float64, rank 1 or above 4, no points, non-finite values.
pub fn read_points(path: &Path, key: Option<&str>) -> Result<PointArray> {
    let is_npz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let (name, array) = if is_npz {
        let mut ar = open(path)?;
        let names = array_names(&ar);
        let name = match key {
            Some(k) => k.to_string(),
            None if names.iter().any(|n| n == "x") => "x".to_string(),
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(npz_err(
                    path,
                    None,
                    format!(
                        "holds {} arrays ({}) and none is `x`: name one",
                        names.len(),
                        names.join(", ")
                    ),
                ))
            }
        };
        let a = read_array(&mut ar, path, &name)?.ok_or_else(|| {
            npz_err(
                path,
                Some(&name),
                format!("no such array (the archive holds: {})", names.join(", ")),
            )
        })?;
        (name, a)
    } else {
        if let Some(k) = key {
            return Err(npz_err(path, Some(k), "an array name applies to .npz archives only"));
        }
        ("npy".to_string(), read_npy(path, "npy")?)
    };
    points_of(path, &name, array)
}

fn points_of(path: &Path, name: &str, a: Array) -> Result<PointArray> {
    let err = |what: String| DataError::Unusable {
        path: path.to_path_buf(),
        array: name.to_string(),
        what,
    };
    let data = match a.data {
        ArrayData::F32(v) => v.into_iter().map(f64::from).collect::<Vec<f64>>(),
        ArrayData::F64(v) => v,
        ArrayData::U8(_) | ArrayData::I64(_) => {
            return Err(err(
                "integer dtype: points must be float32 or float64 (convert and scale them first)".into(),
            ))
        }
    };
    if !(2..=4).contains(&a.shape.len()) {
        return Err(err(format!(
            "shape {:?}: expected [n, d] points or [n, h, w(, c)] images",
            a.shape
        )));
    }
    if a.shape[0] == 0 || a.shape[1..].contains(&0) {
        return Err(err(format!("shape {:?} holds no points", a.shape)));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let d: usize = a.shape[1..].iter().product();
        return Err(err(format!("non-finite value at point {}, entry {}", i / d, i % d)));
    }
    Ok(PointArray { shape: a.shape, data })
}

/// Write a row-major `rows × cols` float64 matrix as a `.npy` file
/// (atomically: no partial file on failure).
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written; a length that is not
/// `rows·cols`.
pub fn write_npy_f64(path: &Path, rows: usize, cols: usize, data: &[f64]) -> Result<()> {
    if Some(data.len()) != rows.checked_mul(cols) {
        return Err(DataError::invalid(format!(
            "{} values for a {rows} x {cols} matrix",
            data.len()
        )));
    }
    let mut bytes = npy_f64_header(rows, cols);
    bytes.reserve(8 * data.len());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_file_atomic(path, &bytes)
}

/// The `.npy` (version 1.0) header of a C-order `rows × cols` float64
/// array.
fn npy_f64_header(rows: usize, cols: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a
    // multiple of 64 and ended by a newline.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// Writes a `rows × cols` float64 `.npy` atomically (as [`write_npy_f64`])
/// without holding it in memory: `block(r0, r1, buf)` fills `buf` with rows
/// `r0..r1` (row-major), `block_rows` rows at a time. An error from
/// `block` stops the write and leaves no file behind.
///
/// # Errors
/// [`DataError::Invalid`] when `block` gives the wrong number of values,
/// `block`'s error, or an I/O error naming the file.
pub fn write_npy_f64_blocks(
    path: &Path,
    rows: usize,
    cols: usize,
    block_rows: usize,
    mut block: impl FnMut(usize, usize, &mut Vec<f64>) -> Result<()>,
) -> Result<()> {
    let step = block_rows.max(1);
    crate::write_atomic(path, |w| {
        w.write_all(&npy_f64_header(rows, cols))
            .map_err(|e| DataError::io(path, e))?;
        let mut buf = Vec::new();
        let mut bytes = Vec::new();
        for r0 in (0..rows).step_by(step) {
            let r1 = (r0 + step).min(rows);
            buf.clear();
            block(r0, r1, &mut buf)?;
            if buf.len() != (r1 - r0) * cols {
                return Err(DataError::invalid(format!(
                    "{} values for rows {r0}..{r1} of a {rows} x {cols} matrix",
                    buf.len()
                )));
            }
            bytes.clear();
            bytes.extend(buf.iter().flat_map(|v| v.to_le_bytes()));
            w.write_all(&bytes).map_err(|e| DataError::io(path, e))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_npy_equals_the_whole_one_and_a_failed_block_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, blocked) = (dir.path().join("w.npy"), dir.path().join("b.npy"));
        let data: Vec<f64> = (0..35).map(|i| i as f64 * 0.5 - 3.0).collect();
        write_npy_f64(&whole, 7, 5, &data).unwrap();
        write_npy_f64_blocks(&blocked, 7, 5, 3, |r0, r1, buf| {
            buf.extend_from_slice(&data[r0 * 5..r1 * 5]);
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&whole).unwrap(), std::fs::read(&blocked).unwrap());
        let failed = dir.path().join("f.npy");
        let e = write_npy_f64_blocks(&failed, 7, 5, 3, |r0, _, buf| {
            if r0 > 0 {
                return Err(DataError::invalid("stop".to_string()));
            }
            buf.extend_from_slice(&data[..15]);
            Ok(())
        });
        assert!(e.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        // The wrong number of values is refused, not written.
        assert!(write_npy_f64_blocks(&failed, 2, 2, 1, |_, _, buf| {
            buf.push(1.0);
            Ok(())
        })
        .is_err());
    }

    #[test]
    fn written_npy_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.npy");
        let data: Vec<f64> = (0..6).map(|i| i as f64 * 0.5 - 1.0).collect();
        write_npy_f64(&p, 2, 3, &data).unwrap();
        let back = read_points(&p, None).unwrap();
        assert_eq!(back.shape, vec![2, 3]);
        assert_eq!(back.data, data);
        assert!(back.image_shape().is_none());
        let e = write_npy_f64(&p, 2, 2, &data).unwrap_err().to_string();
        assert!(e.contains("6 values for a 2 x 2"), "{e}");
    }
}
