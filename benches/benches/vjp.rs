//! Vector-Jacobian products of FC1 and FC3 NTK kernels at the paper's
//! shapes, float64. Two forms:
//! * `vjp` (both sides): recomputes the inner products and runs the two
//!   backward GEMMs — floor = 3 bare GEMMs of the shape;
//! * `linearized` (the KIP path): partials kept from the forward pass, only
//!   `dL/db` — floor = 1 bare GEMM.
//!
//! Each floor is timed in alternation with the product it is compared with,
//! and the ratio is the median of the pairs' ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kip_benches::{
    gemm_job, gflops, kernel_inputs, paired_ratio, random, slow_group, Paired, KERNEL_SHAPES, PAIRED_BUDGET,
};
use kip_kernels::{points, Kernel, KernelSpec, Linearization};
use nalgebra::DMatrix;

fn bench(c: &mut Criterion) {
    let mut group = slow_group(c, "vjp", Duration::from_secs(3));
    for &(n1, n2, d) in KERNEL_SHAPES {
        let (a, b) = kernel_inputs(n1, n2, d);
        let g = random(n1, n2, 3);
        let gemm_flops = 2.0 * (n1 * n2 * d) as f64;
        let mut floor_job = gemm_job::<f64>(n1, n2, d);
        for depth in [1, 3] {
            let k = KernelSpec::fc_ntk(depth).build();
            let (mut da, mut db) = (DMatrix::zeros(n1, d), DMatrix::zeros(n2, d));
            let Paired { floor, time: t, ratio } = paired_ratio(PAIRED_BUDGET, 7, &mut floor_job, || {
                k.vjp_into(points(&a), points(&b), &g, Some(&mut da), Some(&mut db))
                    .unwrap();
                black_box(&db);
            });
            println!(
                "vjp fc{depth}-ntk {n1}x{d} vs {n2}x{d}: {:.2} ms, {:.0} GFLOP/s; floor 3 GEMMs {:.2} ms; ratio {:.2}",
                t * 1e3,
                gflops(3.0 * gemm_flops, t),
                3.0 * floor * 1e3,
                ratio / 3.0
            );
            let mut lin = Linearization::default();
            lin.compute(&k, points(&a), points(&b)).unwrap();
            let Paired { floor, time: tl, ratio } = paired_ratio(PAIRED_BUDGET, 7, &mut floor_job, || {
                lin.vjp_into(points(&a), points(&b), &g, None, Some(&mut db)).unwrap();
                black_box(&db);
            });
            println!(
                "vjp(linearized, b side) fc{depth}-ntk {n1}x{n2}x{d}: {:.2} ms; floor 1 GEMM {:.2} ms; ratio {ratio:.2}",
                tl * 1e3,
                floor * 1e3,
            );
            group.throughput(Throughput::Elements((3.0 * gemm_flops) as u64));
            group.bench_function(
                BenchmarkId::new(format!("fc{depth}-ntk"), format!("{n1}x{n2}x{d}")),
                |bch| {
                    bch.iter(|| {
                        k.vjp_into(points(&a), points(&b), &g, Some(&mut da), Some(&mut db))
                            .unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
