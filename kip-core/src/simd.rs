//! Run-time selection of AVX-512 / AVX2 code paths for elementwise loops.
//!
//! The portable x86-64 build has only SSE2 (two `f64` lanes), and a global
//! `target-cpu=native` is no option: the binary must run on machines with
//! AVX2 only, and it made `std`'s f32 `acos` much slower. So each hot loop
//! is compiled three times and the best one the CPU supports is called.

/// Generates a function that runs `$imp` compiled for AVX-512 or AVX2+FMA
/// when the CPU has them (checked at run time, cached by std), else the
/// portable build. `$imp` must be `#[inline(always)]`. Exported for the
/// other kip crates' elementwise loops (the portable x86-64 build has only
/// SSE2, two `f64` lanes).
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:path) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                // Unsafe to call unless the CPU has the enabled features:
                // both are called only after detecting them, just below.
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { $imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { $imp($($arg),*) }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were detected just above.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { v3($($arg),*) };
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
