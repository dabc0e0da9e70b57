//! The layout of covariance maps and the linear layers on them: the input
//! covariance, the 2 × 2 average pooling and the readouts, each with its
//! adjoint (the 3 × 3 SAME convolution, a 9-tap average along the spatial
//! diagonal, is in `blur`).
//!
//! A map of an `h × w` layer keeps the covariance `q[p, p + δ]` of the
//! positions `p` and `p + δ` for the displacements `δ = (dy, dx)` with
//! `|dy| ≤ ry`, `|dx| ≤ rx` ([`Geo`]): one **plane** per displacement, the
//! `(h − |dy|) × (w − |dx|)` positions `p` for which both ends lie in the
//! image, row-major, planes in the order of `(dy, dx)`. The convolution
//! moves both ends together, so it keeps each displacement and is a 3 × 3
//! blur of each plane with zero padding (a neighbour outside the plane has
//! an end outside the image); the activations act entry by entry; the
//! pooling reads the displacements `2δ − 1 … 2δ + 1` of the finer map.
//! The Flatten readout reads only `δ = 0`, so a stack needs, from its
//! readout back, radius 0 (Conv-Vec: the diagonal, `h·w` numbers), then
//! `2r + 1` behind each pooling (the ConvNet at 32 × 32: 15 × 15 of the
//! 63 × 63 displacements at full resolution, a sixth of the covariance);
//! GlobalAvgPool reads every entry (the full radius `h − 1`, `w − 1`).

use super::real::Real;

/// The shape of a covariance map: `h × w` positions, the displacements
/// `|dy| ≤ ry`, `|dx| ≤ rx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geo {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) ry: usize,
    pub(crate) rx: usize,
}

/// One plane of a map: displacement `(dy, dx)`, first row-side position
/// `(i0, j0)`, `ph × pw` entries from offset `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plane {
    pub(crate) dy: isize,
    pub(crate) dx: isize,
    pub(crate) i0: usize,
    pub(crate) j0: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    pub(crate) off: usize,
}

impl Plane {
    /// Entries.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.ph * self.pw
    }

    /// The range of the map holding this plane.
    #[inline(always)]
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.off..self.off + self.len()
    }

    /// Position index (`i·w + j`) of the row side of local row `i`'s
    /// first entry, and of the column side's.
    #[inline(always)]
    pub(crate) fn ends(&self, w: usize, i: usize) -> (usize, usize) {
        let a = (self.i0 + i) * w + self.j0;
        let b = ((self.i0 + i) as isize + self.dy) as usize * w;
        (a, (b as isize + self.j0 as isize + self.dx) as usize)
    }

    /// Runs of entries whose row-side positions (and column-side ones)
    /// are consecutive, in a layer `w` wide: `(map range, row-side
    /// position, column-side position)` — the whole plane when `dx = 0`,
    /// else each of its rows.
    #[inline(always)]
    pub(crate) fn runs(self, w: usize) -> impl Iterator<Item = (std::ops::Range<usize>, usize, usize)> {
        (0..self.run_count()).map(move |i| self.run(w, i))
    }

    /// How many runs: 1 when `dx = 0`, else a row each.
    #[inline(always)]
    fn run_count(&self) -> usize {
        if self.dx == 0 {
            1
        } else {
            self.ph
        }
    }

    /// Run `i` of [`Plane::runs`].
    #[inline(always)]
    fn run(&self, w: usize, i: usize) -> (std::ops::Range<usize>, usize, usize) {
        let len = if self.dx == 0 { self.len() } else { self.pw };
        let (a, b) = self.ends(w, i);
        let s = self.off + i * len;
        (s..s + len, a, b)
    }
}

/// `Σ_{e = -r}^{k - 1} (n − |e|)`: the lines of the planes before
/// displacement `k`.
#[inline(always)]
fn lines_before(n: usize, r: usize, k: isize) -> usize {
    (-(r as isize)..k).map(|e| n - e.unsigned_abs()).sum()
}

impl Geo {
    /// The diagonal map (radius 0) of an `h × w` layer.
    pub(crate) fn diagonal(h: usize, w: usize) -> Self {
        Self { h, w, ry: 0, rx: 0 }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        let r = self.ry as isize + 1;
        let c = self.rx as isize + 1;
        lines_before(self.h, self.ry, r) * lines_before(self.w, self.rx, c)
    }

    /// Positions `h·w` (the length of a variance map).
    pub(crate) fn positions(&self) -> usize {
        self.h * self.w
    }

    /// The plane of displacement `(dy, dx)` (within the radius).
    #[inline(always)]
    pub(crate) fn plane(&self, dy: isize, dx: isize) -> Plane {
        let (ph, pw) = (self.h - dy.unsigned_abs(), self.w - dx.unsigned_abs());
        let cols = lines_before(self.w, self.rx, self.rx as isize + 1);
        let off = lines_before(self.h, self.ry, dy) * cols + ph * lines_before(self.w, self.rx, dx);
        Plane {
            dy,
            dx,
            i0: (-dy).max(0) as usize,
            j0: (-dx).max(0) as usize,
            ph,
            pw,
            off,
        }
    }

    /// Every plane, in storage order.
    #[inline(always)]
    pub(crate) fn planes(self) -> Planes {
        Planes {
            geo: self,
            dy: -(self.ry as isize),
            dx: -(self.rx as isize),
        }
    }

    /// Index of the diagonal entry of position `(i, j)`.
    #[inline(always)]
    pub(crate) fn diag_index(&self, i: usize, j: usize) -> usize {
        self.plane(0, 0).off + i * self.w + j
    }

    /// Every plane's [`Plane::runs`], in storage order.
    #[inline(always)]
    pub(crate) fn runs(self) -> Runs {
        Runs {
            planes: self.planes(),
            plane: None,
            row: 0,
        }
    }
}

/// The planes of a [`Geo`] (a plain state machine: the pair passes call
/// this many times per pair, where a chain of adapters costs more than
/// a Conv-Vec map's single plane).
pub(crate) struct Planes {
    geo: Geo,
    dy: isize,
    dx: isize,
}

impl Iterator for Planes {
    type Item = Plane;

    #[inline(always)]
    fn next(&mut self) -> Option<Plane> {
        let (ry, rx) = (self.geo.ry as isize, self.geo.rx as isize);
        if self.dy > ry {
            return None;
        }
        let p = self.geo.plane(self.dy, self.dx);
        if self.dx == rx {
            self.dx = -rx;
            self.dy += 1;
        } else {
            self.dx += 1;
        }
        Some(p)
    }
}

/// The runs of every plane of a [`Geo`] ([`Geo::runs`]).
pub(crate) struct Runs {
    planes: Planes,
    plane: Option<Plane>,
    row: usize,
}

impl Iterator for Runs {
    type Item = (std::ops::Range<usize>, usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let w = self.planes.geo.w;
        loop {
            if let Some(p) = self.plane {
                if self.row < p.run_count() {
                    self.row += 1;
                    return Some(p.run(w, self.row - 1));
                }
            }
            self.plane = Some(self.planes.next()?);
            self.row = 0;
        }
    }
}

/// The input covariance `q[p, p'] = Σ_c x_a[p, c]·x_b[p', c]/C` of two
/// images stored channel-planar (`x[c][h][w]`). Three channels (RGB) in
/// one pass; the sums run over the channels in order either way.
#[inline(always)]
pub(crate) fn input<'a, T: Real>(geo: Geo, c: usize, xa: &'a [T], xb: &'a [T], out: &mut [T]) {
    let hw = geo.positions();
    let inv_c = T::of(1.0 / c as f64);
    for (r, pa, pb) in geo.runs() {
        let out = &mut out[r];
        let n = out.len();
        let plane = |x: &'a [T], ch: usize, p: usize| -> &'a [T] { &x[ch * hw + p..][..n] };
        if c == 3 {
            let (a0, a1, a2) = (plane(xa, 0, pa), plane(xa, 1, pa), plane(xa, 2, pa));
            let (b0, b1, b2) = (plane(xb, 0, pb), plane(xb, 1, pb), plane(xb, 2, pb));
            for (k, o) in out.iter_mut().enumerate() {
                let s = a0[k].mul_add(b0[k], T::ZERO);
                *o = a2[k].mul_add(b2[k], a1[k].mul_add(b1[k], s)) * inv_c;
            }
            continue;
        }
        out.fill(T::ZERO);
        for ch in 0..c {
            let (a, b) = (plane(xa, ch, pa), plane(xb, ch, pb));
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = x.mul_add(y, *o);
            }
        }
        out.iter_mut().for_each(|o| *o *= inv_c);
    }
}

/// Adjoint of [`input`] with respect to `x_a`: `dx_a[c][p] += scale·Σ_{p'}
/// g[p, p']·x_b[c][p']/C` (planar; three channels in one pass).
#[inline(always)]
pub(crate) fn input_adjoint<T: Real>(geo: Geo, c: usize, g: &[T], xb: &[T], scale: T, dxa: &mut [T]) {
    let hw = geo.positions();
    let s = scale / T::of(c as f64);
    for (r, pa, pb) in geo.runs() {
        let g = &g[r];
        let n = g.len();
        if c == 3 {
            let (b0, b1, b2) = (&xb[pb..][..n], &xb[hw + pb..][..n], &xb[2 * hw + pb..][..n]);
            let (d0, rest) = dxa[pa..].split_at_mut(hw);
            let (d1, d2) = rest.split_at_mut(hw);
            let (d0, d1, d2) = (&mut d0[..n], &mut d1[..n], &mut d2[..n]);
            for k in 0..n {
                let sg = s * g[k];
                d0[k] = sg.mul_add(b0[k], d0[k]);
                d1[k] = sg.mul_add(b1[k], d1[k]);
                d2[k] = sg.mul_add(b2[k], d2[k]);
            }
            continue;
        }
        for ch in 0..c {
            let (b, d) = (&xb[ch * hw + pb..][..n], &mut dxa[ch * hw + pa..][..n]);
            for ((d, &y), &gv) in d.iter_mut().zip(b).zip(g) {
                *d = (s * gv).mul_add(y, *d);
            }
        }
    }
}

/// The 16 terms of 2 × 2 VALID average pooling from `src` (the finer map)
/// to `dst`, row by row: `f(o, s, n)` for each of `dst`'s plane rows and
/// each of the window pair's 16 offsets, where entry `o + k` of `dst`
/// takes entry `s + 2k` of `src` (`k < n`). An output entry at `(A, A +
/// D)` reads `(2A + i, 2A + 2D + j)` for `i, j ∈ {0, 1}²`: displacement
/// `2D + j − i`, row-side position `2A + i`.
#[inline(always)]
fn pool_terms(src: Geo, dst: Geo, mut f: impl FnMut(usize, usize, usize)) {
    const OFFSETS: [(isize, isize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];
    for p in dst.planes() {
        for (iy, jy) in OFFSETS {
            for (ix, jx) in OFFSETS {
                let s = src.plane(2 * p.dy + jy - iy, 2 * p.dx + jx - ix);
                let col = (2 * p.j0 as isize + ix) as usize - s.j0;
                for i in 0..p.ph {
                    let row = (2 * (p.i0 + i) as isize + iy) as usize - s.i0;
                    f(p.off + i * p.pw, s.off + row * s.pw + col, p.pw);
                }
            }
        }
    }
}

/// 2 × 2 VALID average pooling from the map `src` of `sg` to the map `dst`
/// of `dg` (half the size, radius at most `(r − 1)/2`): each entry the
/// mean over the 16 entries of its window pair.
#[inline(always)]
pub(crate) fn pool<T: Real>(sg: Geo, dg: Geo, src: &[T], dst: &mut [T]) {
    let dst = &mut dst[..dg.len()];
    dst.fill(T::ZERO);
    pool_terms(sg, dg, |o, s, n| {
        for (k, d) in dst[o..o + n].iter_mut().enumerate() {
            *d += src[s + 2 * k];
        }
    });
    dst.iter_mut().for_each(|v| *v *= T::of(1.0 / 16.0));
}

/// Adjoint of [`pool`]: each entry of `g_out` spread, divided by 16, over
/// its window pair; entries no window reads (dropped rows and columns,
/// displacements past the pooled radius) get 0.
#[inline(always)]
pub(crate) fn pool_adjoint<T: Real>(sg: Geo, dg: Geo, g_out: &[T], g_in: &mut [T]) {
    g_in[..sg.len()].fill(T::ZERO);
    pool_terms(sg, dg, |o, s, n| {
        for (k, &g) in g_out[o..o + n].iter().enumerate() {
            g_in[s + 2 * k] += g / T::of(16.0);
        }
    });
}

/// The readout's scalar: Flatten (`gap = false`): mean of the spatial
/// diagonal; GlobalAvgPool: mean of every entry (the map then holds every
/// displacement).
#[inline(always)]
pub(crate) fn readout<T: Real>(geo: Geo, gap: bool, q: &[T]) -> f64 {
    if gap {
        debug_assert!(geo.ry + 1 >= geo.h && geo.rx + 1 >= geo.w);
        T::total(&q[..geo.len()]) / readout_count(geo, gap)
    } else {
        T::total(&q[geo.plane(0, 0).range()]) / readout_count(geo, gap)
    }
}

/// How many entries the readout averages: the diagonal's `h·w` for
/// Flatten, all `(h·w)²` for GlobalAvgPool.
#[inline(always)]
pub(crate) fn readout_count(geo: Geo, gap: bool) -> f64 {
    let n = geo.positions();
    if gap {
        (n * n) as f64
    } else {
        n as f64
    }
}

/// Adjoint of [`readout`]: the map whose readout's cotangent is `g`.
#[inline(always)]
pub(crate) fn readout_adjoint<T: Real>(geo: Geo, gap: bool, g: f64, out: &mut [T]) {
    let out = &mut out[..geo.len()];
    let each = T::of(g / readout_count(geo, gap));
    if gap {
        out.fill(each);
    } else {
        let diag = geo.plane(0, 0).range();
        out[..diag.start].fill(T::ZERO);
        out[diag.end..].fill(T::ZERO);
        out[diag].fill(each);
    }
}

#[cfg(test)]
mod tests {
    use super::super::blur::{blur, BlurScratch};
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// A dense `(h·w)²` covariance, `c[a·hw + b]`, read as the planes of
    /// `geo`.
    fn planes_of(geo: Geo, c: &[f64]) -> Vec<f64> {
        let (w, hw) = (geo.w, geo.positions());
        let mut out = vec![f64::NAN; geo.len()];
        for p in geo.planes() {
            for i in 0..p.ph {
                let (a, b) = p.ends(w, i);
                for j in 0..p.pw {
                    out[p.off + i * p.pw + j] = c[(a + j) * hw + b + j];
                }
            }
        }
        assert!(out.iter().all(|v| v.is_finite()), "the planes tile the map");
        out
    }

    /// The dense Conv: `α·Σ_δ c[a + δ, b + δ] + β`, zero outside the image.
    fn dense_blur(h: usize, w: usize, c: &[f64], alpha: f64, beta: f64) -> Vec<f64> {
        let hw = h * w;
        let at = |i: isize, j: isize| {
            (i >= 0 && j >= 0 && i < h as isize && j < w as isize).then(|| i as usize * w + j as usize)
        };
        let mut out = vec![0.0; hw * hw];
        for a in 0..hw {
            for b in 0..hw {
                let mut s = 0.0;
                for (di, dj) in (-1..=1).flat_map(|di| (-1..=1).map(move |dj| (di, dj))) {
                    let pa = at((a / w) as isize + di, (a % w) as isize + dj);
                    let pb = at((b / w) as isize + di, (b % w) as isize + dj);
                    if let (Some(pa), Some(pb)) = (pa, pb) {
                        s += c[pa * hw + pb];
                    }
                }
                out[a * hw + b] = alpha.mul_add(s, beta);
            }
        }
        out
    }

    /// The dense pooling: the mean over each window pair.
    fn dense_pool(h: usize, w: usize, c: &[f64]) -> Vec<f64> {
        let (h2, w2, hw) = (h / 2, w / 2, h * w);
        let n2 = h2 * w2;
        let mut out = vec![0.0; n2 * n2];
        for a in 0..n2 {
            for b in 0..n2 {
                let mut s = 0.0;
                for k in 0..16 {
                    let (ia, ja, ib, jb) = (k & 1, (k >> 1) & 1, (k >> 2) & 1, k >> 3);
                    let pa = (2 * (a / w2) + ia) * w + 2 * (a % w2) + ja;
                    let pb = (2 * (b / w2) + ib) * w + 2 * (b % w2) + jb;
                    s += c[pa * hw + pb];
                }
                out[a * n2 + b] = s / 16.0;
            }
        }
        out
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-13)
    }

    /// Every radius of every layer shape: the planes' blur, pooling,
    /// input covariance and readouts are the dense covariance's, read at
    /// the kept displacements.
    #[test]
    fn the_planes_are_the_dense_covariance() {
        for &(h, w) in &[(5, 4), (3, 3), (6, 7), (1, 2), (4, 4)] {
            let hw = h * w;
            let dense = lcg(hw * hw, 7);
            for ry in 0..h {
                for rx in 0..w {
                    let geo = Geo { h, w, ry, rx };
                    let mut x = planes_of(geo, &dense);
                    blur(geo, &mut x, &mut BlurScratch::default(), 0.7, 0.1);
                    assert!(
                        close(&x, &planes_of(geo, &dense_blur(h, w, &dense, 0.7, 0.1))),
                        "blur {geo:?}"
                    );
                    let c = 3;
                    let (xa, xb) = (lcg(hw * c, 3), lcg(hw * c, 4));
                    let mut cov = vec![0.0; hw * hw];
                    for a in 0..hw {
                        for b in 0..hw {
                            cov[a * hw + b] = (0..c).map(|k| xa[k * hw + a] * xb[k * hw + b]).sum::<f64>() / c as f64;
                        }
                    }
                    let mut q = vec![0.0; geo.len()];
                    input(geo, c, &xa, &xb, &mut q);
                    assert!(close(&q, &planes_of(geo, &cov)), "input {geo:?}");
                    let diag: f64 = (0..hw).map(|a| dense[a * hw + a]).sum::<f64>() / hw as f64;
                    let x = planes_of(geo, &dense);
                    assert!((readout(geo, false, &x) - diag).abs() < 1e-14);
                    if ry + 1 == h && rx + 1 == w {
                        let all = dense.iter().sum::<f64>() / (hw * hw) as f64;
                        assert!((readout(geo, true, &x) - all).abs() < 1e-14);
                    }
                    if h >= 2 && w >= 2 {
                        let (h2, w2) = (h / 2, w / 2);
                        for (ry2, rx2) in (0..h2).flat_map(|a| (0..w2).map(move |b| (a, b))) {
                            if ry < (2 * ry2 + 1).min(h - 1) || rx < (2 * rx2 + 1).min(w - 1) {
                                continue;
                            }
                            let dg = Geo {
                                h: h2,
                                w: w2,
                                ry: ry2,
                                rx: rx2,
                            };
                            let mut out = vec![0.0; dg.len()];
                            pool(geo, dg, &x, &mut out);
                            assert!(
                                close(&out, &planes_of(dg, &dense_pool(h, w, &dense))),
                                "pool {geo:?} → {dg:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// `⟨A x, y⟩ = ⟨x, Aᵀ y⟩` for every linear layer, radii and odd sizes
    /// (the dropped row and column of pooling).
    #[test]
    fn adjoints_are_adjoint() {
        for &(h, w) in &[(5, 4), (3, 3), (6, 7), (1, 2), (7, 6)] {
            for (ry, rx) in [(0, 0), (1, 0), (h - 1, w - 1), ((h - 1).min(3), (w - 1).min(1))] {
                let geo = Geo { h, w, ry, rx };
                let n = geo.len();
                let (x, y) = (lcg(n, 1), lcg(n, 2));
                let (mut bx, mut by, mut scratch) = (x.clone(), y.clone(), BlurScratch::default());
                blur(geo, &mut bx, &mut scratch, 0.7, 0.0);
                blur(geo, &mut by, &mut scratch, 0.7, 0.0);
                assert!((dot(&bx, &y) - dot(&x, &by)).abs() < 1e-12, "blur {geo:?}");
                let c = 3;
                let (xa, xb) = (lcg(h * w * c, 3), lcg(h * w * c, 4));
                input(geo, c, &xa, &xb, &mut bx);
                let mut dxa = vec![0.0; h * w * c];
                input_adjoint(geo, c, &y, &xb, 1.0, &mut dxa);
                assert!((dot(&bx, &y) - dot(&xa, &dxa)).abs() < 1e-12, "input {geo:?}");
                for gap in [false, true] {
                    if gap && (ry + 1 < h || rx + 1 < w) {
                        continue;
                    }
                    let mut ry_ = vec![0.0; n];
                    readout_adjoint(geo, gap, 0.3, &mut ry_);
                    assert!((readout(geo, gap, &x) * 0.3 - dot(&x, &ry_)).abs() < 1e-12);
                }
                if h >= 2 && w >= 2 && ry >= 1.min(h - 1) && rx >= 1.min(w - 1) {
                    let dg = Geo {
                        h: h / 2,
                        w: w / 2,
                        ry: ((ry - 1) / 2).min(h / 2 - 1),
                        rx: ((rx - 1) / 2).min(w / 2 - 1),
                    };
                    let m = dg.len();
                    let (mut px, py) = (vec![0.0; m], lcg(m, 5));
                    pool(geo, dg, &x, &mut px);
                    let mut pty = vec![0.0; n];
                    pool_adjoint(geo, dg, &py, &mut pty);
                    assert!((dot(&px, &py) - dot(&x, &pty)).abs() < 1e-12, "pool {geo:?}");
                }
            }
        }
    }
}
