//! One training step of FC1 (width 1024, input 784, 10 classes; f32, NTK
//! parameterisation, MSE, SGD with momentum) at batch 100 and 1000, next
//! to a floor: the same GEMMs alone, timed in the same run.
//!
//! Throughput counts `6·batch·(784·1024 + 1024·10)` flops per step (three
//! GEMMs per layer). The step actually skips the input gradient of the
//! first layer (`4·batch·784·1024 + 6·batch·1024·10`), and so does the
//! floor, so the two figures compare like with like.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kip_core::{gemm, MatMut, MatRef};
use kip_nn::{Mlp, MlpParams, Trainer};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 784;
const WIDTH: usize = 1024;
const CLASSES: usize = 10;

/// Uniform entries in [−1, 1).
fn uniform(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> DMatrix<f32> {
    DMatrix::from_fn(rows, cols, |_, _| rng.random::<f32>() * 2.0 - 1.0)
}

/// `dst = op(a)·op(b)` through the workspace's GEMM (`t` = transpose:
/// swapped strides, no copy): the floor the training step is measured
/// against.
fn mm(dst: &mut DMatrix<f32>, a: &DMatrix<f32>, ta: bool, b: &DMatrix<f32>, tb: bool) {
    fn op(x: &DMatrix<f32>, t: bool) -> MatRef<'_, f32> {
        if t {
            MatRef::from(x).t()
        } else {
            MatRef::from(x)
        }
    }
    gemm(1.0, op(a, ta), op(b, tb), 0.0, MatMut::from(dst));
}

fn mlp_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("mlp_step");
    group.sample_size(20);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for batch in [100usize, 1000] {
        let flops = 6 * batch * (D * WIDTH + WIDTH * CLASSES);
        group.throughput(Throughput::Elements(flops as u64));

        let params = MlpParams {
            width: WIDTH,
            lr: Some(1e-3),
            ..Default::default()
        }
        .check()
        .expect("valid params");
        let mut trainer = Trainer::new(Mlp::new(D, CLASSES, &params, 0), &params);
        let x = uniform(D, batch, &mut rng);
        let labels: Vec<usize> = (0..batch).map(|i| i % CLASSES).collect();
        let y = DMatrix::<f32>::from_fn(CLASSES, batch, |k, j| if labels[j] == k { 0.9 } else { -0.1 });
        group.bench_function(BenchmarkId::new("fc1_w1024_step", batch), |b| {
            b.iter(|| {
                trainer
                    .step(x.as_view(), y.as_view(), &labels, 1e-3)
                    .expect("finite loss")
            })
        });

        // The same five products alone.
        let w1 = uniform(WIDTH, D, &mut rng);
        let w2 = uniform(CLASSES, WIDTH, &mut rng);
        let mut h = DMatrix::<f32>::zeros(WIDTH, batch);
        let mut out = DMatrix::<f32>::zeros(CLASSES, batch);
        let dout = uniform(CLASSES, batch, &mut rng);
        let mut dh = DMatrix::<f32>::zeros(WIDTH, batch);
        let mut gw1 = DMatrix::<f32>::zeros(WIDTH, D);
        let mut gw2 = DMatrix::<f32>::zeros(CLASSES, WIDTH);
        group.bench_function(BenchmarkId::new("gemm_floor", batch), |b| {
            b.iter(|| {
                mm(&mut h, &w1, false, &x, false);
                mm(&mut out, &w2, false, &h, false);
                mm(&mut gw2, &dout, false, &h, true);
                mm(&mut dh, &w2, true, &dout, false);
                mm(&mut gw1, &dh, false, &x, true);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, mlp_step);
criterion_main!(benches);
