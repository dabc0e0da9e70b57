//! KRR fit + blocked prediction through kip-krr's public API: FC1 NTK
//! (W_std = √2, b_std = 0.1), float64, n_s ∈ {100, 1000} support points,
//! 10,000 test points of 784 dims (MNIST-sized), 10 classes.
//!
//! One iteration: K_ss (gram_sym), fit (trace-scaled ridge, Cholesky),
//! predict_blocked (blocks of 2,000 test points). Flop model:
//! 2·n_s²·d + 2·n_t·n_s·d (the two GEMMs) + n_s³/3 + 2·n_s²·C (solve)
//! and 2·n_t·n_s·C (prediction). Criterion's throughput is in these flops
//! (so "Gelem/s" reads as GFLOP/s), and a direct GFLOP/s line is printed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kip_kernels::{points, Kernel, KernelSpec};
use kip_krr::{fit, predict_blocked, Ridge};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};

const D: usize = 784;
const N_TEST: usize = 10_000;
const C: usize = 10;
const BLOCK: usize = 2_000;

fn random(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    DMatrix::from_fn(n, d, |_, _| rng.random_range(-1.0..1.0))
}

fn flops(n_s: usize) -> f64 {
    let (s, t, d, c) = (n_s as f64, N_TEST as f64, D as f64, C as f64);
    2.0 * s * s * d + 2.0 * t * s * d + s * s * s / 3.0 + 2.0 * s * s * c + 2.0 * t * s * c
}

fn fit_predict(kernel: &dyn Kernel, x_s: &DMatrix<f64>, y_s: &DMatrix<f64>, x_t: &DMatrix<f64>) -> DMatrix<f64> {
    let k_ss = kernel.gram_sym(x_s).unwrap();
    let model = fit(&k_ss, y_s, Ridge::default()).unwrap();
    predict_blocked(kernel, points(x_s), &model.alpha, points(x_t), BLOCK).unwrap()
}

fn bench(c: &mut Criterion) {
    let kernel = KernelSpec::fc_ntk(1).build();
    let x_t = random(N_TEST, D, 1);
    let mut group = c.benchmark_group("krr_fit_predict");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n_s in [100, 1000] {
        let x_s = random(n_s, D, 2);
        let y_s = random(n_s, C, 3);
        // Direct GFLOP/s figure (median of 5).
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(fit_predict(&kernel, &x_s, &y_s, &x_t));
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "krr_fit_predict n_s={n_s} n_t={N_TEST} d={D}: {:.1} ms, {:.1} GFLOP/s ({} rayon threads)",
            times[2] * 1e3,
            flops(n_s) / times[2] / 1e9,
            rayon::current_num_threads()
        );
        group.throughput(Throughput::Elements(flops(n_s) as u64));
        group.bench_with_input(BenchmarkId::new("fc1_ntk_f64", n_s), &n_s, |b, _| {
            b.iter(|| black_box(fit_predict(&kernel, &x_s, &y_s, &x_t)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
