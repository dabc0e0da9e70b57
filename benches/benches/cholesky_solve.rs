//! Cholesky factor + solve through kip-krr's public API: `Cholesky::factor`
//! of an n × n SPD matrix (an FC1 NTK Gram matrix of random 784-dim points
//! plus the default trace-scaled ridge) and `solve_in_place` with 10
//! right-hand sides, n ∈ {1000, 4000}.
//!
//! GFLOP/s = (n³/3) / time (the factorisation's flops; the solve adds
//! 2·n²·10). Target: ≥ 40 GFLOP/s at n = 4000 on one core. Run on a
//! 1-thread rayon pool and on a 2-thread one (faer's parallel LLᵀ is used
//! from n = 1500 when the pool has more than one thread).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kip_benches::slow_group;
use kip_kernels::{Kernel, KernelSpec};
use kip_krr::{Cholesky, Ridge};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};

const RHS: usize = 10;

fn spd(n: usize) -> (DMatrix<f64>, f64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
    let x = DMatrix::from_fn(n, 784, |_, _| rng.random_range(-1.0..1.0));
    let k = KernelSpec::fc_ntk(1).build().gram_sym(&x).unwrap();
    let ridge = Ridge::default().value(&k);
    (k, ridge)
}

fn factor_solve(k: &DMatrix<f64>, ridge: f64, rhs: &mut DMatrix<f64>) {
    let chol = Cholesky::factor(k, ridge).unwrap();
    chol.solve_in_place(rhs);
}

fn bench(c: &mut Criterion) {
    let mut group = slow_group(c, "cholesky_solve", Duration::from_secs(8));
    for n in [1000, 4000] {
        let (k, ridge) = spd(n);
        let b = DMatrix::from_fn(n, RHS, |i, j| ((i + j) % 7) as f64 - 3.0);
        let gflop = (n as f64).powi(3) / 3.0 / 1e9;
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            // The pool is entered inside each timed call (install costs
            // microseconds; criterion's group is not Send).
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let mut rhs = b.clone();
                    let t = Instant::now();
                    pool.install(|| factor_solve(&k, ridge, &mut rhs));
                    black_box(&rhs);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "cholesky_solve n={n} rhs={RHS} threads={threads}: {:.1} ms, {:.1} GFLOP/s (n^3/3 / time)",
                times[2] * 1e3,
                gflop / times[2]
            );
            group.throughput(Throughput::Elements((gflop * 1e9) as u64));
            group.bench_with_input(BenchmarkId::new(format!("threads={threads}"), n), &n, |bch, _| {
                bch.iter(|| {
                    let mut rhs = b.clone();
                    pool.install(|| factor_solve(&k, ridge, &mut rhs));
                    black_box(rhs)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
