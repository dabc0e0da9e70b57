//! Shared fixtures for the integration tests.
#![allow(dead_code)]

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n × d` points with entries uniform in [−√3, √3] (unit variance).
pub fn points(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = 3f64.sqrt();
    DMatrix::from_fn(n, d, |_, _| rng.random_range(-s..s))
}

/// Random class ids and their centred one-hot targets.
pub fn labels(n: usize, c: usize, seed: u64) -> (Vec<usize>, DMatrix<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let l: Vec<usize> = (0..n).map(|_| rng.random_range(0..c)).collect();
    let y = DMatrix::from_fn(n, c, |i, j| f64::from(u8::from(l[i] == j)) - 1.0 / c as f64);
    (l, y)
}

/// max|a − b| / max|b|.
pub fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    (a - b).abs().max() / b.abs().max()
}
