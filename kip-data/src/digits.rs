//! The sklearn 8×8 digits (UCI optical digits test set), embedded in the
//! binary so that `kip` runs with zero setup.

use std::path::Path;

use crate::dataset::{Dataset, ImageShape, Split};
use crate::error::{DataError, Result};
use crate::idx::MNIST_CLASSES;
use crate::io::{decode_maybe_gz, read_maybe_gz};

/// The gzip CSV copied verbatim from scikit-learn (`digits.csv.gz`).
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Name used in error messages for the embedded file.
const EMBEDDED: &str = "<embedded digits.csv.gz>";

/// Parses digits-style CSV text: one image per row, 64 pixel values (8×8
/// row-major) then the label 0..9; no header. Pixel values are kept as given
/// (0..16 for sklearn digits).
fn parse_csv(path: &Path, text: &[u8]) -> Result<Dataset> {
    let text = std::str::from_utf8(text).map_err(|e| DataError::Csv {
        path: path.to_path_buf(),
        row: 1 + text[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
        column: 0,
        what: "not valid UTF-8".to_string(),
    })?;
    let mut pixels = Vec::with_capacity(text.len() / 2);
    let mut labels = Vec::new();
    for (r, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let row = r + 1;
        let mut cols = 0;
        for (c, field) in line.split(',').enumerate() {
            let column = c + 1;
            let bad = |what: String| DataError::Csv {
                path: path.to_path_buf(),
                row,
                column,
                what,
            };
            let v: f64 = field
                .trim()
                .parse()
                .map_err(|_| bad(format!("cannot parse `{field}` as a number")))?;
            if !v.is_finite() {
                return Err(bad(format!("value `{field}` is not finite")));
            }
            if c < 64 {
                pixels.push(v as f32);
            } else if c == 64 {
                if !((0.0..10.0).contains(&v) && v.fract() == 0.0) {
                    return Err(bad(format!("label `{field}` is not a class id 0..9")));
                }
                labels.push(v as usize);
            } else {
                return Err(bad("more than 65 fields (64 pixels + label)".to_string()));
            }
            cols = column;
        }
        if cols != 65 {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                row,
                column: cols + 1,
                what: format!("row has {cols} fields, expected 65 (64 pixels + label)"),
            });
        }
    }
    if labels.is_empty() {
        return Err(DataError::Csv {
            path: path.to_path_buf(),
            row: 1,
            column: 1,
            what: "no rows (empty dataset)".to_string(),
        });
    }
    Ok(Dataset::from_trusted(
        ImageShape::new(8, 8, 1),
        pixels,
        labels,
        MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
    ))
}

/// Loads a digits-style CSV file (gzip or raw): 65 comma-separated numbers
/// per row (64 pixels of an 8×8 image, row-major, then the label 0..9).
///
/// # Errors
/// [`DataError::Io`]/[`DataError::Gzip`] if unreadable; [`DataError::Csv`]
/// naming the 1-based row and column of the first bad field (not a number,
/// not finite, label not in 0..9, wrong field count) or an empty file.
pub fn load_digits_csv(path: &Path) -> Result<Dataset> {
    let bytes = read_maybe_gz(path)?;
    parse_csv(path, &bytes)
}

/// All 1797 embedded sklearn digits (8×8×1, pixel values 0..16, classes
/// `"0".."9"`), in file order.
pub fn digits_all() -> Dataset {
    let path = Path::new(EMBEDDED);
    let bytes = decode_maybe_gz(DIGITS_CSV_GZ.to_vec(), path)
        .expect("the embedded digits file is a valid gzip stream (checked by tests)");
    parse_csv(path, &bytes).expect("the embedded digits file is valid CSV (checked by tests)")
}

/// The embedded sklearn digits with a FIXED split: image `i` (file order) is
/// in the test set when `i % 5 == 4`, else in training. That gives 1438
/// training and 359 test images, both covering every class.
///
/// # Examples
/// ```
/// let s = kip_data::digits();
/// assert_eq!((s.train.len(), s.test.len()), (1438, 359));
/// assert_eq!(s.train.shape().dim(), 64);
/// ```
pub fn digits() -> Split {
    let all = digits_all();
    let (tr, te): (Vec<usize>, Vec<usize>) = (0..all.len()).partition(|i| i % 5 != 4);
    Split {
        train: all.subset(&tr),
        test: all.subset(&te),
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits() {
        let all = digits_all();
        assert_eq!(all.len(), 1797);
        // Histogram from shared/data/README.md.
        assert_eq!(
            all.class_counts(),
            vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
        // First row sum 294, label 0 (python3: sum of the first 64 fields of row 1).
        let s: f32 = all.image(0).iter().sum();
        assert_eq!(s, 294.0);
        assert_eq!(all.labels()[0], 0);
        assert!(all.pixels().iter().all(|&p| (0.0..=16.0).contains(&p)));
        let sp = digits();
        assert_eq!(sp.train.len() + sp.test.len(), 1797);
        assert_eq!(sp.test.len(), 359);
        assert_eq!(sp.test.image(0), all.image(4));
    }
}
