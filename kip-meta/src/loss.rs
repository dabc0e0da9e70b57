//! The KIP loss and its exact gradient (Nguyen, Chen, Lee 2021, Eq. 2–3).
//!
//! ```text
//! λ = reg · tr(K_ss)/n_s,   α = (K_ss + λI)⁻¹ y_s,   pred = K_ts α
//! L = ½ · mean((pred − y_t)²)                      (mean over n_t × C entries)
//! R = (pred − y_t)/(n_t C)
//! dL/dK_ts = R αᵀ,   β = (K_ss + λI)⁻¹ K_tsᵀ R,   dL/dy_s = β
//! dL/dK_ss = −β αᵀ − (reg/n_s) tr(β αᵀ) I            (the second term: λ's trace)
//! dL/dx_s  = VJP_b(K_ts; dL/dK_ts) + VJP_sym(K_ss; dL/dK_ss)
//! ```
//!
//! Two big GEMMs per step (the K_ts forward and its VJP); everything else is
//! O(n_s² d + n_t n_s C). Buffers live in [`KipWorkspace`] and are reused.

use kip_core::{gemm, MatMut, MatRef};
use kip_kernels::{Kernel, Linearization, NormedPoints, PointsView};
use kip_krr::{Cholesky, Ridge};
use nalgebra::DMatrix;

use crate::error::Result;

/// Reusable buffers of one KIP forward/backward pass.
#[derive(Debug, Default)]
pub struct KipWorkspace {
    lin_ss: Linearization,
    lin: Linearization,
    alpha: DMatrix<f64>,
    pred: DMatrix<f64>,
    beta: DMatrix<f64>,
    g_ss: DMatrix<f64>,
    gx_sym: DMatrix<f64>,
    /// `dL/dx_s` of the last [`kip_loss_grad`] (`n_s × d`).
    pub grad_x: DMatrix<f64>,
    /// `dL/dy_s` of the last [`kip_loss_grad`] (`n_s × C`).
    pub grad_y: DMatrix<f64>,
    /// Jitter the Cholesky had to add in the last pass (0 if none).
    pub jitter: f64,
}

/// Loss value and target-batch accuracy of one pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossStats {
    /// `½ · mean((pred − y_t)²)`.
    pub loss: f64,
    /// Fraction of targets whose argmax prediction equals the argmax of `y_t`.
    pub target_acc: f64,
}

fn resize(m: &mut DMatrix<f64>, r: usize, c: usize) {
    if m.shape() != (r, c) {
        *m = DMatrix::zeros(r, c);
    }
}

/// KIP loss and (when `grad` is true) its gradient with respect to the
/// support images and labels, left in `ws.grad_x` / `ws.grad_y`.
///
/// # Shapes
/// `x_s`: `n_s × d`, `y_s`: `n_s × C`, `x_t`: `n_t × d`, `y_t`: `n_t × C`.
///
/// # Precision
/// Target images as a [`PointsView`] (`f64`): everything in double
/// precision. As [`kip_kernels::PointsF32`] (row-major `f32`): the two big
/// products (`X_t X_sᵀ` and the gradient's `Pᵀ X_t`) run as f32 GEMMs;
/// `K_ss`, the solve, the loss and the gradient's assembly stay `f64`.
/// Either may carry its norms ([`NormedPoints`]), skipping a pass over them.
///
/// # Errors
/// Kernel input errors (shapes, non-finite values), a kernel that stays
/// indefinite after jitter.
#[allow(clippy::too_many_arguments)] // the paper's seven quantities plus the workspace
pub fn kip_loss_grad<'a>(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    x_t: impl Into<NormedPoints<'a>>,
    y_t: &DMatrix<f64>,
    reg: f64,
    grad: bool,
    ws: &mut KipWorkspace,
) -> Result<LossStats> {
    let x_t = x_t.into();
    let (n_s, c) = (x_s.nrows(), y_s.ncols());
    // K_ss and its partials once (the backward reuses them: no second GEMM).
    ws.lin_ss.compute_sym(kernel, x_s)?;
    ws.lin.compute(kernel, x_t, x_s)?;
    let n_t = x_t.points.nrows();
    let k_ss = ws.lin_ss.k();
    let chol = Cholesky::factor(k_ss, Ridge::Relative(reg).value(k_ss))?;
    ws.jitter = chol.jitter();
    resize(&mut ws.alpha, n_s, c);
    ws.alpha.copy_from(y_s);
    chol.solve_in_place(&mut ws.alpha);
    resize(&mut ws.pred, n_t, c);
    gemm(
        1.0,
        MatRef::from(ws.lin.k()),
        MatRef::from(&ws.alpha),
        0.0,
        MatMut::from(&mut ws.pred),
    );

    // Residual R = (pred − y_t)/(n_t C) in place of pred; loss and accuracy.
    let scale = 1.0 / (n_t * c) as f64;
    let mut sq = 0.0;
    let mut hits = 0usize;
    for i in 0..n_t {
        let (mut bp, mut by) = (0, 0);
        for j in 0..c {
            if ws.pred[(i, j)] > ws.pred[(i, bp)] {
                bp = j;
            }
            if y_t[(i, j)] > y_t[(i, by)] {
                by = j;
            }
        }
        hits += usize::from(bp == by);
        for j in 0..c {
            let r = ws.pred[(i, j)] - y_t[(i, j)];
            sq += r * r;
            ws.pred[(i, j)] = r * scale;
        }
    }
    let stats = LossStats {
        loss: 0.5 * sq * scale,
        target_acc: hits as f64 / n_t as f64,
    };
    if !grad {
        return Ok(stats);
    }
    let r = &ws.pred;
    // β = (K_ss+λI)⁻¹ K_tsᵀ R.
    resize(&mut ws.beta, n_s, c);
    gemm(
        1.0,
        MatRef::from(ws.lin.k()).t(),
        MatRef::from(r),
        0.0,
        MatMut::from(&mut ws.beta),
    );
    chol.solve_in_place(&mut ws.beta);
    // dL/dK_ss = −β αᵀ − (reg/n_s) tr(β αᵀ) I.
    resize(&mut ws.g_ss, n_s, n_s);
    gemm(
        -1.0,
        MatRef::from(&ws.beta),
        MatRef::from(&ws.alpha).t(),
        0.0,
        MatMut::from(&mut ws.g_ss),
    );
    let tr: f64 = ws.beta.iter().zip(ws.alpha.iter()).map(|(b, a)| b * a).sum();
    for i in 0..n_s {
        ws.g_ss[(i, i)] -= reg / n_s as f64 * tr;
    }
    // dL/dK_ts = R αᵀ (rank C), fused into the VJP without being formed.
    ws.lin
        .vjp_b_lowrank_into(x_t.points, x_s, &ws.pred, &ws.alpha, &mut ws.grad_x)?;
    ws.lin_ss.vjp_sym_into(kernel, x_s, &ws.g_ss, &mut ws.gx_sym)?;
    ws.grad_x += &ws.gx_sym;
    resize(&mut ws.grad_y, n_s, c);
    ws.grad_y.copy_from(&ws.beta);
    Ok(stats)
}
