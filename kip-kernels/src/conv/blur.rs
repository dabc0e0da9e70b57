//! The 3 × 3 SAME convolution on covariance maps: a blur of each plane
//! (one displacement between the two positions) with zero padding,
//! separable into a 3-tap sum along the rows and one along the columns.
//! For the NTK the Conv maps two planes at once (`q` and `Θ + q`, or the
//! adjoint's `gΘ` and `gΘ + gq`), so the row sums share one sweep.

use kip_core::AVec;

use super::maps::{Geo, Plane};
use super::real::Real;

/// Scratch of the blurs: the row sums of one plane (two maps) and, per
/// plane width, the masks that drop a row's wrapped neighbours (so the
/// row pass is one vectorised sweep over the plane, with no scalar
/// fix-ups at the row ends).
#[derive(Debug, Default)]
pub(crate) struct BlurScratch<T> {
    hx: AVec<T>,
    hy: AVec<T>,
    /// `(pw, left, right)`: `left[k] = 0` where `k` starts a row of `pw`
    /// entries, `right[k] = 0` where it ends one, 1 elsewhere.
    masks: Vec<(usize, AVec<T>, AVec<T>)>,
}

impl<T: Real> BlurScratch<T> {
    /// The row-sum buffers (each `pw` zeros, the plane's `n` sums, `pw`
    /// zeros: the column pass needs no edge cases) and the masks of a
    /// plane `pw` wide, `n` long.
    #[inline(always)]
    fn parts(&mut self, pw: usize, n: usize) -> (&mut [T], &mut [T], &[T], &[T]) {
        let padded = n + 2 * pw;
        for v in [&mut self.hx, &mut self.hy] {
            if v.len() < padded {
                v.resize(padded, T::ZERO);
            }
            v[..pw].fill(T::ZERO);
            v[pw + n..padded].fill(T::ZERO);
        }
        let at = match self.masks.iter().position(|m| m.0 == pw) {
            Some(at) => at,
            None => {
                self.masks.push((pw, AVec::new(), AVec::new()));
                self.masks.len() - 1
            }
        };
        let (_, left, right) = &mut self.masks[at];
        if left.len() < n {
            let bit = |b: bool| if b { T::ONE } else { T::ZERO };
            *left = (0..n).map(|k| bit(k % pw != 0)).collect();
            *right = (0..n).map(|k| bit(k % pw != pw - 1)).collect();
        }
        (&mut self.hx[..padded], &mut self.hy[..padded], &left[..n], &right[..n])
    }
}

/// `x ← α·(3 × 3 sum of x) + β` over every plane, in place, with zero
/// padding (the Conv layer with `α = W²/9`, `β = b²`; its adjoint is the
/// same map with `β = 0`).
#[inline(always)]
pub(crate) fn blur<T: Real>(geo: Geo, x: &mut [T], scratch: &mut BlurScratch<T>, alpha: T, beta: T) {
    for p in geo.planes() {
        blur_plane(p, &mut x[p.range()], &mut [], scratch, alpha, beta);
    }
}

/// [`blur`] on one plane (`x` its entries), and when `y` is not empty
/// also `y ← α·(3 × 3 sum of x + y) + β` (the NTK's Conv, and both
/// cotangents of its adjoint: `x = gΘ`, `y = gq`). Separable: a 3-tap sum
/// along the rows (one sweep over the plane, the wrapped neighbours
/// masked out), then along the columns (a shift by a row) back.
#[inline(always)]
pub(crate) fn blur_plane<T: Real>(p: Plane, x: &mut [T], y: &mut [T], scratch: &mut BlurScratch<T>, alpha: T, beta: T) {
    let n = p.len();
    let (hx, hy, left, right) = scratch.parts(p.pw, n);
    let x = &mut x[..n];
    let inner = p.pw..p.pw + n;
    if y.is_empty() {
        row_sum3(x, &mut hx[inner], left, right);
    } else {
        let y = &mut y[..n];
        row_sum3_pair(x, y, &mut hx[inner.clone()], &mut hy[inner], left, right);
        col_sum3(hy, y, p.pw, alpha, beta);
    }
    col_sum3(hx, x, p.pw, alpha, beta);
}

/// `t[k] = x[k − 1] + x[k] + x[k + 1]` within each row (the masks drop
/// the neighbours across a row's ends; left to right).
#[inline(always)]
fn row_sum3<T: Real>(x: &[T], t: &mut [T], left: &[T], right: &[T]) {
    let n = x.len();
    if n < 3 {
        for (k, o) in t[..n].iter_mut().enumerate() {
            *o = edge_sum3(x, &[], k, left, right);
        }
        return;
    }
    t[0] = edge_sum3(x, &[], 0, left, right);
    t[n - 1] = edge_sum3(x, &[], n - 1, left, right);
    let m = n - 2;
    let (t, left, right) = (&mut t[1..n - 1][..m], &left[1..n - 1][..m], &right[1..n - 1][..m]);
    let (x0, x1, x2) = (&x[..m], &x[1..][..m], &x[2..][..m]);
    for k in 0..m {
        t[k] = right[k].mul_add(x2[k], left[k].mul_add(x0[k], x1[k]));
    }
}

/// [`row_sum3`] of `x` into `tx` and of `x + y` into `ty`, in one sweep.
#[inline(always)]
fn row_sum3_pair<T: Real>(x: &[T], y: &[T], tx: &mut [T], ty: &mut [T], left: &[T], right: &[T]) {
    let n = x.len();
    if n < 3 {
        for k in 0..n {
            tx[k] = edge_sum3(x, &[], k, left, right);
            ty[k] = edge_sum3(x, y, k, left, right);
        }
        return;
    }
    for k in [0, n - 1] {
        tx[k] = edge_sum3(x, &[], k, left, right);
        ty[k] = edge_sum3(x, y, k, left, right);
    }
    let m = n - 2;
    let (tx, ty) = (&mut tx[1..n - 1][..m], &mut ty[1..n - 1][..m]);
    let (left, right) = (&left[1..n - 1][..m], &right[1..n - 1][..m]);
    let (x0, x1, x2) = (&x[..m], &x[1..][..m], &x[2..][..m]);
    let (y0, y1, y2) = (&y[..m], &y[1..][..m], &y[2..][..m]);
    for k in 0..m {
        tx[k] = right[k].mul_add(x2[k], left[k].mul_add(x0[k], x1[k]));
        ty[k] = right[k].mul_add(x2[k] + y2[k], left[k].mul_add(x0[k] + y0[k], x1[k] + y1[k]));
    }
}

/// One entry `k` of [`row_sum3`] of `x` (or `x + y` when `y` is not
/// empty) where a neighbour may lie outside the plane.
#[inline(always)]
fn edge_sum3<T: Real>(x: &[T], y: &[T], k: usize, left: &[T], right: &[T]) -> T {
    let s = |k: usize| if y.is_empty() { x[k] } else { x[k] + y[k] };
    let n = x.len();
    let l = if k > 0 { left[k].mul_add(s(k - 1), s(k)) } else { s(k) };
    if k + 1 < n {
        right[k].mul_add(s(k + 1), l)
    } else {
        l
    }
}

/// `dst[k] = α·(t[k − d] + t[k] + t[k + d]) + β` from the padded row
/// sums `t` (`d` zeros each side: the terms outside the plane are 0, in
/// the order of a 3-tap sum).
#[inline(always)]
fn col_sum3<T: Real>(t: &[T], dst: &mut [T], d: usize, alpha: T, beta: T) {
    let n = dst.len();
    let (lo, mid, hi) = (&t[..n], &t[d..][..n], &t[2 * d..][..n]);
    for (k, o) in dst.iter_mut().enumerate() {
        *o = alpha.mul_add(lo[k] + mid[k] + hi[k], beta);
    }
}
