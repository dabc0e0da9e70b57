//! The activation layers over whole covariance maps: the forward (with
//! or without the tape of the backward's coefficients), the pair's
//! backward from that tape, the self pass's backward, and a Conv fused
//! with the activation after it, plane by plane. Each runs over the map's
//! runs ([`Plane::runs`]): entries whose two ends' positions are
//! consecutive, so the row side's and the column side's caches are read
//! as slices.

use std::ops::Range;

use super::act::{self, Act};
use super::maps::{self, Geo, Plane};

/// One side's two cached numbers per position.
type Caches<'a> = (&'a [f64], &'a [f64]);

/// The caches of `n` positions from position `p`.
#[inline(always)]
fn at<'a>(c: Caches<'a>, p: usize, n: usize) -> Caches<'a> {
    (&c.0[p..p + n], &c.1[p..p + n])
}

/// The activation over one run (`q ← F`, `t ← t·Ḟ` when `t` is given;
/// `t` empty otherwise), the row side's caches `a`, the column side's `b`.
#[inline(always)]
fn act_run(act: Act, q: &mut [f64], t: &mut [f64], a: Caches<'_>, b: Caches<'_>) {
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
fn act_tape_run(act: Act, q: &mut [f64], t: &mut [f64], a: Caches<'_>, b: Caches<'_>, coefs: [&mut [f64]; 4]) {
    let n = q.len();
    let (a0, a1, b0, b1) = (&a.0[..n], &a.1[..n], &b.0[..n], &b.1[..n]);
    let [fd, tq, fa, tv] = coefs;
    let (fd, fa) = (&mut fd[..n], &mut fa[..n]);
    if t.is_empty() {
        for k in 0..n {
            let c = act::forward_coefs(act, q[k], 0.0, a0[k], a1[k], b0[k], b1[k]);
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

/// The `r` pieces of the tape's four maps, when there is a tape.
#[inline(always)]
fn coef_pieces<'a>(coefs: &'a mut Option<&mut [Vec<f64>; 4]>, r: Range<usize>) -> Option<[&'a mut [f64]; 4]> {
    coefs
        .as_deref_mut()
        .map(|[c0, c1, c2, c3]| [&mut c0[r.clone()], &mut c1[r.clone()], &mut c2[r.clone()], &mut c3[r]])
}

/// The activation over the runs of one plane (or of a whole map): the
/// map's `q` and `t` (`t` empty for NNGP), the sides' caches by
/// position, the tape when `coefs` is given.
#[inline(always)]
fn act_runs(
    act: Act,
    runs: impl Iterator<Item = (Range<usize>, usize, usize)>,
    q: &mut [f64],
    t: &mut [f64],
    a: Caches<'_>,
    b: Caches<'_>,
    mut coefs: Option<&mut [Vec<f64>; 4]>,
) {
    let ntk = !t.is_empty();
    for (r, pa, pb) in runs {
        let n = r.len();
        let tr = if ntk { &mut t[r.clone()] } else { &mut t[..0] };
        let (a, b) = (at(a, pa, n), at(b, pb, n));
        match coef_pieces(&mut coefs, r.clone()) {
            Some(c) => act_tape_run(act, &mut q[r], tr, a, b, c),
            None => act_run(act, &mut q[r], tr, a, b),
        }
    }
}

/// Run the per-entry activation over a map: `q ← F`, `t ← t·Ḟ` (`t`
/// empty for NNGP), with the row side's caches `a` and the column side's
/// `b`; with `coefs` (four maps of the map's length) the backward's
/// coefficients are kept.
#[inline(always)]
pub(crate) fn act_map(
    geo: Geo,
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    a: Caches<'_>,
    b: Caches<'_>,
    coefs: Option<&mut [Vec<f64>; 4]>,
) {
    match act {
        Act::Relu => act_runs(Act::Relu, geo.runs(), q, t, a, b, coefs),
        Act::Erf => act_runs(Act::Erf, geo.runs(), q, t, a, b, coefs),
    }
}

/// A Conv (`α = W²/9`, `β = b²`) and the activation after it, plane by
/// plane while the plane is in cache: `Θ ← α·B(q + Θ) + β`, `q ← α·B(q) +
/// β`, then the activation ([`act_map`]) on the plane's runs. `tmp` is
/// scratch of a plane's length.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_act(
    (alpha, beta): (f64, f64),
    geo: Geo,
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    tmp: &mut [f64],
    a: Caches<'_>,
    b: Caches<'_>,
    mut coefs: Option<&mut [Vec<f64>; 4]>,
) {
    let ntk = !t.is_empty();
    for p in geo.planes() {
        conv_plane(p, (alpha, beta), q, t, tmp);
        let c = coefs.as_deref_mut();
        match act {
            Act::Relu => act_runs(Act::Relu, p.runs(geo.w), q, if ntk { t } else { &mut [] }, a, b, c),
            Act::Erf => act_runs(Act::Erf, p.runs(geo.w), q, if ntk { t } else { &mut [] }, a, b, c),
        }
    }
}

/// The Conv on one plane of `q` and (NTK: `t` not empty) `Θ`:
/// `Θ ← α·B(q + Θ) + β`, `q ← α·B(q) + β`.
#[inline(always)]
pub(crate) fn conv_plane(p: Plane, (alpha, beta): (f64, f64), q: &mut [f64], t: &mut [f64], tmp: &mut [f64]) {
    let r = p.range();
    if !t.is_empty() {
        for (t, q) in t[r.clone()].iter_mut().zip(&q[r.clone()]) {
            *t += q;
        }
        maps::blur_plane(p, &mut t[r.clone()], tmp, alpha, beta);
    }
    maps::blur_plane(p, &mut q[r], tmp, alpha, beta);
}

/// The pair's activation backward from the tape's coefficients over one
/// run: `gq ← gq·Ḟ + gΘ·(Θ∂Ḟ/∂q)`, `gΘ ← gΘ·Ḟ` (`gt` empty for NNGP);
/// the row side's variance cotangents added into `va` (per entry).
#[inline(always)]
fn act_coef_run(gq: &mut [f64], gt: &mut [f64], c: [&[f64]; 4], va: &mut [f64]) {
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
pub(crate) fn act_back_coefs(geo: Geo, gq: &mut [f64], gt: &mut [f64], coefs: &[Vec<f64>; 4], va: &mut [f64]) {
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
fn self_act_back_run(
    act: Act,
    q: &[f64],
    gq: &mut [f64],
    a: Caches<'_>,
    b: Caches<'_>,
    va: &mut [f64],
    vb: &mut [f64],
) {
    let n = q.len();
    let (gq, va, vb) = (&mut gq[..n], &mut va[..n], &mut vb[..n]);
    for k in 0..n {
        let e = act::backward(act, q[k], 0.0, gq[k], 0.0, a.0[k], a.1[k], b.0[k], b.1[k]);
        gq[k] = e.q;
        va[k] += e.va;
        vb[k] += e.vb;
    }
}

/// [`self_act_back_run`] over a map, both sides the image's caches `c`.
pub(crate) fn self_act_back(
    geo: Geo,
    act: Act,
    q: &[f64],
    gq: &mut [f64],
    c: Caches<'_>,
    va: &mut [f64],
    vb: &mut [f64],
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
