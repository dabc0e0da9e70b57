//! One image pair through the stack: the forward pass (with an optional
//! tape of each activation's inputs), the backward pass to the row image,
//! and the per-image pass that gives each activation's variances (the
//! self-covariance, computed once per image, not per pair) and carries
//! their cotangents back to the pixels.

use super::act::{self, Act};
use super::act_map::{act_back_coefs, act_map, conv_act, conv_plane, self_act_back};
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
    /// From the first map to the second.
    Pool(Geo, Geo),
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
    /// The plan of `arch` on images of `shape` (checked by the caller):
    /// each layer's map keeps the displacements its readout needs (see
    /// [`maps`]): none but the diagonal at a Flatten readout, every one at
    /// GlobalAvgPool, `2r + 1` in front of each pooling.
    pub(crate) fn new(arch: &ConvArch, shape: ImageShape) -> Self {
        Self::with_maps(arch, shape, false)
    }

    /// [`Plan::new`], or with `full` every map the full covariance (the
    /// band's reference in the tests).
    fn with_maps(arch: &ConvArch, shape: ImageShape, full: bool) -> Self {
        let body = arch.body();
        let gap = arch.readout() == ConvLayer::GlobalAvgPool;
        let mut sizes = Vec::with_capacity(body.len());
        let (mut h, mut w) = (shape.h, shape.w);
        for layer in body {
            sizes.push((h, w));
            if *layer == ConvLayer::Pool {
                (h, w) = (h / 2, w / 2);
            }
        }
        let out_geo = if gap || full {
            Geo {
                h,
                w,
                ry: h - 1,
                rx: w - 1,
            }
        } else {
            Geo::diagonal(h, w)
        };
        let mut geo = out_geo;
        let mut steps = Vec::with_capacity(body.len());
        let mut max_len = geo.len();
        for (layer, &(h, w)) in body.iter().zip(&sizes).rev() {
            let next = geo;
            geo = match layer {
                ConvLayer::Pool => Geo {
                    h,
                    w,
                    ry: (2 * geo.ry + 1).min(h - 1),
                    rx: (2 * geo.rx + 1).min(w - 1),
                },
                _ => geo,
            };
            max_len = max_len.max(geo.len());
            steps.push(match layer {
                ConvLayer::Conv => Step::Conv(geo),
                ConvLayer::Relu => Step::Act(geo, Act::Relu, 0),
                ConvLayer::Erf => Step::Act(geo, Act::Erf, 0),
                ConvLayer::Pool => Step::Pool(geo, next),
                ConvLayer::Flatten | ConvLayer::GlobalAvgPool | ConvLayer::Dense => {
                    unreachable!("checked: readout layers end the stack")
                }
            });
        }
        steps.reverse();
        let mut act_positions = Vec::new();
        for step in &mut steps {
            if let Step::Act(geo, _, idx) = step {
                *idx = act_positions.len();
                act_positions.push(geo.positions());
            }
        }
        let w2 = arch.w_std * arch.w_std;
        Self {
            steps,
            in_geo: geo,
            out_geo,
            gap,
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
        let (ab, t) = ((plan.alpha, plan.b2), if ntk { &mut ws.t[..] } else { &mut ws.t[..0] });
        match *step {
            Step::Conv(geo) => {
                // The Conv and the activation after it, plane by plane.
                if let Some(&Step::Act(_, act, idx)) = plan.steps.get(i + 1) {
                    let n = geo.len();
                    let coefs = tape.then(|| sized(&mut ws.coefs[idx], n));
                    let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                    conv_act(ab, geo, act, &mut ws.q, t, &mut ws.tmp, ca, cb, coefs);
                    skip = true;
                } else {
                    for p in geo.planes() {
                        conv_plane(p, ab, &mut ws.q, t, &mut ws.tmp);
                    }
                }
            }
            Step::Act(geo, act, idx) => {
                let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                let coefs = tape.then(|| sized(&mut ws.coefs[idx], geo.len()));
                act_map(geo, act, &mut ws.q, t, ca, cb, coefs);
            }
            Step::Pool(sg, dg) => {
                maps::pool(sg, dg, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
                if ntk {
                    maps::pool(sg, dg, &ws.t, &mut ws.s);
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
            Step::Pool(sg, dg) => {
                maps::pool_adjoint(sg, dg, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
                if ntk {
                    maps::pool_adjoint(sg, dg, &ws.t, &mut ws.s);
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
    for p in geo.planes() {
        let r = p.range();
        if ntk {
            for (q, t) in ws.q[r.clone()].iter_mut().zip(&ws.t[r.clone()]) {
                *q += t;
            }
            maps::blur_plane(p, &mut ws.t[r.clone()], &mut ws.tmp, plan.alpha, 0.0);
        }
        maps::blur_plane(p, &mut ws.q[r], &mut ws.tmp, plan.alpha, 0.0);
    }
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
            Step::Conv(geo) => maps::blur(geo, &mut ws.q, &mut ws.tmp, plan.alpha, plan.b2),
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
            Step::Pool(sg, dg) => {
                maps::pool(sg, dg, &ws.q, &mut ws.s);
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
            Step::Pool(sg, dg) => {
                maps::pool_adjoint(sg, dg, &ws.q, &mut ws.s);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Flatten stack on the displacements its readout needs gives the
    /// value and the gradients of the same stack on full covariances.
    #[test]
    fn the_band_gives_the_full_covariance_kernel() {
        let stacks = [
            ConvArch::convnet(2, FcKind::Ntk),
            ConvArch::from_tokens("CRPCEPFD", FcKind::Nngp, 1.3, 0.2).unwrap(),
            ConvArch::from_tokens("CRCRPCRFD", FcKind::Ntk, 1.5, 0.1).unwrap(),
        ];
        for arch in &stacks {
            for shape in [ImageShape::new(8, 8, 2), ImageShape::new(9, 7, 1)] {
                let (band, full) = (Plan::new(arch, shape), Plan::with_maps(arch, shape, true));
                assert!(band.max_len < full.max_len);
                let mut ws = Workspace::default();
                let image = |seed: u64| -> Vec<f64> {
                    let mut s = seed;
                    (0..band.image_len())
                        .map(|_| {
                            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
                        })
                        .collect()
                };
                let (ra, rb) = (image(5), image(6));
                let run = |plan: &Plan, ws: &mut Workspace| {
                    let a = ImageCache::new(plan, ra.iter().copied(), ws);
                    let b = ImageCache::new(plan, rb.iter().copied(), ws);
                    let k = forward(plan, &a, &b, ws, true);
                    let (mut dx, mut acc) = (vec![0.0; plan.image_len()], plan.var_accumulators());
                    backward(plan, &a, &b, ws, 0.7, &mut dx, &mut acc);
                    self_backward(plan, &a, ws, &acc, &mut dx);
                    (k, dx)
                };
                let (kb, gb) = run(&band, &mut ws);
                let (kf, gf) = run(&full, &mut ws);
                assert!((kb - kf).abs() <= 1e-13 * kf.abs(), "{arch:?} {shape:?}: {kb} vs {kf}");
                for (x, y) in gb.iter().zip(&gf) {
                    assert!(
                        (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                        "{arch:?} {shape:?}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
