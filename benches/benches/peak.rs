//! The machine's floating-point ceiling: fused multiply-add throughput of
//! one core and of every core, in `f64` and `f32`, with the widest vectors
//! the CPU has (AVX-512, else AVX2+FMA; see `kip_benches::peak`).
//!
//! This is the "hardware limit" of the performance issue made measurable:
//! it prints the peak and, for each `kip_step` shape, the flops of one step
//! (`4·n_t·n_s·d + 4·n_s²·d`), the time that step would take at 100% of
//! the f64 / f32 peak of all cores, and the step time the target
//! fraction of the peak means on this machine. `kip_step` prints the
//! fraction each measured step reaches.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kip_benches::peak::{peak, run_once, step_flops, widest};
use kip_benches::slow_group;

/// The performance issue's rows: `(precision is f64, n_s, n_t, d, target
/// fraction of the all-core peak)`.
const STEPS: &[(bool, usize, usize, usize, f64)] = &[
    (true, 100, 5000, 784, 0.55),
    (true, 1000, 5000, 784, 0.65),
    (false, 100, 5000, 784, 0.45),
];

fn bench(c: &mut Criterion) {
    let (bits, name) = widest();
    if bits == 0 {
        println!("peak: {name}; nothing to measure");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all = [0.0; 2];
    for (k, double) in [true, false].into_iter().enumerate() {
        let one = peak(bits, double, 1, 5);
        all[k] = peak(bits, double, cores, 5);
        println!(
            "peak {} {name}: {one:.1} GFLOP/s on 1 core, {:.1} on {cores} cores",
            if double { "f64" } else { "f32" },
            all[k]
        );
    }
    for &(double, n_s, n_t, d, target) in STEPS {
        let f = step_flops(n_s, n_t, d);
        let at_peak = f / (all[usize::from(!double)] * 1e9) * 1e3;
        println!(
            "kip_step {} ({n_s}, {n_t}, {d}): {:.2} GFLOP; at 100% of the {cores}-core peak {at_peak:.1} ms; at the target {:.0}% {:.1} ms",
            if double { "f64" } else { "f32" },
            f / 1e9,
            target * 100.0,
            at_peak / target
        );
    }
    let mut group = slow_group(c, "peak", Duration::from_secs(3));
    group.bench_function("fma-f64-1-core", |b| b.iter(|| run_once(bits, true)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
