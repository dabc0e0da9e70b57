//! One full KIP step through the public API (`Kip::step`: sample the
//! class-balanced target batch, gather and convert it, K_ss and K_ts, solve,
//! loss, full gradient, Adam on images and labels), FC1 NTK, float64,
//! labels learned, at the shapes, in both precisions (`f64`, and
//! `f32`: the two big products in single precision). Prints, from the same
//! run, the GEMM floor (the bare GEMMs the step needs, in the step's
//! precisions), the fraction of the machine's all-core FMA peak the step
//! reaches (flops as `kip_benches::peak::step_flops`) and the 1- vs
//! 2-thread speedup.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kip_benches::peak::{all_core_peak, step_flops};
use kip_benches::{gemm_secs, gemm_secs_in, median_secs, slow_group};
use kip_data::{Dataset, ImageShape};
use kip_meta::{Kip, KipParams, Precision};
use rand::{Rng, SeedableRng};

const SHAPES: &[(usize, usize, usize)] = &[(100, 5000, 784), (1000, 5000, 784), (100, 5000, 3072)];
const N_TRAIN: usize = 20_000;

fn dataset(d: usize) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let pixels: Vec<f32> = (0..N_TRAIN * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let labels: Vec<usize> = (0..N_TRAIN).map(|i| i % 10).collect();
    let names = (0..10).map(|c| c.to_string()).collect();
    Dataset::new(ImageShape { h: 1, w: d, c: 1 }, pixels, labels, names).unwrap()
}

fn kip(n_s: usize, n_t: usize, precision: Precision, train: Dataset) -> Kip {
    let p = KipParams {
        n_support: n_s,
        n_target: n_t,
        steps: usize::MAX,
        learn_labels: true,
        precision,
        ..KipParams::default()
    };
    Kip::new(p.check().unwrap(), train).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = slow_group(c, "kip_step", Duration::from_secs(5));
    let peaks = [all_core_peak(true), all_core_peak(false)];
    for &(n_s, n_t, d) in SHAPES {
        let train = dataset(d);
        let reps = if n_s >= 1000 { 5 } else { 15 };
        for precision in [Precision::F64, Precision::F32] {
            let mut k = kip(n_s, n_t, precision, train.clone());
            let t = median_secs(reps, || {
                k.step().unwrap();
            });
            let big = match precision {
                Precision::F64 => gemm_secs(n_t, n_s, d, reps) + gemm_secs(n_s, d, n_t, reps),
                Precision::F32 => gemm_secs_in::<f32>(n_t, n_s, d, reps) + gemm_secs_in::<f32>(n_s, d, n_t, reps),
            };
            let floor = big + 3.0 * gemm_secs(n_s, n_s, d, reps);
            let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let t1 = pool1.install(|| {
                let mut k1 = kip(n_s, n_t, precision, train.clone());
                median_secs(reps.min(5), || {
                    k1.step().unwrap();
                })
            });
            let peak = peaks[usize::from(precision == Precision::F32)];
            let of_peak = peak.map_or_else(
                || "no FMA peak measured".to_string(),
                |p| {
                    format!(
                        "{:.1}% of the {p:.0} GFLOP/s peak",
                        step_flops(n_s, n_t, d) / (p * 1e9) / t * 100.0
                    )
                },
            );
            println!(
                "kip_step {precision} fc1-ntk support {n_s}, targets {n_t}, d {d}: {:.2} ms/step, {of_peak}; GEMM floor {:.2} ms; ratio {:.2}; 1 thread {:.2} ms (speedup {:.2}x)",
                t * 1e3,
                floor * 1e3,
                t / floor,
                t1 * 1e3,
                t1 / t
            );
            group.bench_function(
                BenchmarkId::new(format!("{precision}-fc1-ntk"), format!("{n_s}x{n_t}x{d}")),
                |b| b.iter(|| k.step().unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
