//! The floating-point types the networks compute in (`f32`, `f64`).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A compute scalar: `f32` (the training default: about twice the GEMM
/// throughput) or `f64` (used by the gradient check).
///
/// Built on [`kip_core::Scalar`], which is sealed to exactly these two
/// types (the GEMM backend's), so `Real` is too.
pub trait Real:
    kip_core::Scalar
    + nalgebra::RealField
    + Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
}

impl Real for f32 {}
impl Real for f64 {}
