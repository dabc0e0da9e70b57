//! Exact convolutional kernels at the shapes `../shared/peer/conv_timing.py`
//! times neural-tangents on (32×32×3 images, W_std = √2, b_std = 0.1, NTK,
//! float64), in ms per image pair:
//! * Conv-Vec3 Gram, 100 × 100;
//! * Conv-Vec3 value + gradient with respect to the first set, 100 × 100:
//!   fused (`gram_vjp_into`, each pair forward and backward once: what
//!   neural-tangents' `value_and_grad` measures) and as KIP runs it (the
//!   Gram, then the VJP once the cotangent is known);
//! * the pooled ConvNet (depth 3) Gram and fused value + gradient, 8 × 8;
//! * the same in single precision (`precision=f32`).
//!
//! Images are standard-normal per entry (seeded), as the reference's
//! standardised CIFAR-10 pixels are per channel.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kip_benches::slow_group;
use kip_kernels::{points, AnyKernel, Kernel, KernelSpec};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn images(n: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    DMatrix::from_fn(n, 32 * 32 * 3, |_, _| StandardNormal.sample(&mut rng))
}

fn kernel(spec: &str) -> AnyKernel {
    spec.parse::<KernelSpec>().unwrap().build().for_images([32, 32, 3])
}

fn bench(c: &mut Criterion) {
    let mut group = slow_group(c, "conv", Duration::from_secs(5));
    let (n1, n2) = (100, 100);
    let (a, b) = (images(n1, 1), images(n2, 2));
    let g = DMatrix::from_fn(n1, n2, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5);
    let pairs = (n1 * n2) as f64;
    for spec in [
        "convvec3-ntk",
        "convvec3-ntk:precision=f32",
        "convvec3-nngp",
        "convvec3-nngp:precision=f32",
    ] {
        let k = kernel(spec);
        let mut out = DMatrix::zeros(n1, n2);
        group.bench_function(BenchmarkId::new(format!("{spec} gram"), format!("{n1}x{n2}")), |bch| {
            bch.iter(|| k.gram_into(points(&a), points(&b), &mut out).unwrap())
        });
        let mut da = DMatrix::zeros(n1, a.ncols());
        group.bench_function(
            BenchmarkId::new(format!("{spec} value+grad fused"), format!("{n1}x{n2}")),
            |bch| {
                bch.iter(|| {
                    k.gram_vjp_into(points(&a), points(&b), &g, &mut out, &mut da).unwrap();
                    black_box(&da);
                })
            },
        );
        group.bench_function(
            BenchmarkId::new(format!("{spec} gram then vjp"), format!("{n1}x{n2}")),
            |bch| {
                bch.iter(|| {
                    k.gram_into(points(&a), points(&b), &mut out).unwrap();
                    k.vjp_into(points(&a), points(&b), &g, Some(&mut da), None).unwrap();
                    black_box(&da);
                })
            },
        );
    }
    let (m1, m2) = (8, 8);
    let (a8, b8) = (images(m1, 3), images(m2, 4));
    let g8 = DMatrix::from_fn(m1, m2, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5);
    for spec in ["convnet3-ntk", "convnet3-ntk:precision=f32"] {
        let k = kernel(spec);
        let mut out = DMatrix::zeros(m1, m2);
        group.bench_function(BenchmarkId::new(format!("{spec} gram"), format!("{m1}x{m2}")), |bch| {
            bch.iter(|| k.gram_into(points(&a8), points(&b8), &mut out).unwrap())
        });
        let mut da8 = DMatrix::zeros(m1, a8.ncols());
        group.bench_function(
            BenchmarkId::new(format!("{spec} value+grad fused"), format!("{m1}x{m2}")),
            |bch| {
                bch.iter(|| {
                    k.gram_vjp_into(points(&a8), points(&b8), &g8, &mut out, &mut da8)
                        .unwrap();
                    black_box(&da8);
                })
            },
        );
    }
    group.finish();
    println!(
        "(ms per pair = time / {pairs} for the 100x100 rows, / {} for the 8x8 rows)",
        m1 * m2
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
