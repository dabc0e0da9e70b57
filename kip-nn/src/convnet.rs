//! [`ConvClassifier`]: a finite ConvNet classifier, the
//! [`kip_kernels::rf::ConvNet`] body (the layers the random-feature kernel
//! uses) under a Dense head, with its forward pass, loss gradient and
//! evaluation.
//!
//! The head is in the NTK parameterisation, like the body: with `Φ` the
//! `n × F` flattened body features,
//! `logits = W_std/√F · Φ·Vᵀ + b_std · 1·cᵀ` with `V` (`C × F`) and `c`
//! (`C`) drawn `N(0, 1)`. Backward: the head's gradients by hand
//! (`∂L/∂V = W_std/√F · Gᵀ·Φ`, `∂L/∂c = b_std · Gᵀ·1`,
//! `∂L/∂Φ = W_std/√F · G·V` with `G = ∂L/∂logits`), then
//! [`ConvNet::params_vjp`] with `dphi = ∂L/∂Φ` for the body.
//!
//! Everything computes in `f32` (the body's precision), is parallel over
//! fixed chunks of images, and gives the same bits whatever the thread
//! count.

use std::sync::Arc;

use kip_core::{argmax, gemm, ImageShape, MatMut, MatRef};
use kip_kernels::rf::{ConvNet, NetLayer, NetReadout};
use nalgebra::{DMatrix, DMatrixView, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::arch::Arch;
use crate::backprop::loss_sum;
use crate::error::{NnError, Result};
use crate::eval::{evaluate_blocks, Eval};
use crate::mlp::EVAL_BLOCK;
use crate::params::{Loss, ValidParams};

/// Feature values per evaluation block: blocks hold at most
/// [`EVAL_BLOCK`] images and at most this many features (64 MiB of `f32`),
/// so that wide feature vectors (a shallow net on large images) stay
/// bounded in memory.
const EVAL_FEATURES: usize = 1 << 24;

/// The body layers of the ConvNet of depth `depth`: Conv, ReLU, then
/// `depth` × [Conv, ReLU, AvgPool] (the Flatten readout is separate).
pub(crate) fn convnet_body(depth: usize) -> Vec<NetLayer> {
    let mut body = vec![NetLayer::Conv, NetLayer::Relu];
    for _ in 0..depth {
        body.extend([NetLayer::Conv, NetLayer::Relu, NetLayer::Pool]);
    }
    body
}

/// A ConvNet classifier: [`ConvNet`] body (Conv, ReLU, `depth` × [Conv,
/// ReLU, AvgPool 2×2], Flatten) and a Dense head to `C` logits (see the
/// module docs for the formulas), in `f32`.
///
/// Inputs are `n × d` matrices of images, one per row, `d = h·w·c`
/// channels fastest (as every kip dataset); outputs are `n × C`.
///
/// Like [`Mlp`](crate::Mlp), a *centred* classifier (built with
/// [`MlpParams::center`](crate::MlpParams::center)) keeps a frozen copy of
/// its initial parameters `θ₀` and outputs `f(x; θ) − f(x; θ₀)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvClassifier {
    body: ConvNet,
    depth: usize,
    /// Head weights `V`, `C × F`.
    head_w: DMatrix<f32>,
    /// Head biases `c`, length `C`.
    head_b: DVector<f32>,
    /// `W_std/√F` and `b_std`.
    sw: f32,
    sb: f32,
    loss: Loss,
    /// The frozen initial classifier of a centred one.
    reference: Option<Arc<ConvClassifier>>,
}

/// Gradients, laid out like the classifier's tensors.
#[derive(Debug, Clone)]
pub(crate) struct ConvGrads {
    body: Vec<f32>,
    w: DMatrix<f32>,
    b: DVector<f32>,
}

impl ConvGrads {
    pub(crate) fn zeros_like(model: &ConvClassifier) -> Self {
        Self {
            body: vec![0.0; model.body.params().len()],
            w: DMatrix::zeros(model.head_w.nrows(), model.head_w.ncols()),
            b: DVector::zeros(model.head_b.len()),
        }
    }

    /// Flat slices in the order of [`ConvClassifier::tensors_mut`].
    pub(crate) fn tensors(&self) -> impl Iterator<Item = &[f32]> {
        [self.body.as_slice(), self.w.as_slice(), self.b.as_slice()].into_iter()
    }
}

/// Buffers of one batch, reused across steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConvWorkspace {
    phi: Vec<f32>,
    dphi: Vec<f32>,
    out: DMatrix<f32>,
    dout: DMatrix<f32>,
}

impl ConvClassifier {
    /// A freshly initialised classifier for images of `shape` with `n_out`
    /// classes: the ConvNet of `depth` with `params.width` channels,
    /// `params.w_std`, `params.b_std`, and the loss of `params`; the body
    /// drawn from `seed` ([`ConvNet::random`]), the head from stream 2 of
    /// `ChaCha8Rng::seed_from_u64(seed)`.
    ///
    /// # Errors
    /// [`NnError::InvalidParam`] when [`Arch::check`] rejects `depth` on
    /// `shape` with `params` (flat data, too deep a net, standard
    /// parameterisation, ...); [`NnError::ShapeMismatch`] for `n_out` 0.
    pub fn new(shape: ImageShape, n_out: usize, depth: usize, params: &ValidParams, seed: u64) -> Result<Self> {
        Arch::ConvNet { depth }.check(shape, params)?;
        if n_out == 0 {
            return Err(NnError::ShapeMismatch {
                what: "outputs (classes)",
                expected: 1,
                got: 0,
            });
        }
        let body = ConvNet::random(
            &convnet_body(depth),
            NetReadout::Flatten,
            shape,
            params.width,
            params.w_std,
            params.b_std,
            seed,
        )
        .map_err(|e| NnError::InvalidParam {
            name: "arch",
            value: format!("{} ({e})", Arch::ConvNet { depth }),
            expected: "a ConvNet that fits the images",
        })?;
        let f = body.n_features();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        let mut draw = |_, _| -> f32 { StandardNormal.sample(&mut rng) };
        let head_w = DMatrix::from_fn(n_out, f, &mut draw);
        let head_b = DVector::from_fn(n_out, &mut draw);
        let mut model = Self {
            body,
            depth,
            head_w,
            head_b,
            sw: (params.w_std / (f as f64).sqrt()) as f32,
            sb: params.b_std as f32,
            loss: params.loss,
            reference: None,
        };
        if params.center {
            model.reference = Some(Arc::new(model.clone()));
        }
        Ok(model)
    }

    /// The body.
    pub fn body(&self) -> &ConvNet {
        &self.body
    }
    /// The head weights `V`, `C × F`.
    pub fn head_weights(&self) -> &DMatrix<f32> {
        &self.head_w
    }
    /// The head biases `c`, length `C`.
    pub fn head_bias(&self) -> &DVector<f32> {
        &self.head_b
    }
    /// The `[Conv, ReLU, AvgPool]` blocks.
    pub fn depth(&self) -> usize {
        self.depth
    }
    /// The input image shape.
    pub fn input_shape(&self) -> ImageShape {
        self.body.input_shape()
    }
    /// Input dimension `d = h·w·c`.
    pub fn d_in(&self) -> usize {
        self.body.input_dim()
    }
    /// Number of outputs `C`.
    pub fn n_out(&self) -> usize {
        self.head_w.nrows()
    }
    /// Length `F` of the body's feature vector.
    pub fn n_features(&self) -> usize {
        self.head_w.ncols()
    }
    /// The loss this classifier was built to train with.
    pub fn loss(&self) -> Loss {
        self.loss
    }
    /// Whether it is centred (outputs `f(x; θ) − f(x; θ₀)`).
    pub fn is_centred(&self) -> bool {
        self.reference.is_some()
    }
    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.body.params().len() + self.head_w.len() + self.head_b.len()
    }

    /// The lengths of the trainable tensors, in the order of
    /// [`ConvClassifier::tensors_mut`].
    pub(crate) fn tensor_sizes(&self) -> Vec<usize> {
        vec![self.body.params().len(), self.head_w.len(), self.head_b.len()]
    }

    /// The trainable tensors as flat slices: body, head weights, head biases.
    pub(crate) fn tensors_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        [
            self.body.params_mut(),
            self.head_w.as_mut_slice(),
            self.head_b.as_mut_slice(),
        ]
        .into_iter()
    }

    /// Plain (uncentred) logits `out` (`C × b`) of the `b` images `x`
    /// (row-major `b × d`), with their features left in `phi` (`b × F`
    /// row-major).
    fn logits_into(&self, x: &[f32], b: usize, phi: &mut Vec<f32>, out: &mut DMatrix<f32>) {
        let f = self.n_features();
        phi.resize(b * f, 0.0);
        self.body.features(x, b, phi);
        if out.shape() != (self.n_out(), b) {
            *out = DMatrix::zeros(self.n_out(), b);
        }
        // out = s_w·V·Φᵀ (Φᵀ is `phi` read column-major), then + s_b·c.
        gemm(
            self.sw,
            MatRef::from(&self.head_w),
            MatRef::col_major(phi, f, b),
            0.0,
            MatMut::from(&mut *out),
        );
        for mut col in out.column_iter_mut() {
            for (v, &c) in col.iter_mut().zip(self.head_b.iter()) {
                *v += self.sb * c;
            }
        }
    }

    /// Images per block when running over many: at most 1000, fewer when
    /// the feature vectors are long (see [`EVAL_FEATURES`]).
    pub(crate) fn block_rows(&self) -> usize {
        (EVAL_FEATURES / self.n_features()).clamp(1, EVAL_BLOCK)
    }

    /// The initial classifier's logits (`C × b`) for a centred one, `phi`
    /// being scratch; `false` (nothing written) for a plain one.
    pub(crate) fn reference_logits(&self, x: &[f32], b: usize, phi: &mut Vec<f32>, out: &mut DMatrix<f32>) -> bool {
        match &self.reference {
            Some(r) => {
                r.logits_into(x, b, phi, out);
                true
            }
            None => false,
        }
    }

    /// Forward and backward pass on one batch of `b` images `x` (row-major
    /// `b × d`): returns the mean loss and writes its gradient into
    /// `grads`. `targets` (`C × b`) is read for MSE, `labels` (length `b`)
    /// for cross-entropy; `offset` (`C × b`) is subtracted from the
    /// logits (a centred classifier's initial logits). Shapes are the
    /// caller's responsibility.
    pub(crate) fn loss_and_grad(
        &self,
        x: &[f32],
        targets: DMatrixView<'_, f32>,
        labels: &[usize],
        offset: Option<DMatrixView<'_, f32>>,
        ws: &mut ConvWorkspace,
        grads: &mut ConvGrads,
    ) -> f64 {
        let (f, b) = (self.n_features(), x.len() / self.d_in());
        let ConvWorkspace { phi, dphi, out, dout } = ws;
        self.logits_into(x, b, phi, out);
        if let Some(f0) = offset {
            *out -= f0;
        }
        if dout.shape() != out.shape() {
            *dout = DMatrix::zeros(out.nrows(), out.ncols());
        }
        let inv_b = 1.0 / b as f64;
        let loss = loss_sum(self.loss, out, targets, labels, Some((dout, inv_b))) * inv_b;
        // ∂L/∂V = s_w·G·Φ (G = dout, C × b; Φ row-major b × F).
        gemm(
            self.sw,
            MatRef::from(&*dout),
            MatRef::row_major(phi, b, f),
            0.0,
            MatMut::from(&mut grads.w),
        );
        for (g, row) in grads.b.iter_mut().zip(dout.row_iter()) {
            *g = self.sb * row.iter().sum::<f32>();
        }
        // ∂L/∂Φ = s_w·Gᵀ·V (b × F, row-major), then the body's VJP.
        dphi.resize(b * f, 0.0);
        gemm(
            self.sw,
            MatRef::from(&*dout).t(),
            MatRef::from(&self.head_w),
            0.0,
            MatMut::row_major(dphi, b, f),
        );
        self.body.params_vjp(x, b, dphi, &mut grads.body);
        loss
    }

    /// Calls `f(first_row, logits)` for consecutive blocks of
    /// [`ConvClassifier::block_rows`] rows of `x`, `logits` being `C × rows` (centred if the
    /// classifier is).
    pub(crate) fn for_each_block(&self, x: &DMatrix<f64>, mut f: impl FnMut(usize, &DMatrix<f32>)) {
        assert_eq!(
            x.ncols(),
            self.d_in(),
            "ConvClassifier: input has the wrong number of columns"
        );
        let (mut xb, mut phi) = (Vec::new(), Vec::new());
        let (mut out, mut out0) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        let mut start = 0;
        while start < x.nrows() {
            let rows = self.block_rows().min(x.nrows() - start);
            rows_f32(x.rows(start, rows), &mut xb);
            self.logits_into(&xb, rows, &mut phi, &mut out);
            if self.reference_logits(&xb, rows, &mut phi, &mut out0) {
                out -= &out0;
            }
            f(start, &out);
            start += rows;
        }
    }

    /// Logits `f(x)`, `n × C`, computed in blocks of at most 1000 rows
    /// (fewer for long feature vectors, to bound memory).
    ///
    /// # Panics
    /// If `x` does not have [`d_in`](Self::d_in) columns.
    pub fn forward(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let mut y = DMatrix::zeros(x.nrows(), self.n_out());
        self.for_each_block(x, |start, out| {
            for (j, col) in out.column_iter().enumerate() {
                for (c, v) in col.iter().enumerate() {
                    y[(start + j, c)] = f64::from(*v);
                }
            }
        });
        y
    }

    /// Predicted class ids: the argmax of each output row.
    ///
    /// # Panics
    /// If `x` does not have [`d_in`](Self::d_in) columns.
    pub fn predict_labels(&self, x: &DMatrix<f64>) -> Vec<usize> {
        let mut labels = vec![0; x.nrows()];
        self.for_each_block(x, |start, out| {
            for (j, col) in out.column_iter().enumerate() {
                labels[start + j] = argmax(col.iter().copied());
            }
        });
        labels
    }

    /// Accuracy and mean loss on `x` (`n × d`) with class ids `labels`, in
    /// blocks of at most 1000 rows, as [`evaluate`](crate::evaluate) for an MLP:
    /// an MSE classifier's loss is taken against `targets` (`n × C`) or the
    /// centred one-hot of `labels`.
    ///
    /// # Errors
    /// [`NnError::ShapeMismatch`] if `x` has other than `d` columns,
    /// `labels` other than `n` entries or `targets` another shape than
    /// `n × C`; [`NnError::LabelOutOfRange`] for a label `≥ C`.
    pub fn evaluate(&self, x: &DMatrix<f64>, labels: &[usize], targets: Option<&DMatrix<f64>>) -> Result<Eval> {
        if x.ncols() != self.d_in() {
            return Err(NnError::ShapeMismatch {
                what: "x columns",
                expected: self.d_in(),
                got: x.ncols(),
            });
        }
        evaluate_blocks(self.loss, x.nrows(), self.n_out(), labels, targets, |f| {
            self.for_each_block(x, f)
        })
    }
}

/// The rows of `x` as a row-major `f32` buffer (resized to fit).
pub(crate) fn rows_f32(x: DMatrixView<'_, f64>, out: &mut Vec<f32>) {
    let (n, d) = x.shape();
    out.resize(n * d, 0.0);
    for (k, col) in x.column_iter().enumerate() {
        for (i, &v) in col.iter().enumerate() {
            out[i * d + k] = v as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::MlpParams;
    use crate::test_values as values;

    fn model(loss: Loss, center: bool, shape: ImageShape, depth: usize) -> ConvClassifier {
        let p = MlpParams {
            width: 4,
            loss,
            center,
            ..Default::default()
        }
        .check()
        .unwrap();
        ConvClassifier::new(shape, 3, depth, &p, 7).unwrap()
    }

    /// The mean loss through the inference path ([`ConvClassifier::forward`]),
    /// in f64 from the f32 logits.
    fn objective(m: &ConvClassifier, x: &DMatrix<f64>, y: &DMatrix<f64>, labels: &[usize]) -> f64 {
        let out = m.forward(x).transpose().map(|v| v as f32);
        let yt = y.transpose().map(|v| v as f32);
        loss_sum(m.loss, &out, yt.as_view(), labels, None) / x.nrows() as f64
    }

    // The network runs in f32 with ReLU kinks anywhere: each directional
    // derivative is compared with central differences at steps 1e-3, 3e-4
    // and 1e-4, and the closest must agree within 3e-3 (absolute below 1,
    // else relative), as kip-kernels' tests/rf.rs does for the body alone.
    const STEPS: [f32; 3] = [1e-3, 3e-4, 1e-4];

    #[test]
    fn loss_gradient_matches_central_differences() {
        let cases = [
            (Loss::Mse, false, ImageShape::new(6, 6, 2), 1),
            (Loss::CrossEntropy, false, ImageShape::new(5, 7, 1), 1),
            (Loss::Mse, true, ImageShape::new(8, 8, 3), 2),
        ];
        for (k, &(loss, center, shape, depth)) in cases.iter().enumerate() {
            let mut m = model(loss, center, shape, depth);
            let (n, d, c) = (5, shape.dim(), 3);
            let xs = values(n * d, 10 + k as u64);
            let x = DMatrix::from_row_slice(n, d, &xs.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            let labels: Vec<usize> = (0..n).map(|i| (i * 2 + k) % c).collect();
            let y = crate::eval::centered_one_hot(&labels, c);
            if center {
                // Move off θ₀ so that the centred output is not identically 0.
                for (i, v) in m.tensors_mut().flat_map(|t| t.iter_mut()).enumerate() {
                    *v += 0.1 * ((i % 7) as f32 - 3.0);
                }
            }
            let yt = y.transpose().map(|v| v as f32);
            let mut f0 = DMatrix::zeros(0, 0);
            let mut phi = Vec::new();
            let offset = m.reference_logits(&xs, n, &mut phi, &mut f0).then(|| f0.as_view());
            let mut g = ConvGrads::zeros_like(&m);
            let mut ws = ConvWorkspace::default();
            let l = m.loss_and_grad(&xs, yt.as_view(), &labels, offset, &mut ws, &mut g);
            let full = objective(&m, &x, &y, &labels);
            assert!(
                (l - full).abs() <= 1e-5 * full.abs().max(1.0),
                "case {k}: {l} vs {full}"
            );
            let an_grad: Vec<f32> = g.tensors().flat_map(|t| t.iter().copied()).collect();
            let p0: Vec<f32> = m.tensors_mut().flat_map(|t| t.to_vec()).collect();
            let nb = m.body.params().len();
            // Directions: all parameters, the head alone, a few body entries.
            let mut dirs: Vec<Vec<f32>> = (0..2).map(|t| values(p0.len(), 70 + t)).collect();
            let mut head = values(p0.len(), 80);
            head[..nb].fill(0.0);
            dirs.push(head);
            for idx in [0, nb / 3, nb - 1] {
                let mut e = vec![0.0; p0.len()];
                e[idx] = 1.0;
                dirs.push(e);
            }
            for (t, v) in dirs.iter().enumerate() {
                let an: f64 = an_grad.iter().zip(v).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                let mut at = |s: f32| {
                    for ((p, &a), &b) in m.tensors_mut().flat_map(|t| t.iter_mut()).zip(&p0).zip(v) {
                        *p = a + s * b;
                    }
                    objective(&m, &x, &y, &labels)
                };
                let fd = STEPS
                    .iter()
                    .map(|&e| (at(e) - at(-e)) / (2.0 * f64::from(e)))
                    .min_by(|a, b| (a - an).abs().total_cmp(&(b - an).abs()))
                    .unwrap();
                assert!(
                    (fd - an).abs() <= 3e-3 * an.abs().max(1.0),
                    "case {k} ({loss}, centred {center}), direction {t}: finite difference {fd} vs gradient {an}"
                );
                if t < 3 {
                    assert!(an.abs() > 1e-4, "case {k}, direction {t}: a vacuous check ({an})");
                }
            }
        }
    }

    #[test]
    fn centred_is_zero_at_init_and_forward_matches_blocks() {
        let shape = ImageShape::new(4, 4, 1);
        let m = model(Loss::Mse, true, shape, 1);
        let x = DMatrix::from_fn(1003, 16, |i, j| ((i * 7 + j) % 11) as f64 / 5.0 - 1.0);
        assert!(m.forward(&x).iter().all(|&v| v == 0.0));
        let plain = model(Loss::Mse, false, shape, 1);
        let out = plain.forward(&x);
        assert_eq!(out.shape(), (1003, 3));
        // Row 1001 (second block) matches a one-image forward (up to the
        // GEMMs' f32 rounding, which may differ with the block size).
        let one = plain.forward(&x.rows(1001, 1).into_owned());
        assert!(
            (out.row(1001) - one.row(0)).amax() < 1e-5,
            "{} vs {}",
            out.row(1001),
            one.row(0)
        );
        // 2×2×4 features after one pooling: a 3 × 16 head.
        assert_eq!(plain.n_features(), 16);
        assert_eq!(plain.num_params(), plain.body.params().len() + 3 * 16 + 3);
    }
}
