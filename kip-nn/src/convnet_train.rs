//! Training a [`ConvClassifier`]: the single-step [`ConvTrainer`] and the
//! full [`train_convnet`] loop (seeded mini-batches, the learning-rate
//! schedule, evaluation), on the optimisers of the MLP trainer.

use kip_core::ImageShape;
use nalgebra::{DMatrix, DMatrixView};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::arch::Arch;
use crate::convnet::{rows_f32, ConvClassifier, ConvGrads, ConvWorkspace};
use crate::error::{NnError, Result};
use crate::eval::check_step_targets;
use crate::optim::OptimState;
use crate::params::ValidParams;
use crate::train::{check_train_inputs, gather_columns};

/// One optimiser step at a time on caller-supplied batches: the
/// classifier, its optimiser state and reusable buffers.
///
/// Batches are images row-major (`b × d`, `f32`) with targets one column
/// per sample (`C × b`), as the MLP's [`Trainer`](crate::Trainer) takes
/// them.
#[derive(Debug, Clone)]
pub struct ConvTrainer {
    model: ConvClassifier,
    state: OptimState<f32>,
    grads: ConvGrads,
    ws: ConvWorkspace,
    /// Initial logits of a centred classifier on the current batch.
    ref_out: DMatrix<f32>,
    ref_phi: Vec<f32>,
    steps_done: usize,
}

impl ConvTrainer {
    /// Wraps `model` with the optimiser of `params` (its architecture
    /// fields are not used).
    pub fn new(model: ConvClassifier, params: &ValidParams) -> Self {
        Self {
            state: OptimState::new(params.optimizer, &model.tensor_sizes()),
            grads: ConvGrads::zeros_like(&model),
            ws: ConvWorkspace::default(),
            ref_out: DMatrix::zeros(0, 0),
            ref_phi: Vec::new(),
            steps_done: 0,
            model,
        }
    }

    /// One forward + backward pass and optimiser update on a batch at
    /// learning rate `lr`; returns the batch's mean loss before the update.
    /// A centred classifier also runs its initial network on the batch.
    ///
    /// # Shapes
    /// `x`: `b × d` row-major (`d` = [`ConvClassifier::d_in`]).
    /// `targets`: `C × b`, read for MSE (pass any `C × 0` view for
    /// cross-entropy). `labels`: length `b`, read for cross-entropy (may be
    /// empty for MSE).
    ///
    /// # Errors
    /// [`NnError::ShapeMismatch`] / [`NnError::LabelOutOfRange`] for
    /// inconsistent inputs, [`NnError::NonFinite`] (parameters left
    /// untouched) when the loss is NaN or infinite.
    pub fn step(&mut self, x: &[f32], targets: DMatrixView<'_, f32>, labels: &[usize], lr: f64) -> Result<f64> {
        let d = self.model.d_in();
        if self.model.is_centred() && x.len() % d == 0 {
            let mut f0 = std::mem::replace(&mut self.ref_out, DMatrix::zeros(0, 0));
            self.model.reference_logits(x, x.len() / d, &mut self.ref_phi, &mut f0);
            let r = self.step_offset(x, targets, labels, Some(f0.as_view()), lr);
            self.ref_out = f0;
            r
        } else {
            self.step_offset(x, targets, labels, None, lr)
        }
    }

    /// [`ConvTrainer::step`] with a centred classifier's initial logits
    /// given (`C × b`; `None` for a plain classifier).
    fn step_offset(
        &mut self,
        x: &[f32],
        targets: DMatrixView<'_, f32>,
        labels: &[usize],
        offset: Option<DMatrixView<'_, f32>>,
        lr: f64,
    ) -> Result<f64> {
        let (d, c) = (self.model.d_in(), self.model.n_out());
        if x.len() % d != 0 || x.is_empty() {
            return Err(NnError::ShapeMismatch {
                what: "batch length (a multiple of the image size)",
                expected: d,
                got: x.len(),
            });
        }
        let b = x.len() / d;
        check_step_targets(self.model.loss(), targets.shape(), labels, b, c)?;
        let loss = self
            .model
            .loss_and_grad(x, targets, labels, offset, &mut self.ws, &mut self.grads);
        if !loss.is_finite() {
            return Err(NnError::NonFinite { step: self.steps_done });
        }
        self.state.update(self.model.tensors_mut(), self.grads.tensors(), lr);
        self.steps_done += 1;
        Ok(loss)
    }

    /// The current classifier.
    pub fn model(&self) -> &ConvClassifier {
        &self.model
    }
    /// Consumes the trainer, returning the classifier.
    pub fn into_model(self) -> ConvClassifier {
        self.model
    }
    /// Number of successful steps so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }
}

/// What [`train_convnet`] returns.
#[derive(Debug, Clone)]
pub struct ConvTrainReport {
    /// Mean loss of the trained classifier on the training rows.
    pub final_train_loss: f64,
    /// Its accuracy on the training rows.
    pub final_train_accuracy: f64,
    /// Accuracy on the evaluation set, if one was given.
    pub test_accuracy: Option<f64>,
    /// Loss on the evaluation set (MSE against centred one-hot targets, or
    /// cross-entropy), if one was given.
    pub test_loss: Option<f64>,
    /// Optimiser steps taken.
    pub steps_run: usize,
    /// The trained classifier.
    pub model: ConvClassifier,
}

/// Trains a fresh [`ConvClassifier`] of `depth` (initialised from
/// `params.seed`, `params.width` channels) on images of `shape`: `x`
/// (`n × d`, one image per row, `d = h·w·c`), targets `y` (`n × C`; used
/// by MSE, and giving `C`) and class ids `labels` (used by cross-entropy
/// and for accuracies); then evaluates it on `eval` `(x_test,
/// labels_test)` if given.
///
/// Procedure, as [`train_in`](crate::train_in) without a validation split:
/// each epoch shuffles the rows (seeded) and walks mini-batches of
/// `min(batch, n)`; the learning rate is [`Arch::lr_at`] (the explicit
/// `lr` or the ConvNet's default, times the schedule). The result does not
/// depend on the number of threads.
///
/// # Errors
/// [`NnError::InvalidParam`] when the ConvNet does not fit `shape` or
/// `params` ([`Arch::check`]); [`NnError::ShapeMismatch`],
/// [`NnError::LabelOutOfRange`] or [`NnError::NonFiniteInput`] for
/// inconsistent inputs (`x` must have `shape.dim()` columns);
/// [`NnError::NonFinite`] when training diverges.
pub fn train_convnet(
    params: &ValidParams,
    depth: usize,
    shape: ImageShape,
    x: &DMatrix<f64>,
    y: &DMatrix<f64>,
    labels: &[usize],
    eval: Option<(&DMatrix<f64>, &[usize])>,
) -> Result<ConvTrainReport> {
    let arch = Arch::ConvNet { depth };
    arch.check(shape, params)?;
    check_train_inputs(x, y, labels, eval)?;
    let (n, d, c) = (x.nrows(), x.ncols(), y.ncols());
    if d != shape.dim() {
        return Err(NnError::ShapeMismatch {
            what: "x columns (image size h·w·c)",
            expected: shape.dim(),
            got: d,
        });
    }
    let model = ConvClassifier::new(shape, c, depth, params, params.seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    rng.set_stream(1);
    let mut xt = Vec::new();
    rows_f32(x.as_view(), &mut xt);
    let yt: DMatrix<f32> = gather_columns(y, &(0..n).collect::<Vec<_>>());
    // A centred classifier's initial logits on the training rows, once.
    let f0t: Option<DMatrix<f32>> = model.is_centred().then(|| {
        let (mut f0, mut out, mut phi) = (DMatrix::zeros(c, n), DMatrix::zeros(0, 0), Vec::new());
        let block = model.block_rows();
        for start in (0..n).step_by(block) {
            let rows = block.min(n - start);
            model.reference_logits(&xt[start * d..(start + rows) * d], rows, &mut phi, &mut out);
            f0.columns_mut(start, rows).copy_from(&out);
        }
        f0
    });
    let mut trainer = ConvTrainer::new(model, params);
    let b = params.batch.min(n);
    let full_batch = b == n;
    let per_epoch = n.div_ceil(b);
    let mut perm: Vec<usize> = (0..n).collect();
    let mut xb: Vec<f32> = Vec::with_capacity(b * d);
    let mut yb = DMatrix::<f32>::zeros(c, b);
    let mut fb = DMatrix::<f32>::zeros(c, b);
    let mut lb: Vec<usize> = Vec::with_capacity(b);
    for step in 0..params.steps {
        let lr = arch.lr_at(params, step);
        if full_batch {
            let f0 = f0t.as_ref().map(|f| f.as_view());
            trainer.step_offset(&xt, yt.as_view(), labels, f0, lr)?;
            continue;
        }
        let pos = step % per_epoch;
        if pos == 0 {
            perm.shuffle(&mut rng);
        }
        let idx = &perm[pos * b..((pos + 1) * b).min(n)];
        if idx.len() != yb.ncols() {
            yb = DMatrix::zeros(c, idx.len());
            fb = DMatrix::zeros(c, idx.len());
        }
        xb.clear();
        lb.clear();
        for (j, &i) in idx.iter().enumerate() {
            xb.extend_from_slice(&xt[i * d..(i + 1) * d]);
            yb.column_mut(j).copy_from(&yt.column(i));
            if let Some(f0) = &f0t {
                fb.column_mut(j).copy_from(&f0.column(i));
            }
            lb.push(labels[i]);
        }
        let f0 = f0t.is_some().then(|| fb.as_view());
        trainer.step_offset(&xb, yb.as_view(), &lb, f0, lr)?;
    }
    let steps_run = trainer.steps_done();
    let model = trainer.into_model();
    let train_eval = model.evaluate(x, labels, Some(y))?;
    let test = match eval {
        Some((xe, le)) => Some(model.evaluate(xe, le, None)?),
        None => None,
    };
    if !train_eval.loss.is_finite() || test.is_some_and(|t| !t.loss.is_finite()) {
        return Err(NnError::NonFinite { step: steps_run });
    }
    Ok(ConvTrainReport {
        final_train_loss: train_eval.loss,
        final_train_accuracy: train_eval.accuracy,
        test_accuracy: test.map(|t| t.accuracy),
        test_loss: test.map(|t| t.loss),
        steps_run,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::centered_one_hot;
    use crate::params::Loss;
    use crate::params::MlpParams;

    /// `n` 6×6×1 images: a bright 2×2 square in the quadrant of the class
    /// (4 classes), on a faint deterministic texture.
    fn quadrants(n: usize) -> (DMatrix<f64>, Vec<usize>) {
        let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
        let x = DMatrix::from_fn(n, 36, |i, p| {
            let (r, col) = (p / 6, p % 6);
            let (qr, qc) = (labels[i] / 2, labels[i] % 2);
            let on = (r / 3 == qr) && (col / 3 == qc) && r % 3 < 2 && col % 3 < 2;
            let tex = (((i * 13 + p * 7) % 9) as f64 - 4.0) * 0.05;
            if on {
                1.0 + tex
            } else {
                tex
            }
        });
        (x, labels)
    }

    #[test]
    fn fits_a_separable_problem_with_both_losses_and_optimisers() {
        let (x, labels) = quadrants(32);
        let y = centered_one_hot(&labels, 4);
        let shape = ImageShape::new(6, 6, 1);
        for loss in [Loss::Mse, Loss::CrossEntropy] {
            for (optimizer, center, lr) in [
                (Default::default(), true, None),
                (crate::Optimizer::Adam, false, Some(1e-2)),
            ] {
                let p = MlpParams {
                    width: 8,
                    loss,
                    optimizer,
                    center,
                    lr,
                    steps: 60,
                    batch: 8,
                    ..Default::default()
                }
                .check()
                .unwrap();
                let r = train_convnet(&p, 1, shape, &x, &y, &labels, Some((&x, &labels))).unwrap();
                let acc = r.final_train_accuracy;
                assert_eq!(
                    acc, 1.0,
                    "{loss}/{optimizer}: accuracy {acc}, loss {}",
                    r.final_train_loss
                );
                assert_eq!(r.steps_run, 60);
                assert_eq!(r.model.is_centred(), center);
            }
        }
    }

    #[test]
    fn step_matches_train_on_full_batches() {
        let (x, labels) = quadrants(12);
        let y = centered_one_hot(&labels, 4);
        let shape = ImageShape::new(6, 6, 1);
        let p = MlpParams {
            width: 4,
            steps: 4,
            batch: 12,
            center: true,
            ..Default::default()
        }
        .check()
        .unwrap();
        let r = train_convnet(&p, 1, shape, &x, &y, &labels, None).unwrap();
        let mut t = ConvTrainer::new(ConvClassifier::new(shape, 4, 1, &p, p.seed).unwrap(), &p);
        let mut xs = Vec::new();
        rows_f32(x.as_view(), &mut xs);
        let yt = y.transpose().map(|v| v as f32);
        for s in 0..4 {
            t.step(&xs, yt.as_view(), &labels, Arch::ConvNet { depth: 1 }.lr_at(&p, s))
                .unwrap();
        }
        assert_eq!(t.model(), &r.model);
        assert_eq!(t.steps_done(), 4);
        // Bad shapes are errors, not panics.
        assert!(matches!(
            t.step(&xs[..35], yt.as_view(), &labels, 0.1),
            Err(NnError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            t.step(&xs, yt.columns(0, 5), &labels, 0.1),
            Err(NnError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn divergence_is_an_error_and_shapes_are_checked() {
        let (x, labels) = quadrants(8);
        let y = centered_one_hot(&labels, 4);
        let shape = ImageShape::new(6, 6, 1);
        let p = MlpParams {
            width: 4,
            steps: 30,
            lr: Some(1e8),
            ..Default::default()
        }
        .check()
        .unwrap();
        assert!(matches!(
            train_convnet(&p, 1, shape, &x, &y, &labels, None),
            Err(NnError::NonFinite { .. })
        ));
        assert!(matches!(
            train_convnet(&p, 1, ImageShape::new(5, 5, 1), &x, &y, &labels, None),
            Err(NnError::ShapeMismatch { .. })
        ));
    }
}
