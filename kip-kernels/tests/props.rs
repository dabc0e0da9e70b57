//! Properties over random inputs: symmetry, PSD, rotation invariance, and
//! vector-Jacobian products against central finite differences (including
//! duplicated points, where the arc-cosine recursion is singular).

use kip_kernels::{AnyKernel, Kernel, KernelSpec};
use nalgebra::DMatrix;
use proptest::prelude::*;

const SPECS: &[&str] = &[
    "fc0-ntk",
    "fc1-ntk",
    "fc1-nngp",
    "fc2-ntk",
    "fc3-ntk",
    "fc3-nngp",
    "fc2-ntk:w_std=1,b_std=0",
    "fc1-nngp:w_std=1,b_std=0",
    "fc1-ntk:act=erf",
    "fc3-ntk:act=erf",
    "fc2-nngp:act=erf,w_std=1,b_std=0",
    "rbf:gamma=0.5",
    "linear",
];

fn kernel() -> impl Strategy<Value = AnyKernel> {
    prop::sample::select(SPECS).prop_map(|s| s.parse::<KernelSpec>().unwrap().build())
}

fn matrix(rows: std::ops::Range<usize>, d: usize) -> impl Strategy<Value = DMatrix<f64>> {
    rows.prop_flat_map(move |n| {
        prop::collection::vec(-2.0f64..2.0, n * d).prop_map(move |v| DMatrix::from_vec(n, d, v))
    })
}

/// Two point sets of the same dimension (d ≥ 2: in one dimension every pair
/// is nearly collinear, where the arc-cosine kink makes finite differences
/// inaccurate); `b` may share rows with `a`.
fn pair() -> impl Strategy<Value = (DMatrix<f64>, DMatrix<f64>)> {
    (2usize..7).prop_flat_map(|d| {
        (
            matrix(1..6, d),
            matrix(1..6, d),
            prop::collection::vec(any::<bool>(), 5),
        )
            .prop_map(|(a, mut b, dup)| {
                for (j, &flag) in dup.iter().enumerate() {
                    if flag && j < b.nrows() && j < a.nrows() {
                        b.set_row(j, &a.row(j));
                    }
                }
                (a, b)
            })
    })
}

/// max|got − want| / max|want|, with the scale floored at 1e-2 so that
/// gradients that vanish (e.g. by symmetry at duplicated points) compare
/// absolutely at 1e-8 (finite-difference round-off with h = 1e-7).
fn rel(got: &DMatrix<f64>, want: &DMatrix<f64>) -> f64 {
    (got - want).abs().max() / want.abs().max().max(1e-2)
}

/// Central finite differences of L(x) = Σ g ∘ f(x) with respect to x.
/// Central-difference step for kernel `k`: ReLU kernels have a kink at
/// duplicated points whose central-difference bias is O(h), so they need a
/// small step (1e-7); smooth kernels (erf, RBF, linear) take 1e-5, where the
/// round-off error eps·|f|/h stays ~100× below the test's tolerance (with
/// 1e-7 a deep erf NTK reached 1.07e-6 from round-off alone).
fn fd_step(k: &AnyKernel) -> f64 {
    let spec = k.spec().to_string();
    if spec.contains("erf") || spec.starts_with("rbf") || spec == "linear" {
        1e-5
    } else {
        1e-7
    }
}

fn fd(x: &DMatrix<f64>, step: f64, f: impl Fn(&DMatrix<f64>) -> f64) -> DMatrix<f64> {
    let mut out = DMatrix::zeros(x.nrows(), x.ncols());
    for i in 0..x.nrows() {
        for j in 0..x.ncols() {
            let h = step * x[(i, j)].abs().max(1.0);
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[(i, j)] += h;
            xm[(i, j)] -= h;
            out[(i, j)] = (f(&xp) - f(&xm)) / (2.0 * h);
        }
    }
    out
}

fn no_zero_rows(x: &DMatrix<f64>) -> bool {
    x.row_iter().all(|r| r.norm() > 1e-3)
}

/// Pairs that are collinear up to 1e-3 in cosine but not exactly (exact
/// duplicates stay in): there the arc-cosine's curvature ~1/sin θ makes
/// central differences themselves inaccurate, whatever the step.
fn not_nearly_collinear(a: &DMatrix<f64>, b: &DMatrix<f64>) -> bool {
    a.row_iter().all(|x| {
        b.row_iter().all(|y| {
            let c = (x.dot(&y) / (x.norm() * y.norm())).abs();
            x == y || -x == y || c < 1.0 - 1e-3
        })
    })
}

fn dot(g: &DMatrix<f64>, k: &DMatrix<f64>) -> f64 {
    g.component_mul(k).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn gram_is_transpose_symmetric((a, b) in pair(), k in kernel()) {
        let kab = k.gram(&a, &b).unwrap();
        let kba = k.gram(&b, &a).unwrap();
        prop_assert!(rel(&kab, &kba.transpose()) < 1e-12);
    }

    #[test]
    fn gram_sym_equals_gram_with_itself((a, _b) in pair(), k in kernel()) {
        let s = k.gram_sym(&a).unwrap();
        let g = k.gram(&a, &a).unwrap();
        prop_assert!(s == s.transpose(), "gram_sym is exactly symmetric");
        // The diagonal differs only by the rounded self-angle (≤ 1e-7 rel).
        prop_assert!(rel(&s, &g) < 1e-7, "rel {}", rel(&s, &g));
    }

    #[test]
    fn gram_sym_is_positive_semidefinite((a, b) in pair(), k in kernel()) {
        let x = DMatrix::from_fn(a.nrows() + b.nrows(), a.ncols(), |i, j| {
            if i < a.nrows() { a[(i, j)] } else { b[(i - a.nrows(), j)] }
        });
        let kxx = k.gram_sym(&x).unwrap();
        let min = kxx.clone().symmetric_eigenvalues().min();
        prop_assert!(min >= -1e-9 * kxx.trace(), "min eigenvalue {min}");
    }

    #[test]
    fn fc_kernels_are_rotation_invariant((a, b) in pair(), k in kernel(), seed in prop::collection::vec(-1.0f64..1.0, 49)) {
        let d = a.ncols();
        let m = DMatrix::from_fn(d, d, |i, j| seed[(i * 7 + j) % 49] + if i == j { 2.0 } else { 0.0 });
        let q = m.qr().q();
        let k0 = k.gram(&a, &b).unwrap();
        let k1 = k.gram(&(&a * &q), &(&b * &q)).unwrap();
        prop_assert!(rel(&k1, &k0) < 1e-10, "rel {}", rel(&k1, &k0));
    }

    #[test]
    fn vjp_matches_central_differences((a, b) in pair(), k in kernel(), gs in prop::collection::vec(-1.0f64..1.0, 25)) {
        // With b_std = 0 an FC kernel is positively homogeneous in each
        // argument, so it has no derivative at the zero vector (a cone
        // point); finiteness there is tested separately below.
        prop_assume!(no_zero_rows(&a) && no_zero_rows(&b));
        prop_assume!(not_nearly_collinear(&a, &b));
        let g = DMatrix::from_fn(a.nrows(), b.nrows(), |i, j| gs[(i * 5 + j) % 25]);
        let (da, db) = k.vjp(&a, &b, &g).unwrap();
        let fa = fd(&a, fd_step(&k), |x| dot(&g, &k.gram(x, &b).unwrap()));
        let fb = fd(&b, fd_step(&k), |x| dot(&g, &k.gram(&a, x).unwrap()));
        prop_assert!(rel(&da, &fa) < 1e-6, "da rel {} {}", rel(&da, &fa), k.spec());
        prop_assert!(rel(&db, &fb) < 1e-6, "db rel {} {}", rel(&db, &fb), k.spec());
        prop_assert!(da.iter().chain(db.iter()).all(|v| v.is_finite()));
    }

    #[test]
    fn vjp_sym_matches_central_differences((a, b) in pair(), k in kernel(), gs in prop::collection::vec(-1.0f64..1.0, 25), dup in any::<bool>()) {
        // Optionally duplicate a point inside the set (K_ss with repeats).
        let x = if dup && a.nrows() >= 2 {
            let mut x = a.clone();
            x.set_row(1, &a.row(0));
            x
        } else {
            a.clone()
        };
        let _ = b;
        prop_assume!(no_zero_rows(&x) && not_nearly_collinear(&x, &x));
        let n = x.nrows();
        let g = DMatrix::from_fn(n, n, |i, j| gs[(i * 5 + j) % 25]);
        let dx = k.vjp_sym(&x, &g).unwrap();
        let f = fd(&x, fd_step(&k), |y| dot(&g, &k.gram_sym(y).unwrap()));
        prop_assert!(rel(&dx, &f) < 1e-6, "rel {} {}", rel(&dx, &f), k.spec());
    }
}

#[test]
fn singular_points_give_finite_values_and_gradients() {
    // Zero vectors, identical, collinear and antipodal points.
    let x = DMatrix::from_row_slice(
        5,
        3,
        &[
            0.0, 0.0, 0.0, 1.0, -2.0, 0.5, 2.0, -4.0, 1.0, -1.0, 2.0, -0.5, 1.0, -2.0, 0.5,
        ],
    );
    for s in SPECS {
        let k = s.parse::<KernelSpec>().unwrap().build();
        let g = DMatrix::from_element(5, 5, 1.0);
        let kxx = k.gram_sym(&x).unwrap();
        let kx = k.gram(&x, &x).unwrap();
        let dx = k.vjp_sym(&x, &g).unwrap();
        let (da, db) = k.vjp(&x, &x, &g).unwrap();
        for m in [&kxx, &kx, &dx, &da, &db] {
            assert!(m.iter().all(|v| v.is_finite()), "{s}: {m}");
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let k = KernelSpec::fc_ntk(1).build();
    let a = DMatrix::from_element(3, 4, 1.0);
    let e = k.gram(&a, &DMatrix::from_element(2, 5, 1.0)).unwrap_err().to_string();
    assert!(e.contains("shape mismatch"), "{e}");
    let e = k.gram(&DMatrix::zeros(0, 4), &a).unwrap_err().to_string();
    assert!(e.contains("empty input"), "{e}");
    let mut nan = a.clone();
    nan[(2, 1)] = f64::NAN;
    let e = k.gram_sym(&nan).unwrap_err().to_string();
    assert!(e.contains("non-finite value in a at row 2, column 1"), "{e}");
    let mut inf = a.clone();
    inf[(0, 3)] = f64::INFINITY;
    assert!(k.gram(&a, &inf).is_err());
    let e = k.vjp(&a, &a, &DMatrix::zeros(2, 2)).unwrap_err().to_string();
    assert!(e.contains("g"), "{e}");
}

#[test]
fn low_rank_vjp_equals_the_dense_one() {
    use kip_kernels::{points, points_row_major, Linearization};
    let a = DMatrix::from_fn(37, 6, |i, j| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0);
    let b = DMatrix::from_fn(9, 6, |i, j| ((i * 5 + j) % 13) as f64 / 6.0 - 1.0);
    let u = DMatrix::from_fn(37, 3, |i, j| ((i + 2 * j) % 5) as f64 - 2.0);
    let v = DMatrix::from_fn(9, 3, |i, j| ((3 * i + j) % 7) as f64 / 3.0 - 1.0);
    for s in SPECS {
        let k = s.parse::<KernelSpec>().unwrap().build();
        let (_, dense) = k.vjp(&a, &b, &(&u * v.transpose())).unwrap();
        let mut lin = Linearization::default();
        lin.compute(&k, points(&a), points(&b)).unwrap();
        let mut low = DMatrix::zeros(0, 0);
        lin.vjp_b_lowrank_into(points(&a), points(&b), &u, &v, &mut low)
            .unwrap();
        assert!(rel(&low, &dense) < 1e-12, "{s}: {}", rel(&low, &dense));
        // Row-major `a` (a KIP step's targets) takes the transposed product.
        let a_rm: Vec<f64> = a.transpose().as_slice().to_vec();
        let a_rm = points_row_major(&a_rm, a.nrows(), a.ncols());
        lin.compute(&k, a_rm, points(&b)).unwrap();
        let mut low_rm = DMatrix::zeros(0, 0);
        lin.vjp_b_lowrank_into(a_rm, points(&b), &u, &v, &mut low_rm).unwrap();
        assert!(rel(&low_rm, &dense) < 1e-12, "{s} row-major: {}", rel(&low_rm, &dense));
    }
}

/// The single-precision products: K and the low-rank VJP equal the f64 ones
/// to f32 accuracy (inner products of 64 dims accumulated in f32; the
/// kernels amplify their error by at most a small factor away from
/// collinear pairs), and the f32 path reports bad input as the f64 one.
#[test]
fn f32_products_match_f64_to_single_precision() {
    use kip_kernels::{points, Linearization, PointsF32};
    let d = 64;
    let a = DMatrix::from_fn(301, d, |i, j| (((i * 7 + j * 3) % 23) as f32 / 11.0 - 1.0) as f64);
    let b = DMatrix::from_fn(17, d, |i, j| ((i * 5 + j) % 13) as f64 / 6.3 - 1.0);
    let a32: Vec<f32> = (0..a.nrows())
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .map(|(i, j)| a[(i, j)] as f32)
        .collect();
    let u = DMatrix::from_fn(301, 3, |i, j| ((i + 2 * j) % 5) as f64 - 2.0);
    let v = DMatrix::from_fn(17, 3, |i, j| ((3 * i + j) % 7) as f64 / 3.0 - 1.0);
    for s in SPECS {
        let k = s.parse::<KernelSpec>().unwrap().build();
        let mut lin = Linearization::default();
        lin.compute(&k, points(&a), points(&b)).unwrap();
        let mut want = DMatrix::zeros(0, 0);
        lin.vjp_b_lowrank_into(points(&a), points(&b), &u, &v, &mut want)
            .unwrap();
        let k64 = lin.k().clone();
        let mut lin32 = Linearization::default();
        let pa = PointsF32::new(&a32, a.nrows(), d);
        lin32.compute(&k, pa, points(&b)).unwrap();
        let mut got = DMatrix::zeros(0, 0);
        lin32.vjp_b_lowrank_into(pa, points(&b), &u, &v, &mut got).unwrap();
        let ek = (lin32.k() - &k64).abs().max() / k64.abs().max();
        let eg = (&got - &want).abs().max() / want.abs().max();
        // ek > 0: the product really ran in single precision.
        assert!(ek > 0.0 && ek < 1e-6, "{s}: K rel {ek}");
        println!("{s}: K rel {ek:.1e}, VJP rel {eg:.1e}");
        assert!(eg < 1e-5, "{s}: VJP rel {eg}");
    }
    let k = "fc1-ntk".parse::<KernelSpec>().unwrap().build();
    let mut lin = Linearization::default();
    let mut bad = a32.clone();
    bad[3 * d + 5] = f32::NAN;
    let e = lin
        .compute(&k, PointsF32::new(&bad, a.nrows(), d), points(&b))
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite value in a at row 3, column 5"), "{e}");
    let mut big = b.clone();
    big[(2, 7)] = 1e300;
    let e = lin
        .compute(&k, PointsF32::new(&a32, a.nrows(), d), points(&big))
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 2"), "{e}");
    let e = lin
        .compute(&k, PointsF32::new(&a32[..301 * 8], 301, 8), points(&b))
        .unwrap_err()
        .to_string();
    assert!(e.contains("columns"), "{e}");
}

/// Norms supplied with the points ([`NormedPoints`], from `row_norms`) give
/// bitwise the same linearisation as norms computed inside `compute`, in
/// both precisions; wrong or non-finite norms are errors naming them.
#[test]
fn supplied_norms_match_computed_ones_and_are_checked() {
    use kip_kernels::{points, row_norms, AnyPoints, Linearization, PointsF32};
    let d = 24;
    let a = DMatrix::from_fn(90, d, |i, j| ((i * 7 + j * 3) % 23) as f64 / 11.0 - 1.0);
    let b = DMatrix::from_fn(13, d, |i, j| ((i * 5 + j) % 13) as f64 / 6.3 - 1.0);
    let a32: Vec<f32> = (0..a.nrows())
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .map(|(i, j)| a[(i, j)] as f32)
        .collect();
    let k = "fc2-ntk".parse::<KernelSpec>().unwrap().build();
    let cases: [AnyPoints<'_>; 2] = [points(&a).into(), PointsF32::new(&a32, a.nrows(), d).into()];
    for pa in cases {
        let norms = row_norms(pa).unwrap();
        let mut want = Linearization::default();
        want.compute(&k, pa, points(&b)).unwrap();
        let mut got = Linearization::default();
        got.compute(&k, pa.with_norms(&norms), points(&b)).unwrap();
        assert_eq!(got.k(), want.k());
        let e = got
            .compute(&k, pa.with_norms(&norms[1..]), points(&b))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a norms") && e.contains("90 values"), "{e}");
        let mut bad = norms.clone();
        bad[4] = f64::NAN;
        let e = got
            .compute(&k, pa.with_norms(&bad), points(&b))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a norms at row 4"), "{e}");
    }
    let e = row_norms(PointsF32::new(&a32[..0], 0, d)).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
}

/// `f` on a rayon pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn tiled_gram_gives_the_bits_of_the_untiled_one() {
    // One thread takes the untiled path (one GEMM, then the map); two to
    // five threads tile these sizes into 9–12 row tiles (the last one
    // shorter), for column-major and row-major `a`.
    let a = DMatrix::from_fn(1037, 29, |i, j| ((i * 7 + j * 3) % 23) as f64 / 7.0 - 1.5);
    let a_rows: Vec<f64> = (0..a.nrows())
        .flat_map(|i| a.row(i).iter().copied().collect::<Vec<_>>())
        .collect();
    let b = DMatrix::from_fn(41, 29, |i, j| ((i * 5 + j) % 13) as f64 / 6.0 - 1.0);
    for s in SPECS {
        let k = s.parse::<KernelSpec>().unwrap().build();
        let row_major = |threads| {
            let mut out = DMatrix::zeros(0, 0);
            on_threads(threads, || {
                k.gram_into(
                    kip_kernels::points_row_major(&a_rows, a.nrows(), a.ncols()),
                    kip_kernels::points(&b),
                    &mut out,
                )
            })
            .unwrap();
            out
        };
        let same = |x: &DMatrix<f64>, y: &DMatrix<f64>| x.iter().zip(y.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
        let (want, want_rm) = (on_threads(1, || k.gram(&a, &b).unwrap()), row_major(1));
        for threads in 2..=5 {
            assert!(
                same(&want, &on_threads(threads, || k.gram(&a, &b).unwrap())),
                "{s}, {threads} threads"
            );
            assert!(same(&want_rm, &row_major(threads)), "{s}, row-major, {threads} threads");
        }
    }
}

#[test]
fn tiled_gram_names_the_first_bad_row_of_any_tile() {
    let k = KernelSpec::fc_ntk(3).build();
    let b = DMatrix::from_element(7, 9, 0.5);
    let mut a = DMatrix::from_element(1200, 9, 0.25);
    a[(1100, 4)] = f64::INFINITY;
    a[(700, 2)] = f64::NAN;
    for threads in [1, 2, 4] {
        let e = on_threads(threads, || k.gram(&a, &b)).unwrap_err().to_string();
        assert!(
            e.contains("non-finite value in a at row 700, column 2"),
            "{threads} threads: {e}"
        );
    }
}

#[test]
fn tiled_vjp_gives_the_bits_of_the_untiled_one() {
    // The one-shot vjp runs in row tiles on 2+ threads (inner products,
    // norms, backward map and the diagonal term of dL/da per tile), and as
    // one GEMM, a parallel pass over the blocks of its grid and write-then-
    // GEMM sides on one: the same bits.
    let a = DMatrix::from_fn(1037, 29, |i, j| ((i * 7 + j * 3) % 23) as f64 / 7.0 - 1.5);
    let b = DMatrix::from_fn(41, 29, |i, j| ((i * 5 + j) % 13) as f64 / 6.0 - 1.0);
    let g = DMatrix::from_fn(1037, 41, |i, j| ((i * 3 + j * 11) % 17) as f64 / 8.0 - 1.0);
    for s in SPECS {
        let k = s.parse::<KernelSpec>().unwrap().build();
        let want = on_threads(1, || k.vjp(&a, &b, &g).unwrap());
        for threads in 2..=4 {
            assert_eq!(
                on_threads(threads, || k.vjp(&a, &b, &g).unwrap()),
                want,
                "{s}, {threads} threads"
            );
        }
    }
    let mut bad = a.clone();
    bad[(900, 3)] = f64::NAN;
    let e = on_threads(2, || k_fc3().vjp(&bad, &b, &g)).unwrap_err().to_string();
    assert!(e.contains("non-finite value in a at row 900, column 3"), "{e}");
}

/// The one-shot vjp over a grid of several row and column blocks (128 × 256,
/// in row tiles of two blocks each on two threads), untiled and tiled, and
/// for one side at a time, against the linearized path (partials stored,
/// then `P` and the sums in separate passes).
#[test]
fn vjp_over_its_grid_equals_the_linearized_one() {
    use kip_kernels::{points, Linearization};
    let a = DMatrix::from_fn(700, 13, |i, j| ((i * 7 + j * 3) % 23) as f64 / 7.0 - 1.5);
    let b = DMatrix::from_fn(300, 13, |i, j| ((i * 5 + j) % 13) as f64 / 6.0 - 1.0);
    let g = DMatrix::from_fn(700, 300, |i, j| ((i * 3 + j * 11) % 17) as f64 / 8.0 - 1.0);
    for s in SPECS {
        let k = s.parse::<KernelSpec>().unwrap().build();
        let mut lin = Linearization::default();
        lin.compute(&k, points(&a), points(&b)).unwrap();
        let (mut want_a, mut want_b) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        lin.vjp_into(points(&a), points(&b), &g, Some(&mut want_a), Some(&mut want_b))
            .unwrap();
        for threads in [1, 2] {
            let (da, db) = on_threads(threads, || k.vjp(&a, &b, &g).unwrap());
            assert!(
                rel(&da, &want_a) < 1e-12,
                "{s}, {threads} threads: dL/da {}",
                rel(&da, &want_a)
            );
            assert!(
                rel(&db, &want_b) < 1e-12,
                "{s}, {threads} threads: dL/db {}",
                rel(&db, &want_b)
            );
            let (mut one_a, mut one_b) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
            on_threads(threads, || {
                k.vjp_into(points(&a), points(&b), &g, Some(&mut one_a), None).unwrap();
                k.vjp_into(points(&a), points(&b), &g, None, Some(&mut one_b)).unwrap();
            });
            assert_eq!((one_a, one_b), (da, db), "{s}, {threads} threads: one side at a time");
        }
    }
}

fn k_fc3() -> AnyKernel {
    KernelSpec::fc_ntk(3).build()
}
