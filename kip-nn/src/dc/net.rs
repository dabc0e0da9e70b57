//! [`DcConvNet`]: the ConvNet of the dataset-distillation field's standard
//! evaluation (DatasetCondensation's `ConvNet`, width 128, depth 3,
//! `instancenorm`, `relu`, `avgpooling`): `depth` × [Conv 3×3 SAME with
//! bias, InstanceNorm (affine), ReLU, AvgPool 2×2], Flatten, Linear, in
//! `f32`, with PyTorch's default initialisation and a hand-written backward
//! pass.
//!
//! Images are rows of `h·w·c` values, channels fastest (as every kip
//! dataset); PyTorch's NCHW flattening order differs from ours only by a
//! fixed permutation of the head's inputs, which an i.i.d. initialisation
//! does not see. Work runs over fixed chunks of [`CHUNK`] images in
//! parallel; parameter gradients are reduced chunk by chunk in order, so
//! the bits do not depend on the thread count.

use kip_core::{
    argmax, conv3x3_forward, conv3x3_input_grad, conv3x3_weight_grad, gemm_seq, pool_backward, pool_forward,
    ImageShape, MatMut, MatRef,
};
use rand::Rng;
use rayon::prelude::*;

use super::norm;
use crate::error::{NnError, Result};

/// Images per parallel task.
const CHUNK: usize = 4;

/// Where one block's tensors sit in the flat parameter vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    /// The Conv's input shape.
    si: ImageShape,
    co: usize,
    /// Offsets: weights (`9·c_in × c_out`, taps then input channels),
    /// bias, norm scale γ, norm shift β (`c_out` each).
    w: usize,
    b: usize,
    gamma: usize,
    beta: usize,
}

/// The standard evaluation ConvNet (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct DcConvNet {
    blocks: Vec<Block>,
    /// Flattened feature length `F` (the last block's pooled output).
    features: usize,
    classes: usize,
    /// Head offsets: weights (`C × F` row-major), bias (`C`).
    head_w: usize,
    head_b: usize,
    params: Vec<f32>,
}

/// One chunk's forward record: each block's Conv input, normalised map
/// `x̂` and inverse standard deviations, and the flattened features.
struct Tape {
    inputs: Vec<Vec<f32>>,
    xhat: Vec<Vec<f32>>,
    inv_std: Vec<Vec<f32>>,
    features: Vec<f32>,
}

impl DcConvNet {
    /// A network for images of `shape` with `classes` outputs, `width`
    /// channels per Conv and `depth` blocks, initialised as PyTorch does
    /// by default: every Conv and Linear weight and bias uniform in
    /// `±1/√fan_in` (`kaiming_uniform_(a = √5)`; `fan_in` = `9·c_in` or
    /// `F`), norm scales 1 and shifts 0. Draws come from `rng`, tensor by
    /// tensor in layer order (weights, then bias).
    ///
    /// # Errors
    /// [`NnError::InvalidParam`] for a zero `width`, `depth` or `classes`,
    /// or images that `depth` poolings would shrink below 1×1.
    pub fn new(shape: ImageShape, classes: usize, width: usize, depth: usize, rng: &mut impl Rng) -> Result<Self> {
        let bad =
            |name: &'static str, value: String, expected: &'static str| NnError::InvalidParam { name, value, expected };
        if width == 0 {
            return Err(bad("width", "0".into(), ">= 1"));
        }
        if depth == 0 {
            return Err(bad("depth", "0".into(), ">= 1"));
        }
        if classes == 0 {
            return Err(bad("classes", "0".into(), ">= 1"));
        }
        if shape.c == 0 || shape.h >> depth == 0 || shape.w >> depth == 0 {
            return Err(bad(
                "depth",
                format!("{depth} on {shape} images"),
                "images of at least 2^depth × 2^depth pixels (each block halves them)",
            ));
        }
        let mut blocks = Vec::with_capacity(depth);
        let mut si = shape;
        let mut len = 0usize;
        for _ in 0..depth {
            let k = 9 * si.c;
            let blk = Block {
                si,
                co: width,
                w: len,
                b: len + k * width,
                gamma: len + k * width + width,
                beta: len + k * width + 2 * width,
            };
            len = blk.beta + width;
            blocks.push(blk);
            si = ImageShape::new(si.h / 2, si.w / 2, width);
        }
        let features = si.dim();
        let head_w = len;
        let head_b = head_w + classes * features;
        let mut net = Self {
            blocks,
            features,
            classes,
            head_w,
            head_b,
            params: vec![0.0; head_b + classes],
        };
        let uniform = |p: &mut [f32], fan_in: usize, rng: &mut dyn rand::RngCore| {
            let bound = 1.0 / (fan_in as f32).sqrt();
            for v in p {
                *v = rng.random_range(-bound..bound);
            }
        };
        for blk in net.blocks.clone() {
            let fan_in = 9 * blk.si.c;
            uniform(&mut net.params[blk.w..blk.b], fan_in, rng);
            uniform(&mut net.params[blk.b..blk.gamma], fan_in, rng);
            net.params[blk.gamma..blk.beta].fill(1.0);
        }
        uniform(&mut net.params[head_w..head_b], features, rng);
        uniform(&mut net.params[head_b..], features, rng);
        Ok(net)
    }

    /// Values per input image.
    pub fn input_dim(&self) -> usize {
        self.blocks[0].si.dim()
    }

    /// Number of outputs `C`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All trainable parameters, flat: per block the Conv weights
    /// (`9·c_in × c_out`, taps then input channels, row-major), Conv bias,
    /// norm γ, norm β; then the head's weights (`C × F` row-major) and bias.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The parameters, mutable (an optimiser's step).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Logits (`n × C`, row-major) of `n` images (`x`: `n × input_dim`).
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of [`DcConvNet::input_dim`].
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let d = self.input_dim();
        assert_eq!(x.len() % d, 0, "DcConvNet::logits: input length");
        let n = x.len() / d;
        let mut out = vec![0.0; n * self.classes];
        out.par_chunks_mut(CHUNK * self.classes)
            .zip(x.par_chunks(CHUNK * d))
            .for_each(|(out, x)| {
                let tape = self.forward_chunk(x, false);
                self.head(&tape.features, out);
            });
        out
    }

    /// Predicted classes of `n` images (the argmax of each row of logits).
    pub fn predict(&self, x: &[f32]) -> Vec<usize> {
        self.logits(x)
            .chunks_exact(self.classes)
            .map(|r| argmax(r.iter().copied()))
            .collect()
    }

    /// Mean softmax cross-entropy of the `n` images `x` with classes
    /// `labels`, and its gradient with respect to the parameters into
    /// `grad` (overwritten). Returns the loss and the number of images the
    /// network classified correctly (before the update).
    ///
    /// # Panics
    /// If the lengths disagree or a label is not below `C`.
    pub fn loss_and_grad(&self, x: &[f32], labels: &[usize], grad: &mut [f32]) -> (f64, usize) {
        let d = self.input_dim();
        let n = labels.len();
        assert_eq!(x.len(), n * d, "DcConvNet::loss_and_grad: input length");
        assert_eq!(
            grad.len(),
            self.params.len(),
            "DcConvNet::loss_and_grad: gradient length"
        );
        let inv_n = 1.0 / n as f32;
        let parts: Vec<(Vec<f32>, f64, usize)> = x
            .par_chunks(CHUNK * d)
            .zip(labels.par_chunks(CHUNK))
            .map(|(x, labels)| {
                let tape = self.forward_chunk(x, true);
                let c = self.classes;
                let mut dlogits = vec![0.0; labels.len() * c];
                self.head(&tape.features, &mut dlogits);
                let (mut loss, mut correct) = (0.0f64, 0usize);
                for (row, &l) in dlogits.chunks_exact_mut(c).zip(labels) {
                    assert!(l < c, "label {l} not below {c} classes");
                    correct += usize::from(argmax(row.iter().copied()) == l);
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let shifted = row[l] - m;
                    let mut z = 0.0f32;
                    for v in row.iter_mut() {
                        *v = (*v - m).exp();
                        z += *v;
                    }
                    // −log softmax = log Σ exp(o − m) − (o_l − m).
                    loss += f64::from(z.ln()) - f64::from(shifted);
                    for v in row.iter_mut() {
                        *v *= inv_n / z;
                    }
                    row[l] -= inv_n;
                }
                let mut g = vec![0.0; self.params.len()];
                self.backward_chunk(&tape, &dlogits, &mut g);
                (g, loss, correct)
            })
            .collect();
        grad.fill(0.0);
        let (mut loss, mut correct) = (0.0, 0);
        for (g, l, c) in &parts {
            for (a, v) in grad.iter_mut().zip(g) {
                *a += v;
            }
            loss += l;
            correct += c;
        }
        (loss / n as f64, correct)
    }

    /// The head: `out = features·Wᵀ + b` (`b × C`).
    fn head(&self, features: &[f32], out: &mut [f32]) {
        let (f, c) = (self.features, self.classes);
        let b = features.len() / f;
        let w = MatRef::row_major(&self.params[self.head_w..self.head_b], c, f);
        gemm_seq(
            1.0,
            MatRef::row_major(features, b, f),
            w.t(),
            0.0,
            MatMut::row_major(out, b, c),
        );
        let bias = &self.params[self.head_b..];
        for row in out.chunks_exact_mut(c) {
            for (v, &bv) in row.iter_mut().zip(bias) {
                *v += bv;
            }
        }
    }

    /// Forward through the blocks for one chunk; with `keep`, the tape
    /// the backward pass needs.
    fn forward_chunk(&self, x: &[f32], keep: bool) -> Tape {
        let b = x.len() / self.input_dim();
        let mut tape = Tape {
            inputs: Vec::new(),
            xhat: Vec::new(),
            inv_std: Vec::new(),
            features: Vec::new(),
        };
        let mut a = x.to_vec();
        let mut patches = Vec::new();
        for blk in &self.blocks {
            let (si, co) = (blk.si, blk.co);
            let so = ImageShape::new(si.h, si.w, co);
            let p = si.h * si.w;
            let mut z = vec![0.0; b * so.dim()];
            conv3x3_forward(si, &a, b, &self.params[blk.w..blk.b], 1.0, &mut z, &mut patches);
            let bias = &self.params[blk.b..blk.gamma];
            for row in z.chunks_exact_mut(co) {
                for (v, &bv) in row.iter_mut().zip(bias) {
                    *v += bv;
                }
            }
            let mut inv = vec![0.0; b * co];
            norm::normalize(&mut z, p, co, &mut inv);
            let mut y = vec![0.0; z.len()];
            norm::affine(
                &z,
                &self.params[blk.gamma..blk.beta],
                &self.params[blk.beta..blk.beta + co],
                &mut y,
            );
            y.iter_mut().for_each(|v| *v = v.max(0.0));
            let next = pool_forward(so, &y, b);
            if keep {
                tape.inputs.push(std::mem::take(&mut a));
                tape.xhat.push(z);
                tape.inv_std.push(inv);
            }
            a = next;
        }
        tape.features = a;
        tape
    }

    /// Backward from the logits' cotangent (`b × C`) into `grad`
    /// (accumulated).
    fn backward_chunk(&self, tape: &Tape, dlogits: &[f32], grad: &mut [f32]) {
        let (f, c) = (self.features, self.classes);
        let b = dlogits.len() / c;
        let (body, head) = grad.split_at_mut(self.head_w);
        let (gw, gb) = head.split_at_mut(c * f);
        let dl = MatRef::row_major(dlogits, b, c);
        gemm_seq(
            1.0,
            dl.t(),
            MatRef::row_major(&tape.features, b, f),
            1.0,
            MatMut::row_major(gw, c, f),
        );
        for row in dlogits.chunks_exact(c) {
            for (g, &v) in gb.iter_mut().zip(row) {
                *g += v;
            }
        }
        let mut g = vec![0.0; b * f];
        gemm_seq(
            1.0,
            dl,
            MatRef::row_major(&self.params[self.head_w..self.head_b], c, f),
            0.0,
            MatMut::row_major(&mut g, b, f),
        );
        let mut patches = Vec::new();
        for (k, blk) in self.blocks.iter().enumerate().rev() {
            let (si, co) = (blk.si, blk.co);
            let so = ImageShape::new(si.h, si.w, co);
            let p = si.h * si.w;
            let mut dy = pool_backward(so, &g, b);
            let (gamma, beta) = (&self.params[blk.gamma..blk.beta], &self.params[blk.beta..blk.beta + co]);
            let xhat = &tape.xhat[k];
            // ReLU: keep the cotangent where γ·x̂ + β (the ReLU's input, as
            // the forward computed it) was positive.
            for (dr, xr) in dy.chunks_exact_mut(co).zip(xhat.chunks_exact(co)) {
                for (((d, &x), &gm), &bt) in dr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                    if gm * x + bt <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
            let (dgamma, rest) = body[blk.gamma..blk.beta + co].split_at_mut(co);
            norm::backward(&mut dy, xhat, &tape.inv_std[k], gamma, p, dgamma, rest);
            let input = &tape.inputs[k];
            conv3x3_weight_grad(si, input, &dy, b, 1.0, &mut body[blk.w..blk.b], &mut patches);
            let db = &mut body[blk.b..blk.gamma];
            for row in dy.chunks_exact(co) {
                for (d, &v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
            if k > 0 {
                g = conv3x3_input_grad(si, &self.params[blk.w..blk.b], 1.0, &dy, b, &mut patches);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values as values;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn net(shape: ImageShape, width: usize, depth: usize) -> DcConvNet {
        DcConvNet::new(shape, 3, width, depth, &mut ChaCha8Rng::seed_from_u64(7)).unwrap()
    }

    #[test]
    fn initialisation_follows_pytorch_bounds() {
        let n = net(ImageShape::new(8, 8, 3), 16, 2);
        let blk = n.blocks[1];
        let bound = 1.0 / ((9 * 16) as f32).sqrt();
        let w = &n.params[blk.w..blk.b];
        assert!(w.iter().all(|v| v.abs() <= bound));
        // Uniform: the largest magnitude comes close to the bound.
        assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.95 * bound);
        assert!(n.params[blk.gamma..blk.beta].iter().all(|&v| v == 1.0));
        assert!(n.params[blk.beta..blk.beta + 16].iter().all(|&v| v == 0.0));
        // 8×8 → 4×4 → 2×2 of 16 channels.
        assert_eq!(n.features, 64);
        let hb = 1.0 / 8.0;
        assert!(n.params[n.head_w..].iter().all(|v| v.abs() <= hb));
        assert!(matches!(
            DcConvNet::new(ImageShape::new(4, 4, 1), 3, 8, 3, &mut ChaCha8Rng::seed_from_u64(0)),
            Err(NnError::InvalidParam { name: "depth", .. })
        ));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let shape = ImageShape::new(6, 6, 2);
        let mut n = net(shape, 4, 2);
        // Shift the norm parameters off their defaults so every path counts.
        for blk in n.blocks.clone() {
            for (i, v) in n.params[blk.gamma..blk.beta + blk.co].iter_mut().enumerate() {
                *v += 0.3 * ((i % 5) as f32 - 2.0) / 2.0;
            }
        }
        let b = 5;
        let x = values(b * shape.dim(), 3);
        let labels = [0, 1, 2, 1, 0];
        let mut g = vec![0.0; n.params.len()];
        let (loss, _) = n.loss_and_grad(&x, &labels, &mut g);
        assert!(loss.is_finite() && loss > 0.0);
        let eval = |n: &DcConvNet| {
            let mut scratch = vec![0.0; n.params.len()];
            n.loss_and_grad(&x, &labels, &mut scratch).0
        };
        let h = 1e-2f32;
        let blk = n.blocks[0];
        let picks = [
            blk.w,
            blk.w + 17,
            blk.b + 1,
            blk.gamma + 2,
            blk.beta + 3,
            n.blocks[1].w + 40,
            n.blocks[1].gamma,
            n.head_w + 3,
            n.head_b + 1,
        ];
        for &k in &picks {
            let (mut p, mut m) = (n.clone(), n.clone());
            p.params[k] += h;
            m.params[k] -= h;
            let fd = (eval(&p) - eval(&m)) / (2.0 * h as f64);
            let an = f64::from(g[k]);
            assert!(
                (fd - an).abs() < 3e-3 + 2e-2 * an.abs(),
                "param {k}: finite differences {fd} vs analytic {an}"
            );
        }
        assert!(
            picks.iter().filter(|&&k| g[k].abs() > 1e-3).count() >= 6,
            "a vacuous check"
        );
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let shape = ImageShape::new(8, 8, 3);
        let n = net(shape, 8, 3);
        let x = values(11 * shape.dim(), 5);
        let labels: Vec<usize> = (0..11).map(|i| i % 3).collect();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let mut g = vec![0.0; n.params.len()];
                    let (l, c) = n.loss_and_grad(&x, &labels, &mut g);
                    (l, c, g, n.logits(&x))
                })
        };
        assert_eq!(run(1), run(2));
    }
}
