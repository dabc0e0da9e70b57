//! Properties of the convolutional kernels over random images: symmetry,
//! `gram_sym == gram(a, a)`, positive semi-definiteness, invariance under
//! flipping every image horizontally, and vector-Jacobian products (both
//! sides and the symmetric form) against central finite differences,
//! including duplicated, zero and anti-collinear images; and the
//! single-precision passes (`precision=f32`) against float64.

use kip_kernels::{AnyKernel, Kernel, KernelSpec};
use nalgebra::DMatrix;
use proptest::prelude::*;

/// Every layer and readout: Conv-Vec (diagonal path), pooled stacks (odd
/// sizes drop a row and column), GlobalAvgPool, Erf, no conv first,
/// non-default parameters.
const SPECS: &[&str] = &[
    "convvec1-ntk",
    "convvec2-nngp",
    "convvec3-ntk",
    "convnet1-ntk",
    "convnet1-nngp",
    "conv-ntk:layers=CRCRGD",
    "conv-nngp:layers=CEPCEFD",
    "conv-ntk:layers=CECRFD,w_std=1.2,b_std=0.3",
    "conv-ntk:layers=RCRPFD",
    "conv-ntk:layers=CFD",
    "conv-nngp:layers=CRPGD,b_std=0",
];

/// Image sizes (h, w, c) small enough for full finite differences.
const SHAPES: &[[usize; 3]] = &[[4, 4, 1], [5, 4, 2], [3, 5, 2], [4, 6, 1]];

fn kernel(spec: &str, shape: [usize; 3]) -> AnyKernel {
    spec.parse::<KernelSpec>().unwrap().build().for_images(shape)
}

/// Deterministic images from a seed: entries in [-1, 1].
fn images(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    DMatrix::from_fn(n, d, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    })
}

/// `(kernel, a, b)`: `b`'s first row a copy of `a`'s first, `b`'s second
/// `-2 ×` `a`'s second (anti-collinear), and `a`'s last row zero when
/// `zero`.
fn case() -> impl Strategy<Value = (usize, [usize; 3], DMatrix<f64>, DMatrix<f64>)> {
    (
        0..SPECS.len(),
        0..SHAPES.len(),
        any::<u64>(),
        any::<bool>(),
        2usize..4,
        2usize..4,
    )
        .prop_map(|(k, s, seed, zero, n1, n2)| {
            let shape = SHAPES[s];
            let d = shape.iter().product();
            let mut a = images(n1, d, seed);
            let mut b = images(n2, d, seed ^ 0xABCD);
            b.set_row(0, &a.row(0));
            let r = -2.0 * a.row(1);
            b.set_row(1, &r);
            if zero {
                a.row_mut(n1 - 1).fill(0.0);
            }
            (k, shape, a, b)
        })
}

/// Central differences of `f` at `x` with step `h`.
///
/// The step for a stack: ReLU kernels of duplicated images sit on the
/// arc-cosine's kink, where the symmetric subgradient is what central
/// differences see only when both evaluations snap the same way (cosines
/// within 1e-12 of 1, as the FC tests): a step of 1e-7 keeps them there;
/// stacks without ReLU are smooth and take 1e-5 (less round-off).
fn fd_step(spec: &str) -> f64 {
    let relu = spec.starts_with("convvec") || spec.starts_with("convnet") || spec.contains('R');
    if relu {
        1e-7
    } else {
        1e-5
    }
}

fn fd(x: &DMatrix<f64>, h: f64, f: impl Fn(&DMatrix<f64>) -> f64) -> DMatrix<f64> {
    DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[(i, j)] += h;
        xm[(i, j)] -= h;
        (f(&xp) - f(&xm)) / (2.0 * h)
    })
}

fn rel(got: &DMatrix<f64>, want: &DMatrix<f64>) -> f64 {
    (got - want).abs().max() / want.abs().max().max(1e-2)
}

/// Flip every image left to right.
fn flip(x: &DMatrix<f64>, [_, w, c]: [usize; 3]) -> DMatrix<f64> {
    DMatrix::from_fn(x.nrows(), x.ncols(), |i, k| {
        let (p, ch) = (k / c, k % c);
        let (r, col) = (p / w, p % w);
        x[(i, (r * w + (w - 1 - col)) * c + ch)]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn conv_grams_are_symmetric_psd_and_flip_invariant((k, shape, a, b) in case()) {
        let kern = kernel(SPECS[k], shape);
        let kab = kern.gram(&a, &b).unwrap();
        let kba = kern.gram(&b, &a).unwrap();
        prop_assert!(rel(&kab, &kba.transpose()) < 1e-12, "{}", SPECS[k]);
        let ab = DMatrix::from_fn(a.nrows() + b.nrows(), a.ncols(), |i, j| {
            if i < a.nrows() { a[(i, j)] } else { b[(i - a.nrows(), j)] }
        });
        let sym = kern.gram_sym(&ab).unwrap();
        prop_assert_eq!(&sym, &sym.transpose());
        prop_assert!(rel(&sym, &kern.gram(&ab, &ab).unwrap()) < 1e-12);
        let eig = sym.clone().symmetric_eigenvalues();
        prop_assert!(eig.min() >= -1e-10 * eig.max(), "{}: min eigenvalue {}", SPECS[k], eig.min());
        // VALID pooling of an odd width drops the last column, which a flip
        // moves to the front: invariance holds where nothing is dropped.
        let pools = SPECS[k].starts_with("convnet") || SPECS[k].contains('P');
        if !(pools && shape[1] % 2 == 1) {
            let flipped = kern.gram(&flip(&a, shape), &flip(&b, shape)).unwrap();
            prop_assert!(rel(&flipped, &kab) < 1e-12, "{}: flip", SPECS[k]);
        }
    }

    #[test]
    fn conv_vjps_match_central_differences((k, shape, a, b) in case(), gs in any::<u64>()) {
        let kern = kernel(SPECS[k], shape);
        let g = images(a.nrows(), b.nrows(), gs);
        let (da, db) = kern.vjp(&a, &b, &g).unwrap();
        let loss = |x: &DMatrix<f64>, y: &DMatrix<f64>| kern.gram(x, y).unwrap().component_mul(&g).sum();
        // The fused pass gives the same gradient, and the values to
        // rounding (its last activation sums the readout as it goes).
        let (mut kf, mut daf) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        kern.gram_vjp_into(kip_kernels::points(&a), kip_kernels::points(&b), &g, &mut kf, &mut daf).unwrap();
        prop_assert!(rel(&kf, &kern.gram(&a, &b).unwrap()) < 1e-14, "{}", SPECS[k]);
        prop_assert_eq!(&daf, &da);
        let h = fd_step(SPECS[k]);
        let fa = fd(&a, h, |x| loss(x, &b));
        let fb = fd(&b, h, |y| loss(&a, y));
        prop_assert!(rel(&da, &fa) < 1e-5, "{} da: {:e}", SPECS[k], rel(&da, &fa));
        prop_assert!(rel(&db, &fb) < 1e-5, "{} db: {:e}", SPECS[k], rel(&db, &fb));
        // The symmetric form, with a duplicated row inside one set.
        let mut s = a.clone();
        if s.nrows() > 2 {
            let r = s.row(0).clone_owned();
            s.set_row(2, &r);
        }
        let gss = images(s.nrows(), s.nrows(), gs ^ 7);
        let ds = kern.vjp_sym(&s, &gss).unwrap();
        let fs = fd(&s, h, |x| kern.gram_sym(x).unwrap().component_mul(&gss).sum());
        prop_assert!(rel(&ds, &fs) < 1e-5, "{} sym: {:e}", SPECS[k], rel(&ds, &fs));
        for v in da.iter().chain(db.iter()).chain(ds.iter()) {
            prop_assert!(v.is_finite());
        }
    }

    /// Single precision (`precision=f32`) tracks float64 on the same
    /// cases (duplicated, zero and anti-collinear images included): the
    /// Gram, the symmetric Gram and the gradients of both sides.
    #[test]
    fn f32_kernels_track_f64((k, shape, a, b) in case(), gs in any::<u64>()) {
        let spec = SPECS[k];
        let sep = if spec.contains(':') { ',' } else { ':' };
        let (k64, k32) = (kernel(spec, shape), kernel(&format!("{spec}{sep}precision=f32"), shape));
        let g = images(a.nrows(), b.nrows(), gs);
        let e = rel(&k32.gram(&a, &b).unwrap(), &k64.gram(&a, &b).unwrap());
        prop_assert!(e < 1e-5, "{spec} gram: {e:e}");
        let e = rel(&k32.gram_sym(&a).unwrap(), &k64.gram_sym(&a).unwrap());
        prop_assert!(e < 1e-5, "{spec} gram_sym: {e:e}");
        let ((da32, db32), (da64, db64)) = (k32.vjp(&a, &b, &g).unwrap(), k64.vjp(&a, &b, &g).unwrap());
        let (ea, eb) = (rel(&da32, &da64), rel(&db32, &db64));
        prop_assert!(ea < 1e-4 && eb < 1e-4, "{spec} vjp: {ea:e} {eb:e}");
    }
}

#[test]
fn conv_kernels_say_when_the_points_do_not_fit() {
    let x = images(2, 48, 1);
    let k = "convnet2-ntk".parse::<KernelSpec>().unwrap().build();
    let e = k.gram_sym(&x).unwrap_err().to_string();
    assert!(e.contains("needs the image shape"), "{e}");
    let e = k.for_images([4, 4, 2]).gram_sym(&x).unwrap_err().to_string();
    assert!(e.contains("4x4x2 has 32 values but the points have 48"), "{e}");
    // 4x4x3: 4 → 2 → 1 after two pools is fine; three pools are not.
    assert!(k.for_images([4, 4, 3]).gram_sym(&x).is_ok());
    let k3 = "convnet3-ntk"
        .parse::<KernelSpec>()
        .unwrap()
        .build()
        .for_images([4, 4, 3]);
    let e = k3.gram_sym(&x).unwrap_err().to_string();
    assert!(e.contains("too small to pool"), "{e}");
    let e = k
        .for_images([4, 4, 3])
        .gram(&x, &images(2, 47, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("48 columns"), "{e}");
    let mut bad = x.clone();
    bad[(1, 5)] = f64::NAN;
    let e = k.for_images([4, 4, 3]).gram_sym(&bad).unwrap_err().to_string();
    assert!(e.contains("non-finite"), "{e}");
    let e = k
        .for_images([4, 4, 3])
        .vjp(&x, &x, &DMatrix::zeros(2, 3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 x 2"), "{e}");
}
