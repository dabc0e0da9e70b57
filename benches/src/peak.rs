//! The machine's floating-point ceiling: fused multiply-add throughput with
//! the widest vectors the CPU has (AVX-512, else AVX2+FMA), twelve
//! independent accumulator chains (enough to cover the FMA latency on
//! current x86 cores). The `peak` bench prints it; `kip_step` prints each
//! step's fraction of it.

use std::hint::black_box;
use std::time::Instant;

/// FMAs per accumulator per call of a kernel.
const ITERS: u64 = 20_000_000;
/// Independent accumulators (vector registers) per kernel.
const ACC: usize = 12;

/// Which kernel the CPU supports: `(vector bits, name)`.
pub fn widest() -> (u32, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return (512, "AVX-512");
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return (256, "AVX2+FMA");
        }
    }
    (0, "none (no x86 FMA vectors)")
}

/// Flops of `ITERS` rounds of `ACC` vector FMAs of `lanes` lanes.
fn flops(lanes: u32) -> f64 {
    2.0 * ITERS as f64 * ACC as f64 * f64::from(lanes)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ACC, ITERS};

    macro_rules! fma_loop {
        ($name:ident, $feat:literal, $ty:ty, $set1:ident, $fma:ident, $add:ident, $store:ident, $elem:ty, $lanes:expr) => {
            /// `ITERS` rounds of `ACC` independent FMAs; returns a checksum.
            ///
            /// # Safety
            /// The CPU must have the target features.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name() -> f64 {
                let seed: $elem = std::hint::black_box(0.999_999);
                let x = $set1(seed);
                let y = $set1(1.0 - seed);
                let mut a: [$ty; ACC] = [$set1(0.5); ACC];
                for i in 0..ACC {
                    a[i] = $set1(i as $elem * 0.01);
                }
                for _ in 0..ITERS {
                    for acc in a.iter_mut() {
                        *acc = $fma(*acc, x, y);
                    }
                }
                let mut s = a[0];
                for acc in &a[1..] {
                    s = $add(s, *acc);
                }
                let mut out = [0.0 as $elem; $lanes];
                $store(out.as_mut_ptr(), s);
                f64::from(out.iter().sum::<$elem>())
            }
        };
    }

    fma_loop!(
        f64_512,
        "avx512f",
        __m512d,
        _mm512_set1_pd,
        _mm512_fmadd_pd,
        _mm512_add_pd,
        _mm512_storeu_pd,
        f64,
        8
    );
    fma_loop!(
        f32_512,
        "avx512f",
        __m512,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps,
        f32,
        16
    );
    fma_loop!(
        f64_256,
        "avx2,fma",
        __m256d,
        _mm256_set1_pd,
        _mm256_fmadd_pd,
        _mm256_add_pd,
        _mm256_storeu_pd,
        f64,
        4
    );
    fma_loop!(
        f32_256,
        "avx2,fma",
        __m256,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps,
        f32,
        8
    );
}

/// One run of the widest kernel of element type `f64` (`double`) or `f32`
/// on the calling thread; returns its flops.
pub fn run_once(bits: u32, double: bool) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let (kernel, lanes): (unsafe fn() -> f64, u32) = match (bits, double) {
            (512, true) => (x86::f64_512, 8),
            (512, false) => (x86::f32_512, 16),
            (256, true) => (x86::f64_256, 4),
            (256, false) => (x86::f32_256, 8),
            _ => return 0.0,
        };
        // SAFETY: `bits` comes from `widest()`, which checked the features.
        black_box(unsafe { kernel() });
        flops(lanes)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (bits, double);
        0.0
    }
}

/// Best GFLOP/s over `reps` runs with `threads` threads running at once.
pub fn peak(bits: u32, double: bool, threads: usize, reps: usize) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            let total: f64 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| run_once(bits, double))).collect();
                hs.into_iter().map(|h| h.join().expect("FMA thread")).sum()
            });
            total / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// The all-core peak in GFLOP/s of `f64` (`double`) or `f32` FMAs (best of
/// 5 runs), or `None` without x86 FMA vectors.
pub fn all_core_peak(double: bool) -> Option<f64> {
    let (bits, _) = widest();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (bits > 0).then(|| peak(bits, double, cores, 5))
}

/// Flops of one KIP step at `(n_s, n_t, d)`: the two big products and the
/// support's Gram and gradient products, `4·n_t·n_s·d + 4·n_s²·d`.
pub fn step_flops(n_s: usize, n_t: usize, d: usize) -> f64 {
    (4 * n_t * n_s * d + 4 * n_s * n_s * d) as f64
}
