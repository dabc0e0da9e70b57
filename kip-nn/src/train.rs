//! Training: the single-step [`Trainer`] and the full [`train`] loop
//! (mini-batches, cosine decay, early stopping, evaluation).

use nalgebra::{DMatrix, DMatrixView};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backprop::{loss_and_grad, Grads, Workspace};
use crate::error::{NnError, Result};
use crate::eval::{check_labels, check_step_targets, evaluate};
use crate::mlp::{Mlp, EVAL_BLOCK};
use crate::optim::OptimState;
use crate::params::ValidParams;
use kip_core::Real;

/// One optimiser step at a time on caller-supplied batches: the model,
/// its optimiser state and reusable buffers (nothing is allocated per step
/// unless the batch size changes).
///
/// Batches are column-per-sample (`d × b` inputs, `C × b` targets) in the
/// compute precision `T`, so a caller can gather them without conversion.
#[derive(Debug, Clone)]
pub struct Trainer<T: Real = f32> {
    model: Mlp<T>,
    state: OptimState<T>,
    grads: Grads<T>,
    ws: Workspace<T>,
    /// Hidden activations and outputs of a centred network's initial
    /// layers on the current batch.
    ref_hs: Vec<DMatrix<T>>,
    ref_out: DMatrix<T>,
    weight_decay: T,
    steps_done: usize,
}

impl<T: Real> Trainer<T> {
    /// Wraps `model` with the optimiser and weight decay of `params` (the
    /// architecture fields of `params` are not used).
    pub fn new(model: Mlp<T>, params: &ValidParams) -> Self {
        Self {
            state: OptimState::new(params.optimizer, &model.tensor_sizes()),
            grads: Grads::zeros_like(&model),
            ws: Workspace::new(),
            ref_hs: Vec::new(),
            ref_out: DMatrix::zeros(0, 0),
            weight_decay: T::of_f64(params.weight_decay),
            steps_done: 0,
            model,
        }
    }

    /// One forward + backward pass and optimiser update on a batch at
    /// learning rate `lr`; returns the batch's mean data loss (before the
    /// update, without the weight-decay term). A centred network also runs
    /// its initial layers on the batch.
    ///
    /// # Shapes
    ///
    /// `x`: `d × b` (one sample per column). `targets`: `C × b`, read for
    /// MSE (pass any `C × 0` view for cross-entropy). `labels`: length `b`,
    /// read for cross-entropy (may be empty for MSE).
    ///
    /// # Errors
    ///
    /// [`NnError::ShapeMismatch`] / [`NnError::LabelOutOfRange`] for
    /// inconsistent inputs, [`NnError::NonFinite`] (parameters left
    /// untouched) when the loss is NaN or infinite.
    pub fn step(
        &mut self,
        x: DMatrixView<'_, T>,
        targets: DMatrixView<'_, T>,
        labels: &[usize],
        lr: f64,
    ) -> Result<f64> {
        if self.model.is_centred() && x.nrows() == self.model.d_in() {
            let b = x.ncols();
            if self.ref_out.ncols() != b || self.ref_out.nrows() != self.model.n_out() {
                self.ref_out = DMatrix::zeros(self.model.n_out(), b);
                self.ref_hs = (0..self.model.layers.len() - 1)
                    .map(|l| DMatrix::zeros(self.model.layers[l].w.nrows(), b))
                    .collect();
            }
            self.model.reference_cols(x, &mut self.ref_hs, &mut self.ref_out);
            let f0 = std::mem::replace(&mut self.ref_out, DMatrix::zeros(0, 0));
            let r = self.step_offset(x, targets, labels, Some(f0.as_view()), lr);
            self.ref_out = f0;
            r
        } else {
            self.step_offset(x, targets, labels, None, lr)
        }
    }

    /// [`Trainer::step`] with the initial outputs of a centred network
    /// given (`C × b`; `None` for a plain network).
    fn step_offset(
        &mut self,
        x: DMatrixView<'_, T>,
        targets: DMatrixView<'_, T>,
        labels: &[usize],
        offset: Option<DMatrixView<'_, T>>,
        lr: f64,
    ) -> Result<f64> {
        let (d, c, b) = (self.model.d_in(), self.model.n_out(), x.ncols());
        if x.nrows() != d {
            return Err(NnError::ShapeMismatch {
                what: "batch rows (input dimension)",
                expected: d,
                got: x.nrows(),
            });
        }
        check_step_targets(self.model.loss, targets.shape(), labels, b, c)?;
        if b == 0 {
            return Err(NnError::ShapeMismatch {
                what: "batch size",
                expected: 1,
                got: 0,
            });
        }
        let loss = loss_and_grad(
            &self.model,
            x,
            targets,
            labels,
            offset,
            self.weight_decay,
            &mut self.ws,
            &mut self.grads,
        );
        if !loss.is_finite() {
            return Err(NnError::NonFinite { step: self.steps_done });
        }
        self.state.update(self.model.tensors_mut(), self.grads.tensors(), lr);
        self.steps_done += 1;
        Ok(loss)
    }

    /// The current model.
    pub fn model(&self) -> &Mlp<T> {
        &self.model
    }
    /// Consumes the trainer, returning the model.
    pub fn into_model(self) -> Mlp<T> {
        self.model
    }
    /// Number of successful steps so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }
}

/// What [`train`] returns.
#[derive(Debug, Clone)]
pub struct TrainReport<T: Real = f32> {
    /// Mean data loss (no weight-decay term) of the returned model on the
    /// training rows (without the validation split).
    pub final_train_loss: f64,
    /// Accuracy of the returned model on the training rows.
    pub final_train_accuracy: f64,
    /// Accuracy on the evaluation set, if one was given.
    pub test_accuracy: Option<f64>,
    /// Loss on the evaluation set (MSE against centred one-hot targets, or
    /// cross-entropy), if one was given.
    pub test_loss: Option<f64>,
    /// Optimiser steps taken (fewer than `steps` after early stopping).
    pub steps_run: usize,
    /// With a validation split: the best validation loss, whose parameters
    /// are the returned model.
    pub best_val_loss: Option<f64>,
    /// The trained network.
    pub model: Mlp<T>,
}

/// Trains an `f32` network; see [`train_in`].
///
/// # Errors
///
/// As [`train_in`].
pub fn train(
    params: &ValidParams,
    x: &DMatrix<f64>,
    y: &DMatrix<f64>,
    labels: &[usize],
    eval: Option<(&DMatrix<f64>, &[usize])>,
) -> Result<TrainReport> {
    train_in::<f32>(params, x, y, labels, eval)
}

/// First row/column of a non-finite entry, if any.
fn find_non_finite(m: &DMatrix<f64>) -> Option<(usize, usize)> {
    let k = m.iter().position(|v| !v.is_finite())?;
    Some((k % m.nrows(), k / m.nrows()))
}

/// `d × idx.len()` column-per-sample copy of the rows `idx` of `x`,
/// gathered in cache-sized blocks.
pub(crate) fn gather_columns<T: Real>(x: &DMatrix<f64>, idx: &[usize]) -> DMatrix<T> {
    let d = x.ncols();
    let mut out = DMatrix::<T>::zeros(d, idx.len());
    for (blk, rows) in idx.chunks(256).enumerate() {
        let j0 = blk * 256;
        for k in 0..d {
            let col = x.column(k);
            for (j, &r) in rows.iter().enumerate() {
                out[(k, j0 + j)] = T::of_f64(col[r]);
            }
        }
    }
    out
}

/// The input checks of [`train_in`] (shared with the ConvNet trainer):
/// non-empty `x` (`n × d`) and `y` (`n × C`), `n` labels below `C`, finite
/// values, and an evaluation set with `d` columns and labels below `C`.
pub(crate) fn check_train_inputs(
    x: &DMatrix<f64>,
    y: &DMatrix<f64>,
    labels: &[usize],
    eval: Option<(&DMatrix<f64>, &[usize])>,
) -> Result<()> {
    let (n, d, c) = (x.nrows(), x.ncols(), y.ncols());
    if n == 0 || d == 0 || c == 0 {
        let (what, got) = if n == 0 {
            ("x rows", n)
        } else if d == 0 {
            ("x columns", d)
        } else {
            ("y columns (classes)", c)
        };
        return Err(NnError::ShapeMismatch { what, expected: 1, got });
    }
    if y.nrows() != n {
        return Err(NnError::ShapeMismatch {
            what: "y rows",
            expected: n,
            got: y.nrows(),
        });
    }
    check_labels(labels, n, c)?;
    for (m, what) in [(x, "x"), (y, "y")] {
        if let Some((row, col)) = find_non_finite(m) {
            return Err(NnError::NonFiniteInput { what, row, col });
        }
    }
    if let Some((xe, le)) = eval {
        if xe.ncols() != d {
            return Err(NnError::ShapeMismatch {
                what: "eval x columns",
                expected: d,
                got: xe.ncols(),
            });
        }
        check_labels(le, xe.nrows(), c)?;
    }
    Ok(())
}

/// Trains a fresh network (initialised from `params.seed`) in precision
/// `T` on `x` (`n × d`, one sample per row) with targets `y` (`n × C`;
/// used by MSE, and giving `C`) and class ids `labels` (used by
/// cross-entropy and for accuracies), then evaluates it on `eval`
/// `(x_test, labels_test)` if given.
///
/// Procedure: with `val_fraction > 0`, a seeded shuffle holds out
/// `round(val_fraction·n)` (≥ 1) rows; the rest are the training rows.
/// Each epoch shuffles them (seeded) and walks mini-batches of
/// `min(batch, n_train)` (the last one may be smaller); the learning rate
/// follows [`MlpParams::lr_schedule`](crate::MlpParams::lr_schedule) over `steps`. With a validation split, the
/// validation loss is measured after every epoch (and the last step), the
/// best parameters are kept and returned, and training stops after
/// `patience` evaluations without improvement.
///
/// # Errors
///
/// [`NnError::ShapeMismatch`], [`NnError::LabelOutOfRange`] or
/// [`NnError::NonFiniteInput`] for inconsistent inputs;
/// [`NnError::InvalidParam`] (`val_fraction`) when the split would leave no
/// training row; [`NnError::NonFinite`] when training diverges (never a NaN
/// model or report).
pub fn train_in<T: Real>(
    params: &ValidParams,
    x: &DMatrix<f64>,
    y: &DMatrix<f64>,
    labels: &[usize],
    eval: Option<(&DMatrix<f64>, &[usize])>,
) -> Result<TrainReport<T>> {
    check_train_inputs(x, y, labels, eval)?;
    let (n, d, c) = (x.nrows(), x.ncols(), y.ncols());

    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    rng.set_stream(1);
    let mut order: Vec<usize> = (0..n).collect();
    let (train_idx, val_idx) = if params.val_fraction > 0.0 {
        order.shuffle(&mut rng);
        let n_val = ((n as f64 * params.val_fraction).round() as usize).max(1);
        if n_val >= n {
            return Err(NnError::InvalidParam {
                name: "val_fraction",
                value: format!("{} (with n = {n})", params.val_fraction),
                expected: "a fraction that leaves at least one training row",
            });
        }
        let val = order[..n_val].to_vec();
        (order[n_val..].to_vec(), val)
    } else {
        (order, Vec::new())
    };
    let nt = train_idx.len();
    let xt: DMatrix<T> = gather_columns(x, &train_idx);
    let yt: DMatrix<T> = gather_columns(y, &train_idx);
    let lt: Vec<usize> = train_idx.iter().map(|&i| labels[i]).collect();
    let val = (!val_idx.is_empty()).then(|| {
        (
            x.select_rows(&val_idx),
            y.select_rows(&val_idx),
            val_idx.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
        )
    });

    let model = Mlp::<T>::init(d, c, params, params.seed);
    // A centred network's initial outputs on the training rows, once.
    let f0t: Option<DMatrix<T>> = model.is_centred().then(|| {
        let mut f0 = DMatrix::<T>::zeros(c, nt);
        let mut start = 0;
        while start < nt {
            let rows = EVAL_BLOCK.min(nt - start);
            let mut hs: Vec<DMatrix<T>> = (0..params.depth).map(|_| DMatrix::zeros(params.width, rows)).collect();
            let mut out = DMatrix::<T>::zeros(c, rows);
            model.reference_cols(xt.columns(start, rows), &mut hs, &mut out);
            f0.columns_mut(start, rows).copy_from(&out);
            start += rows;
        }
        f0
    });
    let mut trainer = Trainer::new(model, params);
    let b = params.batch.min(nt);
    let full_batch = b == nt;
    let per_epoch = nt.div_ceil(b);
    let mut perm: Vec<usize> = (0..nt).collect();
    let mut xb = DMatrix::<T>::zeros(d, b);
    let mut yb = DMatrix::<T>::zeros(c, b);
    let mut fb = DMatrix::<T>::zeros(c, b);
    let mut lb: Vec<usize> = Vec::with_capacity(b);
    let mut best: Option<(f64, Mlp<T>)> = None;
    let mut since_best = 0;
    let mut steps_run = 0;

    for step in 0..params.steps {
        let pos = step % per_epoch;
        let lr = params.lr_at(step);
        if full_batch {
            let f0 = f0t.as_ref().map(|f| f.as_view());
            trainer.step_offset(xt.as_view(), yt.as_view(), &lt, f0, lr)?;
        } else {
            if pos == 0 {
                perm.shuffle(&mut rng);
            }
            let idx = &perm[pos * b..((pos + 1) * b).min(nt)];
            if idx.len() != xb.ncols() {
                xb = DMatrix::zeros(d, idx.len());
                yb = DMatrix::zeros(c, idx.len());
                fb = DMatrix::zeros(c, idx.len());
            }
            lb.clear();
            for (j, &i) in idx.iter().enumerate() {
                xb.column_mut(j).copy_from(&xt.column(i));
                yb.column_mut(j).copy_from(&yt.column(i));
                if let Some(f0) = &f0t {
                    fb.column_mut(j).copy_from(&f0.column(i));
                }
                lb.push(lt[i]);
            }
            let f0 = f0t.is_some().then(|| fb.as_view());
            trainer.step_offset(xb.as_view(), yb.as_view(), &lb, f0, lr)?;
        }
        steps_run = step + 1;
        if let Some((xv, yv, lv)) = &val {
            if pos + 1 == per_epoch || steps_run == params.steps {
                let v = evaluate(trainer.model(), xv, lv, Some(yv))?.loss;
                if !v.is_finite() {
                    return Err(NnError::NonFinite { step });
                }
                if best.as_ref().is_none_or(|(bv, _)| v < *bv) {
                    best = Some((v, trainer.model().clone()));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if params.patience > 0 && since_best >= params.patience {
                        break;
                    }
                }
            }
        }
    }

    let (best_val_loss, model) = match best {
        Some((v, m)) => (Some(v), m),
        None => (None, trainer.into_model()),
    };
    let train_eval = if val.is_some() {
        let xs = x.select_rows(&train_idx);
        let ys = y.select_rows(&train_idx);
        evaluate(&model, &xs, &lt, Some(&ys))?
    } else {
        evaluate(&model, x, labels, Some(y))?
    };
    if !train_eval.loss.is_finite() {
        return Err(NnError::NonFinite { step: steps_run });
    }
    let test = match eval {
        Some((xe, le)) => Some(evaluate(&model, xe, le, None)?),
        None => None,
    };
    if test.is_some_and(|t| !t.loss.is_finite()) {
        return Err(NnError::NonFinite { step: steps_run });
    }
    Ok(TrainReport {
        final_train_loss: train_eval.loss,
        final_train_accuracy: train_eval.accuracy,
        test_accuracy: test.map(|t| t.accuracy),
        test_loss: test.map(|t| t.loss),
        steps_run,
        best_val_loss,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::centered_one_hot;
    use crate::params::Loss;
    use crate::params::{MlpParams, Optimizer, Parameterization};

    /// Two Gaussian-ish blobs per class around ±e_class, 3 classes in 6-d.
    fn blobs(n: usize, seed: u64) -> (DMatrix<f64>, Vec<usize>) {
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let x = DMatrix::from_fn(n, 6, |i, j| {
            let z: f64 = StandardNormal.sample(&mut rng);
            let centre = if j == 2 * labels[i] { 2.0 } else { 0.0 };
            centre + 0.3 * z
        });
        (x, labels)
    }

    #[test]
    fn fits_a_separable_problem_in_every_setting() {
        let (x, labels) = blobs(60, 1);
        let y = centered_one_hot(&labels, 3);
        for param in [Parameterization::Ntk, Parameterization::Standard] {
            for loss in [Loss::Mse, Loss::CrossEntropy] {
                for optimizer in [Optimizer::default(), Optimizer::Adam] {
                    let lr = matches!(optimizer, Optimizer::Adam).then_some(1e-2);
                    let p = MlpParams {
                        width: 64,
                        param,
                        loss,
                        optimizer,
                        lr,
                        steps: 200,
                        batch: 16,
                        ..Default::default()
                    }
                    .check()
                    .unwrap();
                    let r = train(&p, &x, &y, &labels, Some((&x, &labels))).unwrap();
                    assert_eq!(r.final_train_accuracy, 1.0, "{param}/{loss}/{optimizer}: {r:?}");
                    assert_eq!(r.test_accuracy, Some(1.0));
                    assert_eq!(r.steps_run, 200);
                }
            }
        }
    }

    #[test]
    fn centring_fits_and_step_matches_train() {
        let (x, labels) = blobs(30, 4);
        let y = centered_one_hot(&labels, 3);
        for (batch, loss) in [(30, Loss::Mse), (8, Loss::Mse), (8, Loss::CrossEntropy)] {
            let p = MlpParams {
                width: 32,
                steps: 100,
                batch,
                loss,
                lr: Some(1.0),
                center: true,
                ..Default::default()
            }
            .check()
            .unwrap();
            let r = train(&p, &x, &y, &labels, Some((&x, &labels))).unwrap();
            assert!(r.model.is_centred());
            assert_eq!(r.final_train_accuracy, 1.0, "{batch}/{loss}: {r:?}");
        }
        // Full batch: `train` (precomputed initial outputs) and `Trainer::step`
        // (recomputed each step) take the same steps.
        let p = MlpParams {
            width: 16,
            steps: 5,
            batch: 30,
            center: true,
            ..Default::default()
        }
        .check()
        .unwrap();
        let r = train_in::<f64>(&p, &x, &y, &labels, None).unwrap();
        let mut t = Trainer::new(Mlp::<f64>::init(6, 3, &p, p.seed), &p);
        let (xc, yc) = (x.transpose(), y.transpose());
        for s in 0..5 {
            t.step(xc.as_view(), yc.as_view(), &labels, p.lr_at(s)).unwrap();
        }
        assert!((t.model().forward(&x) - r.model.forward(&x)).norm() < 1e-10);
    }

    #[test]
    fn same_seed_same_model() {
        let (x, labels) = blobs(30, 2);
        let y = centered_one_hot(&labels, 3);
        let p = MlpParams {
            width: 16,
            steps: 20,
            batch: 7,
            lr: Some(1.0),
            ..Default::default()
        }
        .check()
        .unwrap();
        let a = train(&p, &x, &y, &labels, None).unwrap();
        let b = train(&p, &x, &y, &labels, None).unwrap();
        assert_eq!(a.model, b.model);
        assert_eq!(a.final_train_loss, b.final_train_loss);
    }

    #[test]
    fn early_stopping_keeps_the_best_and_stops() {
        let (x, labels) = blobs(40, 3);
        // Random targets: validation loss cannot keep improving.
        let y = DMatrix::from_fn(40, 3, |i, j| (((i * 7 + j * 3) % 5) as f64 - 2.0) / 2.0);
        let p = MlpParams {
            width: 32,
            steps: 2000,
            batch: 10,
            val_fraction: 0.25,
            patience: 3,
            ..Default::default()
        }
        .check()
        .unwrap();
        let r = train(&p, &x, &y, &labels, None).unwrap();
        assert!(r.steps_run < 2000, "did not stop: {}", r.steps_run);
        assert!(r.best_val_loss.unwrap().is_finite());
    }

    #[test]
    fn divergence_is_an_error_not_nan() {
        let (x, labels) = blobs(30, 4);
        let y = centered_one_hot(&labels, 3);
        let p = MlpParams {
            width: 32,
            lr: Some(1e6),
            steps: 50,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert!(matches!(
            train(&p, &x, &y, &labels, None),
            Err(NnError::NonFinite { .. })
        ));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (x, labels) = blobs(12, 5);
        let y = centered_one_hot(&labels, 3);
        let p = MlpParams {
            width: 4,
            steps: 1,
            ..Default::default()
        }
        .check()
        .unwrap();
        let short = DMatrix::zeros(11, 3);
        assert!(matches!(
            train(&p, &x, &short, &labels, None),
            Err(NnError::ShapeMismatch { what: "y rows", .. })
        ));
        assert!(matches!(
            train(&p, &x, &y, &labels[..11], None),
            Err(NnError::ShapeMismatch { .. })
        ));
        let mut bad = x.clone();
        bad[(3, 2)] = f64::NAN;
        assert_eq!(
            train(&p, &bad, &y, &labels, None).unwrap_err(),
            NnError::NonFiniteInput {
                what: "x",
                row: 3,
                col: 2
            }
        );
        let wrong = DMatrix::zeros(5, 7);
        assert!(train(&p, &x, &y, &labels, Some((&wrong, &[0; 5]))).is_err());
        let p = MlpParams {
            width: 4,
            val_fraction: 0.99,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert!(matches!(
            train(&p, &x, &y, &labels, None),
            Err(NnError::InvalidParam {
                name: "val_fraction",
                ..
            })
        ));
    }

    #[test]
    fn trainer_step_checks_shapes() {
        let p = MlpParams {
            width: 4,
            ..Default::default()
        }
        .check()
        .unwrap();
        let mut t = Trainer::new(Mlp::new(3, 2, &p, 0), &p);
        let x = DMatrix::<f32>::zeros(3, 5);
        let y = DMatrix::<f32>::zeros(2, 4);
        assert!(matches!(
            t.step(x.as_view(), y.as_view(), &[], 0.1),
            Err(NnError::ShapeMismatch { .. })
        ));
        let y = DMatrix::<f32>::zeros(2, 5);
        assert!(t.step(x.as_view(), y.as_view(), &[], 0.1).unwrap().is_finite());
        assert_eq!(t.steps_done(), 1);
    }
}
