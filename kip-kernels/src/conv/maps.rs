//! The linear layers on covariance maps: the input covariance, the 3 × 3
//! SAME convolution (a 9-tap average along the spatial diagonal), the 2 × 2
//! average pooling and the readouts, each with its adjoint.
//!
//! A map of an `h × w` layer is either the **diagonal** `q[h][w]` (`h·w`
//! values: all a Conv-Vec kernel needs, since the convolution only moves
//! along the diagonal) or the **full** covariance `q[h][h'][w][w']`
//! (`(h·w)²` values, each `(h, h')` pair a contiguous `w × w` block), which
//! pooling and the GlobalAvgPool readout need.

/// The shape of a covariance map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geo {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) full: bool,
}

impl Geo {
    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        let hw = self.h * self.w;
        if self.full {
            hw * hw
        } else {
            hw
        }
    }

    /// Positions `h·w` (the length of a variance map).
    pub(crate) fn positions(&self) -> usize {
        self.h * self.w
    }

    /// After a 2 × 2 VALID pooling.
    pub(crate) fn pooled(&self) -> Geo {
        Geo {
            h: self.h / 2,
            w: self.w / 2,
            full: self.full,
        }
    }

    /// Index of the diagonal entry of position `(i, j)`.
    #[inline(always)]
    pub(crate) fn diag_index(&self, i: usize, j: usize) -> usize {
        if self.full {
            ((i * self.h + i) * self.w + j) * self.w + j
        } else {
            i * self.w + j
        }
    }
}

/// The input covariance `q[p, p'] = Σ_c x_a[p, c]·x_b[p', c]/C` of two
/// images stored channel-planar (`x[c][h][w]`).
#[inline(always)]
pub(crate) fn input(geo: Geo, c: usize, xa: &[f64], xb: &[f64], out: &mut [f64]) {
    let (h, w) = (geo.h, geo.w);
    let hw = h * w;
    let inv_c = 1.0 / c as f64;
    let out = &mut out[..geo.len()];
    if !geo.full {
        out.fill(0.0);
        for ch in 0..c {
            let (a, b) = (&xa[ch * hw..][..hw], &xb[ch * hw..][..hw]);
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = x.mul_add(y, *o);
            }
        }
        out.iter_mut().for_each(|o| *o *= inv_c);
        return;
    }
    for i in 0..h {
        for i2 in 0..h {
            let block = &mut out[(i * h + i2) * w * w..][..w * w];
            for j in 0..w {
                let row = &mut block[j * w..][..w];
                row.fill(0.0);
                for ch in 0..c {
                    let s = xa[ch * hw + i * w + j] * inv_c;
                    let b = &xb[ch * hw + i2 * w..][..w];
                    for (o, &y) in row.iter_mut().zip(b) {
                        *o = s.mul_add(y, *o);
                    }
                }
            }
        }
    }
}

/// Adjoint of [`input`] with respect to `x_a`: `dx_a[c][p] += scale·Σ_{p'}
/// g[p, p']·x_b[c][p']/C` (planar).
#[inline(always)]
pub(crate) fn input_adjoint(geo: Geo, c: usize, g: &[f64], xb: &[f64], scale: f64, dxa: &mut [f64]) {
    let (h, w) = (geo.h, geo.w);
    let hw = h * w;
    let s = scale / c as f64;
    if !geo.full {
        for ch in 0..c {
            let (b, d) = (&xb[ch * hw..][..hw], &mut dxa[ch * hw..][..hw]);
            for ((d, &y), &gv) in d.iter_mut().zip(b).zip(&g[..hw]) {
                *d = (s * gv).mul_add(y, *d);
            }
        }
        return;
    }
    for ch in 0..c {
        let plane = &xb[ch * hw..][..hw];
        for i in 0..h {
            for j in 0..w {
                let mut acc = 0.0;
                for i2 in 0..h {
                    let row = &g[((i * h + i2) * w + j) * w..][..w];
                    let b = &plane[i2 * w..][..w];
                    acc += row.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
                }
                dxa[ch * hw + i * w + j] += s * acc;
            }
        }
    }
}

/// `dst ← α·(9-tap diagonal sum of src) + β` with zero padding (the Conv
/// layer with `α = W²/9`, `β = b²`; its adjoint is the same map with
/// `β = 0`). `tmp` is scratch of the map's length.
///
/// Separable: a 3-tap sum along `w` (inside each `(h, h')` block of a full
/// map the diagonal `(w, w') → (w±1, w'±1)`, a shift by `w + 1` of the
/// flattened block), then along `h`, each as one long vectorised pass
/// whose few wrapped entries (the first and last column) are redone.
#[inline(always)]
pub(crate) fn blur(geo: Geo, src: &[f64], tmp: &mut [f64], dst: &mut [f64], alpha: f64, beta: f64) {
    let (h, w) = (geo.h, geo.w);
    let n = geo.len();
    let (src, tmp, dst) = (&src[..n], &mut tmp[..n], &mut dst[..n]);
    if !geo.full {
        // Along w: a shift by 1 over the whole map, then each row's ends;
        // along h: a shift by a row.
        sum3(src, tmp, 1);
        fix_ends(src, tmp, 1, w);
        affine_sum3(tmp, dst, w, alpha, beta);
        return;
    }
    let ww = w * w;
    for (s, t) in src.chunks_exact(ww).zip(tmp.chunks_exact_mut(ww)) {
        sum3(s, t, w + 1);
        fix_ends(s, t, w + 1, w);
    }
    // Along the h diagonal: block (i, i2) gets blocks (i-1, i2-1) and (i+1, i2+1).
    for i in 0..h {
        for i2 in 0..h {
            let out = &mut dst[(i * h + i2) * ww..][..ww];
            let mid = &tmp[(i * h + i2) * ww..][..ww];
            let lo = (i > 0 && i2 > 0).then(|| &tmp[((i - 1) * h + i2 - 1) * ww..][..ww]);
            let hi = (i + 1 < h && i2 + 1 < h).then(|| &tmp[((i + 1) * h + i2 + 1) * ww..][..ww]);
            match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    for k in 0..ww {
                        out[k] = alpha.mul_add(lo[k] + mid[k] + hi[k], beta);
                    }
                }
                (Some(x), None) | (None, Some(x)) => {
                    for k in 0..ww {
                        out[k] = alpha.mul_add(x[k] + mid[k], beta);
                    }
                }
                (None, None) => {
                    for k in 0..ww {
                        out[k] = alpha.mul_add(mid[k], beta);
                    }
                }
            }
        }
    }
}

/// The 3-tap sum along the `w` diagonal of one `w × w` block of a full map
/// (the first pass of [`blur`] on one block).
#[inline(always)]
pub(crate) fn wsum_block(w: usize, src: &[f64], dst: &mut [f64]) {
    let ww = w * w;
    sum3(&src[..ww], &mut dst[..ww], w + 1);
    fix_ends(&src[..ww], &mut dst[..ww], w + 1, w);
}

/// `t[k] = s[k - d] + s[k] + s[k + d]` (terms outside the slice left out).
#[inline(always)]
fn sum3(s: &[f64], t: &mut [f64], d: usize) {
    let n = s.len();
    if n <= 2 * d {
        for (k, t) in t[..n].iter_mut().enumerate() {
            *t = tap3(s, k, d, k >= d, k + d < n);
        }
        return;
    }
    for k in 0..d {
        t[k] = s[k] + s[k + d];
        t[n - 1 - k] = s[n - 1 - k - d] + s[n - 1 - k];
    }
    let (lo, mid, hi) = (&s[..n - 2 * d], &s[d..n - d], &s[2 * d..]);
    for (k, t) in t[d..n - d].iter_mut().enumerate() {
        *t = lo[k] + mid[k] + hi[k];
    }
}

/// `s[k - d] + s[k] + s[k + d]` with the side terms only where allowed.
#[inline(always)]
fn tap3(s: &[f64], k: usize, d: usize, lo: bool, hi: bool) -> f64 {
    let l = if lo { s[k - d] } else { 0.0 };
    let h = if hi { s[k + d] } else { 0.0 };
    l + s[k] + h
}

/// Redo the entries of [`sum3`] (shift `d`) whose neighbours wrapped
/// around a row: rows of `w` entries; the first column has no `k - d`
/// neighbour, the last no `k + d`.
#[inline(always)]
fn fix_ends(s: &[f64], t: &mut [f64], d: usize, w: usize) {
    let n = s.len();
    for r in (0..n).step_by(w) {
        for k in [r, r + w - 1] {
            t[k] = tap3(s, k, d, k != r && k >= d, k != r + w - 1 && k + d < n);
        }
    }
}

/// `dst[k] = α·(t[k - d] + t[k] + t[k + d]) + β` (terms outside left out).
#[inline(always)]
fn affine_sum3(t: &[f64], dst: &mut [f64], d: usize, alpha: f64, beta: f64) {
    let n = t.len();
    if n <= 2 * d {
        for (k, o) in dst[..n].iter_mut().enumerate() {
            *o = alpha.mul_add(tap3(t, k, d, k >= d, k + d < n), beta);
        }
        return;
    }
    for k in 0..d {
        dst[k] = alpha.mul_add(t[k] + t[k + d], beta);
        dst[n - 1 - k] = alpha.mul_add(t[n - 1 - k - d] + t[n - 1 - k], beta);
    }
    let (lo, mid, hi) = (&t[..n - 2 * d], &t[d..n - d], &t[2 * d..]);
    for (k, o) in dst[d..n - d].iter_mut().enumerate() {
        *o = alpha.mul_add(lo[k] + mid[k] + hi[k], beta);
    }
}

/// 2 × 2 VALID average pooling of a full map: `dst[i][i'][j][j']` is the
/// mean over the 16 entries of its window pair.
#[inline(always)]
pub(crate) fn pool(geo: Geo, src: &[f64], dst: &mut [f64]) {
    debug_assert!(geo.full);
    let (h, w) = (geo.h, geo.w);
    let out = geo.pooled();
    let (h2, w2) = (out.h, out.w);
    for i in 0..h2 {
        for i2 in 0..h2 {
            let block = &mut dst[(i * h2 + i2) * w2 * w2..][..w2 * w2];
            block.fill(0.0);
            for a in 0..2 {
                for a2 in 0..2 {
                    let sb = &src[((2 * i + a) * h + 2 * i2 + a2) * w * w..][..w * w];
                    for j in 0..w2 {
                        for b in 0..2 {
                            let row = &sb[(2 * j + b) * w..][..2 * w2];
                            let o = &mut block[j * w2..][..w2];
                            for (jj, o) in o.iter_mut().enumerate() {
                                *o += row[2 * jj] + row[2 * jj + 1];
                            }
                        }
                    }
                }
            }
            block.iter_mut().for_each(|v| *v *= 1.0 / 16.0);
        }
    }
}

/// Adjoint of [`pool`]: each entry of `g_out` spread, divided by 16, over
/// its window pair; dropped rows and columns get 0.
#[inline(always)]
pub(crate) fn pool_adjoint(geo: Geo, g_out: &[f64], g_in: &mut [f64]) {
    let (h, w) = (geo.h, geo.w);
    let out = geo.pooled();
    let (h2, w2) = (out.h, out.w);
    g_in[..geo.len()].fill(0.0);
    for i in 0..h2 {
        for i2 in 0..h2 {
            let block = &g_out[(i * h2 + i2) * w2 * w2..][..w2 * w2];
            for a in 0..2 {
                for a2 in 0..2 {
                    let sb = &mut g_in[((2 * i + a) * h + 2 * i2 + a2) * w * w..][..w * w];
                    for j in 0..w2 {
                        for b in 0..2 {
                            let row = &mut sb[(2 * j + b) * w..][..2 * w2];
                            for (jj, &g) in block[j * w2..][..w2].iter().enumerate() {
                                row[2 * jj] = g / 16.0;
                                row[2 * jj + 1] = g / 16.0;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The readout's scalar: Flatten (`gap = false`): mean of the spatial
/// diagonal; GlobalAvgPool: mean of every entry.
#[inline(always)]
pub(crate) fn readout(geo: Geo, gap: bool, q: &[f64]) -> f64 {
    let n = geo.positions();
    if gap {
        q[..geo.len()].iter().sum::<f64>() / (n * n) as f64
    } else if !geo.full {
        q[..n].iter().sum::<f64>() / n as f64
    } else {
        let mut s = 0.0;
        for i in 0..geo.h {
            for j in 0..geo.w {
                s += q[geo.diag_index(i, j)];
            }
        }
        s / n as f64
    }
}

/// Adjoint of [`readout`]: the map whose readout's cotangent is `g`.
#[inline(always)]
pub(crate) fn readout_adjoint(geo: Geo, gap: bool, g: f64, out: &mut [f64]) {
    let n = geo.positions();
    let out = &mut out[..geo.len()];
    if gap {
        out.fill(g / (n * n) as f64);
    } else if !geo.full {
        out.fill(g / n as f64);
    } else {
        out.fill(0.0);
        for i in 0..geo.h {
            for j in 0..geo.w {
                out[geo.diag_index(i, j)] = g / n as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// `⟨A x, y⟩ = ⟨x, Aᵀ y⟩` for every linear layer, both layouts and odd
    /// sizes (the dropped row and column of pooling).
    #[test]
    fn adjoints_are_adjoint() {
        for &(h, w) in &[(5, 4), (3, 3), (6, 7), (1, 2)] {
            for full in [false, true] {
                let geo = Geo { h, w, full };
                let n = geo.len();
                let (x, y) = (lcg(n, 1), lcg(n, 2));
                let (mut bx, mut by, mut tmp) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                blur(geo, &x, &mut tmp, &mut bx, 0.7, 0.0);
                blur(geo, &y, &mut tmp, &mut by, 0.7, 0.0);
                assert!((dot(&bx, &y) - dot(&x, &by)).abs() < 1e-12, "blur {geo:?}");
                let c = 3;
                let (xa, xb) = (lcg(h * w * c, 3), lcg(h * w * c, 4));
                input(geo, c, &xa, &xb, &mut bx);
                let mut dxa = vec![0.0; h * w * c];
                input_adjoint(geo, c, &y, &xb, 1.0, &mut dxa);
                assert!((dot(&bx, &y) - dot(&xa, &dxa)).abs() < 1e-12, "input {geo:?}");
                for gap in [false, true] {
                    if gap && !full {
                        continue;
                    }
                    let mut ry = vec![0.0; n];
                    readout_adjoint(geo, gap, 0.3, &mut ry);
                    assert!((readout(geo, gap, &x) * 0.3 - dot(&x, &ry)).abs() < 1e-12);
                }
                if full && h >= 2 && w >= 2 {
                    let m = geo.pooled().len();
                    let (mut px, py) = (vec![0.0; m], lcg(m, 5));
                    pool(geo, &x, &mut px);
                    let mut pty = vec![0.0; n];
                    pool_adjoint(geo, &py, &mut pty);
                    assert!((dot(&px, &py) - dot(&x, &pty)).abs() < 1e-12, "pool {geo:?}");
                }
            }
        }
    }

    /// The diagonal of a full map after the convolution is the diagonal map
    /// after it (the Conv-Vec shortcut).
    #[test]
    fn the_diagonal_of_the_full_blur_is_the_diagonal_blur() {
        let (h, w) = (4, 5);
        let full = Geo { h, w, full: true };
        let diag = Geo { h, w, full: false };
        let x = lcg(full.len(), 9);
        let (mut tmp, mut out) = (vec![0.0; full.len()], vec![0.0; full.len()]);
        blur(full, &x, &mut tmp, &mut out, 1.0 / 9.0, 0.01);
        let xd: Vec<f64> = (0..h * w).map(|p| x[full.diag_index(p / w, p % w)]).collect();
        let (mut td, mut od) = (vec![0.0; h * w], vec![0.0; h * w]);
        blur(diag, &xd, &mut td, &mut od, 1.0 / 9.0, 0.01);
        for p in 0..h * w {
            assert!((out[full.diag_index(p / w, p % w)] - od[p]).abs() < 1e-15);
        }
    }
}
