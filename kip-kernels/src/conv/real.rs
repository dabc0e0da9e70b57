//! The floating-point types the pair passes run in: `f64` (exact to the
//! reference) or `f32` (spec parameter `precision=f32`: sixteen lanes per
//! AVX-512 vector instead of eight, cheaper square roots and divisions;
//! kernel values to about 1e-6 relative, more near collinear entries,
//! where the arc-cosine's square-root singularity meets f32 rounding).

use crate::simd::{asin_acos, asin_acos_f32, pi_minus_acos_f32};

/// What the conv passes need of a float type beyond [`kip_core::Real`]
/// (arithmetic, `sqrt`, `mul_add`, `copysign`, `clamp`, `max`, `ZERO`,
/// `ONE`).
pub(crate) trait Real: kip_core::Real + Into<f64> + 'static {
    /// Cosines within this of ±1 (`1 − c² ≤ tol`) are snapped to ±1 (see
    /// [`crate::fc::COLLINEAR_TOL`] for f64; f32 rounding moves an image's
    /// own cosine by a few 1e-7).
    const COLLINEAR_TOL: Self;
    /// The smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// The nearest value of this type.
    #[inline(always)]
    fn of(v: f64) -> Self {
        Self::of_f64(v)
    }
    /// `(asin x, acos x)`, branch-free, a few ulp ([`crate::simd`]).
    fn asin_acos(self) -> (Self, Self);
    /// `π − acos x` (the ReLU's angle term), branch-free.
    fn pi_minus_acos(self) -> Self;
    /// `Σ x` as f64 (the readouts).
    fn total(x: &[Self]) -> f64;
}

impl Real for f64 {
    const COLLINEAR_TOL: Self = crate::fc::COLLINEAR_TOL;
    const MIN_POSITIVE: Self = f64::MIN_POSITIVE;
    #[inline(always)]
    fn asin_acos(self) -> (Self, Self) {
        asin_acos(self)
    }
    #[inline(always)]
    fn pi_minus_acos(self) -> Self {
        std::f64::consts::PI - asin_acos(self).1
    }
    #[inline(always)]
    fn total(x: &[Self]) -> f64 {
        kip_core::sum(x)
    }
}

impl Real for f32 {
    const COLLINEAR_TOL: Self = 2e-6;
    const MIN_POSITIVE: Self = f32::MIN_POSITIVE;
    #[inline(always)]
    fn asin_acos(self) -> (Self, Self) {
        asin_acos_f32(self)
    }
    #[inline(always)]
    fn pi_minus_acos(self) -> Self {
        pi_minus_acos_f32(self)
    }
    /// Sixteen f32 partial sums (one vector), then their f64 total — error
    /// about √(n/16) f32 roundings of the partial sums, below the f32
    /// passes' own.
    #[inline(always)]
    fn total(x: &[Self]) -> f64 {
        let mut acc = [0.0f32; 16];
        let chunks = x.chunks_exact(16);
        let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
        for c in chunks {
            for k in 0..16 {
                acc[k] += c[k];
            }
        }
        acc.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
    }
}

/// The cosine `c1` made safe, as [`crate::fc::snapped_cos`] (the same
/// operations in f64): within the type's collinear tolerance of ±1 it is
/// ±1 with `sin θ = 0`; otherwise `(c1, √(1 − c1²))`.
#[inline(always)]
pub(crate) fn snapped_cos<T: Real>(c1: T) -> (T, T) {
    let one_m = (-c1).mul_add(c1, T::ONE);
    let snap = one_m <= T::COLLINEAR_TOL;
    let c = if snap { T::ONE.copysign(c1) } else { c1 };
    let sin = if snap { T::ZERO } else { one_m.sqrt() };
    (c, sin)
}
