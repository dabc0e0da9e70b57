//! One image pair through the stack: the forward pass (with an optional
//! tape of each activation's inputs), the backward pass to the row image,
//! and the per-image pass that gives each activation's variances (the
//! self-covariance, computed once per image, not per pair) and carries
//! their cotangents back to the pixels.

use super::act::{self, Act};
use super::arch::{ConvArch, ConvLayer};
use super::maps::{self, Geo};
use crate::fc::FcKind;
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
    tape_q: Vec<Vec<f64>>,
    tape_t: Vec<Vec<f64>>,
    sa: Vec<f64>,
    sb: Vec<f64>,
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
        self.tape_t.resize_with(acts, Vec::new);
    }
}

/// Run the per-entry activation over a map: `q ← F`, `t ← t·Ḟ` (when
/// given), with the row side's caches `a` and the column side's `b`.
fn act_map(geo: Geo, act: Act, q: &mut [f64], t: Option<&mut [f64]>, a: (&[f64], &[f64]), b: (&[f64], &[f64])) {
    let w = geo.w;
    let mut t = t;
    let mut run = |range: std::ops::Range<usize>, sa: Option<(f64, f64)>, bo: usize| {
        let n = range.len();
        let qs = &mut q[range.clone()];
        let (b0, b1) = (&b.0[bo..][..n], &b.1[bo..][..n]);
        let (a0s, a1s) = (&a.0[bo..], &a.1[bo..]);
        match t.as_deref_mut() {
            Some(t) => {
                let ts = &mut t[range];
                for k in 0..n {
                    let (x0, x1) = sa.unwrap_or((a0s[k], a1s[k]));
                    let (f, fd) = act::forward(act, qs[k], x0, x1, b0[k], b1[k]);
                    qs[k] = f;
                    ts[k] *= fd;
                }
            }
            None => {
                for k in 0..n {
                    let (x0, x1) = sa.unwrap_or((a0s[k], a1s[k]));
                    qs[k] = act::forward(act, qs[k], x0, x1, b0[k], b1[k]).0;
                }
            }
        }
    };
    if !geo.full {
        run(0..geo.len(), None, 0);
        return;
    }
    for i in 0..geo.h {
        for i2 in 0..geo.h {
            for j in 0..w {
                let start = ((i * geo.h + i2) * w + j) * w;
                let p = i * w + j;
                run(start..start + w, Some((a.0[p], a.1[p])), i2 * w);
            }
        }
    }
}

/// The backward of [`act_map`]: `gq`, `gt` (the outputs' cotangents on
/// entry, the inputs' on return), the tape `q`, `t`; the variances'
/// cotangents added into `va` (row side) and, when given, `vb`.
#[allow(clippy::too_many_arguments)]
fn act_back(
    geo: Geo,
    act: Act,
    q: &[f64],
    t: Option<(&[f64], &mut [f64])>,
    gq: &mut [f64],
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    va: &mut [f64],
    mut vb: Option<&mut [f64]>,
) {
    let w = geo.w;
    let (tt, mut gt) = match t {
        Some((tt, gt)) => (Some(tt), Some(gt)),
        None => (None, None),
    };
    let mut run = |range: std::ops::Range<usize>, row: Option<usize>, bo: usize| {
        let n = range.len();
        let (qs, gqs) = (&q[range.clone()], &mut gq[range.clone()]);
        let (b0, b1) = (&b.0[bo..][..n], &b.1[bo..][..n]);
        let mut row_sum = 0.0;
        for k in 0..n {
            let ia = row.unwrap_or(bo + k);
            let (tk, gtk) = match (tt, gt.as_deref()) {
                (Some(tt), Some(gt)) => (tt[range.start + k], gt[range.start + k]),
                _ => (0.0, 0.0),
            };
            let e = act::backward(act, qs[k], tk, gqs[k], gtk, a.0[ia], a.1[ia], b0[k], b1[k]);
            gqs[k] = e.q;
            if let Some(gt) = gt.as_deref_mut() {
                gt[range.start + k] = e.t;
            }
            match row {
                Some(_) => row_sum += e.va,
                None => va[bo + k] += e.va,
            }
            if let Some(vb) = vb.as_deref_mut() {
                vb[bo + k] += e.vb;
            }
        }
        if let Some(p) = row {
            va[p] += row_sum;
        }
    };
    if !geo.full {
        run(0..geo.len(), None, 0);
        return;
    }
    for i in 0..geo.h {
        for i2 in 0..geo.h {
            for j in 0..w {
                let start = ((i * geo.h + i2) * w + j) * w;
                run(start..start + w, Some(i * w + j), i2 * w);
            }
        }
    }
}

/// The kernel value of the pair `(a, b)`; with `tape`, the inputs of
/// every activation are kept in `ws` for [`backward`].
pub(crate) fn forward(plan: &Plan, a: &ImageCache, b: &ImageCache, ws: &mut Workspace, tape: bool) -> f64 {
    ws.fit(plan);
    maps::input(plan.in_geo, plan.channels, &a.x, &b.x, &mut ws.q);
    let ntk = plan.ntk;
    if ntk {
        ws.t[..plan.in_geo.len()].fill(0.0);
    }
    for step in &plan.steps {
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
                if tape {
                    copy_into(&mut ws.tape_q[idx], &ws.q[..n]);
                    if ntk {
                        copy_into(&mut ws.tape_t[idx], &ws.t[..n]);
                    }
                }
                let t = ntk.then_some(&mut ws.t[..n]);
                act_map(
                    geo,
                    act,
                    &mut ws.q,
                    t,
                    (&a.c0[idx], &a.c1[idx]),
                    (&b.c0[idx], &b.c1[idx]),
                );
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

fn copy_into(dst: &mut Vec<f64>, src: &[f64]) {
    dst.clear();
    dst.extend_from_slice(src);
}

/// The backward pass of the pair last run by [`forward`] with a tape, to
/// the row image `a`, with cotangent `g` of the kernel value: the input
/// covariance's part added into `dxa` (planar), the row side's variances'
/// cotangents into `acc` (one map per activation; [`self_backward`]
/// carries them to the pixels).
pub(crate) fn backward(
    plan: &Plan,
    a: &ImageCache,
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
            Step::Conv(geo) => conv_back(plan, geo, ws),
            Step::Act(geo, act, idx) => {
                let n = geo.len();
                let t = ntk.then(|| (&ws.tape_t[idx][..n], &mut ws.t[..n]));
                act_back(
                    geo,
                    act,
                    &ws.tape_q[idx],
                    t,
                    &mut ws.q[..n],
                    (&a.c0[idx], &a.c1[idx]),
                    (&b.c0[idx], &b.c1[idx]),
                    &mut acc[idx],
                    None,
                );
            }
        }
    }
    maps::input_adjoint(plan.in_geo, plan.channels, &ws.q, &b.x, 1.0, dxa);
}

/// The Conv layer's adjoint on the cotangents in `ws.q` (and `ws.t`):
/// `gq ← α·B(gq + gt)`, `gt ← α·B(gt)`.
fn conv_back(plan: &Plan, geo: Geo, ws: &mut Workspace) {
    let n = geo.len();
    if plan.ntk {
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
fn self_forward(plan: &Plan, x: &[f64], mut caches: Caches<'_>, ws: &mut Workspace, tape: bool) {
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
                act_map(geo, act, &mut ws.q, None, c, c);
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
pub(crate) fn self_backward(plan: &Plan, img: &ImageCache, ws: &mut Workspace, acc: &[Vec<f64>], dx: &mut [f64]) {
    if acc.iter().all(|m| m.iter().all(|&v| v == 0.0)) {
        return;
    }
    self_forward(plan, &img.x, Caches::Read(&img.c0, &img.c1), ws, true);
    ws.q[..plan.out_geo.len()].fill(0.0);
    for step in plan.steps.iter().rev() {
        match *step {
            Step::Pool(geo) => {
                maps::pool_adjoint(geo, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
            }
            Step::Conv(geo) => conv_back(plan, geo, ws),
            Step::Act(geo, act, idx) => {
                let n = geo.len();
                let np = geo.positions();
                ws.sa.clear();
                ws.sa.resize(np, 0.0);
                ws.sb.clear();
                ws.sb.resize(np, 0.0);
                let c = (&img.c0[idx][..], &img.c1[idx][..]);
                act_back(
                    geo,
                    act,
                    &ws.tape_q[idx],
                    None,
                    &mut ws.q[..n],
                    c,
                    c,
                    &mut ws.sa,
                    Some(&mut ws.sb),
                );
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
