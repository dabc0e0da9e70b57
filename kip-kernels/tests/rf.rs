//! Random-feature ConvNet kernels and their finite networks: gradients
//! against central differences (network input and parameters, the
//! kernel's VJPs), convergence to the exact NNGP as channels × models
//! grow, symmetry, determinism across thread counts, and clear errors.

use kip_kernels::rf::{ConvNet, NetLayer, NetReadout};
use kip_kernels::{AnyKernel, ImageShape, Kernel, KernelSpec};
use nalgebra::DMatrix;

/// Deterministic values in [-1, 1] from a seed (xorshift).
fn values(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn images(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    DMatrix::from_row_slice(n, d, &values(n * d, seed))
}

fn kernel(spec: &str, shape: [usize; 3]) -> AnyKernel {
    spec.parse::<KernelSpec>().unwrap().build().for_images(shape)
}

fn net(body: &[NetLayer], readout: NetReadout, shape: [usize; 3], channels: usize, seed: u64) -> ConvNet {
    let [h, w, c] = shape;
    ConvNet::random(body, readout, ImageShape::new(h, w, c), channels, 1.4, 0.3, seed).unwrap()
}

/// `⟨dphi, f(x)⟩` in f64.
fn probe(net: &ConvNet, x: &[f32], n: usize, dphi: &[f32]) -> f64 {
    let mut f = vec![0.0; n * net.n_features()];
    net.features(x, n, &mut f);
    f.iter().zip(dphi).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
}

const C: NetLayer = NetLayer::Conv;
const R: NetLayer = NetLayer::Relu;
const P: NetLayer = NetLayer::Pool;

/// Bodies with every layer kind, pooling of odd sizes, no conv first.
fn cases() -> Vec<(Vec<NetLayer>, NetReadout, [usize; 3])> {
    vec![
        (vec![C, R, C, R, P], NetReadout::Flatten, [6, 6, 3]),
        (vec![C, R, P, C, R, P], NetReadout::GlobalAvgPool, [7, 5, 2]),
        (vec![R, C, R, P, C], NetReadout::Flatten, [4, 6, 1]),
    ]
}

// The networks run in f32 and ReLU kinks sit anywhere: large steps cross
// kinks, small ones drown in f32 rounding. So each directional derivative
// is compared with central differences at steps 1e-3, 3e-4 and 1e-4, and
// the closest must agree within 3e-3 (absolute below 1, else relative): a
// wrong gradient is off at every step.
const STEPS: [f32; 3] = [1e-3, 3e-4, 1e-4];

fn closest(an: f64, mut fd: impl FnMut(f32) -> f64) -> f64 {
    STEPS
        .iter()
        .map(|&e| fd(e))
        .min_by(|a, b| (a - an).abs().total_cmp(&(b - an).abs()))
        .unwrap()
}

#[test]
fn network_input_gradient_matches_central_differences() {
    for (k, (body, readout, shape)) in cases().into_iter().enumerate() {
        let net = net(&body, readout, shape, 5, k as u64);
        let (n, d) = (3, shape.iter().product::<usize>());
        let x: Vec<f32> = values(n * d, 10 + k as u64).iter().map(|&v| v as f32).collect();
        let dphi: Vec<f32> = values(n * net.n_features(), 20 + k as u64)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let mut dx = vec![0.0; n * d];
        net.features_vjp(&x, n, &dphi, &mut dx);
        // Directional derivatives along random directions.
        for t in 0..4 {
            let v: Vec<f32> = values(n * d, 30 + t).iter().map(|&v| v as f32).collect();
            let an: f64 = dx.iter().zip(&v).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let fd = closest(an, |eps| {
                let xp: Vec<f32> = x.iter().zip(&v).map(|(a, b)| a + eps * b).collect();
                let xm: Vec<f32> = x.iter().zip(&v).map(|(a, b)| a - eps * b).collect();
                (probe(&net, &xp, n, &dphi) - probe(&net, &xm, n, &dphi)) / (2.0 * f64::from(eps))
            });
            assert!(
                (fd - an).abs() <= 3e-3 * an.abs().max(1.0),
                "case {k}, direction {t}: finite difference {fd} vs vjp {an}"
            );
        }
    }
}

#[test]
fn network_parameter_gradient_matches_central_differences() {
    for (k, (body, readout, shape)) in cases().into_iter().enumerate() {
        let mut net = net(&body, readout, shape, 4, 40 + k as u64);
        let (n, d) = (5, shape.iter().product::<usize>());
        let x: Vec<f32> = values(n * d, 50 + k as u64).iter().map(|&v| v as f32).collect();
        let dphi: Vec<f32> = values(n * net.n_features(), 60 + k as u64)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let mut grad = vec![0.0; net.params().len()];
        net.params_vjp(&x, n, &dphi, &mut grad);
        let p0 = net.params().to_vec();
        for t in 0..3 {
            let v: Vec<f32> = values(p0.len(), 70 + t).iter().map(|&v| v as f32).collect();
            let an: f64 = grad.iter().zip(&v).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let mut at = |s: f32| {
                for ((p, &a), &b) in net.params_mut().iter_mut().zip(&p0).zip(&v) {
                    *p = a + s * b;
                }
                probe(&net, &x, n, &dphi)
            };
            let fd = closest(an, |eps| (at(eps) - at(-eps)) / (2.0 * f64::from(eps)));
            assert!(
                (fd - an).abs() <= 3e-3 * an.abs().max(1.0),
                "case {k}, direction {t}: finite difference {fd} vs gradient {an}"
            );
        }
    }
}

#[test]
fn kernel_vjps_match_central_differences() {
    for (spec, shape) in [
        ("rf-convnet1:channels=6,models=2,seed=3", [6, 6, 2]),
        ("rf-conv:layers=CRPCRGD,channels=5,models=3,b_std=0.2", [5, 7, 3]),
    ] {
        let k = kernel(spec, shape);
        let d: usize = shape.iter().product();
        let (a, b) = (images(3, d, 1), images(4, d, 2));
        let g = images(3, 4, 3);
        let gs = images(3, 3, 4);
        let (da, db) = k.vjp(&a, &b, &g).unwrap();
        let dsym = k.vjp_sym(&a, &gs).unwrap();
        let dot = |m: &DMatrix<f64>, w: &DMatrix<f64>| m.component_mul(w).sum();
        let eps = 1e-3;
        for t in 0..3u64 {
            let va = images(3, d, 10 + t);
            let vb = images(4, d, 20 + t);
            let fd_a = (dot(&k.gram(&(&a + eps * &va), &b).unwrap(), &g)
                - dot(&k.gram(&(&a - eps * &va), &b).unwrap(), &g))
                / (2.0 * eps);
            let fd_b = (dot(&k.gram(&a, &(&b + eps * &vb)).unwrap(), &g)
                - dot(&k.gram(&a, &(&b - eps * &vb)).unwrap(), &g))
                / (2.0 * eps);
            let fd_s = (dot(&k.gram_sym(&(&a + eps * &va)).unwrap(), &gs)
                - dot(&k.gram_sym(&(&a - eps * &va)).unwrap(), &gs))
                / (2.0 * eps);
            for (what, fd, an) in [
                ("a", fd_a, dot(&da, &va)),
                ("b", fd_b, dot(&db, &vb)),
                ("sym", fd_s, dot(&dsym, &va)),
            ] {
                assert!(
                    (fd - an).abs() <= 3e-3 * an.abs().max(0.1),
                    "{spec} {what} direction {t}: finite difference {fd} vs vjp {an}"
                );
            }
        }
    }
}

#[test]
fn gram_is_symmetric_psd_and_agrees_with_features() {
    let k = kernel("rf-convnet2:channels=8,models=2", [8, 8, 3]);
    let a = images(7, 192, 5);
    let ks = k.gram_sym(&a).unwrap();
    assert_eq!(ks, ks.transpose());
    let kg = k.gram(&a, &a).unwrap();
    assert!((&ks - &kg).amax() <= 1e-12 * ks.amax());
    let diag = k.gram_diag(kip_kernels::points(&a)).unwrap();
    for (i, v) in diag.iter().enumerate() {
        assert!((v - ks[(i, i)]).abs() <= 1e-12 * v.abs());
    }
    let eig = ks.symmetric_eigenvalues();
    assert!(eig.min() >= -1e-10 * eig.max(), "min eigenvalue {}", eig.min());
}

/// Correlation-normalised error `max |K̂ − K| / √(K_ii K_jj)` of the random
/// features against the exact NNGP of the same stack.
fn rf_error(channels: usize, models: usize, seed: u64) -> f64 {
    let shape = [8, 8, 3];
    let exact = kernel("convnet1-nngp", shape);
    let rf = kernel(
        &format!("rf-convnet1:channels={channels},models={models},seed={seed}"),
        shape,
    );
    let x = images(6, 192, 77);
    let (ke, kr) = (exact.gram_sym(&x).unwrap(), rf.gram_sym(&x).unwrap());
    let mut err: f64 = 0.0;
    for i in 0..6 {
        for j in 0..6 {
            err = err.max((kr[(i, j)] - ke[(i, j)]).abs() / (ke[(i, i)] * ke[(j, j)]).sqrt());
        }
    }
    err
}

#[test]
fn random_features_converge_to_the_exact_nngp() {
    // The error falls roughly as 1/√(C·M): 8× the networks, about a third.
    let mean = |c, m| (0..4).map(|s| rf_error(c, m, s)).sum::<f64>() / 4.0;
    let (e1, e8) = (mean(64, 1), mean(64, 8));
    eprintln!("correlation-normalised error: C=64 M=1 {e1:.4}, M=8 {e8:.4}");
    assert!(e8 < 0.6 * e1, "M=8 error {e8} not well below M=1 error {e1}");
    assert!(e8 < 0.08, "M=8 error {e8}");
}

#[test]
fn features_do_not_depend_on_the_thread_count() {
    let k = kernel("rf-convnet2:channels=16,models=2", [16, 16, 3]);
    let a = images(21, 768, 9);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                (
                    k.gram_sym(&a).unwrap(),
                    k.vjp_sym(&a, &DMatrix::from_element(21, 21, 0.1)).unwrap(),
                )
            })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn redrawn_networks_differ_and_the_same_seed_repeats() {
    let k = kernel("rf-convnet1:channels=8,models=1", [8, 8, 3]);
    let a = images(3, 192, 1);
    let k1 = k.redrawn(5).unwrap();
    let k2 = k.redrawn(5).unwrap();
    assert_eq!(k1.gram_sym(&a).unwrap(), k2.gram_sym(&a).unwrap());
    assert_ne!(k.gram_sym(&a).unwrap(), k1.gram_sym(&a).unwrap());
    assert!(kernel("convnet1-nngp", [8, 8, 3]).redrawn(5).is_none());
}

#[test]
fn bad_inputs_give_clear_errors() {
    let flat = "rf-convnet1".parse::<KernelSpec>().unwrap().build();
    let e = flat.gram_sym(&images(2, 12, 1)).unwrap_err().to_string();
    assert!(e.contains("needs the image shape"), "{e}");
    let k = kernel("rf-convnet3", [4, 4, 3]);
    let e = k.gram_sym(&images(2, 48, 1)).unwrap_err().to_string();
    assert!(e.contains("too small to pool"), "{e}");
    let k = kernel("rf-convnet1", [8, 8, 3]);
    let e = k.gram_sym(&images(2, 100, 1)).unwrap_err().to_string();
    assert!(e.contains("192 values but the points have 100"), "{e}");
    let mut bad = images(2, 192, 1);
    bad[(1, 7)] = f64::NAN;
    let e = k.gram_sym(&bad).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("row 1, column 7"), "{e}");
    bad[(1, 7)] = 1e300;
    assert!(k.gram_sym(&bad).unwrap_err().to_string().contains("non-finite"));
    for (s, needle) in [
        ("rf-conv:layers=CEFD", "ReLU"),
        ("rf-convnet2:channels=0", "channels"),
        ("rf-convnet2:models=x", "not a non-negative integer"),
        ("rf-convnet2:width=3", "unknown parameter `width`"),
        ("rf-fc1", "expected rf-convnetL"),
    ] {
        let e = s.parse::<KernelSpec>().unwrap_err().to_string();
        assert!(e.contains(needle), "{s}: {e}");
    }
}
