//! Random-feature ConvNets at the shapes `../shared/peer/conv_timing.py rf`
//! and `rfad_peer.py` time JAX/XLA on (32×32×3 images, f32, W_std = √2,
//! b_std = 0.1):
//! * one finite ConvNet (Conv, ReLU, 3 × [Conv, ReLU, AvgPool], the
//!   follow-up paper's ConvNet: `conv_timing.py rf`'s network), C = 64 and
//!   128 channels, batch of 100 images: forward, and forward + gradient
//!   with respect to the input (ms per image = time / 100);
//! * one KIP step as `rfad_peer.py` runs it: 100 support images, 1000
//!   targets, M = 4 networks of C = 64 channels (3 × [Conv, ReLU,
//!   AvgPool], no first Conv) drawn anew, MSE, trace-scaled ridge 1e-6.
//!
//! Images are standard-normal per entry (seeded), as the reference's
//! standardised CIFAR-10 pixels are per channel.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kip_benches::slow_group;
use kip_kernels::rf::{ConvNet, NetLayer, NetReadout};
use kip_kernels::{points, ImageShape, KernelSpec};
use kip_meta::{kip_loss_grad, KipWorkspace};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn pixels(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * 3072).map(|_| StandardNormal.sample(&mut rng)).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = slow_group(c, "rf", Duration::from_secs(5));
    let n = 100;
    let x = pixels(n, 1);
    use NetLayer::{Conv as C, Pool as P, Relu as R};
    let body = [C, R, C, R, P, C, R, P, C, R, P];
    for channels in [64, 128] {
        let net = ConvNet::random(
            &body,
            NetReadout::Flatten,
            ImageShape::new(32, 32, 3),
            channels,
            2f64.sqrt(),
            0.1,
            7,
        )
        .unwrap();
        let f = net.n_features();
        let mut out = vec![0.0; n * f];
        group.bench_function(BenchmarkId::new(format!("convnet3 C={channels} forward"), n), |b| {
            b.iter(|| net.features(&x, n, &mut out))
        });
        let dphi = vec![0.01f32; n * f];
        let mut dx = vec![0.0; n * 3072];
        group.bench_function(
            BenchmarkId::new(format!("convnet3 C={channels} forward+input grad"), n),
            |b| {
                // `features_vjp` runs the forward pass itself (the tape), then the backward.
                b.iter(|| net.features_vjp(&x, n, &dphi, &mut dx))
            },
        );
    }
    // One KIP step at rfad_peer.py's settings.
    let kernel = "rf-conv:layers=CRPCRPCRPFD,channels=64,models=4"
        .parse::<KernelSpec>()
        .unwrap()
        .build()
        .for_images([32, 32, 3]);
    let to64 = |v: Vec<f32>, n| DMatrix::from_row_slice(n, 3072, &v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>());
    let (x_s, x_t) = (to64(pixels(100, 2), 100), to64(pixels(1000, 3), 1000));
    let onehot = |n: usize| DMatrix::from_fn(n, 10, |i, j| if i % 10 == j { 0.9 } else { -0.1 });
    let (y_s, y_t) = (onehot(100), onehot(1000));
    let mut ws = KipWorkspace::default();
    let mut seed = 0;
    group.bench_function(BenchmarkId::new("kip step rfad C=64 M=4", "100x1000"), |b| {
        b.iter(|| {
            seed += 1;
            let k = kernel.redrawn(seed).unwrap();
            kip_loss_grad(&k, points(&x_s), &y_s, points(&x_t), &y_t, 1e-6, &mut ws).unwrap();
        })
    });
    group.finish();
    println!("(ms per image = time / {n} for the network rows)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
