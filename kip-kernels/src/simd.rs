//! Branch-free elementary functions that vectorise.
//!
//! `std`'s `acos` is a scalar libm call, which over a KIP step's kernel
//! entries would cost more than its GEMMs. The fdlibm rational
//! approximation below is accurate to a few ulp, has no branches (both
//! halves are computed and selected), and so the compiler vectorises the
//! loops that call it.

// The fdlibm / musl coefficients below are quoted verbatim.
#![allow(clippy::excessive_precision)]

const PS0: f64 = 1.666_666_666_666_666_574_15e-1;
const PS1: f64 = -3.255_658_186_224_009_154_05e-1;
const PS2: f64 = 2.012_125_321_348_629_258_81e-1;
const PS3: f64 = -4.005_553_450_067_941_140_27e-2;
const PS4: f64 = 7.915_349_942_898_145_321_76e-4;
const PS5: f64 = 3.479_331_075_960_211_675_70e-5;
const QS1: f64 = -2.403_394_911_734_414_218_78;
const QS2: f64 = 2.020_945_760_233_505_694_71;
const QS3: f64 = -6.882_839_716_054_532_930_30e-1;
const QS4: f64 = 7.703_815_055_590_193_527_91e-2;

#[inline(always)]
fn rational(z: f64) -> f64 {
    let p = z * z.mul_add(z.mul_add(z.mul_add(z.mul_add(z.mul_add(PS5, PS4), PS3), PS2), PS1), PS0);
    let q = z.mul_add(z.mul_add(z.mul_add(z.mul_add(QS4, QS3), QS2), QS1), 1.0);
    p / q
}

/// `(asin x, acos x)` for `x` in `[-1, 1]`, branch-free, a few ulp.
#[inline(always)]
pub fn asin_acos(x: f64) -> (f64, f64) {
    asin_acos_by(x, rational)
}

const PS0_F32: f32 = 1.666_658_7e-1;
const PS1_F32: f32 = -4.274_342_2e-2;
const PS2_F32: f32 = -8.656_363e-3;
const QS1_F32: f32 = -7.066_296_3e-1;

/// `(asin x, acos x)` for `x` in `[-1, 1]` in single precision, branch-free
/// (fdlibm's `asinf` rational, a few ulp): the form the single-precision
/// convolutional kernels vectorise sixteen lanes wide.
#[inline(always)]
pub fn asin_acos_f32(x: f32) -> (f32, f32) {
    asin_acos_by(x, |z: f32| {
        let p = z * z.mul_add(z.mul_add(PS2_F32, PS1_F32), PS0_F32);
        p / z.mul_add(QS1_F32, 1.0)
    })
}

/// fdlibm's reduction around its rational `r(z)` (asin x = x + x·r(x²) for
/// |x| < 1/2; acos|x| = 2(s + s·r(z)), s = √z, z = (1 − |x|)/2 above),
/// both halves computed and one selected.
#[inline(always)]
fn asin_acos_by<T: kip_core::Real>(x: T, rational: impl Fn(T) -> T) -> (T, T) {
    let (half, two) = (T::of_f64(0.5), T::of_f64(2.0));
    let (frac_pi_2, pi) = (T::frac_pi_2(), T::pi());
    let ax = x.abs();
    let big = ax >= half;
    let z = if big { (T::ONE - ax) * half } else { x * x };
    let r = rational(z);
    let s = z.sqrt();
    // |x| < 0.5: asin = x + x r.
    let asin_small = x.mul_add(r, x);
    // |x| >= 0.5: asin|x| = pi/2 - 2 (s + s r), acos|x| = 2 (s + s r).
    let v = two * s.mul_add(r, s);
    let asin_big = (frac_pi_2 - v).copysign(x);
    let acos_big = if x > T::ZERO { v } else { pi - v };
    if big {
        (asin_big, acos_big)
    } else {
        (asin_small, frac_pi_2 - asin_small)
    }
}

/// `π − acos x` for `x` in `[-1, 1]` in single precision, branch-free and
/// without a division: `acos|x| = √(1 − |x|)·P(|x|)` with the degree-7
/// polynomial of Abramowitz & Stegun 4.4.46 (absolute error ≤ 2e-8 before
/// rounding), `π − acos x = acos(−x)`. The ReLU kernels' angle term in
/// single precision.
#[inline(always)]
pub fn pi_minus_acos_f32(x: f32) -> f32 {
    // The published coefficients (the first is π/2 to 9 digits, one f32
    // ulp below FRAC_PI_2: part of the fit).
    #[allow(clippy::approx_constant)]
    const A: [f32; 8] = [
        1.570_796_3,
        -0.214_598_8,
        0.088_978_99,
        -0.050_174_303,
        0.030_891_88,
        -0.017_088_126,
        0.006_670_09,
        -0.001_262_491_1,
    ];
    let ax = x.abs();
    let mut p = A[7];
    for &a in A[..7].iter().rev() {
        p = p.mul_add(ax, a);
    }
    let r = (1.0 - ax).sqrt() * p;
    if x < 0.0 {
        r
    } else {
        std::f32::consts::PI - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asin_acos_match_std_to_a_few_ulp() {
        let n = 200_001;
        let mut worst_acos: f64 = 0.0;
        let mut worst_asin: f64 = 0.0;
        for i in 0..n {
            let x = -1.0 + 2.0 * i as f64 / (n - 1) as f64;
            let (s, c) = asin_acos(x);
            worst_acos = worst_acos.max((c - x.acos()).abs() / x.acos().abs().max(1e-300));
            if x != 0.0 {
                worst_asin = worst_asin.max((s - x.asin()).abs() / x.asin().abs());
            }
        }
        for x in [
            1.0,
            -1.0,
            0.5,
            -0.5,
            1e-300,
            -1e-20,
            0.999_999_999_999,
            1.0 - f64::EPSILON,
        ] {
            let (s, c) = asin_acos(x);
            assert!(
                (c - x.acos()).abs() <= 4.0 * f64::EPSILON * x.acos().abs().max(1e-300) + 1e-300,
                "{x}"
            );
            assert!((s - x.asin()).abs() <= 4.0 * f64::EPSILON * x.asin().abs(), "{x}");
        }
        assert!(worst_acos < 1e-15, "acos rel err {worst_acos}");
        assert!(worst_asin < 1e-15, "asin rel err {worst_asin}");
    }

    #[test]
    fn asin_acos_f32_match_f64_to_a_few_ulp() {
        let n = 200_001;
        for i in 0..n {
            let x = -1.0 + 2.0 * i as f32 / (n - 1) as f32;
            let (s, c) = asin_acos_f32(x);
            let (s64, c64) = (f64::from(x).asin(), f64::from(x).acos());
            assert!(
                (f64::from(c) - c64).abs() <= 4.0 * f64::from(f32::EPSILON) * c64.abs().max(1e-30),
                "acos {x}"
            );
            assert!(
                (f64::from(s) - s64).abs() <= 4.0 * f64::from(f32::EPSILON) * s64.abs().max(1e-30),
                "asin {x}"
            );
        }
    }

    #[test]
    fn pi_minus_acos_f32_is_accurate_to_a_few_1e_7() {
        let n = 200_001;
        let mut worst: f64 = 0.0;
        for i in 0..n {
            let x = -1.0 + 2.0 * i as f32 / (n - 1) as f32;
            let want = std::f64::consts::PI - f64::from(x).acos();
            worst = worst.max((f64::from(pi_minus_acos_f32(x)) - want).abs());
        }
        assert!(worst < 4e-7, "abs err {worst}");
        assert_eq!(pi_minus_acos_f32(1.0), std::f32::consts::PI);
        assert_eq!(pi_minus_acos_f32(-1.0), 0.0);
    }
}
