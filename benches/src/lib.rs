//! Shared fixtures for the kip benches: random inputs of the paper's shapes,
//! the criterion group settings, a bare-GEMM timer (the "GEMM floor"),
//! medians and GFLOP/s, the machine's FMA peak ([`peak`]).

pub mod peak;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use kip_core::{gemm, MatMut, MatRef, Scalar};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};

/// An `n × d` matrix of uniform values in [-1, 1), seeded.
pub fn random(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    DMatrix::from_fn(n, d, |_, _| rng.random_range(-1.0..1.0))
}

/// The paper's Gram/VJP shapes `(n1, n2, d)`: 5,000 points against 100 or
/// 1,000, of MNIST (784) or CIFAR-10 (3,072) dimensions.
pub const KERNEL_SHAPES: &[(usize, usize, usize)] = &[(5000, 100, 784), (5000, 1000, 784), (5000, 1000, 3072)];

/// The two point sets of a kernel shape: `a` (`n1 × d`, seed 1) and `b`
/// (`n2 × d`, seed 2).
pub fn kernel_inputs(n1: usize, n2: usize, d: usize) -> (DMatrix<f64>, DMatrix<f64>) {
    (random(n1, d, 1), random(n2, d, 2))
}

/// A criterion group for iterations of milliseconds to seconds: 10 samples
/// after 1 s of warm-up, `measurement` of measuring.
pub fn slow_group<'a>(c: &'a mut Criterion, name: &str, measurement: Duration) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    group
}

/// Median wall time in seconds of `reps` calls of `f` (after one warm-up).
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Median time of a bare GEMM `(m × k)·(k × n)`, the products kip's hot
/// paths run (same engine, same layouts as `A Bᵀ`).
pub fn gemm_secs(m: usize, n: usize, k: usize, reps: usize) -> f64 {
    gemm_secs_in::<f64>(m, n, k, reps)
}

/// [`gemm_secs`] in the element type `T` (`f32` for the single-precision
/// floors).
pub fn gemm_secs_in<T: Scalar + nalgebra::Scalar>(m: usize, n: usize, k: usize, reps: usize) -> f64 {
    median_secs(reps, gemm_job::<T>(m, n, k))
}

/// A bare GEMM `(m × k)·(k × n)` ready to run again and again (inputs and
/// output allocated and touched once): the floor the benches compare with.
pub fn gemm_job<T: Scalar + nalgebra::Scalar>(m: usize, n: usize, k: usize) -> impl FnMut() {
    let (a, b) = kernel_inputs(m, n, k);
    let (a, b) = (a.map(T::of_f64), b.map(T::of_f64));
    let mut c = DMatrix::from_element(m, n, T::ZERO);
    let one = T::of_f64(1.0);
    move || {
        gemm(
            one,
            MatRef::from(&a),
            MatRef::from(&b).t(),
            T::ZERO,
            MatMut::from(&mut c),
        );
        black_box(&c);
    }
}

/// Median wall times of `floor` and `f`, `reps` calls each (after one
/// warm-up of each), timed in alternation: this VM's speed drifts by ±10%
/// over seconds, and alternating moves both medians alike, so their ratio
/// is steadier than that of two medians taken one after the other.
pub fn paired_median_secs(reps: usize, floor: impl FnMut(), f: impl FnMut()) -> (f64, f64) {
    let (tf, tg) = paired_samples(reps, floor, f);
    (median(tf), median(tg))
}

/// Time per product for [`paired_ratio`] in the gram and vjp benches: the
/// 100-column shapes get ~100 pairs, the largest the minimum.
pub const PAIRED_BUDGET: Duration = Duration::from_secs(2);

/// A product timed in alternation with its floor ([`paired_ratio`]).
#[derive(Clone, Copy, Debug)]
pub struct Paired {
    /// Median wall time of the floor, seconds.
    pub floor: f64,
    /// Median wall time of the product, seconds.
    pub time: f64,
    /// Median over the pairs of product time / floor time: each pair is
    /// timed back to back, so the VM's drift cancels within a pair.
    pub ratio: f64,
}

/// [`paired_median_secs`] over as many pairs as fit in `budget` (at least
/// `min_reps`, at most 201), with the median of the per-pair ratios.
pub fn paired_ratio(budget: Duration, min_reps: usize, mut floor: impl FnMut(), mut f: impl FnMut()) -> Paired {
    let s = Instant::now();
    floor();
    f();
    let reps = ((budget.as_secs_f64() / s.elapsed().as_secs_f64()) as usize).clamp(min_reps, 201);
    let (tf, tg) = paired_samples(reps, floor, f);
    let ratios = tf.iter().zip(&tg).map(|(a, b)| b / a).collect();
    Paired {
        floor: median(tf),
        time: median(tg),
        ratio: median(ratios),
    }
}

/// Wall times of `reps` alternating calls of `floor` and `f`, after one
/// warm-up of each.
fn paired_samples(reps: usize, mut floor: impl FnMut(), mut f: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    floor();
    f();
    let (mut tf, mut tg) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let s = Instant::now();
        floor();
        tf.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        f();
        tg.push(s.elapsed().as_secs_f64());
    }
    (tf, tg)
}

/// The median of `t` (the upper one for an even length).
fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// GFLOP/s of `flops` in `secs`.
pub fn gflops(flops: f64, secs: f64) -> f64 {
    flops / secs / 1e9
}
