//! The network: [`Mlp`], its layers, initialisation and inference.

use std::sync::Arc;

use nalgebra::{DMatrix, DMatrixView, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::params::{Loss, Parameterization, ValidParams};
use kip_core::Real;
use kip_core::{argmax, gemm, MatMut, MatRef};

/// Rows per block when running a network over a large input.
pub(crate) const EVAL_BLOCK: usize = 1000;

/// One dense layer `z = s_w·W·h + s_b·b` (see [`Parameterization`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer<T: Real> {
    pub(crate) w: DMatrix<T>,
    pub(crate) b: DVector<T>,
    pub(crate) sw: T,
    pub(crate) sb: T,
}

impl<T: Real> Layer<T> {
    /// The trainable weight matrix `W`, `fan_out × fan_in`.
    pub fn weights(&self) -> &DMatrix<T> {
        &self.w
    }
    /// The trainable bias `b`, length `fan_out`.
    pub fn bias(&self) -> &DVector<T> {
        &self.b
    }
    /// The forward multipliers `(s_w, s_b)`.
    pub fn scales(&self) -> (T, T) {
        (self.sw, self.sb)
    }

    /// `out = s_w·W·input + s_b·b·1ᵀ` on column-per-sample matrices, then
    /// `max(out, 0)` if `relu`; the bias and the ReLU share one pass after
    /// the GEMM.
    pub(crate) fn forward_into(&self, input: DMatrixView<'_, T>, out: &mut DMatrix<T>, relu: bool) {
        gemm(
            self.sw,
            MatRef::from(&self.w),
            MatRef::from(input),
            T::ZERO,
            MatMut::from(&mut *out),
        );
        add_bias_act(out.as_mut_slice(), self.b.as_slice(), self.sb, relu);
    }
}

/// A fully connected ReLU network: `depth` hidden layers of `width` units
/// and a linear readout to `C` outputs, computing in `T` (`f32` by default).
///
/// Inputs are `n × d` matrices, one sample per row (model-space images);
/// outputs are `n × C`.
///
/// A *centred* network (built with [`MlpParams::center`](crate::MlpParams::center))
/// keeps a frozen copy of its initial parameters `θ₀` and outputs
/// `f(x; θ) − f(x; θ₀)`: zero at initialisation, with the same gradients
/// as the plain network. Everything that runs the network ([`Mlp::forward`],
/// [`Mlp::predict_labels`], evaluation and training) uses the centred output.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<T: Real = f32> {
    pub(crate) layers: Vec<Layer<T>>,
    /// The frozen initial layers of a centred network.
    pub(crate) reference: Option<Arc<Vec<Layer<T>>>>,
    pub(crate) loss: Loss,
    pub(crate) param: Parameterization,
}

impl Mlp<f32> {
    /// A freshly initialised `f32` network with `d_in` inputs and `n_out`
    /// outputs, architecture from `params`, weights drawn from
    /// `ChaCha8Rng::seed_from_u64(seed)`. See [`Mlp::init`] for other
    /// precisions.
    ///
    /// # Panics
    ///
    /// If `d_in` or `n_out` is 0.
    pub fn new(d_in: usize, n_out: usize, params: &ValidParams, seed: u64) -> Self {
        Self::init(d_in, n_out, params, seed)
    }
}

impl<T: Real> Mlp<T> {
    /// As [`Mlp::new`], in precision `T`: `Mlp::<f64>::init(..)`.
    ///
    /// # Panics
    ///
    /// If `d_in` or `n_out` is 0.
    pub fn init(d_in: usize, n_out: usize, params: &ValidParams, seed: u64) -> Self {
        assert!(d_in > 0 && n_out > 0, "Mlp: d_in and n_out must be >= 1");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fans = vec![d_in];
        fans.extend(std::iter::repeat_n(params.width, params.depth));
        fans.push(n_out);
        let layers = fans
            .windows(2)
            .map(|f| {
                let (fan_in, fan_out) = (f[0], f[1]);
                let s_w = params.w_std / (fan_in as f64).sqrt();
                let (sw, sb, vw, vb) = match params.param {
                    Parameterization::Ntk => (s_w, params.b_std, 1.0, 1.0),
                    Parameterization::Standard => (1.0, 1.0, s_w, params.b_std),
                };
                let mut draw = |scale: f64| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    T::of_f64(scale * z)
                };
                let w = DMatrix::from_fn(fan_out, fan_in, |_, _| draw(vw));
                let b = DVector::from_fn(fan_out, |_, _| draw(vb));
                Layer {
                    w,
                    b,
                    sw: T::of_f64(sw),
                    sb: T::of_f64(sb),
                }
            })
            .collect::<Vec<_>>();
        Self {
            reference: params.center.then(|| Arc::new(layers.clone())),
            layers,
            loss: params.loss,
            param: params.param,
        }
    }

    /// The layers, input side first (`depth + 1` of them).
    pub fn layers(&self) -> &[Layer<T>] {
        &self.layers
    }
    /// Input dimension `d`.
    pub fn d_in(&self) -> usize {
        self.layers[0].w.ncols()
    }
    /// Number of outputs `C`.
    pub fn n_out(&self) -> usize {
        self.layers[self.layers.len() - 1].w.nrows()
    }
    /// The loss this network was built to train with.
    pub fn loss(&self) -> Loss {
        self.loss
    }
    /// Its parameterisation.
    pub fn parameterization(&self) -> Parameterization {
        self.param
    }
    /// Whether the network is centred (outputs `f(x; θ) − f(x; θ₀)`).
    pub fn is_centred(&self) -> bool {
        self.reference.is_some()
    }
    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// The lengths of the trainable tensors, in the order of
    /// [`Mlp::tensors_mut`].
    pub(crate) fn tensor_sizes(&self) -> Vec<usize> {
        self.layers.iter().flat_map(|l| [l.w.len(), l.b.len()]).collect()
    }

    /// The trainable tensors as flat slices: `W₀, b₀, W₁, b₁, …`.
    pub(crate) fn tensors_mut(&mut self) -> impl Iterator<Item = &mut [T]> {
        self.layers
            .iter_mut()
            .flat_map(|l| [l.w.as_mut_slice(), l.b.as_mut_slice()])
    }

    /// Hidden activations `hs[l] = relu(z_{l+1})` (each `width × b`) and
    /// outputs `out` (`C × b`) for column-per-sample inputs `x` (`d × b`).
    /// This is the plain (uncentred) forward pass of the trainable layers.
    pub(crate) fn forward_cols(&self, x: DMatrixView<'_, T>, hs: &mut [DMatrix<T>], out: &mut DMatrix<T>) {
        forward_layers(&self.layers, x, hs, out);
    }

    /// The initial network's outputs `f(x; θ₀)` (`C × b`) for a centred
    /// network, `hs` being scratch like in [`Mlp::forward_cols`]; `false`
    /// (and nothing written) for a plain one.
    pub(crate) fn reference_cols(&self, x: DMatrixView<'_, T>, hs: &mut [DMatrix<T>], out: &mut DMatrix<T>) -> bool {
        match &self.reference {
            Some(layers) => {
                forward_layers(layers, x, hs, out);
                true
            }
            None => false,
        }
    }

    /// Calls `f(first_row, outputs)` for consecutive blocks of at most
    /// [`EVAL_BLOCK`] rows of `x`, `outputs` being `C × rows` (one column
    /// per sample).
    pub(crate) fn for_each_block(&self, x: &DMatrix<f64>, mut f: impl FnMut(usize, &DMatrix<T>)) {
        assert_eq!(x.ncols(), self.d_in(), "Mlp: input has the wrong number of columns");
        let bs = EVAL_BLOCK.min(x.nrows()).max(1);
        let hidden = |n| -> Vec<DMatrix<T>> {
            self.layers[..self.layers.len() - 1]
                .iter()
                .map(|l| DMatrix::zeros(l.w.nrows(), n))
                .collect()
        };
        let mut hs = hidden(bs);
        let mut xb = DMatrix::<T>::zeros(self.d_in(), bs);
        let mut out = DMatrix::<T>::zeros(self.n_out(), bs);
        let mut out0 = DMatrix::<T>::zeros(self.n_out(), bs);
        let mut start = 0;
        while start < x.nrows() {
            let rows = bs.min(x.nrows() - start);
            if rows != xb.ncols() {
                xb = DMatrix::zeros(self.d_in(), rows);
                out = DMatrix::zeros(self.n_out(), rows);
                out0 = DMatrix::zeros(self.n_out(), rows);
                hs = hidden(rows);
            }
            transpose_into(x.rows(start, rows), &mut xb);
            if self.reference_cols(xb.as_view(), &mut hs, &mut out0) {
                self.forward_cols(xb.as_view(), &mut hs, &mut out);
                out -= &out0;
            } else {
                self.forward_cols(xb.as_view(), &mut hs, &mut out);
            }
            f(start, &out);
            start += rows;
        }
    }

    /// Network outputs `f(x)`, `n × C`, computed in blocks of 1000 rows.
    ///
    /// # Panics
    ///
    /// If `x` does not have [`d_in`](Self::d_in) columns.
    pub fn forward(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let mut y = DMatrix::zeros(x.nrows(), self.n_out());
        self.for_each_block(x, |start, out| {
            for (j, col) in out.column_iter().enumerate() {
                for (c, v) in col.iter().enumerate() {
                    y[(start + j, c)] = v.as_f64();
                }
            }
        });
        y
    }

    /// Predicted class ids: the argmax of each output row
    /// ([`kip_core::argmax`]: first on ties, NaN never wins).
    ///
    /// # Panics
    ///
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
}

/// Forward pass of `layers` (ReLU between them) on column-per-sample `x`:
/// hidden activations into `hs`, outputs into `out`.
fn forward_layers<T: Real>(layers: &[Layer<T>], x: DMatrixView<'_, T>, hs: &mut [DMatrix<T>], out: &mut DMatrix<T>) {
    let depth = layers.len() - 1;
    debug_assert_eq!(hs.len(), depth);
    for l in 0..depth {
        let (done, rest) = hs.split_at_mut(l);
        let input = if l == 0 { x } else { done[l - 1].as_view() };
        let z = &mut rest[0];
        layers[l].forward_into(input, z, true);
    }
    let input = if depth == 0 { x } else { hs[depth - 1].as_view() };
    layers[depth].forward_into(input, out, false);
}

/// `dst = srcᵀ` converted to `T` (`src` is `rows × d` f64, `dst` `d × rows`).
pub(crate) fn transpose_into<T: Real>(src: DMatrixView<'_, f64>, dst: &mut DMatrix<T>) {
    debug_assert_eq!(dst.shape(), (src.ncols(), src.nrows()));
    for (i, mut col) in dst.column_iter_mut().enumerate() {
        for (k, v) in col.iter_mut().enumerate() {
            *v = T::of_f64(src[(i, k)]);
        }
    }
}

/// Elements per rayon task in elementwise passes.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// `z[:, j] ← act(z[:, j] + s_b·b)` for every column `j` of the
/// column-major `z` (`b.len()` rows), `act` being ReLU (NaN passes through,
/// so divergence shows in the loss) or the identity; parallel over groups
/// of columns for large `z`.
fn add_bias_act<T: Real>(z: &mut [T], bias: &[T], sb: T, relu: bool) {
    use rayon::prelude::*;
    let rows = bias.len();
    let f = |c: &mut [T]| {
        for col in c.chunks_exact_mut(rows) {
            if relu {
                // A select, not a conditional store, so that it vectorises.
                for (v, &b) in col.iter_mut().zip(bias) {
                    let t = *v + sb * b;
                    *v = if t < T::ZERO { T::ZERO } else { t };
                }
            } else {
                for (v, &b) in col.iter_mut().zip(bias) {
                    *v += sb * b;
                }
            }
        }
    };
    if z.len() > PAR_CHUNK && rows > 0 {
        let cols = (PAR_CHUNK / rows).max(1);
        z.par_chunks_mut(cols * rows).for_each(f);
    } else {
        f(z);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::MlpParams;

    fn naive_forward(m: &Mlp<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
        let mut h = x.transpose();
        for (l, layer) in m.layers.iter().enumerate() {
            let mut z = &layer.w * &h * layer.sw;
            for mut c in z.column_iter_mut() {
                c += &layer.b * layer.sb;
            }
            if l + 1 < m.layers.len() {
                z.apply(|v| *v = v.max(0.0));
            }
            h = z;
        }
        h.transpose()
    }

    #[test]
    fn forward_matches_naive_for_both_parameterisations() {
        for param in [Parameterization::Ntk, Parameterization::Standard] {
            let p = MlpParams {
                depth: 2,
                width: 9,
                param,
                ..Default::default()
            }
            .check()
            .unwrap();
            let m = Mlp::<f64>::init(6, 3, &p, 7);
            let x = DMatrix::from_fn(2500, 6, |i, j| ((i * 13 + j * 7) % 17) as f64 / 8.0 - 1.0);
            let got = m.forward(&x);
            let want = naive_forward(&m, &x);
            assert!((&got - &want).norm() <= 1e-10 * want.norm());
            let labels = m.predict_labels(&x);
            for (i, &l) in labels.iter().enumerate() {
                assert_eq!(l, argmax(want.row(i).iter().copied()));
            }
        }
    }

    #[test]
    fn parameterisations_agree_in_distribution_at_init() {
        // Output variance over many seeds is about the same.
        let x = DMatrix::from_fn(1, 20, |_, j| j as f64 / 10.0 - 1.0);
        let var = |param| {
            let p = MlpParams {
                width: 256,
                param,
                ..Default::default()
            }
            .check()
            .unwrap();
            let s: f64 = (0..200)
                .map(|seed| Mlp::<f64>::init(20, 1, &p, seed).forward(&x)[(0, 0)].powi(2))
                .sum();
            s / 200.0
        };
        let (a, b) = (var(Parameterization::Ntk), var(Parameterization::Standard));
        assert!((a / b - 1.0).abs() < 0.35, "{a} vs {b}");
    }

    #[test]
    fn centred_network_is_zero_at_init_and_a_difference_after() {
        let p = MlpParams {
            depth: 2,
            width: 9,
            center: true,
            ..Default::default()
        }
        .check()
        .unwrap();
        let plain_p = MlpParams {
            center: false,
            ..p.params().clone()
        }
        .check()
        .unwrap();
        let mut m = Mlp::<f64>::init(6, 3, &p, 7);
        let plain0 = Mlp::<f64>::init(6, 3, &plain_p, 7);
        assert!(m.is_centred() && !plain0.is_centred());
        let x = DMatrix::from_fn(1200, 6, |i, j| ((i * 13 + j * 7) % 17) as f64 / 8.0 - 1.0);
        assert_eq!(m.forward(&x).norm(), 0.0);
        for t in m.tensors_mut() {
            t.iter_mut().for_each(|v| *v *= 1.1);
        }
        let mut plain = plain0.clone();
        plain.layers.clone_from(&m.layers);
        let want = plain.forward(&x) - plain0.forward(&x);
        assert!((m.forward(&x) - &want).norm() <= 1e-10 * want.norm());
    }

    #[test]
    fn init_is_seeded() {
        let p = MlpParams {
            width: 5,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(Mlp::new(3, 2, &p, 1), Mlp::new(3, 2, &p, 1));
        assert_ne!(Mlp::new(3, 2, &p, 1), Mlp::new(3, 2, &p, 2));
        assert_eq!(Mlp::new(3, 2, &p, 1).num_params(), 5 * 3 + 5 + 2 * 5 + 2);
    }
}
