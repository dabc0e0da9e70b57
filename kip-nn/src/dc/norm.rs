//! Instance normalisation (PyTorch's `GroupNorm(C, C)`, affine): each
//! image's channels normalised over its positions,
//! `y = γ·(z − μ)/√(σ² + ε) + β` with the biased variance and `ε = 1e-5`,
//! and its backward pass.
//!
//! Maps are `b` images of `p` positions × `c` channels, channels fastest,
//! so every loop runs along the channels (vectorised).

/// PyTorch's `GroupNorm` ε.
pub(crate) const NORM_EPS: f32 = 1e-5;

/// Normalise `z` (`b·p·c` values) in place into `x̂ = (z − μ)/√(σ² + ε)`,
/// writing `1/√(σ² + ε)` per image and channel into `inv_std` (`b·c`).
/// Sums are taken in `f64`.
pub(crate) fn normalize(z: &mut [f32], p: usize, c: usize, inv_std: &mut [f32]) {
    let b = z.len() / (p * c);
    let (mut sum, mut sq) = (vec![0.0f64; c], vec![0.0f64; c]);
    for img in 0..b {
        let zi = &mut z[img * p * c..(img + 1) * p * c];
        sum.fill(0.0);
        for row in zi.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let inv_p = 1.0 / p as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s * inv_p) as f32).collect();
        sq.fill(0.0);
        for row in zi.chunks_exact(c) {
            for ((s, &v), &m) in sq.iter_mut().zip(row).zip(&mean) {
                let d = f64::from(v - m);
                *s += d * d;
            }
        }
        let is = &mut inv_std[img * c..(img + 1) * c];
        for (o, s) in is.iter_mut().zip(&sq) {
            *o = 1.0 / ((s * inv_p) as f32 + NORM_EPS).sqrt();
        }
        for row in zi.chunks_exact_mut(c) {
            for ((v, &m), &s) in row.iter_mut().zip(&mean).zip(is.iter()) {
                *v = (*v - m) * s;
            }
        }
    }
}

/// `y = γ·x̂ + β` per channel (`x̂` and `y`: `n·c` values).
pub(crate) fn affine(xhat: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32]) {
    let c = gamma.len();
    for (yr, xr) in y.chunks_exact_mut(c).zip(xhat.chunks_exact(c)) {
        for (((o, &x), &g), &bt) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
            *o = g * x + bt;
        }
    }
}

/// The backward pass of [`normalize`] followed by [`affine`]: from the
/// output's cotangent `dy` (overwritten by the input's, `dz`), with
/// `dγ += Σ dy·x̂` and `dβ += Σ dy` accumulated per channel:
/// `dz = γ·s·(dy − mean(dy) − x̂·mean(dy·x̂))` per image and channel, `s`
/// the inverse standard deviation.
pub(crate) fn backward(
    dy: &mut [f32],
    xhat: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    p: usize,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let c = gamma.len();
    let b = dy.len() / (p * c);
    let (mut s1, mut s2) = (vec![0.0f32; c], vec![0.0f32; c]);
    for img in 0..b {
        let range = img * p * c..(img + 1) * p * c;
        let (dyi, xi) = (&mut dy[range.clone()], &xhat[range]);
        s1.fill(0.0);
        s2.fill(0.0);
        for (dr, xr) in dyi.chunks_exact(c).zip(xi.chunks_exact(c)) {
            for (((a, bb), &d), &x) in s1.iter_mut().zip(s2.iter_mut()).zip(dr).zip(xr) {
                *a += d;
                *bb += d * x;
            }
        }
        for ch in 0..c {
            dbeta[ch] += s1[ch];
            dgamma[ch] += s2[ch];
        }
        let inv_p = 1.0 / p as f32;
        let is = &inv_std[img * c..(img + 1) * c];
        let scale: Vec<f32> = gamma.iter().zip(is).map(|(g, s)| g * s).collect();
        let m1: Vec<f32> = s1.iter().map(|v| v * inv_p).collect();
        let m2: Vec<f32> = s2.iter().map(|v| v * inv_p).collect();
        for (dr, xr) in dyi.chunks_exact_mut(c).zip(xi.chunks_exact(c)) {
            for ((((d, &x), &k), &a), &bb) in dr.iter_mut().zip(xr).zip(&scale).zip(&m1).zip(&m2) {
                *d = k * (*d - a - x * bb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values as values;

    /// `Σ w·y` for the norm of `z`, in f64 through f32 maps.
    fn objective(z: &[f32], p: usize, gamma: &[f32], beta: &[f32], w: &[f32]) -> f64 {
        let c = gamma.len();
        let mut x = z.to_vec();
        let mut s = vec![0.0; z.len() / p];
        normalize(&mut x, p, c, &mut s);
        let mut y = vec![0.0; z.len()];
        affine(&x, gamma, beta, &mut y);
        y.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
    }

    #[test]
    fn forward_matches_the_definition() {
        // One image, 4 positions, 2 channels: channel 0 = 1, 2, 3, 4;
        // channel 1 constant 5 (variance 0: x̂ = 0, y = β).
        let mut z = vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0];
        let mut s = vec![0.0; 2];
        normalize(&mut z, 4, 2, &mut s);
        let sd = (1.25f32 + NORM_EPS).sqrt();
        for (k, v) in [1.0f32, 2.0, 3.0, 4.0].iter().enumerate() {
            assert!((z[2 * k] - (v - 2.5) / sd).abs() < 1e-6, "{z:?}");
            assert_eq!(z[2 * k + 1], 0.0);
        }
        assert!((s[1] - 1.0 / NORM_EPS.sqrt()).abs() < 1e-2);
        let mut y = vec![0.0; 8];
        affine(&z, &[2.0, 3.0], &[0.5, -1.0], &mut y);
        assert!((y[0] - (2.0 * (-1.5) / sd + 0.5)).abs() < 1e-6);
        assert_eq!(y[1], -1.0);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (b, p, c) = (2, 9, 3);
        let z: Vec<f32> = values(b * p * c, 1).iter().map(|v| 2.0 * v + 0.3).collect();
        let gamma = vec![1.3, -0.7, 0.9];
        let beta = vec![0.1, 0.2, -0.3];
        let w = values(b * p * c, 2);
        let mut x = z.clone();
        let mut s = vec![0.0; b * c];
        normalize(&mut x, p, c, &mut s);
        let mut dz = w.clone();
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        backward(&mut dz, &x, &s, &gamma, p, &mut dg, &mut db);
        let h = 1e-2f32;
        for k in [0, 5, 13, 27, 40, 53] {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[k] += h;
            zm[k] -= h;
            let fd = (objective(&zp, p, &gamma, &beta, &w) - objective(&zm, p, &gamma, &beta, &w)) / (2.0 * h as f64);
            assert!(
                (fd - f64::from(dz[k])).abs() < 2e-3 * (1.0 + fd.abs()),
                "z[{k}]: {fd} vs {}",
                dz[k]
            );
        }
        for ch in 0..c {
            let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
            gp[ch] += h;
            gm[ch] -= h;
            let fd = (objective(&z, p, &gp, &beta, &w) - objective(&z, p, &gm, &beta, &w)) / (2.0 * h as f64);
            assert!((fd - f64::from(dg[ch])).abs() < 2e-3 * (1.0 + fd.abs()), "γ[{ch}]");
            let (mut bp, mut bm) = (beta.clone(), beta.clone());
            bp[ch] += h;
            bm[ch] -= h;
            let fd = (objective(&z, p, &gamma, &bp, &w) - objective(&z, p, &gamma, &bm, &w)) / (2.0 * h as f64);
            assert!((fd - f64::from(db[ch])).abs() < 2e-3 * (1.0 + fd.abs()), "β[{ch}]");
            assert!(dg[ch].abs() > 1e-3 && db[ch].abs() > 1e-3, "a vacuous check");
        }
    }
}
