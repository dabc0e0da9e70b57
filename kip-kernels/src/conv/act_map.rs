//! The activation layers over whole covariance maps: the forward (with
//! or without the tape of the backward's coefficients), the pair's
//! backward from that tape, the self pass's backward, and a Conv fused
//! with the activation after it, plane by plane. Each runs over the map's
//! runs ([`Plane::runs`]): entries whose two ends' positions are
//! consecutive, so the row side's and the column side's caches are read
//! as slices.

use std::ops::Range;

use kip_core::AVec;

use super::act::{self, Act};
use super::blur::{self, BlurScratch};
use super::maps::{Geo, Plane};
use super::real::Real;

/// One side's two cached numbers per position.
type Caches<'a, T> = (&'a [T], &'a [T]);

/// The caches of `n` positions from position `p`.
#[inline(always)]
fn at<'a, T: Real>(c: Caches<'a, T>, p: usize, n: usize) -> Caches<'a, T> {
    (&c.0[p..p + n], &c.1[p..p + n])
}

/// The activation over one run (`q ← F`, `t ← t·Ḟ` when `t` is given;
/// `t` empty otherwise), the row side's caches `a`, the column side's `b`.
#[inline(always)]
fn act_run<T: Real>(act: Act, q: &mut [T], t: &mut [T], a: Caches<'_, T>, b: Caches<'_, T>) {
    let n = q.len();
    let (a0, a1, b0, b1) = (&a.0[..n], &a.1[..n], &b.0[..n], &b.1[..n]);
    if t.is_empty() {
        for k in 0..n {
            q[k] = act::forward(act, q[k], a0[k], a1[k], b0[k], b1[k]).0;
        }
    } else {
        let t = &mut t[..n];
        for k in 0..n {
            let (f, fd) = act::forward(act, q[k], a0[k], a1[k], b0[k], b1[k]);
            q[k] = f;
            t[k] *= fd;
        }
    }
}

/// [`act_run`] keeping the backward's coefficients in `coefs` (each as
/// long as the run).
#[inline(always)]
fn act_tape_run<T: Real>(act: Act, q: &mut [T], t: &mut [T], a: Caches<'_, T>, b: Caches<'_, T>, coefs: [&mut [T]; 4]) {
    let n = q.len();
    let (a0, a1, b0, b1) = (&a.0[..n], &a.1[..n], &b.0[..n], &b.1[..n]);
    let [fd, tq, fa, tv] = coefs;
    let (fd, fa) = (&mut fd[..n], &mut fa[..n]);
    if t.is_empty() {
        for k in 0..n {
            let c = act::forward_coefs(act, q[k], T::ZERO, a0[k], a1[k], b0[k], b1[k]);
            q[k] = c[0];
            fd[k] = c[1];
            fa[k] = c[3];
        }
    } else {
        let (t, tq, tv) = (&mut t[..n], &mut tq[..n], &mut tv[..n]);
        for k in 0..n {
            let c = act::forward_coefs(act, q[k], t[k], a0[k], a1[k], b0[k], b1[k]);
            q[k] = c[0];
            t[k] *= c[1];
            fd[k] = c[1];
            tq[k] = c[2];
            fa[k] = c[3];
            tv[k] = c[4];
        }
    }
}

/// The stack's last activation when the readout's cotangent is the same
/// `(gq, gt)` at every entry of its map: the forward and that layer's
/// backward in one sweep, with no tape — the values' sums added into
/// `sums` (`Σ F`, `Σ Θ·Ḟ`), the input cotangents written over `q` and `t`
/// (`gq·Ḟ + gt·Θ∂Ḟ/∂q`, `gt·Ḟ`), the row side's variance cotangents
/// added into `va`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn act_last_run<T: Real>(
    act: Act,
    q: &mut [T],
    t: &mut [T],
    a: Caches<'_, T>,
    b: Caches<'_, T>,
    (gq, gt): (T, T),
    va: &mut [T],
    sums: &mut [f64; 2],
) {
    // Sixteen partial sums per value (one vector's lanes), so the loop
    // vectorises with its reductions.
    const L: usize = 16;
    let n = q.len();
    let (a0, a1, b0, b1, va) = (&a.0[..n], &a.1[..n], &b.0[..n], &b.1[..n], &mut va[..n]);
    let (mut sf, mut st) = ([T::ZERO; L], [T::ZERO; L]);
    let full = n / L * L;
    let ntk = !t.is_empty();
    if ntk {
        let t = &mut t[..n];
        for base in (0..full).step_by(L) {
            let r = base..base + L;
            let (qc, tc, vc) = (&mut q[r.clone()], &mut t[r.clone()], &mut va[r.clone()]);
            let (a0c, a1c, b0c, b1c) = (&a0[r.clone()], &a1[r.clone()], &b0[r.clone()], &b1[r]);
            for l in 0..L {
                let [f, fd, tq, fa, tv] = act::forward_coefs(act, qc[l], tc[l], a0c[l], a1c[l], b0c[l], b1c[l]);
                sf[l] += f;
                st[l] += tc[l] * fd;
                qc[l] = gq.mul_add(fd, gt * tq);
                vc[l] += gq.mul_add(fa, gt * tv);
                tc[l] = gt * fd;
            }
        }
    } else {
        for base in (0..full).step_by(L) {
            let r = base..base + L;
            let (qc, vc) = (&mut q[r.clone()], &mut va[r.clone()]);
            let (a0c, a1c, b0c, b1c) = (&a0[r.clone()], &a1[r.clone()], &b0[r.clone()], &b1[r]);
            for l in 0..L {
                let [f, fd, _, fa, _] = act::forward_coefs(act, qc[l], T::ZERO, a0c[l], a1c[l], b0c[l], b1c[l]);
                sf[l] += f;
                qc[l] = gq * fd;
                vc[l] += gq * fa;
            }
        }
    }
    for k in full..n {
        let tk = if ntk { t[k] } else { T::ZERO };
        let [f, fd, tq, fa, tv] = act::forward_coefs(act, q[k], tk, a0[k], a1[k], b0[k], b1[k]);
        sf[0] += f;
        st[0] += tk * fd;
        q[k] = gq.mul_add(fd, gt * tq);
        va[k] += gq.mul_add(fa, gt * tv);
        if ntk {
            t[k] = gt * fd;
        }
    }
    sums[0] += sf.iter().map(|&v| v.into()).sum::<f64>();
    sums[1] += st.iter().map(|&v| v.into()).sum::<f64>();
}

/// What an activation pass writes besides its values.
pub(crate) enum ActOut<'a, T> {
    /// Nothing: the Gram.
    Values,
    /// The tape of the backward's coefficients (four maps of the map's
    /// length).
    Tape(&'a mut [AVec<T>; 4]),
    /// The last activation before a readout whose cotangents are `(gq,
    /// gt)` at every entry ([`act_last_run`]); `va` the row side's
    /// variance cotangents (one per position), `sums` the readout's sums.
    Last {
        g: (T, T),
        va: &'a mut [T],
        sums: &'a mut [f64; 2],
    },
}

impl<T: Copy> ActOut<'_, T> {
    /// The same output, borrowed for one plane.
    #[inline(always)]
    fn reborrow(&mut self) -> ActOut<'_, T> {
        match self {
            ActOut::Values => ActOut::Values,
            ActOut::Tape(c) => ActOut::Tape(c),
            ActOut::Last { g, va, sums } => ActOut::Last { g: *g, va, sums },
        }
    }
}

/// The `r` pieces of the tape's four maps.
#[inline(always)]
fn coef_pieces<T: Real>([c0, c1, c2, c3]: &mut [AVec<T>; 4], r: Range<usize>) -> [&mut [T]; 4] {
    [&mut c0[r.clone()], &mut c1[r.clone()], &mut c2[r.clone()], &mut c3[r]]
}

/// The activation over the runs of one plane (or of a whole map): the
/// map's `q` and `t` (`t` empty for NNGP), the sides' caches by
/// position, and what else to write (`out`).
#[inline(always)]
fn act_runs<T: Real>(
    act: Act,
    runs: impl Iterator<Item = (Range<usize>, usize, usize)>,
    q: &mut [T],
    t: &mut [T],
    a: Caches<'_, T>,
    b: Caches<'_, T>,
    mut out: ActOut<'_, T>,
) {
    let ntk = !t.is_empty();
    for (r, pa, pb) in runs {
        let n = r.len();
        let tr = if ntk { &mut t[r.clone()] } else { &mut t[..0] };
        let (a, b) = (at(a, pa, n), at(b, pb, n));
        match &mut out {
            ActOut::Values => act_run(act, &mut q[r], tr, a, b),
            ActOut::Tape(c) => act_tape_run(act, &mut q[r.clone()], tr, a, b, coef_pieces(c, r)),
            ActOut::Last { g, va, sums } => act_last_run(act, &mut q[r], tr, a, b, *g, &mut va[pa..pa + n], sums),
        }
    }
}

/// Run the per-entry activation over a map: `q ← F`, `t ← t·Ḟ` (`t`
/// empty for NNGP), with the row side's caches `a` and the column side's
/// `b`, and what else `out` asks for.
#[inline(always)]
pub(crate) fn act_map<T: Real>(
    geo: Geo,
    act: Act,
    q: &mut [T],
    t: &mut [T],
    a: Caches<'_, T>,
    b: Caches<'_, T>,
    out: ActOut<'_, T>,
) {
    match act {
        Act::Relu => act_runs(Act::Relu, geo.runs(), q, t, a, b, out),
        Act::Erf => act_runs(Act::Erf, geo.runs(), q, t, a, b, out),
    }
}

/// A Conv (`α = W²/9`, `β = b²`) and the activation after it, plane by
/// plane while the plane is in cache: `Θ ← α·B(q + Θ) + β`, `q ← α·B(q) +
/// β`, then the activation ([`act_map`]) on the plane's runs. `t_zero`:
/// `Θ` is zero on entry (its contents are not read).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_act<T: Real>(
    (alpha, beta): (T, T),
    geo: Geo,
    act: Act,
    q: &mut [T],
    t: &mut [T],
    t_zero: bool,
    scratch: &mut BlurScratch<T>,
    a: Caches<'_, T>,
    b: Caches<'_, T>,
    mut out: ActOut<'_, T>,
) {
    let ntk = !t.is_empty();
    for p in geo.planes() {
        conv_plane(p, (alpha, beta), q, t, t_zero, scratch);
        let c = out.reborrow();
        match act {
            Act::Relu => act_runs(Act::Relu, p.runs(geo.w), q, if ntk { t } else { &mut [] }, a, b, c),
            Act::Erf => act_runs(Act::Erf, p.runs(geo.w), q, if ntk { t } else { &mut [] }, a, b, c),
        }
    }
}

/// The Conv on one plane of `q` and (NTK: `t` not empty) `Θ`:
/// `Θ ← α·B(q + Θ) + β`, `q ← α·B(q) + β` — where `t_zero` (`Θ = 0` on
/// entry, not read) `Θ` is the new `q`.
#[inline(always)]
pub(crate) fn conv_plane<T: Real>(
    p: Plane,
    (alpha, beta): (T, T),
    q: &mut [T],
    t: &mut [T],
    t_zero: bool,
    scratch: &mut BlurScratch<T>,
) {
    let r = p.range();
    if t.is_empty() || t_zero {
        blur::blur_plane(p, &mut q[r.clone()], &mut [], scratch, alpha, beta);
        if !t.is_empty() {
            t[r.clone()].copy_from_slice(&q[r]);
        }
    } else {
        blur::blur_plane(p, &mut q[r.clone()], &mut t[r], scratch, alpha, beta);
    }
}

/// The pair's activation backward from the tape's coefficients over one
/// run: `gq ← gq·Ḟ + gΘ·(Θ∂Ḟ/∂q)`, `gΘ ← gΘ·Ḟ` (`gt` empty for NNGP);
/// the row side's variance cotangents added into `va` (per entry).
#[inline(always)]
fn act_coef_run<T: Real>(gq: &mut [T], gt: &mut [T], c: [&[T]; 4], va: &mut [T]) {
    let n = gq.len();
    let (fd, fa, va) = (&c[0][..n], &c[2][..n], &mut va[..n]);
    if gt.is_empty() {
        for k in 0..n {
            let g = gq[k];
            gq[k] = g * fd[k];
            va[k] = g.mul_add(fa[k], va[k]);
        }
    } else {
        let (gt, tq, tv) = (&mut gt[..n], &c[1][..n], &c[3][..n]);
        for k in 0..n {
            let (g, h) = (gq[k], gt[k]);
            gq[k] = g.mul_add(fd[k], h * tq[k]);
            gt[k] = h * fd[k];
            va[k] += g.mul_add(fa[k], h * tv[k]);
        }
    }
}

/// [`act_coef_run`] over a map; `va` holds one cotangent per position of
/// the row side.
#[inline(always)]
pub(crate) fn act_back_coefs<T: Real>(geo: Geo, gq: &mut [T], gt: &mut [T], coefs: &[AVec<T>; 4], va: &mut [T]) {
    let ntk = !gt.is_empty();
    for (r, pa, _) in geo.runs() {
        let g2 = if ntk { &mut gt[r.clone()] } else { &mut gt[..0] };
        let c = [
            &coefs[0][r.clone()],
            &coefs[1][r.clone()],
            &coefs[2][r.clone()],
            &coefs[3][r.clone()],
        ];
        act_coef_run(&mut gq[r], g2, c, &mut va[pa..]);
    }
}

/// The self pass's activation backward (NNGP only) over one run: `gq`
/// holds the output's cotangent on entry and the input's on return; the
/// variances' cotangents are added into `va` (the row side) and `vb` (the
/// column side), per entry.
#[inline(always)]
fn self_act_back_run<T: Real>(
    act: Act,
    q: &[T],
    gq: &mut [T],
    a: Caches<'_, T>,
    b: Caches<'_, T>,
    va: &mut [T],
    vb: &mut [T],
) {
    let n = q.len();
    let (gq, va, vb) = (&mut gq[..n], &mut va[..n], &mut vb[..n]);
    for k in 0..n {
        let e = act::backward(act, q[k], T::ZERO, gq[k], T::ZERO, a.0[k], a.1[k], b.0[k], b.1[k]);
        gq[k] = e.q;
        va[k] += e.va;
        vb[k] += e.vb;
    }
}

/// [`self_act_back_run`] over a map, both sides the image's caches `c`.
#[inline(always)]
pub(crate) fn self_act_back<T: Real>(
    geo: Geo,
    act: Act,
    q: &[T],
    gq: &mut [T],
    c: Caches<'_, T>,
    va: &mut [T],
    vb: &mut [T],
) {
    for (r, pa, pb) in geo.runs() {
        let n = r.len();
        self_act_back_run(
            act,
            &q[r.clone()],
            &mut gq[r],
            at(c, pa, n),
            at(c, pb, n),
            &mut va[pa..pa + n],
            &mut vb[pb..pb + n],
        );
    }
}
