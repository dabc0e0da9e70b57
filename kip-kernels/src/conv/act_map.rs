//! The activation layers over whole covariance maps: the forward (with
//! or without the tape of the backward's coefficients), the pair's
//! backward from that tape, the self pass's backward, and a full map's
//! Conv fused with its activation. Runs of entries share the row side's
//! caches (a row of a full map) or take one per entry (the diagonal map).

use super::act::{self, Act};
use super::maps::{self, Geo};

/// The row side's caches over a run of entries: one position for the
/// whole run (a row of a full map: [`Splat`]) or one per entry (the
/// diagonal map: [`Each`]). A trait, so each run loop is compiled for its
/// side with no per-entry dispatch.
trait Side: Copy {
    fn at(self, k: usize) -> (f64, f64);
    /// Add the run's row-side cotangents (`v[k]` per entry) into `va`.
    const SPLAT: bool;
}

#[derive(Clone, Copy)]
struct Splat(f64, f64);

#[derive(Clone, Copy)]
struct Each<'a>(&'a [f64], &'a [f64]);

impl Side for Splat {
    const SPLAT: bool = true;
    #[inline(always)]
    fn at(self, _: usize) -> (f64, f64) {
        (self.0, self.1)
    }
}

impl Side for Each<'_> {
    const SPLAT: bool = false;
    #[inline(always)]
    fn at(self, k: usize) -> (f64, f64) {
        (self.0[k], self.1[k])
    }
}

/// The rows of a full map of `geo`: for each `(h, h', w)`, the range of
/// its `w'` entries, the row side's position `(h, w)` and the offset
/// `h'·w` of the column side's positions.
#[inline(always)]
fn full_rows(geo: Geo) -> impl Iterator<Item = (std::ops::Range<usize>, usize, usize)> {
    let (h, w) = (geo.h, geo.w);
    (0..h).flat_map(move |i| {
        (0..h).flat_map(move |i2| {
            (0..w).map(move |j| {
                let start = ((i * h + i2) * w + j) * w;
                (start..start + w, i * w + j, i2 * w)
            })
        })
    })
}

/// The activation over one run of `n` entries (`q ← F`, `t ← t·Ḟ` when
/// `t` is given; `t` empty otherwise).
#[inline(always)]
fn act_run<S: Side>(act: Act, q: &mut [f64], t: &mut [f64], a: S, b0: &[f64], b1: &[f64]) {
    let n = q.len();
    let (b0, b1) = (&b0[..n], &b1[..n]);
    if t.is_empty() {
        for k in 0..n {
            let (x0, x1) = a.at(k);
            q[k] = act::forward(act, q[k], x0, x1, b0[k], b1[k]).0;
        }
    } else {
        let t = &mut t[..n];
        for k in 0..n {
            let (x0, x1) = a.at(k);
            let (f, fd) = act::forward(act, q[k], x0, x1, b0[k], b1[k]);
            q[k] = f;
            t[k] *= fd;
        }
    }
}

/// [`act_run`] keeping the backward's coefficients in `coefs` (each as
/// long as the run).
#[inline(always)]
fn act_tape_run<S: Side>(act: Act, q: &mut [f64], t: &mut [f64], a: S, b0: &[f64], b1: &[f64], coefs: [&mut [f64]; 4]) {
    let n = q.len();
    let (b0, b1) = (&b0[..n], &b1[..n]);
    let [fd, tq, fa, tv] = coefs;
    let (fd, fa) = (&mut fd[..n], &mut fa[..n]);
    if t.is_empty() {
        for k in 0..n {
            let (x0, x1) = a.at(k);
            let c = act::forward_coefs(act, q[k], 0.0, x0, x1, b0[k], b1[k]);
            q[k] = c[0];
            fd[k] = c[1];
            fa[k] = c[3];
        }
    } else {
        let (t, tq, tv) = (&mut t[..n], &mut tq[..n], &mut tv[..n]);
        for k in 0..n {
            let (x0, x1) = a.at(k);
            let c = act::forward_coefs(act, q[k], t[k], x0, x1, b0[k], b1[k]);
            q[k] = c[0];
            t[k] *= c[1];
            fd[k] = c[1];
            tq[k] = c[2];
            fa[k] = c[3];
            tv[k] = c[4];
        }
    }
}

/// The activation over one run, keeping the backward's coefficients when
/// `coefs` is given ([`act_tape_run`]) or not ([`act_run`]).
#[inline(always)]
fn act_any<S: Side>(
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    a: S,
    b0: &[f64],
    b1: &[f64],
    coefs: Option<[&mut [f64]; 4]>,
) {
    match coefs {
        Some(c) => act_tape_run(act, q, t, a, b0, b1, c),
        None => act_run(act, q, t, a, b0, b1),
    }
}

/// The `r` pieces of the tape's four maps, when there is a tape.
#[inline(always)]
fn coef_pieces<'a>(coefs: &'a mut Option<&mut [Vec<f64>; 4]>, r: std::ops::Range<usize>) -> Option<[&'a mut [f64]; 4]> {
    coefs
        .as_deref_mut()
        .map(|[c0, c1, c2, c3]| [&mut c0[r.clone()], &mut c1[r.clone()], &mut c2[r.clone()], &mut c3[r]])
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
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    coefs: Option<&mut [Vec<f64>; 4]>,
) {
    match act {
        Act::Relu => act_map_as(geo, Act::Relu, q, t, a, b, coefs),
        Act::Erf => act_map_as(geo, Act::Erf, q, t, a, b, coefs),
    }
}

#[inline(always)]
fn act_map_as(
    geo: Geo,
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    mut coefs: Option<&mut [Vec<f64>; 4]>,
) {
    let ntk = !t.is_empty();
    if !geo.full {
        let n = geo.len();
        let t = if ntk { &mut t[..n] } else { t };
        let cs = coef_pieces(&mut coefs, 0..n);
        act_any(act, &mut q[..n], t, Each(&a.0[..n], &a.1[..n]), b.0, b.1, cs);
        return;
    }
    for (r, p, bo) in full_rows(geo) {
        let tr = if ntk { &mut t[r.clone()] } else { &mut t[..0] };
        let cs = coef_pieces(&mut coefs, r.clone());
        act_any(act, &mut q[r], tr, Splat(a.0[p], a.1[p]), &b.0[bo..], &b.1[bo..], cs);
    }
}

/// The pair's activation backward from the tape's coefficients over one
/// run: `gq ← gq·Ḟ + gΘ·(Θ∂Ḟ/∂q)`, `gΘ ← gΘ·Ḟ` (`gt` empty for NNGP);
/// the row side's variance cotangents into `va` (per entry, or summed into
/// `va[0]` when `splat`).
#[inline(always)]
fn act_coef_run(gq: &mut [f64], gt: &mut [f64], c: [&[f64]; 4], va: &mut [f64], splat: bool) {
    let n = gq.len();
    let (fd, fa) = (&c[0][..n], &c[2][..n]);
    let mut row = 0.0;
    if gt.is_empty() {
        for k in 0..n {
            let g = gq[k];
            gq[k] = g * fd[k];
            let v = g * fa[k];
            if splat {
                row += v;
            } else {
                va[k] += v;
            }
        }
    } else {
        let (gt, tq, tv) = (&mut gt[..n], &c[1][..n], &c[3][..n]);
        for k in 0..n {
            let (g, h) = (gq[k], gt[k]);
            gq[k] = g.mul_add(fd[k], h * tq[k]);
            gt[k] = h * fd[k];
            let v = g.mul_add(fa[k], h * tv[k]);
            if splat {
                row += v;
            } else {
                va[k] += v;
            }
        }
    }
    if splat {
        va[0] += row;
    }
}

/// [`act_coef_run`] over a map.
#[inline(always)]
pub(crate) fn act_back_coefs(geo: Geo, gq: &mut [f64], gt: &mut [f64], coefs: &[Vec<f64>; 4], va: &mut [f64]) {
    let ntk = !gt.is_empty();
    if !geo.full {
        let c = [&coefs[0][..], &coefs[1][..], &coefs[2][..], &coefs[3][..]];
        act_coef_run(gq, gt, c, va, false);
        return;
    }
    for (r, p, _) in full_rows(geo) {
        let g2 = if ntk { &mut gt[r.clone()] } else { &mut gt[..0] };
        let c = [
            &coefs[0][r.clone()],
            &coefs[1][r.clone()],
            &coefs[2][r.clone()],
            &coefs[3][r.clone()],
        ];
        act_coef_run(&mut gq[r], g2, c, &mut va[p..p + 1], true);
    }
}

/// A full map's Conv and the activation after it, in place, in one pass
/// over the map (instead of two per blurred map and one for the
/// activation): the `(h, h')` blocks are visited along each diagonal
/// `h' − h = const`, whose output block `i` needs the `w`-summed input
/// blocks `i − 1`, `i`, `i + 1` of that diagonal only; a ring of three
/// summed blocks (of `q` and of `q + Θ`) lets block `i` be overwritten by
/// its output as soon as block `i + 1` is summed. With `coefs`, the
/// backward's coefficients are kept (as [`act_tape_run`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_act_full(
    (alpha, beta): (f64, f64),
    geo: Geo,
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    ring: &mut Vec<f64>,
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    mut coefs: Option<&mut [Vec<f64>; 4]>,
) {
    let (h, w) = (geo.h, geo.w);
    let ww = w * w;
    let ntk = !t.is_empty();
    ring.resize(7 * ww, 0.0);
    let (rq, rest) = ring.split_at_mut(3 * ww);
    let (ru, ublk) = rest.split_at_mut(3 * ww);
    let block = |i: usize, i2: usize| (i * h + i2) * ww;
    for d in -(h as isize - 1)..h as isize {
        let i0 = if d < 0 { (-d) as usize } else { 0 };
        let m = h - d.unsigned_abs();
        let at = |k: usize| (i0 + k, (i0 as isize + k as isize + d) as usize);
        let (i, i2) = at(0);
        sum_into(w, block(i, i2), q, t, 0, rq, ru, ublk);
        if m > 1 {
            let (i, i2) = at(1);
            sum_into(w, block(i, i2), q, t, 1, rq, ru, ublk);
        }
        for k in 0..m {
            let (i, i2) = at(k);
            let o = block(i, i2);
            let slot = |k: usize| (k % 3) * ww;
            let (cur, prev, next) = (slot(k), (k > 0).then(|| slot(k - 1)), (k + 1 < m).then(|| slot(k + 1)));
            // Output block k from the summed blocks k - 1, k, k + 1.
            for (src, dst) in [
                (&*rq, &mut q[o..o + ww]),
                (&*ru, &mut t[if ntk { o..o + ww } else { 0..0 }]),
            ] {
                if dst.is_empty() {
                    continue;
                }
                let mid = &src[cur..cur + ww];
                match (prev, next) {
                    (Some(p), Some(n)) => {
                        let (lo, hi) = (&src[p..p + ww], &src[n..n + ww]);
                        for (((d, &l), &m), &h) in dst.iter_mut().zip(lo).zip(mid).zip(hi) {
                            *d = alpha.mul_add(l + m + h, beta);
                        }
                    }
                    (Some(x), None) | (None, Some(x)) => {
                        for ((d, &l), &m) in dst.iter_mut().zip(&src[x..x + ww]).zip(mid) {
                            *d = alpha.mul_add(l + m, beta);
                        }
                    }
                    (None, None) => {
                        for (d, &m) in dst.iter_mut().zip(mid) {
                            *d = alpha.mul_add(m, beta);
                        }
                    }
                }
            }
            // The activation on the output block's rows.
            for j in 0..w {
                let r = o + j * w..o + (j + 1) * w;
                let p = i * w + j;
                let side = Splat(a.0[p], a.1[p]);
                let (b0, b1) = (&b.0[i2 * w..], &b.1[i2 * w..]);
                let tr = if ntk { &mut t[r.clone()] } else { &mut t[..0] };
                let cs = coef_pieces(&mut coefs, r.clone());
                act_any(act, &mut q[r], tr, side, b0, b1, cs);
            }
            // Block k is overwritten: sum block k + 2 into slot k - 1's place.
            if k + 2 < m {
                let (i, i2) = at(k + 2);
                sum_into(w, block(i, i2), q, t, (k + 2) % 3, rq, ru, ublk);
            }
        }
    }
}

/// [`conv_act_full`]'s ring: the `w`-sums of the block at offset `o` of
/// `q` and (NTK: `t` not empty) of `q + Θ` into ring slot `slot`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sum_into(w: usize, o: usize, q: &[f64], t: &[f64], slot: usize, rq: &mut [f64], ru: &mut [f64], ublk: &mut [f64]) {
    let ww = w * w;
    maps::wsum_block(w, &q[o..o + ww], &mut rq[slot * ww..(slot + 1) * ww]);
    if !t.is_empty() {
        for ((u, &x), &y) in ublk[..ww].iter_mut().zip(&q[o..o + ww]).zip(&t[o..o + ww]) {
            *u = x + y;
        }
        maps::wsum_block(w, ublk, &mut ru[slot * ww..(slot + 1) * ww]);
    }
}

/// The self pass's activation backward (NNGP only) over one run: `gq`
/// holds the output's cotangent on entry and the input's on return; the
/// variances' cotangents are added into `va` (the row side: per entry, or
/// summed into `va[0]` for a splat side) and `vb` (the column side, per
/// entry).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn self_act_back_run<S: Side>(
    act: Act,
    q: &[f64],
    gq: &mut [f64],
    a: S,
    b0: &[f64],
    b1: &[f64],
    va: &mut [f64],
    vb: &mut [f64],
) {
    let n = q.len();
    let (gq, b0, b1, vb) = (&mut gq[..n], &b0[..n], &b1[..n], &mut vb[..n]);
    let mut row = 0.0;
    for k in 0..n {
        let (x0, x1) = a.at(k);
        let e = act::backward(act, q[k], 0.0, gq[k], 0.0, x0, x1, b0[k], b1[k]);
        gq[k] = e.q;
        if S::SPLAT {
            row += e.va;
        } else {
            va[k] += e.va;
        }
        vb[k] += e.vb;
    }
    if S::SPLAT {
        va[0] += row;
    }
}

/// [`self_act_back_run`] over a map, both sides the image's caches `c`.
pub(crate) fn self_act_back(
    geo: Geo,
    act: Act,
    q: &[f64],
    gq: &mut [f64],
    c: (&[f64], &[f64]),
    va: &mut [f64],
    vb: &mut [f64],
) {
    if !geo.full {
        let n = geo.len();
        self_act_back_run(
            act,
            &q[..n],
            &mut gq[..n],
            Each(&c.0[..n], &c.1[..n]),
            c.0,
            c.1,
            &mut va[..n],
            vb,
        );
        return;
    }
    for (r, p, bo) in full_rows(geo) {
        let w = geo.w;
        let side = Splat(c.0[p], c.1[p]);
        self_act_back_run(
            act,
            &q[r.clone()],
            &mut gq[r],
            side,
            &c.0[bo..],
            &c.1[bo..],
            &mut va[p..p + 1],
            &mut vb[bo..bo + w],
        );
    }
}
