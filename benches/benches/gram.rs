//! Gram matrices `K(a, b)` of FC1 and FC3 NTK kernels at the paper's
//! shapes, float64, with the bare GEMM of the same shape (the floor): a
//! gram is one GEMM plus a fused elementwise pass, so gram/GEMM ≤ 1.3 is the
//! target. Each GEMM floor is timed in alternation with the gram it is
//! compared with, and the ratio is the median of the pairs' ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kip_benches::{
    gemm_job, gflops, kernel_inputs, paired_median_secs, paired_ratio, slow_group, Paired, KERNEL_SHAPES, PAIRED_BUDGET,
};
use kip_kernels::{points, row_norms, Kernel, KernelSpec};
use nalgebra::DMatrix;

fn bench(c: &mut Criterion) {
    let mut group = slow_group(c, "gram", Duration::from_secs(3));
    for &(n1, n2, d) in KERNEL_SHAPES {
        let (a, b) = kernel_inputs(n1, n2, d);
        let flops = 2.0 * (n1 * n2 * d) as f64;
        let mut floor_job = gemm_job::<f64>(n1, n2, d);
        // `linear` (no map at all) shows what the tiling itself costs.
        for spec in ["linear", "fc1-ntk", "fc3-ntk"] {
            let k = spec.parse::<KernelSpec>().unwrap().build();
            let mut out = DMatrix::zeros(n1, n2);
            let Paired { floor, time: t, ratio } = paired_ratio(PAIRED_BUDGET, 9, &mut floor_job, || {
                k.gram_into(points(&a), points(&b), &mut out).unwrap();
                black_box(&out);
            });
            println!(
                "gram {spec} {n1}x{d} vs {n2}x{d}: {:.2} ms, {:.0} GFLOP/s; bare GEMM {:.2} ms ({:.0} GFLOP/s); ratio {ratio:.2}",
                t * 1e3,
                gflops(flops, t),
                floor * 1e3,
                gflops(flops, floor),
            );
            if spec == "linear" {
                continue;
            }
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(BenchmarkId::new(spec, format!("{n1}x{n2}x{d}")), |bch| {
                bch.iter(|| k.gram_into(points(&a), points(&b), &mut out).unwrap())
            });
        }
    }
    group.finish();
    map_alone();
}

/// The kernel map alone (the elementwise recursion over a 504 × 1000 block
/// of inner products, one thread): nanoseconds per entry, the figure the
/// gram's remainder above its GEMM floor is made of.
fn map_alone() {
    let (n1, n2, d) = (504, 1000, 784);
    let (a, b) = kernel_inputs(n1, n2, d);
    let (na, nb) = (row_norms(points(&a)).unwrap(), row_norms(points(&b)).unwrap());
    let s0 = KernelSpec::Linear.build().gram(&a, &b).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for depth in [1, 3] {
        let kernel = KernelSpec::fc_ntk(depth).build();
        let k = kernel.as_dot().expect("an inner-product kernel");
        let (mut s, mut s_copy) = (s0.clone(), s0.clone());
        let (copy, t) = pool.install(|| {
            paired_median_secs(
                15,
                || s_copy.copy_from(&s0),
                || {
                    s.copy_from(&s0);
                    let mut cols: Vec<&mut [f64]> = s.as_mut_slice().chunks_mut(n1).collect();
                    k.map_values(&mut cols, &na, &nb);
                },
            )
        });
        println!(
            "map fc{depth}-ntk alone ({n1}x{n2} block, 1 thread): {:.2} ns per entry",
            (t - copy) / (n1 * n2) as f64 * 1e9
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
