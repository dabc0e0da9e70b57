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
//! Inner-product kernels (FC, RBF, linear): two big GEMMs per step (the
//! K_ts forward and its VJP, through a [`Linearization`]); everything else
//! is O(n_s² d + n_t n_s C). Image kernels (convolutional): the Gram
//! matrices, then their VJPs with the cotangents `dL/dK_ts` (formed, n_t ×
//! n_s) and `dL/dK_ss`; the kernel works through the targets in blocks,
//! so memory stays bounded. Random-feature kernels
//! ([`kip_kernels::FeatureKernel`], `K = s·ΦΦᵀ + o`): the features of the
//! support and of the targets once per pass, `dL/dΦ_s = s·(α (RᵀΦ_t) +
//! (G_ss + G_ssᵀ) Φ_s)`, then one backward pass through the networks for
//! the support alone. Buffers live in [`KipWorkspace`] and are reused.

use kip_core::{gemm, MatMut, MatRef};
use kip_kernels::{points_row_major, AnyPoints, Kernel, Linearization, NormedPoints, PointsView};
use kip_krr::{Cholesky, Ridge};
use nalgebra::DMatrix;

use crate::collective::{agree_on_failure, shard_rows, share, Collective, SingleProcess};
use crate::error::{MetaError, Result};
use crate::objective::{Objective, RowSums};

/// Reusable buffers of one KIP forward/backward pass: a loop that calls
/// [`kip_loss_grad`] with the same shapes allocates nothing after the first
/// call.
#[derive(Debug, Default)]
pub struct KipWorkspace {
    lin_ss: Linearization,
    lin: Linearization,
    /// Whether the last forward ran through the linearizations (an
    /// inner-product kernel) or the plain Grams below.
    dot: bool,
    /// Random-feature kernels: the support's and the targets' features
    /// (row-major), each computed once per pass.
    phi_s: Vec<f64>,
    phi_t: Vec<f64>,
    /// `RᵀΦ_t` (`C × F`, row-major) and the support features' cotangent.
    rt_phi: Vec<f64>,
    dphi_s: Vec<f64>,
    k_ss: DMatrix<f64>,
    k_ts: DMatrix<f64>,
    g_ts: DMatrix<f64>,
    x_t64: Vec<f64>,
    alpha: DMatrix<f64>,
    pred: DMatrix<f64>,
    beta: DMatrix<f64>,
    g_ss: DMatrix<f64>,
    gx_sym: DMatrix<f64>,
    grad_x: DMatrix<f64>,
    grad_y: DMatrix<f64>,
    /// This rank's shard partials, and every shard's after the exchange.
    partials: Vec<f64>,
    gathered: Vec<f64>,
}

/// Loss value and target-batch accuracy of one pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossStats {
    /// `½ · mean((pred − y_t)²)`.
    pub loss: f64,
    /// Fraction of targets whose argmax prediction equals the argmax of
    /// `y_t` ([`kip_core::argmax`]).
    pub target_acc: f64,
    /// Jitter the Cholesky of `K_ss + λI` had to add (0 if none).
    pub jitter: f64,
}

/// The loss and its gradient, the gradients borrowed from the workspace.
#[derive(Debug)]
pub struct LossGrad<'ws> {
    /// Loss, target accuracy, jitter.
    pub stats: LossStats,
    /// `dL/dx_s`, `n_s × d` (mutable: a caller may zero frozen pixels in
    /// place).
    pub grad_x: &'ws mut DMatrix<f64>,
    /// `dL/dy_s`, `n_s × C`.
    pub grad_y: &'ws DMatrix<f64>,
    /// `dL/dθ` of a Platt objective's log-temperature (0 for MSE).
    pub grad_log_temp: f64,
}

/// A Gram matrix of the last forward pass: the linearization's (an
/// inner-product kernel) or the plain one.
fn gram_of<'a>(dot: bool, lin: &'a Linearization, plain: &'a DMatrix<f64>) -> &'a DMatrix<f64> {
    if dot {
        lin.k()
    } else {
        plain
    }
}

/// The targets as `f64` points for a kernel without an `f32` path (`f32`
/// targets widened into `buf`, exactly).
fn targets_f64<'a>(x_t: AnyPoints<'a>, buf: &'a mut Vec<f64>) -> PointsView<'a> {
    match x_t {
        AnyPoints::F64(p) => p,
        AnyPoints::F32(p) => {
            buf.clear();
            buf.extend(p.data().iter().map(|&v| f64::from(v)));
            points_row_major(buf, p.nrows(), p.ncols())
        }
    }
}

fn resize(m: &mut DMatrix<f64>, r: usize, c: usize) {
    if m.shape() != (r, c) {
        *m = DMatrix::zeros(r, c);
    }
}

/// The shapes of one pass: `y_s` has a row per support image, `y_t` a row
/// per target, both the same `C ≥ 1` columns.
fn check_shapes(x_s: &PointsView<'_>, y_s: &DMatrix<f64>, n_t: usize, y_t: &DMatrix<f64>) -> Result<()> {
    let shape = |what, expected: String, got: &DMatrix<f64>| MetaError::Shape {
        what,
        expected,
        got: format!("{} x {}", got.nrows(), got.ncols()),
    };
    if y_s.nrows() != x_s.nrows() || y_s.ncols() == 0 {
        return Err(shape(
            "y_s",
            format!("{} x C (a row per support image), C >= 1", x_s.nrows()),
            y_s,
        ));
    }
    if y_t.shape() != (n_t, y_s.ncols()) {
        return Err(shape(
            "y_t",
            format!("{n_t} x {} (a row per target, C as y_s)", y_s.ncols()),
            y_t,
        ));
    }
    Ok(())
}

/// The target batch cut into `count` shards of rows, spread over `ranks`
/// (see [`crate::collective`]): the arithmetic depends on `count` only.
#[derive(Clone, Copy, Debug)]
pub struct Shards<'r> {
    /// Number of shards (≥ 1, ≤ the targets).
    pub count: usize,
    /// The ranks that share them.
    pub ranks: &'r dyn Collective,
}

impl Shards<'static> {
    /// One shard, one process: the plain loss.
    pub fn one() -> Self {
        Shards {
            count: 1,
            ranks: &SingleProcess,
        }
    }
}

/// The KIP loss (paper Eq. 3) of support set `(x_s, y_s)` on targets
/// `(x_t, y_t)`, without the gradient.
///
/// # Shapes
/// `x_s`: `n_s × d`, `y_s`: `n_s × C`, `x_t`: `n_t × d`, `y_t`: `n_t × C`.
///
/// # Errors
/// [`MetaError::Shape`] for labels that do not fit the points; kernel
/// input errors (dimensions, non-finite values); a kernel that stays
/// indefinite after jitter.
pub fn kip_loss<'a>(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    x_t: impl Into<NormedPoints<'a>>,
    y_t: &DMatrix<f64>,
    reg: f64,
    ws: &mut KipWorkspace,
) -> Result<LossStats> {
    let x_t = x_t.into();
    let n_t = x_t.points.nrows();
    check_shapes(&x_s, y_s, n_t, y_t)?;
    let chol = support_solve(kernel, x_s, y_s, reg, ws)?;
    let sums = shard_forward(kernel, x_s, x_t, y_t, 0..n_t, n_t, Objective::Mse, ws)?;
    Ok(stats(Objective::Mse, sums.loss, sums.hits, n_t, y_s.ncols(), &chol))
}

/// The KIP loss and its gradient with respect to the support images and
/// labels (the module docs give the formulas).
///
/// # Shapes
/// `x_s`: `n_s × d`, `y_s`: `n_s × C`, `x_t`: `n_t × d`, `y_t`: `n_t × C`;
/// the gradients have the shapes of `x_s` and `y_s`.
///
/// # Precision
/// Target images as a [`PointsView`] (`f64`): everything in double
/// precision. As [`kip_kernels::PointsF32`] (row-major `f32`): the two big
/// products (`X_t X_sᵀ` and the gradient's `Pᵀ X_t`) run as f32 GEMMs;
/// `K_ss`, the solve, the loss and the gradient's assembly stay `f64`.
/// Either may carry its norms ([`NormedPoints`]), skipping a pass over them.
///
/// # Errors
/// As [`kip_loss`].
///
/// # Examples
/// ```
/// use kip_kernels::{points, KernelSpec};
/// use kip_meta::{kip_loss_grad, KipWorkspace};
/// use nalgebra::DMatrix;
///
/// let kernel = KernelSpec::fc_ntk(1).build();
/// let x_s = DMatrix::from_fn(4, 3, |i, j| (i * 3 + j) as f64 * 0.1 - 0.5);
/// let y_s = DMatrix::from_fn(4, 2, |i, j| if i % 2 == j { 0.5 } else { -0.5 });
/// let x_t = DMatrix::from_fn(6, 3, |i, j| (i + 2 * j) as f64 * 0.2 - 1.0);
/// let y_t = DMatrix::from_fn(6, 2, |i, j| if i % 2 == j { 0.5 } else { -0.5 });
/// let mut ws = KipWorkspace::default();
/// let out = kip_loss_grad(&kernel, points(&x_s), &y_s, points(&x_t), &y_t, 1e-6, &mut ws)?;
/// assert!(out.stats.loss > 0.0);
/// assert_eq!(out.grad_x.shape(), (4, 3));
/// assert_eq!(out.grad_y.shape(), (4, 2));
/// # Ok::<(), kip_meta::MetaError>(())
/// ```
pub fn kip_loss_grad<'a, 'ws>(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    x_t: impl Into<NormedPoints<'a>>,
    y_t: &DMatrix<f64>,
    reg: f64,
    ws: &'ws mut KipWorkspace,
) -> Result<LossGrad<'ws>> {
    kip_loss_grad_sharded(kernel, x_s, y_s, x_t, y_t, reg, ws, Shards::one())
}

/// [`kip_loss_grad`] with the targets cut into `shards.count` row shards
/// spread over `shards.ranks`: each rank computes its shards' terms
/// (`K_ts` rows, residuals, `K_tsᵀR` and the VJP through `K_ts`), the
/// per-shard sums are exchanged and added in shard order on every rank.
/// Every rank returns the same bits, whatever the number of ranks; one
/// shard on one process is [`kip_loss_grad`] exactly.
///
/// # Errors
/// As [`kip_loss`]; [`MetaError::Param`] for a shard count of 0 or above
/// `n_t`; [`MetaError::Rank`] on every rank when another rank failed.
#[allow(clippy::too_many_arguments)]
pub fn kip_loss_grad_sharded<'a, 'ws>(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    x_t: impl Into<NormedPoints<'a>>,
    y_t: &DMatrix<f64>,
    reg: f64,
    ws: &'ws mut KipWorkspace,
    shards: Shards<'_>,
) -> Result<LossGrad<'ws>> {
    kip_loss_grad_objective(kernel, x_s, y_s, x_t, y_t, reg, Objective::Mse, ws, shards)
}

/// [`kip_loss_grad_sharded`] for any [`Objective`]: MSE, or RFAD's
/// Platt-scaled cross-entropy (whose log-temperature gradient is
/// [`LossGrad::grad_log_temp`]). Only the cotangent of the predictions
/// changes; the backward through the solve and the kernel is the same.
///
/// # Errors
/// As [`kip_loss_grad_sharded`].
#[allow(clippy::too_many_arguments)]
pub fn kip_loss_grad_objective<'a, 'ws>(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    x_t: impl Into<NormedPoints<'a>>,
    y_t: &DMatrix<f64>,
    reg: f64,
    objective: Objective,
    ws: &'ws mut KipWorkspace,
    shards: Shards<'_>,
) -> Result<LossGrad<'ws>> {
    let x_t = x_t.into();
    let n_t = x_t.points.nrows();
    check_shapes(&x_s, y_s, n_t, y_t)?;
    if shards.count == 0 || shards.count > n_t {
        return Err(MetaError::param(
            "target_shards",
            shards.count,
            format!("between 1 and the {n_t} targets"),
        ));
    }
    let (n_s, c, d) = (x_s.nrows(), y_s.ncols(), x_s.ncols());
    let ranks = shards.ranks;
    let mine = share(shards.count, ranks.rank(), ranks.size());
    let len = partial_len(n_s, c, vjp_len(kernel, n_s, c, d));
    let mut partials = std::mem::take(&mut ws.partials);
    partials.resize(mine.len() * len, 0.0);
    // Every rank factors K_ss itself (the same bits everywhere), then
    // computes its shards.
    let (chol, local) = match support_solve(kernel, x_s, y_s, reg, ws) {
        Ok(chol) => {
            let done = mine.clone().enumerate().try_for_each(|(k, j)| {
                let rows = shard_rows(n_t, j, shards.count);
                shard_pass(
                    kernel,
                    x_s,
                    x_t,
                    y_t,
                    rows,
                    n_t,
                    objective,
                    ws,
                    &mut partials[k * len..(k + 1) * len],
                )
            });
            (Some(chol), done)
        }
        Err(e) => (None, Err(e)),
    };
    let total = if ranks.size() == 1 {
        ws.partials = partials;
        local?;
        fold(&ws.partials, shards.count, len)
    } else {
        let message = local.as_ref().err().map(ToString::to_string);
        if let Some((rank, message)) = agree_on_failure(ranks, message.as_deref()) {
            ws.partials = partials;
            // The failing rank reports its own error; the others name it.
            return Err(local.err().unwrap_or(MetaError::Rank { rank, message }));
        }
        let counts: Vec<usize> = (0..ranks.size())
            .map(|r| share(shards.count, r, ranks.size()).len() * len)
            .collect();
        ws.gathered.resize(shards.count * len, 0.0);
        ranks.all_gather(&partials, &counts, &mut ws.gathered);
        ws.partials = partials;
        fold(&ws.gathered, shards.count, len)
    };
    let chol = chol.expect("the support solve succeeded on every rank");
    backward(kernel, x_s, reg, &total, n_t, c, objective, chol, ws)
}

/// Values per shard partial: `K_tsᵀR` (`n_s × C`), the shard's part of the
/// gradient through `K_ts` (`vjp` values), the loss sum, the hit count and
/// the log-temperature gradient ([`RowSums`]).
fn partial_len(n_s: usize, c: usize, vjp: usize) -> usize {
    n_s * c + vjp + 3
}

/// Length of a shard's part of the gradient through `K_ts`: the VJP
/// (`n_s × d`), or `RᵀΦ_t` (`C × F`) for a random-feature kernel.
fn vjp_len(kernel: &dyn Kernel, n_s: usize, c: usize, d: usize) -> usize {
    match kernel.as_features() {
        Some(f) => c * f.n_features(),
        None => n_s * d,
    }
}

/// `out = s·A Bᵀ + o` for row-major features `A` (`n1 × F`) and `B` (`n2 × F`).
fn feature_gram(s: f64, o: f64, a: &[f64], b: &[f64], f: usize, out: &mut DMatrix<f64>) {
    let (n1, n2) = (a.len() / f.max(1), b.len() / f.max(1));
    resize(out, n1, n2);
    out.fill(o);
    gemm(
        s,
        MatRef::row_major(a, n1, f),
        MatRef::row_major(b, n2, f).t(),
        1.0,
        MatMut::from(out),
    );
}

/// The sum of `count` partials of `len` values, added in shard order (the
/// first copied, so one shard is itself bit for bit).
fn fold(all: &[f64], count: usize, len: usize) -> Vec<f64> {
    let mut total = all[..len].to_vec();
    for j in 1..count {
        for (t, v) in total.iter_mut().zip(&all[j * len..(j + 1) * len]) {
            *t += v;
        }
    }
    total
}

fn stats(objective: Objective, sum: f64, hits: f64, n_t: usize, c: usize, chol: &Cholesky) -> LossStats {
    LossStats {
        loss: objective.value(sum, n_t, c),
        target_acc: hits / n_t as f64,
        jitter: chol.jitter(),
    }
}

/// `K_ss` (with its partials for an inner-product kernel), its Cholesky
/// with the trace-scaled ridge, and `α = (K_ss + λI)⁻¹ y_s` in `ws.alpha`.
fn support_solve(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    reg: f64,
    ws: &mut KipWorkspace,
) -> Result<Cholesky> {
    let (n_s, c) = (x_s.nrows(), y_s.ncols());
    ws.dot = kernel.as_dot().is_some();
    if ws.dot {
        // K_ss and its partials once (the backward reuses them: no second GEMM).
        ws.lin_ss.compute_sym(kernel, x_s)?;
    } else if let Some(fk) = kernel.as_features() {
        fk.features_into(x_s.into(), &mut ws.phi_s)?;
        let (s, o) = fk.readout();
        feature_gram(s, o, &ws.phi_s, &ws.phi_s, fk.n_features(), &mut ws.k_ss);
        for j in 0..n_s {
            for i in 0..j {
                ws.k_ss[(i, j)] = ws.k_ss[(j, i)];
            }
        }
    } else {
        kernel.gram_sym_into(x_s, &mut ws.k_ss)?;
    }
    let k_ss = gram_of(ws.dot, &ws.lin_ss, &ws.k_ss);
    let chol = Cholesky::factor(k_ss, Ridge::Relative(reg).value(k_ss))?;
    resize(&mut ws.alpha, n_s, c);
    ws.alpha.copy_from(y_s);
    chol.solve_in_place(&mut ws.alpha);
    Ok(chol)
}

/// The forward pass over target rows `rows` (of `n_t` in the batch):
/// `K_ts` of those rows (with its partials), the prediction, and the
/// objective's cotangent `R = dL/dpred` (MSE: `(pred − y_t)/(n_t C)`) left
/// in `ws.pred`. Returns the rows' sums.
#[allow(clippy::too_many_arguments)]
fn shard_forward(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    x_t: NormedPoints<'_>,
    y_t: &DMatrix<f64>,
    rows: std::ops::Range<usize>,
    n_t: usize,
    objective: Objective,
    ws: &mut KipWorkspace,
) -> Result<RowSums> {
    let c = ws.alpha.ncols();
    let (r0, len) = (rows.start, rows.len());
    let x_t = x_t.rows(r0, len);
    if ws.dot {
        ws.lin.compute(kernel, x_t, x_s)?;
    } else if let Some(fk) = kernel.as_features() {
        fk.features_into(x_t.points, &mut ws.phi_t)?;
        let (s, o) = fk.readout();
        feature_gram(s, o, &ws.phi_t, &ws.phi_s, fk.n_features(), &mut ws.k_ts);
    } else {
        let x_t = targets_f64(x_t.points, &mut ws.x_t64);
        kernel.gram_into(x_t, x_s, &mut ws.k_ts)?;
    }
    resize(&mut ws.pred, len, c);
    gemm(
        1.0,
        MatRef::from(gram_of(ws.dot, &ws.lin, &ws.k_ts)),
        MatRef::from(&ws.alpha),
        0.0,
        MatMut::from(&mut ws.pred),
    );
    // R = dL/dpred in place of pred; loss and accuracy.
    Ok(objective.residuals(&mut ws.pred, y_t, r0, n_t))
}

/// One shard's partial sums into `out` (see [`partial_len`]): its forward
/// pass, `K_tsᵀR` and the VJP through its `K_ts` rows with `dL/dK_ts = R αᵀ`.
#[allow(clippy::too_many_arguments)]
fn shard_pass(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    x_t: NormedPoints<'_>,
    y_t: &DMatrix<f64>,
    rows: std::ops::Range<usize>,
    n_t: usize,
    objective: Objective,
    ws: &mut KipWorkspace,
    out: &mut [f64],
) -> Result<()> {
    let (r0, len) = (rows.start, rows.len());
    let sums = shard_forward(kernel, x_s, x_t, y_t, rows, n_t, objective, ws)?;
    let (n_s, c) = (x_s.nrows(), ws.alpha.ncols());
    // K_tsᵀ R (β before the solve).
    resize(&mut ws.beta, n_s, c);
    gemm(
        1.0,
        MatRef::from(gram_of(ws.dot, &ws.lin, &ws.k_ts)).t(),
        MatRef::from(&ws.pred),
        0.0,
        MatMut::from(&mut ws.beta),
    );
    let x_t = x_t.rows(r0, len);
    let vjp: &[f64];
    if ws.dot {
        // dL/dK_ts = R αᵀ (rank C), fused into the VJP without being formed.
        ws.lin
            .vjp_b_lowrank_into(x_t.points, x_s, &ws.pred, &ws.alpha, &mut ws.grad_x)?;
        vjp = ws.grad_x.as_slice();
    } else if let Some(fk) = kernel.as_features() {
        // RᵀΦ_t: the backward turns it into dL/dΦ_s = s·α (RᵀΦ_t).
        let f = fk.n_features();
        ws.rt_phi.resize(c * f, 0.0);
        gemm(
            1.0,
            MatRef::from(&ws.pred).t(),
            MatRef::row_major(&ws.phi_t, len, f),
            0.0,
            MatMut::row_major(&mut ws.rt_phi, c, f),
        );
        vjp = &ws.rt_phi;
    } else {
        resize(&mut ws.g_ts, len, n_s);
        gemm(
            1.0,
            MatRef::from(&ws.pred),
            MatRef::from(&ws.alpha).t(),
            0.0,
            MatMut::from(&mut ws.g_ts),
        );
        let x_t = targets_f64(x_t.points, &mut ws.x_t64);
        kernel.vjp_into(x_t, x_s, &ws.g_ts, None, Some(&mut ws.grad_x))?;
        vjp = ws.grad_x.as_slice();
    }
    let (b, rest) = out.split_at_mut(n_s * c);
    let (g, tail) = rest.split_at_mut(vjp.len());
    b.copy_from_slice(ws.beta.as_slice());
    g.copy_from_slice(vjp);
    tail.copy_from_slice(&[sums.loss, sums.hits, sums.dlog_temp]);
    Ok(())
}

/// The rest of the gradient from the summed partials `total`: `β` solved,
/// `dL/dK_ss`, the VJP through `K_ss`, and the two gradients.
#[allow(clippy::too_many_arguments)]
fn backward<'ws>(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    reg: f64,
    total: &[f64],
    n_t: usize,
    c: usize,
    objective: Objective,
    chol: Cholesky,
    ws: &'ws mut KipWorkspace,
) -> Result<LossGrad<'ws>> {
    let (n_s, d) = (x_s.nrows(), x_s.ncols());
    let (b, rest) = total.split_at(n_s * c);
    let (g, tail) = rest.split_at(vjp_len(kernel, n_s, c, d));
    let stats = stats(objective, tail[0], tail[1], n_t, c, &chol);
    let grad_log_temp = tail[2];
    // β = (K_ss+λI)⁻¹ K_tsᵀ R.
    resize(&mut ws.beta, n_s, c);
    ws.beta.as_mut_slice().copy_from_slice(b);
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
    if ws.dot {
        ws.lin_ss.vjp_sym_into(kernel, x_s, &ws.g_ss, &mut ws.gx_sym)?;
    } else if let Some(fk) = kernel.as_features() {
        // dL/dΦ_s = s·(α (RᵀΦ_t) + (G_ss + G_ssᵀ) Φ_s), then one backward
        // pass through the networks.
        let (f, (s, _)) = (fk.n_features(), fk.readout());
        ws.dphi_s.resize(n_s * f, 0.0);
        let (alpha, g_ss) = (MatRef::from(&ws.alpha), MatRef::from(&ws.g_ss));
        let phi_s = MatRef::row_major(&ws.phi_s, n_s, f);
        let rt_phi = MatRef::row_major(g, c, f);
        for (k, (a, b)) in [(alpha, rt_phi), (g_ss, phi_s), (g_ss.t(), phi_s)]
            .into_iter()
            .enumerate()
        {
            let beta = if k == 0 { 0.0 } else { 1.0 };
            gemm(s, a, b, beta, MatMut::row_major(&mut ws.dphi_s, n_s, f));
        }
        fk.features_vjp_into(x_s, &ws.dphi_s, &mut ws.grad_x)?;
        resize(&mut ws.grad_y, n_s, c);
        ws.grad_y.copy_from(&ws.beta);
        return Ok(LossGrad {
            stats,
            grad_x: &mut ws.grad_x,
            grad_y: &ws.grad_y,
            grad_log_temp,
        });
    } else {
        kernel.vjp_sym_into(x_s, &ws.g_ss, &mut ws.gx_sym)?;
    }
    resize(&mut ws.grad_x, n_s, d);
    ws.grad_x.as_mut_slice().copy_from_slice(g);
    ws.grad_x += &ws.gx_sym;
    resize(&mut ws.grad_y, n_s, c);
    ws.grad_y.copy_from(&ws.beta);
    Ok(LossGrad {
        stats,
        grad_x: &mut ws.grad_x,
        grad_y: &ws.grad_y,
        grad_log_temp,
    })
}
