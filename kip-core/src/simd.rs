//! Run-time selection of AVX-512 / AVX2 code paths for elementwise loops.
//!
//! The portable x86-64 build has only SSE2 (two `f64` lanes), and a global
//! `target-cpu=native` is no option: the binary must run on machines with
//! AVX2 only, and it made `std`'s f32 `acos` much slower. So each hot loop
//! is compiled three times and the best one the CPU supports is called.

use std::sync::OnceLock;

/// The environment variable that caps the instruction set of kip's own
/// loops: `avx512` (no cap), `avx2` or `scalar` (the portable build). For
/// testing and measuring the AVX2 and portable paths on an AVX-512 host;
/// the `gemm` crate's products keep their own dispatch.
pub const SIMD_ENV: &str = "KIP_SIMD";

/// The instruction sets kip's elementwise loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The portable x86-64 build (SSE2), or any other architecture.
    Scalar,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, DQ, VL) with AVX2 and FMA.
    Avx512,
}

impl SimdLevel {
    /// The name [`SIMD_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// The best level this CPU supports (run-time detection).
pub fn detected_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        let v3 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        if v3
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
        {
            return SimdLevel::Avx512;
        }
        if v3 {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Scalar
}

/// The cap [`SIMD_ENV`] asks for: `Ok(None)` when unset, an error naming
/// the value when it is not one of `avx512`, `avx2`, `scalar`.
///
/// # Errors
/// The message for a front end to show.
pub fn simd_cap() -> Result<Option<SimdLevel>, String> {
    match std::env::var(SIMD_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) => match v.as_str() {
            "avx512" => Ok(Some(SimdLevel::Avx512)),
            "avx2" => Ok(Some(SimdLevel::Avx2)),
            "scalar" => Ok(Some(SimdLevel::Scalar)),
            other => Err(format!("{SIMD_ENV}={other}: expected avx512, avx2 or scalar")),
        },
        Err(e) => Err(format!("{SIMD_ENV}: {e}")),
    }
}

/// The level kip's loops run at: the detected one, capped by
/// [`SIMD_ENV`] (an invalid value caps nothing; front ends check it with
/// [`simd_cap`] first). Read once per process.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = detected_simd_level();
        match simd_cap() {
            Ok(Some(cap)) => detected.min(cap),
            _ => detected,
        }
    })
}

/// Generates a function that runs `$imp` compiled for AVX-512 or AVX2+FMA
/// when the CPU has them (checked at run time, once; capped by
/// [`SIMD_ENV`]), else the portable build. `$imp` must be
/// `#[inline(always)]`. Exported for the other kip crates' elementwise
/// loops (the portable x86-64 build has only SSE2, two `f64` lanes).
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:path) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                // Unsafe to call unless the CPU has the enabled features:
                // `simd_level` returns a level only after detecting every
                // feature it enables.
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { $imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { $imp($($arg),*) }
                match $crate::simd_level() {
                    // SAFETY: avx512f/dq/vl, avx2 and fma were detected.
                    $crate::SimdLevel::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: avx2 and fma were detected.
                    $crate::SimdLevel::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::SimdLevel::Scalar => {}
                }
            }
            $imp($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    #[inline(always)]
    fn sum_sq_impl(x: &[f64]) -> f64 {
        x.iter().map(|v| v * v).sum()
    }

    crate::multiversion! {
        /// Σ x² on the best instruction set.
        fn sum_sq(x: &[f64]) -> f64 => sum_sq_impl
    }

    #[test]
    fn every_path_computes_the_portable_result() {
        let x: Vec<f64> = (0..1001).map(|i| f64::from(i) * 0.5).collect();
        assert_eq!(sum_sq(&x), sum_sq_impl(&x));
    }
}
