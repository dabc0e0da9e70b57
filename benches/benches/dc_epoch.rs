//! The standard evaluation protocol (`kip_nn::dc`): one training epoch of
//! the ConvNet-3 (width 128, instance norm) on 100 CIFAR-sized images (one
//! batch: DSA augmentation, forward, backward; the SGD update is a single
//! pass over 0.3 M parameters) and the forward pass over 1000 test images.
//!
//! Throughput counts the convolutions' multiply-adds: per image
//! `2·Σ_blocks h·w·9·c_in·c_out` forward (0.10 GFLOP for 32×32×3), times
//! 3 for a training step (forward, input and weight gradients; the first
//! block has no input gradient, which the count ignores).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kip_core::ImageShape;
use kip_data::Dsa;
use kip_nn::dc::DcConvNet;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPE: ImageShape = ImageShape { h: 32, w: 32, c: 3 };

/// Forward multiply-adds ×2 of one image through the three blocks.
fn forward_flops() -> u64 {
    let (mut h, mut w, mut ci, mut f) = (32u64, 32u64, 3u64, 0u64);
    for _ in 0..3 {
        f += 2 * h * w * 9 * ci * 128;
        ci = 128;
        h /= 2;
        w /= 2;
    }
    f
}

fn dc_epoch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dc");
    group.sample_size(10);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let net = DcConvNet::new(SHAPE, 10, 128, 3, &mut rng).expect("a network");
    let n = 100;
    let x: Vec<f32> = (0..n * SHAPE.dim()).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let dsa = Dsa::default();
    let mut grad = vec![0.0f32; net.params().len()];
    group.throughput(Throughput::Elements(3 * forward_flops() * n as u64));
    group.bench_function("epoch_100_images", |b| {
        b.iter(|| {
            let mut xb = x.clone();
            dsa.apply_batch(SHAPE, &mut xb, &mut rng);
            net.loss_and_grad(&xb, &labels, &mut grad)
        })
    });
    let test: Vec<f32> = (0..1000 * SHAPE.dim())
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    group.throughput(Throughput::Elements(forward_flops() * 1000));
    group.bench_function("test_pass_1000_images", |b| b.iter(|| net.predict(&test)));
    group.finish();
}

criterion_group!(benches, dc_epoch);
criterion_main!(benches);
