//! Losses and the hand-written backward pass over batched GEMMs.
//!
//! Activations are stored one column per sample (`fan × b`), so a layer is
//! `Z = s_w·W·H + s_b·b·1ᵀ` and its gradients are
//!
//! - `∂L/∂W = s_w·dZ·Hᵀ` (+ `λ·W` with weight decay λ),
//! - `∂L/∂b = s_b·dZ·1`,
//! - `∂L/∂H = s_w·Wᵀ·dZ`, then `dZ_prev = ∂L/∂H ⊙ [H > 0]` (ReLU),
//!
//! all of them GEMMs on zero-copy (possibly transposed) views.

use nalgebra::{DMatrix, DMatrixView, DVector};
use rayon::prelude::*;

use crate::mlp::{Mlp, PAR_CHUNK};
use crate::params::Loss;
use kip_core::Real;
use kip_core::{gemm, MatMut, MatRef};

/// Sum over the columns of `out` (`C × b`, one sample per column) of the
/// per-sample loss: `½·Σ_c (f_c − y_c)² / C` (MSE, so that dividing by `b`
/// gives `½·mean` over all `b·C` entries) or `logsumexp(f) − f_label`
/// (cross-entropy). With `grad = Some((g, s))`, also writes
/// `g = s·∂(sum)/∂out`.
///
/// `targets` (`C × b`) is read for MSE only, `labels` (length `b`) for
/// cross-entropy only.
pub(crate) fn loss_sum<T: Real>(
    loss: Loss,
    out: &DMatrix<T>,
    targets: DMatrixView<'_, T>,
    labels: &[usize],
    mut grad: Option<(&mut DMatrix<T>, f64)>,
) -> f64 {
    let c = out.nrows();
    let mut total = 0.0;
    match loss {
        Loss::Mse => {
            let inv_c = 1.0 / c as f64;
            for (j, col) in out.column_iter().enumerate() {
                let mut s = 0.0;
                for (i, &f) in col.iter().enumerate() {
                    let diff = f.as_f64() - targets[(i, j)].as_f64();
                    s += diff * diff;
                    if let Some((g, scale)) = grad.as_mut() {
                        g[(i, j)] = T::of_f64(*scale * inv_c * diff);
                    }
                }
                total += 0.5 * s * inv_c;
            }
        }
        Loss::CrossEntropy => {
            for (j, col) in out.column_iter().enumerate() {
                let max = col.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
                let sum: f64 = col.iter().map(|v| (v.as_f64() - max).exp()).sum();
                let lse = max + sum.ln();
                let label = labels[j];
                total += lse - col[label].as_f64();
                if let Some((g, scale)) = grad.as_mut() {
                    for (i, v) in col.iter().enumerate() {
                        let p = (v.as_f64() - lse).exp();
                        let y = if i == label { 1.0 } else { 0.0 };
                        g[(i, j)] = T::of_f64(*scale * (p - y));
                    }
                }
            }
        }
    }
    total
}

/// Gradients, laid out like the network's layers.
#[derive(Debug, Clone)]
pub(crate) struct Grads<T: Real> {
    pub(crate) w: Vec<DMatrix<T>>,
    pub(crate) b: Vec<DVector<T>>,
}

impl<T: Real> Grads<T> {
    pub(crate) fn zeros_like(model: &Mlp<T>) -> Self {
        Self {
            w: model
                .layers
                .iter()
                .map(|l| DMatrix::zeros(l.w.nrows(), l.w.ncols()))
                .collect(),
            b: model.layers.iter().map(|l| DVector::zeros(l.b.len())).collect(),
        }
    }

    /// Flat slices in the order of `Mlp::tensors_mut`: `W₀, b₀, W₁, b₁, …`.
    pub(crate) fn tensors(&self) -> impl Iterator<Item = &[T]> {
        self.w
            .iter()
            .zip(&self.b)
            .flat_map(|(w, b)| [w.as_slice(), b.as_slice()])
    }
}

/// Buffers for one batch size, reused across steps.
#[derive(Debug, Clone)]
pub(crate) struct Workspace<T: Real> {
    batch: usize,
    hs: Vec<DMatrix<T>>,
    out: DMatrix<T>,
    dout: DMatrix<T>,
    dz: [DMatrix<T>; 2],
    ones: Vec<T>,
}

impl<T: Real> Workspace<T> {
    pub(crate) fn new() -> Self {
        Self {
            batch: usize::MAX,
            hs: Vec::new(),
            out: DMatrix::zeros(0, 0),
            dout: DMatrix::zeros(0, 0),
            dz: [DMatrix::zeros(0, 0), DMatrix::zeros(0, 0)],
            ones: Vec::new(),
        }
    }

    /// (Re)allocates for `model` and batch size `b` if needed.
    fn ensure(&mut self, model: &Mlp<T>, b: usize) {
        let depth = model.layers.len() - 1;
        let width = if depth > 0 { model.layers[0].w.nrows() } else { 0 };
        if self.batch == b && self.hs.len() == depth && self.out.nrows() == model.n_out() {
            return;
        }
        self.batch = b;
        self.hs = (0..depth).map(|_| DMatrix::zeros(width, b)).collect();
        self.out = DMatrix::zeros(model.n_out(), b);
        self.dout = DMatrix::zeros(model.n_out(), b);
        self.dz = [DMatrix::zeros(width, b), DMatrix::zeros(width, b)];
        self.ones = vec![T::ONE; b];
    }
}

/// Forward and backward pass on one batch: returns the mean data loss
/// (without the weight-decay term) and writes the gradient of
/// `loss + ½·λ·Σ‖W‖²` into `grads`.
///
/// `x` is `d × b`, `targets` `C × b` (MSE) and `labels` length `b`
/// (cross-entropy); shapes are the caller's responsibility. With
/// `offset = Some(f0)` (`C × b`), the loss is taken at the outputs minus
/// `f0` (a centred network's initial outputs), which leaves the backward
/// pass unchanged.
#[allow(clippy::too_many_arguments)]
pub(crate) fn loss_and_grad<T: Real>(
    model: &Mlp<T>,
    x: DMatrixView<'_, T>,
    targets: DMatrixView<'_, T>,
    labels: &[usize],
    offset: Option<DMatrixView<'_, T>>,
    weight_decay: T,
    ws: &mut Workspace<T>,
    grads: &mut Grads<T>,
) -> f64 {
    let b = x.ncols();
    ws.ensure(model, b);
    let Workspace {
        hs,
        out,
        dout,
        dz,
        ones,
        ..
    } = ws;
    model.forward_cols(x, hs, out);
    if let Some(f0) = offset {
        *out -= f0;
    }
    let inv_b = 1.0 / b as f64;
    let loss = loss_sum(model.loss, out, targets, labels, Some((dout, inv_b))) * inv_b;

    let depth = model.layers.len() - 1;
    let ones = DMatrixView::from_slice(ones, b, 1);
    for l in (0..=depth).rev() {
        let layer = &model.layers[l];
        let input = if l == 0 { x } else { hs[l - 1].as_view() };
        let [dz0, dz1] = &mut *dz;
        let (cur, next) = if l % 2 == 0 { (&*dz0, dz1) } else { (&*dz1, dz0) };
        let dzl: DMatrixView<'_, T> = if l == depth { dout.as_view() } else { cur.as_view() };

        let gw = &mut grads.w[l];
        let beta = if weight_decay > T::ZERO {
            gw.copy_from(&layer.w);
            *gw *= weight_decay;
            T::ONE
        } else {
            T::ZERO
        };
        gemm(
            layer.sw,
            MatRef::from(dzl),
            MatRef::from(input).t(),
            beta,
            MatMut::from(gw),
        );
        let gb = grads.b[l].as_mut_slice();
        let rows = gb.len();
        gemm(
            layer.sb,
            MatRef::from(dzl),
            MatRef::from(ones),
            T::ZERO,
            MatMut::col_major(gb, rows, 1),
        );
        if l > 0 {
            gemm(
                layer.sw,
                MatRef::from(&layer.w).t(),
                MatRef::from(dzl),
                T::ZERO,
                MatMut::from(&mut *next),
            );
            relu_mask(next.as_mut_slice(), hs[l - 1].as_slice());
        }
    }
    loss
}

/// `d ← d ⊙ [h > 0]`.
fn relu_mask<T: Real>(d: &mut [T], h: &[T]) {
    let f = |(dc, hc): (&mut [T], &[T])| {
        // A select, not a conditional store, so that it vectorises.
        for (dv, &hv) in dc.iter_mut().zip(hc) {
            *dv = if hv > T::ZERO { *dv } else { T::ZERO };
        }
    };
    if d.len() > PAR_CHUNK {
        d.par_chunks_mut(PAR_CHUNK).zip(h.par_chunks(PAR_CHUNK)).for_each(f);
    } else {
        f((d, h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{MlpParams, Parameterization};

    /// Objective `loss + ½·λ·Σ‖W‖²` in f64 through the inference path.
    fn objective(m: &Mlp<f64>, x: &DMatrix<f64>, y: &DMatrix<f64>, labels: &[usize], wd: f64) -> f64 {
        let out = m.forward(x).transpose();
        let yt = y.transpose();
        let data = loss_sum(m.loss, &out, yt.as_view(), labels, None) / x.nrows() as f64;
        let reg: f64 = m.layers.iter().map(|l| l.w.norm_squared()).sum();
        data + 0.5 * wd * reg
    }

    /// Largest per-tensor relative error ‖g − g_fd‖ / max(‖g‖, ‖g_fd‖).
    fn grad_check(param: Parameterization, loss: Loss, wd: f64, center: bool) -> f64 {
        let p = MlpParams {
            depth: 2,
            width: 7,
            param,
            loss,
            center,
            ..Default::default()
        }
        .check()
        .unwrap();
        let (n, d, c) = (4, 5, 3);
        let mut m = Mlp::<f64>::init(d, c, &p, 11);
        let x = DMatrix::from_fn(n, d, |i, j| ((i * 5 + j * 3) % 7) as f64 / 3.0 - 1.0);
        let labels = [0usize, 2, 1, 2];
        let y = DMatrix::from_fn(n, c, |i, k| if labels[i] == k { 2.0 / 3.0 } else { -1.0 / 3.0 });
        let xt = x.transpose();
        let yt = y.transpose();
        let mut ws = Workspace::new();
        let mut g = Grads::zeros_like(&m);
        if center {
            // Move off θ₀ so that the centred output is not identically 0.
            for (k, v) in m.tensors_mut().flat_map(|t| t.iter_mut()).enumerate() {
                *v += 0.1 * ((k % 7) as f64 - 3.0);
            }
        }
        let mut f0 = DMatrix::zeros(c, n);
        let mut hs = vec![DMatrix::zeros(7, n); 2];
        let offset = m.reference_cols(xt.as_view(), &mut hs, &mut f0).then(|| f0.as_view());
        assert_eq!(offset.is_some(), center);
        let loss = loss_and_grad(&m, xt.as_view(), yt.as_view(), &labels, offset, wd, &mut ws, &mut g);
        let reg: f64 = m.layers.iter().map(|l| l.w.norm_squared()).sum();
        let full = objective(&m, &x, &y, &labels, wd);
        assert!((loss + 0.5 * wd * reg - full).abs() < 1e-12 * full.abs().max(1.0));

        let analytic: Vec<Vec<f64>> = g.tensors().map(|t| t.to_vec()).collect();
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for (ti, ga) in analytic.iter().enumerate() {
            let mut fd = vec![0.0; ga.len()];
            for (k, fdk) in fd.iter_mut().enumerate() {
                let orig = m.tensors_mut().nth(ti).unwrap()[k];
                m.tensors_mut().nth(ti).unwrap()[k] = orig + h;
                let up = objective(&m, &x, &y, &labels, wd);
                m.tensors_mut().nth(ti).unwrap()[k] = orig - h;
                let down = objective(&m, &x, &y, &labels, wd);
                m.tensors_mut().nth(ti).unwrap()[k] = orig;
                *fdk = (up - down) / (2.0 * h);
            }
            let diff: f64 = ga.iter().zip(&fd).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            let na = ga.iter().map(|a| a * a).sum::<f64>().sqrt();
            let nf = fd.iter().map(|a| a * a).sum::<f64>().sqrt();
            assert!(na > 0.0, "tensor {ti} has a zero gradient: the check would be vacuous");
            let rel = diff / na.max(nf);
            worst = worst.max(rel);
            assert!(rel < 1e-6, "{param}/{loss} tensor {ti}: relative error {rel:e}");
        }
        worst
    }

    #[test]
    fn backprop_matches_central_differences() {
        for param in [Parameterization::Ntk, Parameterization::Standard] {
            for loss in [Loss::Mse, Loss::CrossEntropy] {
                for wd in [0.0, 0.01] {
                    for center in [false, true] {
                        let worst = grad_check(param, loss, wd, center);
                        println!(
                            "grad check {param}/{loss}/wd={wd}/centred={center}: worst relative error {worst:.2e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let out = DMatrix::from_column_slice(3, 1, &[1e4f32, -1e4, 0.0]);
        let mut g = DMatrix::zeros(3, 1);
        let empty = DMatrix::<f32>::zeros(3, 1);
        let l = loss_sum(Loss::CrossEntropy, &out, empty.as_view(), &[1], Some((&mut g, 1.0)));
        assert!((l - 2e4).abs() < 1e-6 * 2e4);
        assert!(g.iter().all(|v| v.is_finite()));
    }
}
