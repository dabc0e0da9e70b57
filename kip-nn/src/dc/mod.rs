//! The dataset-distillation field's standard evaluation protocol
//! (`--protocol dc`): DatasetCondensation's `evaluate_synset`, as DC-BENCH
//! and DD-Ranking run it.
//!
//! A fresh [`DcConvNet`] (width 128, depth 3, instance norm, average
//! pooling, PyTorch initialisation) is trained on the support images with
//! their hard labels (the argmax of each label vector) by SGD (momentum
//! 0.9, weight decay 5e-4 on every parameter, learning rate 0.01, ×0.1
//! after epoch ⌊E/2⌋+1 with the momentum restarted, as the peer rebuilds
//! its optimiser), mini-batches of 256 shuffled each epoch, softmax
//! cross-entropy, and DSA augmentation on every batch
//! ([`kip_data::Dsa`]: one of colour, crop, cutout, flip, scale, rotate per
//! batch, per-image draws). Like the peer, it trains `E + 1` epochs
//! (epochs `0..=E`) and then scores the test images; the run is repeated
//! with `runs` network seeds and reported as mean ± standard deviation.
//!
//! Everything happens in the images' model space (the run's
//! preprocessing, ZCA included), as the peer's evaluation does on a
//! distilled set. Results are the same bits whatever the thread count.

mod net;
mod norm;

use std::time::Instant;

use kip_core::ImageShape;
use kip_data::{Dataset, Dsa, SupportSet};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use net::DcConvNet;

use crate::error::{NnError, Result};
use crate::transfer::SeedAccuracies;

/// Settings of the standard protocol (defaults: the peer's).
#[derive(Clone, Debug, PartialEq)]
pub struct DcParams {
    /// Training epochs `E` (the peer trains epochs `0..=E`).
    pub epochs: usize,
    /// Network seeds to average over.
    pub runs: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay (added to every parameter's gradient).
    pub weight_decay: f64,
    /// Mini-batch size.
    pub batch: usize,
    /// Channels per Conv.
    pub width: usize,
    /// [Conv, InstanceNorm, ReLU, AvgPool] blocks.
    pub depth: usize,
    /// DSA augmentation on every training batch (`None`: no augmentation).
    pub dsa: Option<Dsa>,
    /// Base seed: run `r` uses network seed `(seed, r)`; the natural sample
    /// is drawn with `seed`.
    pub seed: u64,
    /// Also score a natural class-balanced sample of the support set's
    /// size ([`protocol_dc`]).
    pub natural: bool,
}

impl Default for DcParams {
    fn default() -> Self {
        Self {
            epochs: 1000,
            runs: 5,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            batch: 256,
            width: 128,
            depth: 3,
            dsa: Some(Dsa::default()),
            seed: 0,
            natural: true,
        }
    }
}

impl DcParams {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`NnError::InvalidParam`] naming the first field out of range.
    pub fn check(&self) -> Result<()> {
        let bad = |name: &'static str, value: String, expected: &'static str| {
            Err(NnError::InvalidParam { name, value, expected })
        };
        if self.epochs == 0 {
            return bad("epochs", "0".into(), ">= 1");
        }
        if self.runs == 0 {
            return bad("runs", "0".into(), ">= 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "a finite number > 0");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", self.momentum.to_string(), "in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay.to_string(), "a finite number >= 0");
        }
        if self.batch == 0 {
            return bad("batch", "0".into(), ">= 1");
        }
        if self.width == 0 || self.width > 4096 {
            return bad("width", self.width.to_string(), "in 1..=4096");
        }
        if self.depth == 0 {
            return bad("depth", "0".into(), ">= 1");
        }
        Ok(())
    }
}

/// kip's memory rule for one network: weights, gradients and momentum
/// (float32), and the maps one batch keeps for the backward pass (about
/// seven `h × w × width` maps per image over the blocks).
fn check_memory(params: &DcParams, shape: ImageShape, n: usize) -> Result<()> {
    use kip_core::{bytes_of, sum_bytes};
    let w = params.width;
    let first = bytes_of(&[9 * shape.c + 3, w], 4);
    let rest = bytes_of(&[9 * w + 3, w, params.depth.saturating_sub(1)], 4);
    let weights = sum_bytes(&[first, rest]).and_then(|b| b.checked_mul(3));
    let maps = bytes_of(&[params.batch.min(n.max(1)), shape.h, shape.w, w, 7], 4);
    kip_core::check_memory(sum_bytes(&[weights, maps]), || {
        format!(
            "the standard protocol's ConvNet of width {w} (--width {w}) on {shape} images, batch {}",
            params.batch
        )
    })?;
    Ok(())
}

/// One trained network's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DcRun {
    /// Accuracy on the test images.
    pub test_accuracy: f64,
    /// Mean loss and accuracy over the last training epoch (augmented
    /// batches, before each update), as the peer prints them.
    pub train_loss: f64,
    /// See `train_loss`.
    pub train_accuracy: f64,
    /// Seconds spent training (all epochs).
    pub train_seconds: f64,
    /// Seconds spent scoring the test images.
    pub test_seconds: f64,
}

/// Trains one network on `x` (`n × shape.dim()`, row-major `f32`, model
/// space) with classes `labels` and scores it on `test_x` / `test_labels`;
/// `run` picks the network's seed (with `params.seed`); `on_epoch(e)` is
/// called after each epoch `e` (`0..=E`).
///
/// # Errors
/// [`NnError::InvalidParam`] for bad `params` or a network that does not
/// fit `shape`; [`NnError::ShapeMismatch`] / [`NnError::LabelOutOfRange`]
/// for inconsistent inputs; [`NnError::NonFinite`] when training diverges.
#[allow(clippy::too_many_arguments)]
pub fn train_and_test(
    params: &DcParams,
    shape: ImageShape,
    classes: usize,
    x: &[f32],
    labels: &[usize],
    test_x: &[f32],
    test_labels: &[usize],
    run: u64,
    on_epoch: &mut dyn FnMut(usize),
) -> Result<DcRun> {
    params.check()?;
    let d = shape.dim();
    let n = labels.len();
    check_images("x", x, n, d)?;
    check_images("test x", test_x, test_labels.len(), d)?;
    for ls in [labels, test_labels] {
        if let Some((row, &label)) = ls.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(NnError::LabelOutOfRange { row, label, classes });
        }
    }
    if n == 0 {
        return Err(NnError::ShapeMismatch {
            what: "training images",
            expected: 1,
            got: 0,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    rng.set_stream(run.wrapping_mul(3));
    let mut net = DcConvNet::new(shape, classes, params.width, params.depth, &mut rng)?;
    let mut shuffle = ChaCha8Rng::seed_from_u64(params.seed);
    shuffle.set_stream(run.wrapping_mul(3) + 1);
    let mut aug = ChaCha8Rng::seed_from_u64(params.seed);
    aug.set_stream(run.wrapping_mul(3) + 2);

    let started = Instant::now();
    let p = net.params().len();
    let (mut grad, mut buf) = (vec![0.0f32; p], vec![0.0f32; p]);
    let mut lr = params.lr as f32;
    let (mu, wd) = (params.momentum as f32, params.weight_decay as f32);
    let decay_at = params.epochs / 2 + 1;
    let mut perm: Vec<usize> = (0..n).collect();
    let mut xb: Vec<f32> = Vec::new();
    let mut lb: Vec<usize> = Vec::new();
    let (mut train_loss, mut train_acc) = (f64::NAN, f64::NAN);
    for epoch in 0..=params.epochs {
        perm.shuffle(&mut shuffle);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for idx in perm.chunks(params.batch) {
            xb.clear();
            lb.clear();
            for &i in idx {
                xb.extend_from_slice(&x[i * d..(i + 1) * d]);
                lb.push(labels[i]);
            }
            if let Some(dsa) = &params.dsa {
                dsa.apply_batch(shape, &mut xb, &mut aug);
            }
            let (loss, right) = net.loss_and_grad(&xb, &lb, &mut grad);
            if !loss.is_finite() {
                return Err(NnError::NonFinite { step: epoch });
            }
            loss_sum += loss * idx.len() as f64;
            correct += right;
            // PyTorch's SGD: d = g + wd·p; buf = μ·buf + d; p −= lr·buf.
            for ((w, &g), m) in net.params_mut().iter_mut().zip(&grad).zip(&mut buf) {
                let dp = g + wd * *w;
                *m = mu * *m + dp;
                *w -= lr * *m;
            }
        }
        train_loss = loss_sum / n as f64;
        train_acc = correct as f64 / n as f64;
        if epoch == decay_at {
            lr *= 0.1;
            buf.fill(0.0);
        }
        on_epoch(epoch);
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let test_accuracy = accuracy(&net, test_x, test_labels);
    Ok(DcRun {
        test_accuracy,
        train_loss,
        train_accuracy: train_acc,
        train_seconds,
        test_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Test images scored per block (bounds the logits' memory).
const TEST_BLOCK: usize = 1000;

/// The fraction of `x`'s images (rows of `net.input_dim()`) that `net`
/// classifies as `labels` says.
pub fn accuracy(net: &DcConvNet, x: &[f32], labels: &[usize]) -> f64 {
    let d = net.input_dim();
    let mut right = 0usize;
    for (xb, lb) in x.chunks(TEST_BLOCK * d).zip(labels.chunks(TEST_BLOCK)) {
        right += net.predict(xb).iter().zip(lb).filter(|(p, l)| p == l).count();
    }
    right as f64 / labels.len().max(1) as f64
}

fn check_images(what: &'static str, x: &[f32], n: usize, d: usize) -> Result<()> {
    if x.len() != n * d {
        return Err(NnError::ShapeMismatch {
            what,
            expected: n * d,
            got: x.len(),
        });
    }
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        return Err(NnError::NonFiniteInput {
            what,
            row: k / d,
            col: k % d,
        });
    }
    Ok(())
}

/// What [`protocol_dc`] measured: the support set and a natural sample of
/// the same size, each over `runs` networks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DcReport {
    /// Networks trained on the support set.
    pub distilled: SeedAccuracies,
    /// The same protocol on a class-balanced natural sample (`None` when
    /// [`DcParams::natural`] is off).
    pub natural: Option<SeedAccuracies>,
    /// Per-run details of the support set's networks.
    pub distilled_runs: Vec<DcRun>,
    /// Per-run details of the natural sample's networks.
    pub natural_runs: Vec<DcRun>,
}

/// What [`protocol_dc`] is about to do, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcStage {
    /// Training run `run` (0-based) on the support set.
    Distilled {
        /// The run.
        run: usize,
    },
    /// Training run `run` on the natural sample.
    Natural {
        /// The run.
        run: usize,
    },
}

/// The standard protocol on a run's support set (its model-space images
/// and the argmax of its labels) and, with [`DcParams::natural`], on a
/// class-balanced natural sample of as many `train_set` images (drawn with
/// `params.seed`), both scored on `test`; `on_epoch(stage, epoch)` reports
/// progress.
///
/// # Errors
/// [`NnError::InvalidParam`] for bad params or flat (non-image) data
/// (`shape`: `1×1×d`); [`NnError::NaturalSample`] when the sample cannot be
/// drawn; training errors.
pub fn protocol_dc(
    params: &DcParams,
    support: &SupportSet,
    train_set: &Dataset,
    test: &Dataset,
    on_epoch: &mut dyn FnMut(DcStage, usize),
) -> Result<DcReport> {
    params.check()?;
    let shape = train_set.shape();
    if shape.h < 2 || shape.w < 2 {
        return Err(NnError::InvalidParam {
            name: "protocol",
            value: format!("dc on {shape} data"),
            expected: "image data (the standard protocol trains a ConvNet)",
        });
    }
    let classes = train_set.n_classes();
    let n = support.labels.len();
    check_memory(params, shape, n)?;
    let hard: Vec<usize> = (0..n)
        .map(|i| kip_core::argmax(support.y.row(i).iter().copied()))
        .collect();
    let xs = rows_f32(&support.x_model);
    let sample = train_set
        .sample_balanced(n, &mut ChaCha8Rng::seed_from_u64(params.seed))
        .map_err(|e| NnError::NaturalSample {
            n,
            reason: e.to_string(),
        })?;
    let xn = rows_f32(&sample.x);
    let xt = rows_f32(&test.to_matrix());
    let (mut distilled_runs, mut natural_runs) = (Vec::new(), Vec::new());
    for run in 0..params.runs {
        let r = train_and_test(
            params,
            shape,
            classes,
            &xs,
            &hard,
            &xt,
            test.labels(),
            run as u64,
            &mut |e| on_epoch(DcStage::Distilled { run }, e),
        )?;
        distilled_runs.push(r);
    }
    for run in (0..params.runs).filter(|_| params.natural) {
        let r = train_and_test(
            params,
            shape,
            classes,
            &xn,
            &sample.labels,
            &xt,
            test.labels(),
            run as u64,
            &mut |e| on_epoch(DcStage::Natural { run }, e),
        )?;
        natural_runs.push(r);
    }
    let accs = |rs: &[DcRun]| SeedAccuracies::new(rs.iter().map(|r| r.test_accuracy).collect());
    Ok(DcReport {
        distilled: accs(&distilled_runs),
        natural: params.natural.then(|| accs(&natural_runs)),
        distilled_runs,
        natural_runs,
    })
}

/// The rows of `x` (`n × d`, `f64`) as a row-major `f32` buffer.
fn rows_f32(x: &nalgebra::DMatrix<f64>) -> Vec<f32> {
    let mut out = Vec::new();
    crate::convnet::rows_f32(x.as_view(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8×8×3 images: a bright 4×4 square in the quadrant of the class (4
    /// classes), on a faint deterministic texture.
    fn quadrants(n: usize, salt: usize) -> (Vec<f32>, Vec<usize>) {
        let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
        let mut x = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            for p in 0..64 {
                let (r, c) = (p / 8, p % 8);
                let on = r / 4 == l / 2 && c / 4 == l % 2;
                for ch in 0..3 {
                    let tex = (((i + salt) * 13 + p * 7 + ch * 5) % 9) as f32 * 0.05 - 0.2;
                    x.push(if on { 1.0 + tex } else { tex });
                }
            }
        }
        (x, labels)
    }

    #[test]
    fn learns_a_separable_problem_and_is_reproducible() {
        let shape = ImageShape::new(8, 8, 3);
        let (x, labels) = quadrants(16, 0);
        let (xt, lt) = quadrants(40, 100);
        let p = DcParams {
            epochs: 30,
            width: 8,
            depth: 2,
            batch: 8,
            lr: 0.05,
            // A flip moves the square to another class's quadrant.
            dsa: Some(Dsa {
                prob_flip: 0.0,
                ..Dsa::default()
            }),
            ..DcParams::default()
        };
        let mut epochs = 0;
        let r = train_and_test(&p, shape, 4, &x, &labels, &xt, &lt, 0, &mut |_| epochs += 1).unwrap();
        assert_eq!(epochs, 31, "epochs 0..=E");
        assert!(r.test_accuracy >= 0.9, "{r:?}");
        let again = train_and_test(&p, shape, 4, &x, &labels, &xt, &lt, 0, &mut |_| {}).unwrap();
        assert_eq!(again.test_accuracy, r.test_accuracy);
        assert_eq!(again.train_loss, r.train_loss);
        let other = train_and_test(&p, shape, 4, &x, &labels, &xt, &lt, 1, &mut |_| {}).unwrap();
        assert_ne!(other.train_loss, r.train_loss, "another run, another network");
    }

    #[test]
    fn bad_settings_and_inputs_are_errors() {
        let shape = ImageShape::new(8, 8, 3);
        let (x, labels) = quadrants(4, 0);
        let run = |p: &DcParams, x: &[f32], labels: &[usize]| {
            train_and_test(p, shape, 4, x, labels, x, labels, 0, &mut |_| {})
        };
        for (p, name) in [
            (
                DcParams {
                    epochs: 0,
                    ..DcParams::default()
                },
                "epochs",
            ),
            (
                DcParams {
                    runs: 0,
                    ..DcParams::default()
                },
                "runs",
            ),
            (
                DcParams {
                    lr: -1.0,
                    ..DcParams::default()
                },
                "lr",
            ),
            (
                DcParams {
                    batch: 0,
                    ..DcParams::default()
                },
                "batch",
            ),
            (
                DcParams {
                    width: 0,
                    ..DcParams::default()
                },
                "width",
            ),
        ] {
            match run(&p, &x, &labels) {
                Err(NnError::InvalidParam { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        let p = DcParams {
            epochs: 1,
            width: 4,
            ..DcParams::default()
        };
        assert!(matches!(run(&p, &x[1..], &labels), Err(NnError::ShapeMismatch { .. })));
        assert!(matches!(
            run(&p, &x, &[0, 1, 2, 9]),
            Err(NnError::LabelOutOfRange { label: 9, .. })
        ));
        let mut nan = x.clone();
        nan[70] = f32::NAN;
        assert!(matches!(
            run(&p, &nan, &labels),
            Err(NnError::NonFiniteInput { row: 0, .. })
        ));
        let too_deep = DcParams { depth: 4, ..p };
        assert!(matches!(
            run(&too_deep, &x, &labels),
            Err(NnError::InvalidParam { name: "depth", .. })
        ));
    }
}
