//! One image pair through the stack: the forward pass (with an optional
//! tape of each activation's inputs), the backward pass to the row image,
//! and the per-image pass that gives each activation's variances (the
//! self-covariance, computed once per image, not per pair) and carries
//! their cotangents back to the pixels.

use super::act::{self, Act};
use super::act_map::{act_back_coefs, act_map, conv_act, conv_plane, self_act_back, ActOut};
use super::arch::{ConvArch, ConvLayer};
use super::blur::{self, BlurScratch};
use super::maps::{self, Geo};
use super::real::Real;
use crate::fc::FcKind;
use kip_core::ImageShape;
use kip_core::{multiversion, AVec};

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
    /// The body ends with an activation whose map the readout weighs
    /// evenly (Flatten of the diagonal alone, or GlobalAvgPool): its
    /// backward runs inside the forward ([`ActOut::Last`]).
    fuse_last: bool,
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
        let even = gap || (out_geo.ry == 0 && out_geo.rx == 0);
        let fuse_last = even && matches!(steps.last(), Some(Step::Act(..)));
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
            fuse_last,
        }
    }

    /// Values per image (`h·w·c`).
    pub(crate) fn image_len(&self) -> usize {
        self.in_geo.positions() * self.channels
    }

    /// Empty accumulators of the variances' cotangents, one map per
    /// activation.
    pub(crate) fn var_accumulators<T: Real>(&self) -> Vec<AVec<T>> {
        self.act_positions.iter().map(|&n| AVec::zeros(n)).collect()
    }
}

/// An image, channel-planar, with the two cached numbers per position of
/// each activation's variance map ([`act::cache_of`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageCache<T> {
    pub(crate) x: AVec<T>,
    c0: Vec<AVec<T>>,
    c1: Vec<AVec<T>>,
}

impl<T: Passes> ImageCache<T> {
    /// From one row of points (`h·w·c`, channels fastest): the planar
    /// copy and the per-image pass.
    pub(crate) fn new(plan: &Plan, row: impl Iterator<Item = f64>, ws: &mut Workspace<T>) -> Self {
        let (hw, c) = (plan.in_geo.positions(), plan.channels);
        let mut x = AVec::zeros(hw * c);
        for (k, v) in row.enumerate() {
            x[(k % c) * hw + k / c] = T::of(v);
        }
        let mut c0 = plan.var_accumulators();
        let mut c1 = plan.var_accumulators();
        T::self_forward(plan, &x, Caches::Fill(&mut c0, &mut c1), ws, false);
        Self { x, c0, c1 }
    }

    /// The planar image back in row order (channels fastest) into `out`.
    pub(crate) fn unplanar(plan: &Plan, planar: &[T], mut out: impl FnMut(usize, f64)) {
        let (hw, c) = (plan.in_geo.positions(), plan.channels);
        for k in 0..hw * c {
            out(k, planar[(k % c) * hw + k / c].into());
        }
    }
}

/// Scratch of one thread: the maps, the tape, the cotangents.
#[derive(Debug, Default)]
pub(crate) struct Workspace<T> {
    q: AVec<T>,
    t: AVec<T>,
    s: AVec<T>,
    blur: BlurScratch<T>,
    /// The self pass's tape: each activation's input.
    tape_q: Vec<AVec<T>>,
    /// The pair's tape: per activation, per entry, `Ḟ`, `Θ∂Ḟ/∂q`,
    /// `∂F/∂vₐ`, `Θ∂Ḟ/∂vₐ` ([`act::forward_coefs`]).
    coefs: Vec<[AVec<T>; 4]>,
    sa: AVec<T>,
    sb: AVec<T>,
}

impl<T: Real> Workspace<T> {
    fn fit(&mut self, plan: &Plan) {
        let n = plan.max_len;
        for v in [&mut self.q, &mut self.t, &mut self.s] {
            if v.len() < n {
                v.resize(n, T::ZERO);
            }
        }
        let acts = plan.act_positions.len();
        self.tape_q.resize_with(acts, AVec::new);
        self.coefs.resize_with(acts, Default::default);
    }
}

/// The kernel value of the pair `(a, b)`. With a cotangent `cot = (g,
/// acc)` of the value, the tape of every activation is kept in `ws` for
/// the backward of `value_grad_impl` — except the last one's where [`Plan::fuse_last`]:
/// its backward runs here (variance cotangents into `acc`), and its
/// input cotangents are left in `ws.q`, `ws.t`.
#[inline(always)]
fn forward_impl<T: Real>(
    plan: &Plan,
    a: &ImageCache<T>,
    b: &ImageCache<T>,
    ws: &mut Workspace<T>,
    mut cot: Option<(f64, &mut [AVec<T>])>,
) -> f64 {
    ws.fit(plan);
    maps::input(plan.in_geo, plan.channels, &a.x, &b.x, &mut ws.q);
    let ntk = plan.ntk;
    // The NTK map starts at zero: the first Conv makes it a copy of q
    // (no blur of zeros); before anything else reads it, it is zeroed.
    let mut t_zero = ntk;
    let mut sums = [0.0; 2];
    let mut skip = false;
    for (i, step) in plan.steps.iter().enumerate() {
        if std::mem::take(&mut skip) {
            continue;
        }
        if t_zero && matches!(step, Step::Act(..)) {
            ws.t.fill(T::ZERO);
            t_zero = false;
        }
        let (ab, t) = (
            (T::of(plan.alpha), T::of(plan.b2)),
            if ntk { &mut ws.t[..] } else { &mut ws.t[..0] },
        );
        match *step {
            Step::Conv(geo) => {
                // The Conv and the activation after it, plane by plane.
                if let Some(&Step::Act(_, act, idx)) = plan.steps.get(i + 1) {
                    let o = act_out(plan, i + 1, idx, geo.len(), &mut ws.coefs, &mut cot, &mut sums);
                    let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                    conv_act(ab, geo, act, &mut ws.q, t, t_zero, &mut ws.blur, ca, cb, o);
                    skip = true;
                } else {
                    for p in geo.planes() {
                        conv_plane(p, ab, &mut ws.q, t, t_zero, &mut ws.blur);
                    }
                }
                t_zero = false;
            }
            Step::Act(geo, act, idx) => {
                let (ca, cb) = ((&a.c0[idx][..], &a.c1[idx][..]), (&b.c0[idx][..], &b.c1[idx][..]));
                let o = act_out(plan, i, idx, geo.len(), &mut ws.coefs, &mut cot, &mut sums);
                act_map(geo, act, &mut ws.q, t, ca, cb, o);
            }
            Step::Pool(sg, dg) => {
                maps::pool(sg, dg, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
                if ntk && !t_zero {
                    maps::pool(sg, dg, &ws.t, &mut ws.s);
                    std::mem::swap(&mut ws.t, &mut ws.s);
                }
            }
        }
    }
    if t_zero {
        ws.t.fill(T::ZERO);
    }
    let (k, kt) = if cot.is_some() && plan.fuse_last {
        let count = maps::readout_count(plan.out_geo, plan.gap);
        (sums[0] / count, sums[1] / count)
    } else {
        let kt = if ntk {
            maps::readout(plan.out_geo, plan.gap, &ws.t)
        } else {
            0.0
        };
        (maps::readout(plan.out_geo, plan.gap, &ws.q), kt)
    };
    let nngp = plan.w2 * k + plan.b2;
    if ntk {
        nngp + plan.w2 * kt
    } else {
        nngp
    }
}

/// What the activation at step `j` (activation `idx`, maps of `n`
/// entries) writes besides its values: nothing without a cotangent, else
/// its tape, or its backward where it is the last and [`Plan::fuse_last`].
#[inline(always)]
fn act_out<'w, T: Real>(
    plan: &Plan,
    j: usize,
    idx: usize,
    n: usize,
    coefs: &'w mut [[AVec<T>; 4]],
    cot: &'w mut Option<(f64, &mut [AVec<T>])>,
    sums: &'w mut [f64; 2],
) -> ActOut<'w, T> {
    match cot {
        None => ActOut::Values,
        Some((g, acc)) if j + 1 == plan.steps.len() && plan.fuse_last => {
            // What `maps::readout_adjoint` would spread over the map.
            let gq = T::of(plan.w2 * *g / maps::readout_count(plan.out_geo, plan.gap));
            let gt = if plan.ntk { gq } else { T::ZERO };
            ActOut::Last {
                g: (gq, gt),
                va: &mut acc[idx][..],
                sums,
            }
        }
        Some(_) => ActOut::Tape(sized(&mut coefs[idx], n)),
    }
}

/// The tape's four coefficient maps of one activation, `n` entries each.
#[inline(always)]
fn sized<T: Real>(coefs: &mut [AVec<T>; 4], n: usize) -> &mut [AVec<T>; 4] {
    for v in coefs.iter_mut() {
        v.resize(n, T::ZERO);
    }
    coefs
}

/// The value of the pair `(a, b)` and its backward pass to the row image
/// `a` with cotangent `g` of the value: the input covariance's part
/// added into `dxa` (planar), the row side's variances' cotangents into
/// `acc` (one map per activation; [`Passes::self_backward`] carries them
/// to the pixels).
#[inline(always)]
fn value_grad_impl<T: Real>(
    plan: &Plan,
    a: &ImageCache<T>,
    b: &ImageCache<T>,
    ws: &mut Workspace<T>,
    g: f64,
    dxa: &mut [T],
    acc: &mut [AVec<T>],
) -> f64 {
    let value = forward_impl(plan, a, b, ws, Some((g, acc)));
    let mut ntk = plan.ntk;
    // Θ is zero up to the first Conv, so below it only gq carries a
    // cotangent (every coefficient that multiplies gΘ there is 0).
    let first_conv = plan.steps.iter().position(|s| matches!(s, Step::Conv(_)));
    let steps = if plan.fuse_last {
        // The last activation's backward ran in the forward, which left
        // its input cotangents in ws.q, ws.t.
        &plan.steps[..plan.steps.len() - 1]
    } else {
        // gq, gt live in ws.q, ws.t (the forward's maps are no longer needed).
        maps::readout_adjoint(plan.out_geo, plan.gap, plan.w2 * g, &mut ws.q);
        if ntk {
            maps::readout_adjoint(plan.out_geo, plan.gap, plan.w2 * g, &mut ws.t);
        }
        &plan.steps[..]
    };
    for (i, step) in steps.iter().enumerate().rev() {
        match *step {
            Step::Pool(sg, dg) => {
                maps::pool_adjoint(sg, dg, &ws.q, &mut ws.s);
                std::mem::swap(&mut ws.q, &mut ws.s);
                if ntk {
                    maps::pool_adjoint(sg, dg, &ws.t, &mut ws.s);
                    std::mem::swap(&mut ws.t, &mut ws.s);
                }
            }
            Step::Conv(geo) if ntk && Some(i) == first_conv => {
                // gq ← α·B(gq + gΘ); gΘ is not needed below.
                let n = geo.len();
                for (q, t) in ws.q[..n].iter_mut().zip(&ws.t[..n]) {
                    *q += *t;
                }
                conv_back(plan, geo, ws, false);
                ntk = false;
            }
            Step::Conv(geo) => conv_back(plan, geo, ws, ntk),
            Step::Act(geo, _, idx) => {
                let n = geo.len();
                let gt = if ntk { &mut ws.t[..n] } else { &mut ws.t[..0] };
                act_back_coefs(geo, &mut ws.q[..n], gt, &ws.coefs[idx], &mut acc[idx]);
            }
        }
    }
    maps::input_adjoint(plan.in_geo, plan.channels, &ws.q, &b.x, T::ONE, dxa);
    value
}

/// The Conv layer's adjoint on the cotangents in `ws.q` (and `ws.t`):
/// `gq ← α·B(gq + gt)`, `gt ← α·B(gt)`.
#[inline(always)]
fn conv_back<T: Real>(plan: &Plan, geo: Geo, ws: &mut Workspace<T>, ntk: bool) {
    let alpha = T::of(plan.alpha);
    for p in geo.planes() {
        let r = p.range();
        if ntk {
            blur::blur_plane(p, &mut ws.t[r.clone()], &mut ws.q[r], &mut ws.blur, alpha, T::ZERO);
        } else {
            blur::blur_plane(p, &mut ws.q[r], &mut [], &mut ws.blur, alpha, T::ZERO);
        }
    }
}

/// The caches of an image's pass: filled by it, or read.
pub(crate) enum Caches<'a, T> {
    Fill(&'a mut [AVec<T>], &'a mut [AVec<T>]),
    Read(&'a [AVec<T>], &'a [AVec<T>]),
}

/// The per-image pass: the self-covariance (NNGP) of the planar image `x`
/// through the stack, filling or reading the caches of each activation's
/// diagonal, keeping the tape when `tape`.
#[inline(always)]
fn self_forward_impl<T: Real>(plan: &Plan, x: &[T], mut caches: Caches<'_, T>, ws: &mut Workspace<T>, tape: bool) {
    ws.fit(plan);
    maps::input(plan.in_geo, plan.channels, x, x, &mut ws.q);
    for step in &plan.steps {
        match *step {
            Step::Conv(geo) => blur::blur(geo, &mut ws.q, &mut ws.blur, T::of(plan.alpha), T::of(plan.b2)),
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
                    ws.tape_q[idx].assign(&ws.q[..geo.len()]);
                }
                let c = match &caches {
                    Caches::Fill(c0, c1) => (&c0[idx][..], &c1[idx][..]),
                    Caches::Read(c0, c1) => (&c0[idx][..], &c1[idx][..]),
                };
                act_map(geo, act, &mut ws.q, &mut [], c, c, ActOut::Values);
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
fn self_backward_impl<T: Real>(plan: &Plan, img: &ImageCache<T>, ws: &mut Workspace<T>, acc: &[AVec<T>], dx: &mut [T]) {
    if acc.iter().all(|m| m.iter().all(|&v| v == T::ZERO)) {
        return;
    }
    self_forward_impl(plan, &img.x, Caches::Read(&img.c0, &img.c1), ws, true);
    ws.q[..plan.out_geo.len()].fill(T::ZERO);
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
                ws.sa.resize(np, T::ZERO);
                ws.sb.clear();
                ws.sb.resize(np, T::ZERO);
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
    maps::input_adjoint(plan.in_geo, plan.channels, &ws.q, &img.x, T::of(2.0), dx);
}

/// The passes of one float type, each compiled for AVX-512, AVX2+FMA
/// and the baseline and chosen at run time.
pub(crate) trait Passes: Real {
    /// The kernel value of the pair `(a, b)` (see `forward_impl`).
    fn forward(plan: &Plan, a: &ImageCache<Self>, b: &ImageCache<Self>, ws: &mut Workspace<Self>) -> f64;
    /// The value and the backward pass to the row image (see
    /// `value_grad_impl`).
    fn value_grad(
        plan: &Plan,
        a: &ImageCache<Self>,
        b: &ImageCache<Self>,
        ws: &mut Workspace<Self>,
        g: f64,
        dxa: &mut [Self],
        acc: &mut [AVec<Self>],
    ) -> f64;
    /// The per-image pass (see `self_forward_impl`).
    fn self_forward(plan: &Plan, x: &[Self], caches: Caches<'_, Self>, ws: &mut Workspace<Self>, tape: bool);
    /// Carry the variances' cotangents to the pixels (see
    /// `self_backward_impl`).
    fn self_backward(
        plan: &Plan,
        img: &ImageCache<Self>,
        ws: &mut Workspace<Self>,
        acc: &[AVec<Self>],
        dx: &mut [Self],
    );
}

/// The value alone (the Gram's pass).
#[inline(always)]
fn value_impl<T: Real>(plan: &Plan, a: &ImageCache<T>, b: &ImageCache<T>, ws: &mut Workspace<T>) -> f64 {
    forward_impl(plan, a, b, ws, None)
}

macro_rules! passes {
    ($t:ty) => {
        impl Passes for $t {
            multiversion! {
                fn forward(plan: &Plan, a: &ImageCache<$t>, b: &ImageCache<$t>, ws: &mut Workspace<$t>) -> f64 => value_impl
            }
            multiversion! {
                fn value_grad(plan: &Plan, a: &ImageCache<$t>, b: &ImageCache<$t>, ws: &mut Workspace<$t>, g: f64, dxa: &mut [$t], acc: &mut [AVec<$t>]) -> f64 => value_grad_impl
            }
            multiversion! {
                fn self_forward(plan: &Plan, x: &[$t], caches: Caches<'_, $t>, ws: &mut Workspace<$t>, tape: bool) => self_forward_impl
            }
            multiversion! {
                fn self_backward(plan: &Plan, img: &ImageCache<$t>, ws: &mut Workspace<$t>, acc: &[AVec<$t>], dx: &mut [$t]) => self_backward_impl
            }
        }
    };
}

passes!(f64);
passes!(f32);

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
                let mut ws = Workspace::<f64>::default();
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
                let run = |plan: &Plan, ws: &mut Workspace<f64>| {
                    let a = ImageCache::new(plan, ra.iter().copied(), ws);
                    let b = ImageCache::new(plan, rb.iter().copied(), ws);
                    let (mut dx, mut acc) = (vec![0.0; plan.image_len()], plan.var_accumulators());
                    let k = f64::value_grad(plan, &a, &b, ws, 0.7, &mut dx, &mut acc);
                    let k0 = f64::forward(plan, &a, &b, ws);
                    assert!((k - k0).abs() <= 1e-14 * k0.abs(), "value_grad's value {k} vs {k0}");
                    f64::self_backward(plan, &a, ws, &acc, &mut dx);
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
