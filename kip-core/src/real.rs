//! The floating-point types the numeric code is generic over (`f32`,
//! `f64`): kip-nn's networks, kip-kernels' convolutional pair passes.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::Scalar;

/// A compute scalar: `f32` (about twice the throughput) or `f64`.
///
/// Built on [`Scalar`], which is sealed to exactly these two types (the
/// GEMM backend's), so `Real` is too.
pub trait Real:
    Scalar
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
