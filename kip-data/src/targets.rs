//! Label vectors for kernel ridge regression.

use nalgebra::DMatrix;

/// One-hot label matrix, `n × C`: row `i` has 1 in column `labels[i]`, 0
/// elsewhere; with `centred`, `1/C` is subtracted from every entry (the
/// reference's default: entries `1 − 1/C` and `−1/C`, rows sum to 0).
///
/// # Panics
/// If a label is `>= n_classes`.
///
/// # Examples
/// ```
/// let y = kip_data::one_hot(&[1, 0], 2, true);
/// assert!((y[(0, 1)] - 0.5).abs() < 1e-12 && (y[(0, 0)] + 0.5).abs() < 1e-12);
/// ```
pub fn one_hot(labels: &[usize], n_classes: usize, centred: bool) -> DMatrix<f64> {
    let mut buf = vec![0.0; labels.len() * n_classes];
    one_hot_into(labels, n_classes, centred, &mut buf);
    DMatrix::from_row_slice(labels.len(), n_classes, &buf)
}

/// [`one_hot`] written row-major into `out` (`labels.len() × n_classes`).
///
/// # Panics
/// If `out.len() != labels.len() · n_classes` or a label is `>= n_classes`.
pub fn one_hot_into(labels: &[usize], n_classes: usize, centred: bool, out: &mut [f64]) {
    assert_eq!(
        out.len(),
        labels.len() * n_classes,
        "one_hot_into: buffer has {} values, expected {} x {n_classes}",
        out.len(),
        labels.len()
    );
    let off = if centred { 1.0 / n_classes as f64 } else { 0.0 };
    for (row, &l) in out.chunks_mut(n_classes.max(1)).zip(labels) {
        assert!(l < n_classes, "one_hot: label {l} out of range for {n_classes} classes");
        row.iter_mut().for_each(|v| *v = -off);
        row[l] = 1.0 - off;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum() {
        let y = one_hot(&[0, 2, 1], 3, true);
        for i in 0..3 {
            assert!(y.row(i).sum().abs() < 1e-12);
        }
        let y = one_hot(&[0, 2, 1], 3, false);
        assert_eq!(y[(1, 2)], 1.0);
        assert_eq!(y.sum(), 3.0);
    }
}
