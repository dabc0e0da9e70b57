//! The activation layers at one covariance entry: forward (NNGP and NTK
//! maps) and backward (cotangents of the entry, of its NTK value and of
//! the two variances), ReLU and Erf, with neural-tangents' formulas.
//!
//! ```text
//! ReLU: F = √(vₐv_b)·(sin θ + (π−θ) cos θ)/(2π),  Ḟ = (π−θ)/(2π),  cos θ = q/√(vₐv_b)
//! Erf:  F = (2/π)·asin(2q/√((1+2vₐ)(1+2v_b))),   Ḟ = (4/π)/√((1+2vₐ)(1+2v_b) − 4q²)
//! NTK:  Θ' = Θ·Ḟ
//! ```
//!
//! Per image and layer the caller keeps two numbers per position
//! ([`cache_of`]): ReLU `(√v, 1/√v)` (`1/√v = 0` where `v = 0`), Erf
//! `(√(1+2v), 1/√(1+2v))`. Collinear entries are snapped as the FC kernels
//! do ([`crate::fc::COLLINEAR_TOL`]): the singular terms are zero.

use std::f64::consts::PI;

use super::real::{snapped_cos, Real};

const INV_2PI: f64 = 1.0 / (2.0 * PI);
const INV_4PI: f64 = 1.0 / (4.0 * PI);

/// Which activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    Relu,
    Erf,
}

/// The two cached numbers of a position with variance `v`.
#[inline(always)]
pub(crate) fn cache_of<T: Real>(act: Act, v: T) -> (T, T) {
    match act {
        Act::Relu => {
            if v > T::ZERO {
                let s = v.sqrt();
                (s, T::ONE / s)
            } else {
                (T::ZERO, T::ZERO)
            }
        }
        Act::Erf => {
            let s = (T::ONE + T::of(2.0) * v).sqrt();
            (s, T::ONE / s)
        }
    }
}

/// The Erf layer's `D = (1 + 2vₐ)(1 + 2v_b) − 4q²` (kept positive) and
/// `Ḟ = (4/π)/√D`.
#[inline(always)]
fn erf_d<T: Real>(q: T, a0: T, b0: T) -> (T, T) {
    let ab = (a0 * a0) * (b0 * b0);
    let dd = (T::of(-4.0) * q).mul_add(q, ab).max(T::MIN_POSITIVE);
    (dd, T::of(4.0 / PI) / dd.sqrt())
}

/// The ReLU layer's terms shared by the forward and its coefficients:
/// `(F, Ḟ, cos θ, sin θ, 1/(√(vₐv_b)))`.
#[inline(always)]
fn relu_terms<T: Real>(q: T, a0: T, a1: T, b0: T, b1: T) -> (T, T, T, T, T) {
    let ab1 = a1 * b1;
    let (c, sin) = snapped_cos(q * ab1);
    let fd = c.pi_minus_acos() * T::of(INV_2PI);
    // F = √(vₐv_b)·(sin θ + (π−θ) cos θ)/(2π), with Ḟ = (π−θ)/(2π).
    let f = (a0 * b0) * fd.mul_add(c, sin * T::of(INV_2PI));
    (f, fd, c, sin, ab1)
}

/// Forward at one entry: `(F, Ḟ)` from `q` and both sides' caches.
#[inline(always)]
pub(crate) fn forward<T: Real>(act: Act, q: T, a0: T, a1: T, b0: T, b1: T) -> (T, T) {
    match act {
        Act::Relu => {
            let (f, fd, ..) = relu_terms(q, a0, a1, b0, b1);
            (f, fd)
        }
        Act::Erf => {
            let z = (T::of(2.0) * q * a1 * b1).clamp(-T::ONE, T::ONE);
            (T::of(2.0 / PI) * z.asin_acos().0, erf_d(q, a0, b0).1)
        }
    }
}

/// The forward at one entry with what its backward needs from the row
/// side: `(F, Ḟ, Θ·∂Ḟ/∂q, ∂F/∂vₐ, Θ·∂Ḟ/∂vₐ)` — so the pair's backward is
/// `gq ← gq·Ḟ + gΘ·(Θ∂Ḟ/∂q)`, `gΘ ← gΘ·Ḟ`, `gvₐ += gq·∂F/∂vₐ +
/// gΘ·(Θ∂Ḟ/∂vₐ)` with no transcendental function.
#[inline(always)]
pub(crate) fn forward_coefs<T: Real>(act: Act, q: T, t: T, a0: T, a1: T, b0: T, b1: T) -> [T; 5] {
    match act {
        Act::Relu => {
            let (f, fd, c, sin, ab1) = relu_terms(q, a0, a1, b0, b1);
            // u = Θ/(2π sin θ): Θ∂Ḟ/∂q = u/√(vₐv_b), Θ∂Ḟ/∂vₐ = −u·cos θ/(2vₐ);
            // ∂F/∂vₐ = sin θ·√v_b/(4π√vₐ).
            let u = t * if sin > T::ZERO { T::of(INV_2PI) / sin } else { T::ZERO };
            let tq = u * ab1;
            let fa = (sin * T::of(INV_4PI)) * (b0 * a1);
            let tv = (u * c) * (a1 * a1 * T::of(-0.5));
            [f, fd, tq, fa, tv]
        }
        Act::Erf => {
            let z = (T::of(2.0) * q * a1 * b1).clamp(-T::ONE, T::ONE);
            let (dd, fd) = erf_d(q, a0, b0);
            let f = T::of(2.0 / PI) * z.asin_acos().0;
            [
                f,
                fd,
                t * fd * T::of(4.0) * q / dd,
                -fd * q * a1 * a1,
                -t * fd * b0 * b0 / dd,
            ]
        }
    }
}

/// Cotangents through one entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryGrad<T> {
    /// Of the input `q`.
    pub(crate) q: T,
    /// Of the row side's variance.
    pub(crate) va: T,
    /// Of the column side's variance.
    pub(crate) vb: T,
}

/// Backward at one entry: from the cotangents `gq` of `F` and `gt` of
/// `Θ' = Θ·Ḟ`, with the forward's inputs `q`, `t` and the caches (the
/// cotangent of `Θ` itself is `gt·Ḟ`). The pair backward reads the same
/// terms from [`forward_coefs`]; this form serves the self pass and the
/// tests.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Real>(act: Act, q: T, t: T, gq: T, gt: T, a0: T, a1: T, b0: T, b1: T) -> EntryGrad<T> {
    match act {
        Act::Relu => {
            let (_, fd, c, sin, _) = relu_terms(q, a0, a1, b0, b1);
            let inv_sin = if sin > T::ZERO { T::ONE / sin } else { T::ZERO };
            let gtt = gt * t;
            // ∂Ḟ/∂q = 1/(2π √(vₐv_b) sin θ); ∂F/∂vₐ = sin θ √v_b/(4π √vₐ);
            // ∂Ḟ/∂vₐ = −cos θ/(4π vₐ sin θ).
            let dfd_dq = T::of(INV_2PI) * a1 * b1 * inv_sin;
            let s4 = sin * T::of(INV_4PI);
            let c4 = c * T::of(INV_4PI) * inv_sin;
            EntryGrad {
                q: gq.mul_add(fd, gtt * dfd_dq),
                va: gq * s4 * b0 * a1 - gtt * c4 * a1 * a1,
                vb: gq * s4 * a0 * b1 - gtt * c4 * b1 * b1,
            }
        }
        Act::Erf => {
            let (dd, fd) = erf_d(q, a0, b0);
            let gtt = gt * t;
            // ∂F/∂q = Ḟ; ∂Ḟ/∂q = 4qḞ/D; ∂F/∂vₐ = −Ḟq/(1+2vₐ); ∂Ḟ/∂vₐ = −Ḟ(1+2v_b)/D.
            EntryGrad {
                q: fd * gq.mul_add(T::ONE, gtt * T::of(4.0) * q / dd),
                va: -fd * (gq * q * a1 * a1 + gtt * b0 * b0 / dd),
                vb: -fd * (gq * q * b1 * b1 + gtt * a0 * a0 / dd),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic partials against central differences of `forward`,
    /// away from the singular points.
    #[test]
    fn entry_partials_match_central_differences() {
        for act in [Act::Relu, Act::Erf] {
            for &(q, va, vb, t) in &[(0.3, 1.0, 0.8, 0.7), (-0.5, 2.0, 0.6, 1.3), (0.05, 0.2, 0.3, 0.4)] {
                let f = |q: f64, va: f64, vb: f64| {
                    let (a0, a1) = cache_of(act, va);
                    let (b0, b1) = cache_of(act, vb);
                    let (f, fd) = forward(act, q, a0, a1, b0, b1);
                    (f, t * fd)
                };
                let (gq, gt) = (0.9, -1.7);
                let (a0, a1) = cache_of(act, va);
                let (b0, b1) = cache_of(act, vb);
                let g = backward(act, q, t, gq, gt, a0, a1, b0, b1);
                let h = 1e-6;
                let fd = |d: (f64, f64, f64)| {
                    let p = f(q + d.0, va + d.1, vb + d.2);
                    let m = f(q - d.0, va - d.1, vb - d.2);
                    (gq * (p.0 - m.0) + gt * (p.1 - m.1)) / (2.0 * h)
                };
                // The coefficient form gives the same cotangents.
                let [f2, fd2, tq, fa, tv] = forward_coefs(act, q, t, a0, a1, b0, b1);
                assert_eq!((f2, fd2), forward(act, q, a0, a1, b0, b1));
                let cq = gq * fd2 + gt * tq;
                let cva = gq * fa + gt * tv;
                assert!(
                    (cq - g.q).abs() <= 1e-14 * (1.0 + g.q.abs()) && (cva - g.va).abs() <= 1e-14 * (1.0 + g.va.abs())
                );
                for (got, want, what) in [
                    (g.q, fd((h, 0.0, 0.0)), "q"),
                    (g.va, fd((0.0, h, 0.0)), "va"),
                    (g.vb, fd((0.0, 0.0, h)), "vb"),
                ] {
                    assert!(
                        (got - want).abs() < 1e-7 * (1.0 + want.abs()),
                        "{act:?} {what}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn collinear_and_zero_entries_are_finite() {
        for act in [Act::Relu, Act::Erf] {
            for &(q, va, vb) in &[(1.0, 1.0, 1.0), (-2.0, 1.0, 4.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0)] {
                let (a0, a1) = cache_of(act, va);
                let (b0, b1) = cache_of(act, vb);
                let (f, fd) = forward(act, q, a0, a1, b0, b1);
                let g = backward(act, q, 1.0f64, 1.0, 1.0, a0, a1, b0, b1);
                for v in [f, fd, g.q, g.va, g.vb] {
                    assert!(v.is_finite(), "{act:?} {q} {va} {vb}");
                }
            }
        }
    }
}
