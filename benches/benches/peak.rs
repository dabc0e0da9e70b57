//! The machine's floating-point ceiling: fused multiply-add throughput of
//! one core and of every core, in `f64` and `f32`, with the widest vectors
//! the CPU has (AVX-512, else AVX2+FMA), twelve independent accumulator
//! chains (enough to cover the FMA latency on current x86 cores).
//!
//! This is the "hardware limit" of the performance issue made measurable:
//! it prints the peak and, for each `kip_step` shape, the flops of one step
//! (`4·n_t·n_s·d + 4·n_s²·d`) and the time that step would take at 100% of
//! the f64 / f32 peak of all cores, next to the required times. A
//! required time below the at-peak time cannot be met on this machine by
//! any implementation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kip_benches::slow_group;

/// FMAs per accumulator per call of a kernel.
const ITERS: u64 = 20_000_000;
/// Independent accumulators (vector registers) per kernel.
const ACC: usize = 12;

/// Which kernel the CPU supports: `(vector bits, name)`.
fn widest() -> (u32, &'static str) {
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
fn run_once(bits: u32, double: bool) -> f64 {
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
fn peak(bits: u32, double: bool, threads: usize, reps: usize) -> f64 {
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

/// The issue's `kip_step` rows: `(precision is f64, n_s, n_t, d, required ms)`.
const STEPS: &[(bool, usize, usize, usize, f64)] = &[
    (true, 100, 5000, 784, 12.0),
    (true, 1000, 5000, 784, 125.0),
    (true, 100, 5000, 3072, 45.0),
    (false, 100, 5000, 784, 6.0),
];

fn bench(c: &mut Criterion) {
    let (bits, name) = widest();
    if bits == 0 {
        println!("peak: {name}; nothing to measure");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all = [0.0; 2];
    for (k, double) in [true, false].into_iter().enumerate() {
        let one = peak(bits, double, 1, 5);
        all[k] = peak(bits, double, cores, 5);
        println!(
            "peak {} {name}: {one:.1} GFLOP/s on 1 core, {:.1} on {cores} cores",
            if double { "f64" } else { "f32" },
            all[k]
        );
    }
    for &(double, n_s, n_t, d, required) in STEPS {
        let f = (4 * n_t * n_s * d + 4 * n_s * n_s * d) as f64;
        let at_peak = f / (all[usize::from(!double)] * 1e9) * 1e3;
        println!(
            "kip_step {} ({n_s}, {n_t}, {d}): {:.2} GFLOP; at 100% of the {cores}-core peak {at_peak:.1} ms; required {required:.0} ms{}",
            if double { "f64" } else { "f32" },
            f / 1e9,
            if at_peak > required { " (below the hardware floor)" } else { "" }
        );
    }
    let mut group = slow_group(c, "peak", Duration::from_secs(3));
    group.bench_function("fma-f64-1-core", |b| b.iter(|| run_once(bits, true)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
