//! What KIP minimises over the KRR predictions `pred = K_ts α`: the
//! paper's mean squared error, or RFAD's Platt-scaled cross-entropy (Loo et
//! al. 2022) with a learned temperature.
//!
//! ```text
//! MSE:    L = ½·mean((pred − y_t)²),                 dL/dpred = (pred − y_t)/(n_t C)
//! Platt:  z = e^θ·pred,  q = y_t + 1/C (one-hot),   L = −(1/n_t) Σ_i Σ_c q_ic log softmax(z_i)_c
//!         dL/dpred = e^θ (softmax(z) − q)/n_t,       dL/dθ = Σ_ic (softmax(z) − q)_ic z_ic / n_t
//! ```
//!
//! Platt needs class targets (centred one-hot rows, as KIP draws them).

use std::fmt;
use std::str::FromStr;

use kip_core::argmax;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// The loss of a KIP run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// `½·mean((pred − y_t)²)` (the paper's).
    #[default]
    Mse,
    /// Cross-entropy of the predictions scaled by a learned temperature
    /// `e^θ` (RFAD's; θ starts at 0 and is learned with Adam).
    Platt,
}

impl Loss {
    /// Whether this is the default (MSE).
    pub fn is_mse(&self) -> bool {
        *self == Loss::Mse
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::Mse => "mse",
            Loss::Platt => "platt",
        })
    }
}

impl FromStr for Loss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mse" => Ok(Loss::Mse),
            "platt" => Ok(Loss::Platt),
            _ => Err(format!("unknown loss `{s}` (expected mse or platt)")),
        }
    }
}

/// A loss with its current parameter: what one pass evaluates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Mean squared error.
    Mse,
    /// Platt-scaled cross-entropy at log-temperature `log_temp` (θ).
    Platt {
        /// θ: the predictions are scaled by `e^θ`.
        log_temp: f64,
    },
}

/// Sums over some target rows: the loss sum (squared residuals, or
/// cross-entropies), the hits, and `Σ dL/dθ` terms (Platt).
pub(crate) struct RowSums {
    pub loss: f64,
    pub hits: f64,
    pub dlog_temp: f64,
}

impl Objective {
    /// Replace `pred` (rows `r0 ..` of an `n_t`-target batch) by the
    /// cotangent `dL/dpred` and return the rows' sums.
    pub(crate) fn residuals(self, pred: &mut DMatrix<f64>, y_t: &DMatrix<f64>, r0: usize, n_t: usize) -> RowSums {
        let (len, c) = pred.shape();
        let mut sums = RowSums {
            loss: 0.0,
            hits: 0.0,
            dlog_temp: 0.0,
        };
        let mut z = vec![0.0; c];
        for i in 0..len {
            let y = y_t.row(r0 + i);
            sums.hits += f64::from(u8::from(
                argmax(pred.row(i).iter().copied()) == argmax(y.iter().copied()),
            ));
            match self {
                Objective::Mse => {
                    let scale = 1.0 / (n_t * c) as f64;
                    for j in 0..c {
                        let r = pred[(i, j)] - y[j];
                        sums.loss += r * r;
                        pred[(i, j)] = r * scale;
                    }
                }
                Objective::Platt { log_temp } => {
                    let temp = log_temp.exp();
                    for (j, zj) in z.iter_mut().enumerate() {
                        *zj = temp * pred[(i, j)];
                    }
                    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                    for j in 0..c {
                        let q = y[j] + 1.0 / c as f64;
                        let p = (z[j] - lse).exp();
                        sums.loss -= q * (z[j] - lse);
                        sums.dlog_temp += (p - q) * z[j] / n_t as f64;
                        pred[(i, j)] = temp * (p - q) / n_t as f64;
                    }
                }
            }
        }
        sums
    }

    /// The loss from the summed rows of an `n_t × C` batch.
    pub(crate) fn value(self, loss_sum: f64, n_t: usize, c: usize) -> f64 {
        match self {
            Objective::Mse => 0.5 * loss_sum / (n_t * c) as f64,
            Objective::Platt { .. } => loss_sum / n_t as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ce(log_temp: f64, pred: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
        let o = Objective::Platt { log_temp };
        let mut p = pred.clone();
        let s = o.residuals(&mut p, y, 0, pred.nrows());
        o.value(s.loss, pred.nrows(), pred.ncols())
    }

    #[test]
    fn platt_gradients_match_central_differences() {
        let pred = DMatrix::from_fn(4, 3, |i, j| ((i * 3 + j * 5) % 7) as f64 * 0.3 - 0.8);
        let y = DMatrix::from_fn(4, 3, |i, j| if i % 3 == j { 2.0 / 3.0 } else { -1.0 / 3.0 });
        let theta = 0.4;
        let o = Objective::Platt { log_temp: theta };
        let mut g = pred.clone();
        let s = o.residuals(&mut g, &y, 0, 4);
        let e = 1e-6;
        let fd = (ce(theta + e, &pred, &y) - ce(theta - e, &pred, &y)) / (2.0 * e);
        assert!((fd - s.dlog_temp).abs() < 1e-8, "{fd} vs {}", s.dlog_temp);
        for i in 0..4 {
            for j in 0..3 {
                let (mut a, mut b) = (pred.clone(), pred.clone());
                a[(i, j)] += e;
                b[(i, j)] -= e;
                let fd = (ce(theta, &a, &y) - ce(theta, &b, &y)) / (2.0 * e);
                assert!((fd - g[(i, j)]).abs() < 1e-8, "({i},{j}): {fd} vs {}", g[(i, j)]);
            }
        }
        // A confident right answer costs little, a wrong one much.
        assert!(s.loss > 0.0);
        assert_eq!("platt".parse::<Loss>().unwrap(), Loss::Platt);
        assert!("ce".parse::<Loss>().unwrap_err().contains("mse or platt"));
    }

    #[test]
    fn mse_residuals_are_the_scaled_differences() {
        let pred = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]);
        let y = DMatrix::from_row_slice(2, 2, &[0.5, -0.5, 0.5, -0.5]);
        let mut g = pred.clone();
        let s = Objective::Mse.residuals(&mut g, &y, 0, 2);
        assert_eq!(s.loss, 0.25 + 0.25 + 0.25 + 2.25);
        assert_eq!(s.hits, 1.0);
        assert_eq!(g[(1, 1)], 1.5 / 4.0);
        assert_eq!(Objective::Mse.value(s.loss, 2, 2), 0.5 * 3.0 / 4.0);
    }
}
