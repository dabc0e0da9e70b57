//! The floating-point types the pair passes run in: `f64` (exact to the
//! reference) or `f32` (spec parameter `precision=f32`: sixteen lanes per
//! AVX-512 vector instead of eight, cheaper square roots and divisions;
//! kernel values to about 1e-6 relative, more near collinear entries,
//! where the arc-cosine's square-root singularity meets f32 rounding).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

use crate::simd::{asin_acos, asin_acos_f32, pi_minus_acos_f32};

/// What the conv passes need of a float type.
pub(crate) trait Real:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
    + Into<f64>
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Cosines within this of ±1 (`1 − c² ≤ tol`) are snapped to ±1 (see
    /// [`crate::fc::COLLINEAR_TOL`] for f64; f32 rounding moves an image's
    /// own cosine by a few 1e-7).
    const COLLINEAR_TOL: Self;
    /// The smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// The nearest value of this type.
    fn of(v: f64) -> Self;
    /// `self·a + b`, one rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// The magnitude of `self` with the sign of `sign`.
    fn copysign(self, sign: Self) -> Self;
    /// `self` clamped to `[lo, hi]`.
    fn clamp(self, lo: Self, hi: Self) -> Self;
    /// The larger of the two.
    fn max(self, o: Self) -> Self;
    /// `(asin x, acos x)`, branch-free, a few ulp ([`crate::simd`]).
    fn asin_acos(self) -> (Self, Self);
    /// `π − acos x` (the ReLU's angle term), branch-free.
    fn pi_minus_acos(self) -> Self;
    /// `Σ x` as f64 (the readouts).
    fn sum(x: &[Self]) -> f64;
}

macro_rules! real {
    ($t:ty, $tol:expr, $acos:path, $pma:expr, $sum:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const COLLINEAR_TOL: Self = $tol;
            const MIN_POSITIVE: Self = <$t>::MIN_POSITIVE;
            #[inline(always)]
            fn of(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn copysign(self, sign: Self) -> Self {
                <$t>::copysign(self, sign)
            }
            #[inline(always)]
            fn clamp(self, lo: Self, hi: Self) -> Self {
                <$t>::clamp(self, lo, hi)
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
            #[inline(always)]
            fn asin_acos(self) -> (Self, Self) {
                $acos(self)
            }
            #[inline(always)]
            fn pi_minus_acos(self) -> Self {
                $pma(self)
            }
            #[inline(always)]
            fn sum(x: &[Self]) -> f64 {
                $sum(x)
            }
        }
    };
}

real!(
    f64,
    crate::fc::COLLINEAR_TOL,
    asin_acos,
    |x: f64| std::f64::consts::PI - asin_acos(x).1,
    kip_core::sum
);
real!(f32, 2e-6, asin_acos_f32, pi_minus_acos_f32, sum_f32);

/// `Σ x` of f32 values: sixteen f32 partial sums (one vector), then their
/// f64 total — error about √(n/16) f32 roundings of the partial sums,
/// below the f32 passes' own.
#[inline(always)]
fn sum_f32(x: &[f32]) -> f64 {
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
