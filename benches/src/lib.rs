//! Shared fixtures for the kip benches: random inputs of the paper's shapes,
//! a bare-GEMM timer (the "GEMM floor"), medians and GFLOP/s.

use std::hint::black_box;
use std::time::Instant;

use kip_kernels::{gemm, MatMut, MatRef};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};

/// An `n × d` matrix of uniform values in [-1, 1), seeded.
pub fn random(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    DMatrix::from_fn(n, d, |_, _| rng.random_range(-1.0..1.0))
}

/// Median wall time in seconds of `reps` calls of `f` (after one warm-up).
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Median time of a bare GEMM `(m × k)·(k × n)`, the products kip's hot
/// paths run (same engine, same layouts as `A Bᵀ`).
pub fn gemm_secs(m: usize, n: usize, k: usize, reps: usize) -> f64 {
    let a = random(m, k, 1);
    let b = random(n, k, 2);
    let mut c = DMatrix::zeros(m, n);
    median_secs(reps, || {
        gemm(
            MatMut::from_dmatrix(&mut c),
            1.0,
            MatRef::from_dmatrix(&a),
            MatRef::from_dmatrix(&b).t(),
            0.0,
        );
        black_box(&c);
    })
}

/// GFLOP/s of `flops` in `secs`.
pub fn gflops(flops: f64, secs: f64) -> f64 {
    flops / secs / 1e9
}
