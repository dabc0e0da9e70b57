//! Fully connected infinite-width kernels (NNGP and NTK), ReLU and Erf.
//!
//! The network is `depth × [Dense(W_std, b_std), act]` followed by a Dense
//! readout, in NTK parameterisation, exactly as `neural_tangents.stax`
//! (Lee et al. 2019; Arora et al. 2019). With `s = ⟨x,x'⟩/d`,
//! `n = ‖x‖²/d`, `n' = ‖x'‖²/d`:
//!
//! ```text
//! q¹ = W²·s + b²,   q¹ₐ = W²·n + b²,   Θ¹ = q¹
//! per hidden layer:  F = act-kernel(q, qₐ, q_b),  Ḟ = derivative kernel
//!     q ← W²·F + b²,   Θ ← q + W²·Θ·Ḟ       (the readout is the last Dense)
//! ReLU: F = √(qₐq_b)/(2π)·(sin θ + (π−θ) cos θ), Ḟ = (π−θ)/(2π), θ = arccos(q/√(qₐq_b))
//! Erf:  F = (2/π)·asin(2q/√((1+2qₐ)(1+2q_b))), Ḟ = (4/π)/√((1+2qₐ)(1+2q_b) − 4q²)
//! ```
//!
//! Partial derivatives with respect to `(s, n, n')` are carried forward
//! through the recursion (forward-mode, a handful of numbers per entry).
//!
//! Singular points: where two points are collinear the arc-cosine has an
//! infinite slope (the kernel has a kink there). Cosines within
//! [`COLLINEAR_TOL`] of ±1 are snapped to ±1 and the singular terms are set
//! to zero (the symmetric subgradient, which is what central finite
//! differences see); zero vectors with `b_std = 0` give cosine 0. Values and
//! gradients are therefore always finite.

use std::f64::consts::PI;

use crate::simd::asin_acos;
use kip_core::multiversion;

/// `1 − cos²θ` below which two points count as collinear (θ ≲ 1e-6): the
/// computed cosine of a point with itself is `1 − O(ulp)`, not 1.
pub const COLLINEAR_TOL: f64 = 1e-12;

/// Activation of the hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Rectified linear unit (arc-cosine kernel of order 1).
    Relu,
    /// Error function `erf(x)` (`stax.Erf(a=1, b=1, c=0)`).
    Erf,
}

/// Which infinite-width kernel of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FcKind {
    /// Neural network Gaussian process kernel (the output covariance).
    Nngp,
    /// Neural tangent kernel.
    Ntk,
}

/// Parameters of a fully connected kernel (validated by [`crate::KernelSpec`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FcParams {
    /// Number of hidden layers (0 = linear model).
    pub depth: usize,
    /// NNGP or NTK.
    pub kind: FcKind,
    /// Hidden activation.
    pub act: Activation,
    /// Weight standard deviation.
    pub w_std: f64,
    /// Bias standard deviation (0 = no bias).
    pub b_std: f64,
}

const CH: usize = 64;
const INV_2PI: f64 = 1.0 / (2.0 * PI);
const INV_4PI: f64 = 1.0 / (4.0 * PI);

/// The cosine `c1 = q/√(qₐq_b)` made safe: within [`COLLINEAR_TOL`] of ±1
/// (or past it, by rounding) it is snapped to ±1 with `sin θ = 0`;
/// otherwise `(c1, √(1 − c1²))`.
#[inline(always)]
pub(crate) fn snapped_cos(c1: f64) -> (f64, f64) {
    let one_m = (-c1).mul_add(c1, 1.0);
    let snap = one_m <= COLLINEAR_TOL;
    let c = if snap { 1.0f64.copysign(c1) } else { c1 };
    let sin = if snap { 0.0 } else { one_m.sqrt() };
    (c, sin)
}

/// ReLU layer at one entry, from the cross term `q` and the cached per-point
/// `√q` and `1/√q` of both sides: `(F, Ḟ, cos θ, sin θ, √(qₐq_b))`.
#[inline(always)]
fn relu_angle(q: f64, sqa: f64, isa: f64, sqb: f64, isb: f64) -> (f64, f64, f64, f64, f64) {
    let r = sqa * sqb;
    let (j, pmt, c, sin) = relu_j(q, isa, isb);
    (r * j * INV_2PI, pmt * INV_2PI, c, sin, r)
}

/// The angle terms of the ReLU layer: `(J, π − θ, cos θ, sin θ)` with
/// `J = sin θ + (π − θ) cos θ`, so that `F = √(qₐq_b)·J/(2π)` and
/// `Ḟ = (π − θ)/(2π)` (the values pass takes those constant factors from
/// per-point caches). A zero vector without bias (1/√q cached as 0) gives
/// cosine 0.
#[inline(always)]
fn relu_j(q: f64, isa: f64, isb: f64) -> (f64, f64, f64, f64) {
    let (c, sin) = snapped_cos(q * isa * isb);
    let (_, th) = asin_acos(c);
    let pmt = PI - th;
    (pmt.mul_add(c, sin), pmt, c, sin)
}

/// Erf layer at one entry, with the cached `1/√(1+2q)` of both sides:
/// `(F, Ḟ, D)` with `D = (1+2qₐ)(1+2q_b) − 4q²`.
#[inline(always)]
fn erf_cross(q: f64, qa: f64, isa: f64, qb: f64, isb: f64) -> (f64, f64, f64) {
    let ab = (1.0 + 2.0 * qa) * (1.0 + 2.0 * qb);
    let z = (2.0 * q * isa * isb).clamp(-1.0, 1.0);
    let (asin, _) = asin_acos(z);
    let dd = (ab - 4.0 * q * q).max(f64::MIN_POSITIVE);
    (2.0 / PI * asin, 4.0 / PI / dd.sqrt(), dd)
}

/// The per-point chain of one side, cached per layer: the diagonal `q` of the
/// activation's input, its derivative with respect to `n = ‖x‖²/d`, and
/// `1/√q` (ReLU) or `1/√(1+2q)` (Erf) — so the entries need no per-point
/// square roots or divisions.
#[inline(always)]
fn point_chain(p: &FcParams, n: f64, mut out: impl FnMut(usize, f64, f64, f64)) {
    let (w2, b2) = (p.w_std * p.w_std, p.b_std * p.b_std);
    let (mut q, mut qn) = (w2 * n + b2, w2);
    for l in 0..p.depth {
        let is = match p.act {
            Activation::Relu => {
                if q > 0.0 {
                    1.0 / q.sqrt()
                } else {
                    0.0
                }
            }
            Activation::Erf => 1.0 / (1.0 + 2.0 * q).sqrt(),
        };
        out(l, q, qn, is);
        let (f, df, _, _) = diag_layer(p.act, q);
        qn *= w2 * df;
        q = w2 * f + b2;
    }
}

/// Diagonal layer map: `(F(qₐ), dF/dqₐ, Ḟ(qₐ), dḞ/dqₐ)`.
#[inline(always)]
fn diag_layer(act: Activation, qa: f64) -> (f64, f64, f64, f64) {
    match act {
        Activation::Relu => (0.5 * qa, 0.5, 0.5, 0.0),
        Activation::Erf => {
            let a = 1.0 + 2.0 * qa;
            let (asin, _) = asin_acos(2.0 * qa / a);
            let e = (1.0 + 4.0 * qa).sqrt();
            (
                2.0 / PI * asin,
                4.0 / PI / (a * e),
                4.0 / PI / e,
                -8.0 / PI / (e * e * e),
            )
        }
    }
}

impl FcParams {
    /// `K(x, x)` and its derivative with respect to `n = ‖x‖²/d`.
    pub fn diag(&self, n: f64) -> (f64, f64) {
        let (w2, b2) = (self.w_std * self.w_std, self.b_std * self.b_std);
        let (mut qa, mut dqa) = (w2 * n + b2, w2);
        let (mut ta, mut dta) = (qa, dqa);
        for _ in 0..self.depth {
            let (f, df, fd, dfd) = diag_layer(self.act, qa);
            let nqa = w2 * f + b2;
            let ndqa = w2 * df * dqa;
            let nta = nqa + w2 * ta * fd;
            let ndta = ndqa + w2 * (dta * fd + ta * dfd * dqa);
            (qa, dqa, ta, dta) = (nqa, ndqa, nta, ndta);
        }
        match self.kind {
            FcKind::Nngp => (qa, dqa),
            FcKind::Ntk => (ta, dta),
        }
    }
}

/// Row caches of one chunk of rows: `[layer][field][row]`, fields q, dq/dn, 1/√·.
fn row_cache(p: &FcParams, na: &[f64], cache: &mut Vec<f64>) {
    cache.clear();
    cache.resize(p.depth * 3 * CH, 0.0);
    fill_row_cache(p, na, cache);
}

/// [`row_cache`] into a zeroed slice of `depth·3·CH` values.
fn fill_row_cache(p: &FcParams, na: &[f64], cache: &mut [f64]) {
    debug_assert!(na.len() <= CH);
    for (i, &n) in na.iter().enumerate() {
        point_chain(p, n, |l, q, qn, is| {
            cache[(3 * l) * CH + i] = q;
            cache[(3 * l + 1) * CH + i] = qn;
            cache[(3 * l + 2) * CH + i] = is;
        });
    }
}

/// Column caches of a block's column points, computed once per block:
/// `[column][layer][field]`, fields as [`row_cache`], `3·depth` values per
/// column (the chunk length to iterate them by, at least 3).
fn col_caches(p: &FcParams, nb: &[f64]) -> (Vec<f64>, usize) {
    let per = 3 * p.depth.max(1);
    let mut cache = vec![0.0; per * nb.len()];
    for (c, &n) in cache.chunks_exact_mut(per).zip(nb) {
        point_chain(p, n, |l, q, qn, is| {
            c[3 * l] = q;
            c[3 * l + 1] = qn;
            c[3 * l + 2] = is;
        });
    }
    (cache, per)
}

/// Rows per register chunk of the partials pass: two AVX-512 vectors of
/// `f64` (two independent chains hide the latency of the square roots and
/// divisions). The recursion runs on `[f64; L]` locals with a constant trip
/// count, so it compiles to whole-vector operations held in registers
/// instead of eight 64-row arrays stored and reloaded per layer.
const L: usize = 16;

/// `L` values of `src` from `at`, zero-padded past its end.
#[inline(always)]
fn lanes(src: &[f64], at: usize) -> [f64; L] {
    let mut v = [0.0; L];
    let w = L.min(src.len() - at);
    v[..w].copy_from_slice(&src[at..at + w]);
    v
}

/// Field `f` of layer `l` of a [`row_cache`], rows `c0..c0 + L` (the cache
/// is zero past its rows, which keeps padded lanes finite).
#[inline(always)]
fn row_lanes(rc: &[f64], l: usize, f: usize, c0: usize) -> [f64; L] {
    let o = (3 * l + f) * CH + c0;
    rc[o..o + L].try_into().expect("row cache chunk")
}

#[inline(always)]
fn values_impl(p: &FcParams, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]) {
    let (w2, b2) = (p.w_std * p.w_std, p.b_std * p.b_std);
    let ntk = p.kind == FcKind::Ntk;
    let n1 = na.len();
    // Every row chunk's cache up front, then each column piece in one
    // sequential sweep.
    let chunk = p.depth * 3 * CH;
    let mut row_caches = vec![0.0; chunk * n1.div_ceil(CH)];
    for (rc, rows) in row_caches.chunks_exact_mut(chunk.max(1)).zip(na.chunks(CH)) {
        fill_row_cache(p, rows, rc);
    }
    let (caches, per) = col_caches(p, nb);
    for (col, colc) in cols.iter_mut().zip(caches.chunks_exact(per)) {
        for i0 in (0..n1).step_by(CH) {
            let m = CH.min(n1 - i0);
            let rc = &row_caches[(i0 / CH) * chunk..(i0 / CH + 1) * chunk];
            let sc = &mut col[i0..i0 + m];
            let mut q = [0.0f64; CH];
            let mut t = [0.0f64; CH];
            for i in 0..m {
                q[i] = w2.mul_add(sc[i], b2);
                t[i] = q[i];
            }
            for l in 0..p.depth {
                let (qa, isa) = (
                    &rc[(3 * l) * CH..(3 * l) * CH + m],
                    &rc[(3 * l + 2) * CH..(3 * l + 2) * CH + m],
                );
                let (qb, isb) = (colc[3 * l], colc[3 * l + 2]);
                match p.act {
                    Activation::Relu => {
                        // q ← w²·√(qₐq_b)·J/(2π) + b², Θ ← q + w²·Θ·(π−θ)/(2π),
                        // with w²/(2π) folded into the column's √q_b.
                        let k = w2 * INV_2PI;
                        let sqb_k = qb * isb * k;
                        for i in 0..m {
                            let (j, pmt, _, _) = relu_j(q[i], isa[i], isb);
                            let nq = (qa[i] * isa[i] * sqb_k).mul_add(j, b2);
                            t[i] = (t[i] * k).mul_add(pmt, nq);
                            q[i] = nq;
                        }
                    }
                    Activation::Erf => {
                        for i in 0..m {
                            let (f, fd, _) = erf_cross(q[i], qa[i], isa[i], qb, isb);
                            q[i] = w2.mul_add(f, b2);
                            t[i] = (w2 * t[i]).mul_add(fd, q[i]);
                        }
                    }
                }
            }
            let out = if ntk { &t } else { &q };
            sc.copy_from_slice(&out[..m]);
        }
    }
}

multiversion! {
    /// `cols[j][i] ← K(cols[j][i], na[i], nb[j])` over a block given as its
    /// column pieces (`na.len()` rows each).
    pub(crate) fn fc_values(p: &FcParams, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]) => values_impl
}

/// Output slices of a partials evaluation (all the same length).
#[derive(Debug)]
pub struct PartialsMut<'a> {
    /// `K`.
    pub k: &'a mut [f64],
    /// `∂K/∂s`.
    pub ks: &'a mut [f64],
    /// `∂K/∂n` (row point).
    pub ka: &'a mut [f64],
    /// `∂K/∂n'` (column point).
    pub kb: &'a mut [f64],
}

/// A layer map and its partials at one entry, with respect to (q, qa, qb):
/// `(F, Ḟ, ∂F/∂q, ∂F/∂qa, ∂F/∂qb, ∂Ḟ/∂q, ∂Ḟ/∂qa, ∂Ḟ/∂qb)`.
type LayerPartials = (f64, f64, f64, f64, f64, f64, f64, f64);

/// [`LayerPartials`] of the ReLU layer, from the cross term `q`, the row
/// point's `qa` and `1/√qa`, and the column point's `qb` and `1/√qb`.
#[inline(always)]
fn relu_partials(q: f64, qa: f64, isa: f64, qb: f64, isb: f64) -> LayerPartials {
    let (f, fd, c, sin, r) = relu_angle(q, qa * isa, isa, qb * isb, isb);
    let inv_qa = isa * isa;
    let inv_qb = isb * isb;
    let rs = r * sin;
    // 1/(r sinθ), zero at the snapped (collinear) points.
    let inv = if rs > 0.0 { 1.0 / rs } else { 0.0 };
    (
        f,
        fd,
        fd,
        sin * r * inv_qa * INV_4PI,
        sin * r * inv_qb * INV_4PI,
        inv * INV_2PI,
        -c * r * inv * inv_qa * INV_4PI,
        -c * r * inv * inv_qb * INV_4PI,
    )
}

/// [`LayerPartials`] of the Erf layer, with the cached `1/√(1+2q)` of both
/// points.
#[inline(always)]
fn erf_partials(q: f64, qa: f64, isa: f64, qb: f64, isb: f64) -> LayerPartials {
    let (f, fd, _) = erf_cross(q, qa, isa, qb, isb);
    let a = 1.0 + 2.0 * qa;
    let b = 1.0 + 2.0 * qb;
    let rd = fd * (PI / 4.0);
    let rd3 = rd * rd * rd;
    (
        f,
        fd,
        fd,
        -4.0 / PI * q / a * rd,
        -4.0 / PI * q / b * rd,
        16.0 / PI * q * rd3,
        -4.0 / PI * b * rd3,
        -4.0 / PI * a * rd3,
    )
}

/// `K` and its partials with respect to `(s, n, n')` at `L` rows of one
/// column: the inner products `sv`, the rows' [`row_cache`] `rc` from row
/// `c0`, the column's cache `colc` (one chunk of [`col_caches`]). Returns
/// `[K, ∂K/∂s, ∂K/∂n, ∂K/∂n']`.
#[inline(always)]
fn chain_lanes(p: &FcParams, sv: &[f64; L], rc: &[f64], c0: usize, colc: &[f64]) -> [[f64; L]; 4] {
    let (w2, b2) = (p.w_std * p.w_std, p.b_std * p.b_std);
    let mut q = [0.0f64; L];
    let mut q_s = [w2; L];
    let mut q_a = [0.0f64; L];
    let mut q_b = [0.0f64; L];
    let mut t = [0.0f64; L];
    let mut t_s = [w2; L];
    let mut t_a = [0.0f64; L];
    let mut t_b = [0.0f64; L];
    for i in 0..L {
        q[i] = w2.mul_add(sv[i], b2);
        t[i] = q[i];
    }
    // One layer of the forward-mode chain at lane `i`, from the layer map's
    // partials with respect to (q, qa, qb) and the row/column points' dq/dn.
    macro_rules! chain {
        ($i:expr, $parts:expr, $qa_n:expr, $qb_n:expr) => {{
            let i = $i;
            let (f, fd, f_q, f_qa, f_qb, fd_q, fd_qa, fd_qb) = $parts;
            let nq_s = w2 * f_q * q_s[i];
            let nq_a = w2 * f_q.mul_add(q_a[i], f_qa * $qa_n);
            let nq_b = w2 * f_q.mul_add(q_b[i], f_qb * $qb_n);
            let nq = w2.mul_add(f, b2);
            let dfd_s = fd_q * q_s[i];
            let dfd_a = fd_q.mul_add(q_a[i], fd_qa * $qa_n);
            let dfd_b = fd_q.mul_add(q_b[i], fd_qb * $qb_n);
            t_s[i] = w2.mul_add(t_s[i].mul_add(fd, t[i] * dfd_s), nq_s);
            t_a[i] = w2.mul_add(t_a[i].mul_add(fd, t[i] * dfd_a), nq_a);
            t_b[i] = w2.mul_add(t_b[i].mul_add(fd, t[i] * dfd_b), nq_b);
            t[i] = (w2 * t[i]).mul_add(fd, nq);
            q[i] = nq;
            q_s[i] = nq_s;
            q_a[i] = nq_a;
            q_b[i] = nq_b;
        }};
    }
    for l in 0..p.depth {
        let qa = row_lanes(rc, l, 0, c0);
        let qa_n = row_lanes(rc, l, 1, c0);
        let isa = row_lanes(rc, l, 2, c0);
        let (qb, qb_n, isb) = (colc[3 * l], colc[3 * l + 1], colc[3 * l + 2]);
        // The activation is matched once per chunk and layer, not per lane,
        // so each loop vectorises one branch only.
        match p.act {
            Activation::Relu => {
                for i in 0..L {
                    chain!(i, relu_partials(q[i], qa[i], isa[i], qb, isb), qa_n[i], qb_n);
                }
            }
            Activation::Erf => {
                for i in 0..L {
                    chain!(i, erf_partials(q[i], qa[i], isa[i], qb, isb), qa_n[i], qb_n);
                }
            }
        }
    }
    match p.kind {
        FcKind::Ntk => [t, t_s, t_a, t_b],
        FcKind::Nngp => [q, q_s, q_a, q_b],
    }
}

#[inline(always)]
fn partials_impl(p: &FcParams, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>) {
    let n1 = na.len();
    let mut rc = Vec::new();
    let (caches, per) = col_caches(p, nb);
    for i0 in (0..n1).step_by(CH) {
        let m = CH.min(n1 - i0);
        row_cache(p, &na[i0..i0 + m], &mut rc);
        for (j, colc) in caches.chunks_exact(per).enumerate() {
            let base = j * n1 + i0;
            for c0 in (0..m).step_by(L) {
                let sv = lanes(&s[base..base + m], c0);
                let [k, ks, ka, kb] = chain_lanes(p, &sv, &rc, c0, colc);
                let (o, w) = (base + c0, L.min(m - c0));
                out.k[o..o + w].copy_from_slice(&k[..w]);
                out.ks[o..o + w].copy_from_slice(&ks[..w]);
                out.ka[o..o + w].copy_from_slice(&ka[..w]);
                out.kb[o..o + w].copy_from_slice(&kb[..w]);
            }
        }
    }
}

#[inline(always)]
fn vjp_impl(
    p: &FcParams,
    cols: &mut [&mut [f64]],
    g: &[&[f64]],
    na: &[f64],
    nb: &[f64],
    ra: &mut [f64],
    rb: &mut [f64],
) {
    let n1 = na.len();
    let mut rc = Vec::new();
    let (caches, per) = col_caches(p, nb);
    // Per column, lane-wise sums of g ∘ ∂K/∂n' (added across lanes at the
    // end): a fixed order that depends on the block's rows only.
    let mut rb_lanes = vec![[0.0f64; L]; nb.len()];
    ra.fill(0.0);
    for i0 in (0..n1).step_by(CH) {
        let m = CH.min(n1 - i0);
        row_cache(p, &na[i0..i0 + m], &mut rc);
        let ra = &mut ra[i0..i0 + m];
        for (((col, gc), colc), rbl) in cols.iter_mut().zip(g).zip(caches.chunks_exact(per)).zip(&mut rb_lanes) {
            let (col, gc) = (&mut col[i0..i0 + m], &gc[i0..i0 + m]);
            for c0 in (0..m).step_by(L) {
                let sv = lanes(col, c0);
                // Zero past the rows, so padded lanes add nothing.
                let gv = lanes(gc, c0);
                let [_, ks, ka, kb] = chain_lanes(p, &sv, &rc, c0, colc);
                for i in 0..L {
                    rbl[i] = gv[i].mul_add(kb[i], rbl[i]);
                }
                let w = L.min(m - c0);
                for i in 0..w {
                    col[c0 + i] = gv[i] * ks[i];
                    ra[c0 + i] = gv[i].mul_add(ka[i], ra[c0 + i]);
                }
            }
        }
    }
    for (r, l) in rb.iter_mut().zip(&rb_lanes) {
        *r = l.iter().sum();
    }
}

multiversion! {
    /// `K` and its partials with respect to `(s, na, nb)` over a block of
    /// whole columns (column-major, `na.len()` rows).
    pub(crate) fn fc_partials(p: &FcParams, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>) => partials_impl
}

multiversion! {
    /// The fused backward map ([`crate::Kernel::map_vjp`]) over a block given
    /// as column pieces, with the partials kept in registers.
    pub(crate) fn fc_vjp(p: &FcParams, cols: &mut [&mut [f64]], g: &[&[f64]], na: &[f64], nb: &[f64], ra: &mut [f64], rb: &mut [f64]) => vjp_impl
}
