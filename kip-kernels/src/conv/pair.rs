//! One image pair through the stack: the forward pass (with an optional
//! tape of each activation's inputs), the backward pass to the row image,
//! and the per-image pass that gives each activation's variances (the
//! self-covariance, computed once per image, not per pair) and carries
//! their cotangents back to the pixels.

use super::act::{self, Act};
use super::act_map::{act_back_coefs, act_map, conv_act_full, self_act_back};
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
                let coefs = tape.then(|| sized(&mut ws.coefs[idx], n));
                let t = if ntk { &mut ws.t[..n] } else { &mut ws.t[..0] };
                let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                conv_act_full(
                    (plan.alpha, plan.b2),
                    geo,
                    act,
                    &mut ws.q[..n],
                    t,
                    &mut ws.ring,
                    ca,
                    cb,
                    coefs,
                );
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
                let coefs = tape.then(|| sized(&mut ws.coefs[idx], n));
                act_map(geo, act, &mut ws.q[..n], t, ca, cb, coefs);
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

/// The tape's four coefficient maps of one activation, `n` entries each.
#[inline(always)]
fn sized(coefs: &mut [Vec<f64>; 4], n: usize) -> &mut [Vec<f64>; 4] {
    for v in coefs.iter_mut() {
        v.resize(n, 0.0);
    }
    coefs
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
                act_map(geo, act, &mut ws.q, &mut [], c, c, None);
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
