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
    let t = std::time::Instant::now();
    let only = std::env::var("ONLY").is_ok();
    let g = if only {
        DMatrix::zeros(1, 1)
    } else {
        k.gram(&a, &b).unwrap()
    };
    let e = t.elapsed().as_secs_f64();
    println!(
        "gram {:.3} s, {:.2} us/pair, sum {}",
        e,
        e / (n * n) as f64 * 1e6,
        g.sum()
    );
    if grad {
        let gg = DMatrix::from_element(n, n, 0.5);
        let t = std::time::Instant::now();
        let da = if only {
            DMatrix::zeros(1, 1)
        } else {
            k.vjp(&a, &b, &gg).unwrap().0
        };
        let e = t.elapsed().as_secs_f64();
        println!(
            "vjp both sides {:.3} s, {:.2} us/pair, {}",
            e,
            e / (n * n) as f64 * 1e6,
            da.sum()
        );
        let (mut kk, mut da) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        let reps: usize = std::env::var("REPS").map_or(1, |s| s.parse().unwrap());
        let t = std::time::Instant::now();
        for _ in 0..reps {
            k.gram_vjp_into(kip_kernels::points(&a), kip_kernels::points(&b), &gg, &mut kk, &mut da)
                .unwrap();
        }
        let e = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "fused value+grad {:.3} s, {:.2} us/pair, {}",
            e,
            e / (n * n) as f64 * 1e6,
            da.sum()
        );
    }
}
