//! Evaluation: accuracy and loss on any labelled set, in blocks.

use kip_core::argmax;
use nalgebra::DMatrix;

use crate::backprop::loss_sum;
use crate::error::{NnError, Result};
use crate::mlp::Mlp;
use crate::params::Loss;
use kip_core::Real;

/// Accuracy and mean loss of a network on a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eval {
    /// Fraction of rows whose output argmax equals the label, in [0, 1].
    pub accuracy: f64,
    /// Mean loss of the model's [`Loss`] (`½·mean` of squared errors over
    /// all `n × C` entries for MSE; mean cross-entropy over rows).
    pub loss: f64,
}

/// The centred one-hot targets `e_label − 1/C` (an `n × C` matrix).
///
/// # Examples
///
/// ```
/// let y = kip_nn::centered_one_hot(&[1, 0], 4);
/// assert!((y[(0, 1)] - 0.75).abs() < 1e-12 && (y[(0, 0)] + 0.25).abs() < 1e-12);
/// ```
pub fn centered_one_hot(labels: &[usize], classes: usize) -> DMatrix<f64> {
    let off = 1.0 / classes as f64;
    DMatrix::from_fn(
        labels.len(),
        classes,
        |i, c| {
            if labels[i] == c {
                1.0 - off
            } else {
                -off
            }
        },
    )
}

/// Checks that `labels` has `n` entries, all below `classes`.
pub(crate) fn check_labels(labels: &[usize], n: usize, classes: usize) -> Result<()> {
    if labels.len() != n {
        return Err(NnError::ShapeMismatch {
            what: "labels length",
            expected: n,
            got: labels.len(),
        });
    }
    match labels.iter().position(|&l| l >= classes) {
        Some(row) => Err(NnError::LabelOutOfRange {
            row,
            label: labels[row],
            classes,
        }),
        None => Ok(()),
    }
}

/// Check what a training step of a batch of `b` samples reads for its
/// loss: MSE targets of shape `C × b` (`targets`: rows, columns), or
/// cross-entropy labels (length `b`, each `< C`).
pub(crate) fn check_step_targets(
    loss: Loss,
    targets: (usize, usize),
    labels: &[usize],
    b: usize,
    c: usize,
) -> Result<()> {
    match loss {
        Loss::Mse => {
            if targets != (c, b) {
                let (what, expected, got) = if targets.0 != c {
                    ("targets rows (classes)", c, targets.0)
                } else {
                    ("targets columns (batch)", b, targets.1)
                };
                return Err(NnError::ShapeMismatch { what, expected, got });
            }
            Ok(())
        }
        Loss::CrossEntropy => check_labels(labels, b, c),
    }
}

/// Accuracy and mean loss of `model` on `x` (`n × d`, one sample per row)
/// with class ids `labels`, computed in blocks of 1000 rows.
///
/// For an MSE model the loss is taken against `targets` (`n × C`), or the
/// centred one-hot of `labels` when `targets` is `None`; a cross-entropy
/// model ignores `targets`. An empty set gives accuracy and loss 0.
///
/// # Errors
///
/// [`NnError::ShapeMismatch`] if `x` has other than `d` columns, `labels`
/// other than `n` entries or `targets` another shape than `n × C`;
/// [`NnError::LabelOutOfRange`] for a label `≥ C`.
pub fn evaluate<T: Real>(
    model: &Mlp<T>,
    x: &DMatrix<f64>,
    labels: &[usize],
    targets: Option<&DMatrix<f64>>,
) -> Result<Eval> {
    let (n, c) = (x.nrows(), model.n_out());
    if x.ncols() != model.d_in() {
        return Err(NnError::ShapeMismatch {
            what: "x columns",
            expected: model.d_in(),
            got: x.ncols(),
        });
    }
    evaluate_blocks(model.loss, n, c, labels, targets, |f| model.for_each_block(x, f))
}

/// The body of [`evaluate`] for any network that can run over `n` rows in
/// blocks: checks `labels` and `targets` against `n` and `c`, then lets
/// `run` call its argument with `(first_row, outputs)` for consecutive
/// blocks (`outputs` being `C × rows`, one column per sample) and
/// accumulates the accuracy and the mean `loss`.
pub(crate) fn evaluate_blocks<T: Real>(
    loss: Loss,
    n: usize,
    c: usize,
    labels: &[usize],
    targets: Option<&DMatrix<f64>>,
    run: impl FnOnce(&mut dyn FnMut(usize, &DMatrix<T>)),
) -> Result<Eval> {
    check_labels(labels, n, c)?;
    if let Some(t) = targets {
        if t.nrows() != n || t.ncols() != c {
            let (what, expected, got) = if t.nrows() != n {
                ("targets rows", n, t.nrows())
            } else {
                ("targets columns", c, t.ncols())
            };
            return Err(NnError::ShapeMismatch { what, expected, got });
        }
    }
    if n == 0 {
        return Ok(Eval {
            accuracy: 0.0,
            loss: 0.0,
        });
    }
    let (mut correct, mut total) = (0usize, 0.0);
    let off = 1.0 / c as f64;
    let mut yb = DMatrix::<T>::zeros(c, 0);
    run(&mut |start, out| {
        let rows = out.ncols();
        let lb = &labels[start..start + rows];
        for (j, col) in out.column_iter().enumerate() {
            correct += usize::from(argmax(col.iter().copied()) == lb[j]);
        }
        if loss == Loss::Mse {
            yb = DMatrix::from_fn(c, rows, |k, j| match targets {
                Some(t) => T::of_f64(t[(start + j, k)]),
                None => T::of_f64(if lb[j] == k { 1.0 - off } else { -off }),
            });
        }
        total += loss_sum(loss, out, yb.as_view(), lb, None);
    });
    Ok(Eval {
        accuracy: correct as f64 / n as f64,
        loss: total / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::MlpParams;

    #[test]
    fn evaluate_matches_forward() {
        for loss in [Loss::Mse, Loss::CrossEntropy] {
            let p = MlpParams {
                width: 8,
                loss,
                ..Default::default()
            }
            .check()
            .unwrap();
            let m = Mlp::<f64>::init(3, 4, &p, 3);
            let x = DMatrix::from_fn(2300, 3, |i, j| ((i * 7 + j) % 11) as f64 - 5.0);
            let labels: Vec<usize> = (0..2300).map(|i| i % 4).collect();
            let e = evaluate(&m, &x, &labels, None).unwrap();
            let f = m.forward(&x);
            let pred = m.predict_labels(&x);
            let acc = pred.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / 2300.0;
            assert_eq!(e.accuracy, acc);
            let want = match loss {
                Loss::Mse => 0.5 * (&f - centered_one_hot(&labels, 4)).norm_squared() / (2300.0 * 4.0),
                Loss::CrossEntropy => {
                    (0..2300)
                        .map(|i| {
                            let r = f.row(i);
                            r.iter().map(|v| v.exp()).sum::<f64>().ln() - r[labels[i]]
                        })
                        .sum::<f64>()
                        / 2300.0
                }
            };
            assert!((e.loss - want).abs() < 1e-10 * want, "{loss}: {} vs {want}", e.loss);
        }
    }

    #[test]
    fn evaluate_rejects_bad_shapes() {
        let p = MlpParams {
            width: 4,
            ..Default::default()
        }
        .check()
        .unwrap();
        let m = Mlp::new(3, 2, &p, 0);
        let x = DMatrix::zeros(5, 3);
        assert!(matches!(
            evaluate(&m, &DMatrix::zeros(5, 4), &[0; 5], None),
            Err(NnError::ShapeMismatch { what: "x columns", .. })
        ));
        assert!(matches!(
            evaluate(&m, &x, &[0; 4], None),
            Err(NnError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            evaluate(&m, &x, &[0, 0, 2, 0, 0], None),
            Err(NnError::LabelOutOfRange {
                row: 2,
                label: 2,
                classes: 2
            })
        ));
        assert!(matches!(
            evaluate(&m, &x, &[0; 5], Some(&DMatrix::zeros(5, 3))),
            Err(NnError::ShapeMismatch {
                what: "targets columns",
                ..
            })
        ));
    }
}
