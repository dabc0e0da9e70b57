//! One image pair through the stack: the forward pass (with an optional
//! tape of each activation's inputs), the backward pass to the row image,
//! and the per-image pass that gives each activation's variances (the
//! self-covariance, computed once per image, not per pair) and carries
//! their cotangents back to the pixels.

use super::act::{self, Act};
use super::arch::{ConvArch, ConvLayer};
use super::maps::{self, Geo};
use crate::fc::FcKind;
use kip_core::multiversion;
use kip_core::ImageShape;

/// A layer of the body with the map shape it takes.
#[derive(Clone, Copy, Debug)]
enum Step {
    Conv(Geo),
    Act(Geo, Act, usize),
    Pool(Geo),
}

/// The stack laid out for one image shape.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    steps: Vec<Step>,
    in_geo: Geo,
    out_geo: Geo,
    gap: bool,
    ntk: bool,
    channels: usize,
    alpha: f64,
    w2: f64,
    b2: f64,
    max_len: usize,
    /// Positions of each activation's variance map.
    act_positions: Vec<usize>,
}

impl Plan {
    /// The plan of `arch` on images of `shape` (checked by the caller).
    pub(crate) fn new(arch: &ConvArch, shape: ImageShape) -> Self {
        let full = !arch.diagonal_only();
        let in_geo = Geo {
            h: shape.h,
            w: shape.w,
            full,
        };
        let (mut geo, mut steps, mut act_positions) = (in_geo, Vec::new(), Vec::new());
        let mut max_len = geo.len();
        for layer in arch.body() {
            match layer {
                ConvLayer::Conv => steps.push(Step::Conv(geo)),
                ConvLayer::Relu | ConvLayer::Erf => {
                    let a = if *layer == ConvLayer::Relu { Act::Relu } else { Act::Erf };
                    steps.push(Step::Act(geo, a, act_positions.len()));
                    act_positions.push(geo.positions());
                }
                ConvLayer::Pool => {
                    steps.push(Step::Pool(geo));
                    geo = geo.pooled();
                }
                ConvLayer::Flatten | ConvLayer::GlobalAvgPool | ConvLayer::Dense => {
                    unreachable!("checked: readout layers end the stack")
                }
            }
            max_len = max_len.max(geo.len());
        }
        let w2 = arch.w_std * arch.w_std;
        Self {
            steps,
            in_geo,
            out_geo: geo,
            gap: arch.readout() == ConvLayer::GlobalAvgPool,
            ntk: arch.kind == FcKind::Ntk,
            channels: shape.c,
            alpha: w2 / 9.0,
            w2,
            b2: arch.b_std * arch.b_std,
            max_len,
            act_positions,
        }
    }

    /// Values per image (`h·w·c`).
    pub(crate) fn image_len(&self) -> usize {
        self.in_geo.positions() * self.channels
    }

    /// Empty accumulators of the variances' cotangents, one map per
    /// activation.
    pub(crate) fn var_accumulators(&self) -> Vec<Vec<f64>> {
        self.act_positions.iter().map(|&n| vec![0.0; n]).collect()
    }
}

/// An image, channel-planar, with the two cached numbers per position of
/// each activation's variance map ([`act::cache_of`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageCache {
    pub(crate) x: Vec<f64>,
    c0: Vec<Vec<f64>>,
    c1: Vec<Vec<f64>>,
}

impl ImageCache {
    /// From one row of points (`h·w·c`, channels fastest): the planar
    /// copy and the per-image pass.
    pub(crate) fn new(plan: &Plan, row: impl Iterator<Item = f64>, ws: &mut Workspace) -> Self {
        let (hw, c) = (plan.in_geo.positions(), plan.channels);
        let mut x = vec![0.0; hw * c];
        for (k, v) in row.enumerate() {
            x[(k % c) * hw + k / c] = v;
        }
        let mut c0 = plan.var_accumulators();
        let mut c1 = plan.var_accumulators();
        self_forward(plan, &x, Caches::Fill(&mut c0, &mut c1), ws, false);
        Self { x, c0, c1 }
    }

    /// The planar image back in row order (channels fastest) into `out`.
    pub(crate) fn unplanar(plan: &Plan, planar: &[f64], mut out: impl FnMut(usize, f64)) {
        let (hw, c) = (plan.in_geo.positions(), plan.channels);
        for k in 0..hw * c {
            out(k, planar[(k % c) * hw + k / c]);
        }
    }
}

/// Scratch of one thread: the maps, the tape, the cotangents.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    q: Vec<f64>,
    t: Vec<f64>,
    s: Vec<f64>,
    tmp: Vec<f64>,
    /// The self pass's tape: each activation's input.
    tape_q: Vec<Vec<f64>>,
    /// The pair's tape: per activation, per entry, `Ḟ`, `Θ∂Ḟ/∂q`,
    /// `∂F/∂vₐ`, `Θ∂Ḟ/∂vₐ` ([`act::forward_coefs`]).
    coefs: Vec<[Vec<f64>; 4]>,
    sa: Vec<f64>,
    sb: Vec<f64>,
    /// Three `w`-summed blocks of `q` and of `q + Θ` ([`conv_act_full`]),
    /// and one block of `q + Θ`.
    ring: Vec<f64>,
}

impl Workspace {
    fn fit(&mut self, plan: &Plan) {
        let n = plan.max_len;
        for v in [&mut self.q, &mut self.t, &mut self.s, &mut self.tmp] {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        }
        let acts = plan.act_positions.len();
        self.tape_q.resize_with(acts, Vec::new);
        self.coefs.resize_with(acts, Default::default);
    }
}

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

/// Run the per-entry activation over a map: `q ← F`, `t ← t·Ḟ` (`t`
/// empty for NNGP), with the row side's caches `a` and the column side's
/// `b`.
#[inline(always)]
fn act_map(geo: Geo, act: Act, q: &mut [f64], t: &mut [f64], a: (&[f64], &[f64]), b: (&[f64], &[f64])) {
    match act {
        Act::Relu => act_map_as(geo, Act::Relu, q, t, a, b),
        Act::Erf => act_map_as(geo, Act::Erf, q, t, a, b),
    }
}

#[inline(always)]
fn act_map_as(geo: Geo, act: Act, q: &mut [f64], t: &mut [f64], a: (&[f64], &[f64]), b: (&[f64], &[f64])) {
    if !geo.full {
        let n = geo.len();
        let t = if t.is_empty() { t } else { &mut t[..n] };
        act_run(act, &mut q[..n], t, Each(&a.0[..n], &a.1[..n]), b.0, b.1);
        return;
    }
    for (r, p, bo) in full_rows(geo) {
        let t = if t.is_empty() { &mut t[..0] } else { &mut t[r.clone()] };
        act_run(act, &mut q[r], t, Splat(a.0[p], a.1[p]), &b.0[bo..], &b.1[bo..]);
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

/// [`act_map`] keeping the backward's coefficients (`coefs`: four maps
/// of the map's length).
#[inline(always)]
fn act_map_tape(
    geo: Geo,
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    coefs: &mut [Vec<f64>; 4],
) {
    match act {
        Act::Relu => act_map_tape_as(geo, Act::Relu, q, t, a, b, coefs),
        Act::Erf => act_map_tape_as(geo, Act::Erf, q, t, a, b, coefs),
    }
}

#[inline(always)]
fn act_map_tape_as(
    geo: Geo,
    act: Act,
    q: &mut [f64],
    t: &mut [f64],
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    coefs: &mut [Vec<f64>; 4],
) {
    let ntk = !t.is_empty();
    let [c0, c1, c2, c3] = coefs;
    if !geo.full {
        let n = geo.len();
        act_tape_run(act, q, t, Each(&a.0[..n], &a.1[..n]), b.0, b.1, [c0, c1, c2, c3]);
        return;
    }
    for (r, p, bo) in full_rows(geo) {
        let tr = if ntk { &mut t[r.clone()] } else { &mut t[..0] };
        let cs = [
            &mut c0[r.clone()],
            &mut c1[r.clone()],
            &mut c2[r.clone()],
            &mut c3[r.clone()],
        ];
        act_tape_run(act, &mut q[r], tr, Splat(a.0[p], a.1[p]), &b.0[bo..], &b.1[bo..], cs);
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
fn act_back_coefs(geo: Geo, gq: &mut [f64], gt: &mut [f64], coefs: &[Vec<f64>; 4], va: &mut [f64]) {
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
fn conv_act_full(
    plan: &Plan,
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
    let (alpha, beta) = (plan.alpha, plan.b2);
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
                match coefs.as_deref_mut() {
                    Some([c0, c1, c2, c3]) => {
                        let cs = [
                            &mut c0[r.clone()],
                            &mut c1[r.clone()],
                            &mut c2[r.clone()],
                            &mut c3[r.clone()],
                        ];
                        act_tape_run(act, &mut q[r], tr, side, b0, b1, cs);
                    }
                    None => act_run(act, &mut q[r], tr, side, b0, b1),
                }
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
fn self_act_back(geo: Geo, act: Act, q: &[f64], gq: &mut [f64], c: (&[f64], &[f64]), va: &mut [f64], vb: &mut [f64]) {
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

/// The kernel value of the pair `(a, b)`; with `tape`, the inputs of
/// every activation are kept in `ws` for [`backward`].
#[inline(always)]
fn forward_impl(plan: &Plan, a: &ImageCache, b: &ImageCache, ws: &mut Workspace, tape: bool) -> f64 {
    ws.fit(plan);
    maps::input(plan.in_geo, plan.channels, &a.x, &b.x, &mut ws.q);
    let ntk = plan.ntk;
    if ntk {
        ws.t[..plan.in_geo.len()].fill(0.0);
    }
    let mut skip = false;
    for (i, step) in plan.steps.iter().enumerate() {
        if std::mem::take(&mut skip) {
            continue;
        }
        // A full-map Conv and the activation after it: one pass in place.
        if let (Step::Conv(geo), Some(&Step::Act(g2, act, idx))) = (*step, plan.steps.get(i + 1)) {
            if geo.full && g2 == geo {
                let n = geo.len();
                let coefs = if tape {
                    let c = &mut ws.coefs[idx];
                    for v in c.iter_mut() {
                        v.resize(n, 0.0);
                    }
                    Some(c)
                } else {
                    None
                };
                let t = if ntk { &mut ws.t[..n] } else { &mut ws.t[..0] };
                let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                conv_act_full(plan, geo, act, &mut ws.q[..n], t, &mut ws.ring, ca, cb, coefs);
                skip = true;
                continue;
            }
        }
        match *step {
            Step::Conv(geo) => {
                if ntk {
                    // Θ' = q' + W²·avg(Θ) = W²·avg(q + Θ) + b².
                    let n = geo.len();
                    for (t, q) in ws.t[..n].iter_mut().zip(&ws.q[..n]) {
                        *t += q;
                    }
                    maps::blur(geo, &ws.t, &mut ws.tmp, &mut ws.s, plan.alpha, plan.b2);
                    std::mem::swap(&mut ws.t, &mut ws.s);
                }
                maps::blur(geo, &ws.q, &mut ws.tmp, &mut ws.s, plan.alpha, plan.b2);
                std::mem::swap(&mut ws.q, &mut ws.s);
            }
            Step::Act(geo, act, idx) => {
                let n = geo.len();
                let t = if ntk { &mut ws.t[..n] } else { &mut ws.t[..0] };
                let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                if tape {
                    let coefs = &mut ws.coefs[idx];
                    for c in coefs.iter_mut() {
                        c.resize(n, 0.0);
                    }
                    act_map_tape(geo, act, &mut ws.q[..n], t, ca, cb, coefs);
                } else {
                    act_map(geo, act, &mut ws.q, t, ca, cb);
                }
            }
            Step::Pool(geo) => {
                maps::pool(geo, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
                if ntk {
                    maps::pool(geo, &ws.t, &mut ws.s);
                    std::mem::swap(&mut ws.t, &mut ws.s);
                }
            }
        }
    }
    let k = maps::readout(plan.out_geo, plan.gap, &ws.q);
    let nngp = plan.w2 * k + plan.b2;
    if ntk {
        nngp + plan.w2 * maps::readout(plan.out_geo, plan.gap, &ws.t)
    } else {
        nngp
    }
}

#[inline(always)]
fn copy_into(dst: &mut Vec<f64>, src: &[f64]) {
    dst.clear();
    dst.extend_from_slice(src);
}

/// The backward pass of the pair last run by [`forward`] with a tape, to
/// the row image `a`, with cotangent `g` of the kernel value: the input
/// covariance's part added into `dxa` (planar), the row side's variances'
/// cotangents into `acc` (one map per activation; [`self_backward`]
/// carries them to the pixels).
#[inline(always)]
fn backward_impl(
    plan: &Plan,
    _a: &ImageCache,
    b: &ImageCache,
    ws: &mut Workspace,
    g: f64,
    dxa: &mut [f64],
    acc: &mut [Vec<f64>],
) {
    let ntk = plan.ntk;
    // gq, gt live in ws.q, ws.t (the forward's maps are no longer needed).
    maps::readout_adjoint(plan.out_geo, plan.gap, plan.w2 * g, &mut ws.q);
    if ntk {
        maps::readout_adjoint(plan.out_geo, plan.gap, plan.w2 * g, &mut ws.t);
    }
    for step in plan.steps.iter().rev() {
        match *step {
            Step::Pool(geo) => {
                maps::pool_adjoint(geo, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
                if ntk {
                    maps::pool_adjoint(geo, &ws.t, &mut ws.s);
                    std::mem::swap(&mut ws.t, &mut ws.s);
                }
            }
            Step::Conv(geo) => conv_back(plan, geo, ws, plan.ntk),
            Step::Act(geo, _, idx) => {
                let n = geo.len();
                let gt = if ntk { &mut ws.t[..n] } else { &mut ws.t[..0] };
                act_back_coefs(geo, &mut ws.q[..n], gt, &ws.coefs[idx], &mut acc[idx]);
            }
        }
    }
    maps::input_adjoint(plan.in_geo, plan.channels, &ws.q, &b.x, 1.0, dxa);
}

/// The Conv layer's adjoint on the cotangents in `ws.q` (and `ws.t`):
/// `gq ← α·B(gq + gt)`, `gt ← α·B(gt)`.
#[inline(always)]
fn conv_back(plan: &Plan, geo: Geo, ws: &mut Workspace, ntk: bool) {
    let n = geo.len();
    if ntk {
        for (q, t) in ws.q[..n].iter_mut().zip(&ws.t[..n]) {
            *q += t;
        }
        maps::blur(geo, &ws.t, &mut ws.tmp, &mut ws.s, plan.alpha, 0.0);
        std::mem::swap(&mut ws.t, &mut ws.s);
    }
    maps::blur(geo, &ws.q, &mut ws.tmp, &mut ws.s, plan.alpha, 0.0);
    std::mem::swap(&mut ws.q, &mut ws.s);
}

/// The caches of an image's pass: filled by it, or read.
enum Caches<'a> {
    Fill(&'a mut [Vec<f64>], &'a mut [Vec<f64>]),
    Read(&'a [Vec<f64>], &'a [Vec<f64>]),
}

/// The per-image pass: the self-covariance (NNGP) of the planar image `x`
/// through the stack, filling or reading the caches of each activation's
/// diagonal, keeping the tape when `tape`.
#[inline(always)]
fn self_forward_impl(plan: &Plan, x: &[f64], mut caches: Caches<'_>, ws: &mut Workspace, tape: bool) {
    ws.fit(plan);
    maps::input(plan.in_geo, plan.channels, x, x, &mut ws.q);
    for step in &plan.steps {
        match *step {
            Step::Conv(geo) => {
                maps::blur(geo, &ws.q, &mut ws.tmp, &mut ws.s, plan.alpha, plan.b2);
                std::mem::swap(&mut ws.q, &mut ws.s);
            }
            Step::Act(geo, act, idx) => {
                if let Caches::Fill(c0, c1) = &mut caches {
                    for i in 0..geo.h {
                        for j in 0..geo.w {
                            let (v0, v1) = act::cache_of(act, ws.q[geo.diag_index(i, j)]);
                            c0[idx][i * geo.w + j] = v0;
                            c1[idx][i * geo.w + j] = v1;
                        }
                    }
                }
                if tape {
                    copy_into(&mut ws.tape_q[idx], &ws.q[..geo.len()]);
                }
                let c = match &caches {
                    Caches::Fill(c0, c1) => (&c0[idx][..], &c1[idx][..]),
                    Caches::Read(c0, c1) => (&c0[idx][..], &c1[idx][..]),
                };
                act_map(geo, act, &mut ws.q, &mut [], c, c);
            }
            Step::Pool(geo) => {
                maps::pool(geo, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
            }
        }
    }
}

/// Carry the variances' cotangents `acc` (one map per activation) back
/// through the image's own pass to its pixels, added into `dx` (planar).
#[inline(always)]
fn self_backward_impl(plan: &Plan, img: &ImageCache, ws: &mut Workspace, acc: &[Vec<f64>], dx: &mut [f64]) {
    if acc.iter().all(|m| m.iter().all(|&v| v == 0.0)) {
        return;
    }
    self_forward_impl(plan, &img.x, Caches::Read(&img.c0, &img.c1), ws, true);
    ws.q[..plan.out_geo.len()].fill(0.0);
    for step in plan.steps.iter().rev() {
        match *step {
            Step::Pool(geo) => {
                maps::pool_adjoint(geo, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
            }
            Step::Conv(geo) => conv_back(plan, geo, ws, false),
            Step::Act(geo, act, idx) => {
                let n = geo.len();
                let np = geo.positions();
                ws.sa.clear();
                ws.sa.resize(np, 0.0);
                ws.sb.clear();
                ws.sb.resize(np, 0.0);
                let c = (&img.c0[idx][..], &img.c1[idx][..]);
                self_act_back(geo, act, &ws.tape_q[idx], &mut ws.q[..n], c, &mut ws.sa, &mut ws.sb);
                // The variances are the diagonal of this layer's input.
                for i in 0..geo.h {
                    for j in 0..geo.w {
                        let p = i * geo.w + j;
                        ws.q[geo.diag_index(i, j)] += ws.sa[p] + ws.sb[p] + acc[idx][p];
                    }
                }
            }
        }
    }
    maps::input_adjoint(plan.in_geo, plan.channels, &ws.q, &img.x, 2.0, dx);
}

multiversion! {
    /// The kernel value of the pair `(a, b)`; with `tape`, the inputs of
    /// every activation are kept in `ws` for [`backward`].
    pub(crate) fn forward(plan: &Plan, a: &ImageCache, b: &ImageCache, ws: &mut Workspace, tape: bool) -> f64 => forward_impl
}

multiversion! {
    /// The backward pass of the pair last run by [`forward`] with a tape
    /// (see `backward_impl`).
    pub(crate) fn backward(plan: &Plan, a: &ImageCache, b: &ImageCache, ws: &mut Workspace, g: f64, dxa: &mut [f64], acc: &mut [Vec<f64>]) => backward_impl
}

multiversion! {
    /// The per-image pass (see `self_forward_impl`).
    fn self_forward(plan: &Plan, x: &[f64], caches: Caches<'_>, ws: &mut Workspace, tape: bool) => self_forward_impl
}

multiversion! {
    /// Carry the variances' cotangents to the pixels (see
    /// `self_backward_impl`).
    pub(crate) fn self_backward(plan: &Plan, img: &ImageCache, ws: &mut Workspace, acc: &[Vec<f64>], dx: &mut [f64]) => self_backward_impl
}
