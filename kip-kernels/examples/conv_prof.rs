//! Time one call of a kernel at the CIFAR-10 shape (32×32×3, seeded
//! uniform images): the Gram, and with a third argument the VJP of both
//! sides and the fused value + VJP — the figures of `docs/performance.md`
//! (§ Convolutional kernels) and a target for `perf record`.
//!
//! `cargo run --release -p kip-kernels --example conv_prof -- SPEC N [g]`
//!
//! Environment: `HW` the image side (default 32), `ONLY` set: time the
//! fused pass alone (for a profile of it), `REPS` its repetitions (the
//! mean is printed).
use kip_kernels::{Kernel, KernelSpec};
use nalgebra::DMatrix;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("convvec3-ntk", |s| s.as_str());
    let n: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let grad = args.get(3).is_some();
    let hw: usize = std::env::var("HW").map_or(32, |s| s.parse().unwrap());
    let k = spec.parse::<KernelSpec>().unwrap().build().for_images([hw, hw, 3]);
    let mut s = 1u64;
    let mut r = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let a = DMatrix::from_fn(n, hw * hw * 3, |_, _| r());
    let b = DMatrix::from_fn(n, hw * hw * 3, |_, _| r());
    let only = std::env::var("ONLY").is_ok();
    let report = |what: &str, e: f64, sum: f64| {
        println!("{what} {e:.3} s, {:.2} us/pair, sum {sum}", e / (n * n) as f64 * 1e6);
    };
    if !only {
        let t = std::time::Instant::now();
        let g = k.gram(&a, &b).unwrap();
        report("gram", t.elapsed().as_secs_f64(), g.sum());
    }
    if grad {
        let gg = DMatrix::from_element(n, n, 0.5);
        if !only {
            let t = std::time::Instant::now();
            let (da, _) = k.vjp(&a, &b, &gg).unwrap();
            report("vjp both sides", t.elapsed().as_secs_f64(), da.sum());
        }
        let (mut kk, mut da) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        let reps: usize = std::env::var("REPS").map_or(1, |s| s.parse().unwrap());
        let t = std::time::Instant::now();
        for _ in 0..reps {
            k.gram_vjp_into(kip_kernels::points(&a), kip_kernels::points(&b), &gg, &mut kk, &mut da)
                .unwrap();
        }
        report("fused value+grad", t.elapsed().as_secs_f64() / reps as f64, da.sum());
    }
}
