//! Classification accuracy and the reference's mean squared error loss.

use kip_core::argmax;
use nalgebra::DMatrix;

/// Fraction of rows whose argmax equals the label ([`kip_core::argmax`]:
/// ties → the lowest class index; a NaN entry never wins). 0 for zero rows
/// or zero columns.
///
/// # Shapes
/// `pred`: `n × C`; `labels`: `n`.
///
/// # Panics
/// If `labels.len() != pred.nrows()`.
///
/// # Examples
/// ```
/// use nalgebra::DMatrix;
/// let pred = DMatrix::from_row_slice(3, 2, &[0.9, 0.1, 0.5, 0.5, 0.2, 0.8]);
/// // Row 1 is a tie: class 0 wins.
/// assert!((kip_krr::accuracy(&pred, &[0, 0, 0]) - 2.0 / 3.0).abs() < 1e-15);
/// ```
pub fn accuracy(pred: &DMatrix<f64>, labels: &[usize]) -> f64 {
    assert_eq!(labels.len(), pred.nrows(), "accuracy: one label per prediction row");
    let n = pred.nrows();
    if n == 0 || pred.ncols() == 0 {
        return 0.0;
    }
    let hits = (0..n)
        .filter(|&i| argmax(pred.row(i).iter().copied()) == labels[i])
        .count();
    hits as f64 / n as f64
}

/// The reference's loss `½ · mean((ŷ − y)²)`, the mean over all `n × C`
/// entries (the KIP objective, paper Eq. 3). 0 for an empty matrix.
///
/// # Shapes
/// `pred`, `y`: `n × C`.
///
/// # Panics
/// If the shapes differ.
///
/// # Examples
/// ```
/// use nalgebra::DMatrix;
/// let p = DMatrix::from_row_slice(1, 2, &[1.0, 0.0]);
/// let y = DMatrix::from_row_slice(1, 2, &[0.0, 0.0]);
/// assert!((kip_krr::mse_loss(&p, &y) - 0.25).abs() < 1e-15);
/// ```
pub fn mse_loss(pred: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
    assert_eq!(pred.shape(), y.shape(), "mse_loss: shapes must agree");
    let len = pred.len();
    if len == 0 {
        return 0.0;
    }
    let sum: f64 = pred.iter().zip(y.iter()).map(|(p, t)| (p - t) * (p - t)).sum();
    0.5 * sum / len as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_uses_the_first_maximum_and_skips_nan() {
        let pred = DMatrix::from_row_slice(3, 3, &[1.0, 1.0, 0.0, f64::NAN, 0.5, 0.7, 0.0, 2.0, 2.0]);
        assert_eq!(accuracy(&pred, &[0, 2, 1]), 1.0);
        assert_eq!(accuracy(&DMatrix::zeros(0, 3), &[]), 0.0);
    }

    #[test]
    fn mse_is_half_mean_square() {
        let p = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]);
        let y = DMatrix::zeros(2, 2);
        assert_eq!(mse_loss(&p, &y), 0.5 * 30.0 / 4.0);
    }
}
