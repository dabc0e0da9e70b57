//! Label Solve and robustness checks on random data.

mod common;

use common::{labels, points, rel};
use kip_kernels::{points as view, Kernel, KernelSpec};
use kip_krr::{fit, label_solve, label_solve_streaming, predict, Cholesky, KrrError, LabelSolveAccumulator, Ridge};
use nalgebra::DMatrix;

/// Gradient of L(y_s) = ½·mean((K_ts (K_ss+λI)⁻¹ y_s − y_t)²) with respect to
/// y_s: (K_ss+λI)⁻¹ K_st (pred − y_t) / (n_t·C).
fn grad(
    k_ss: &DMatrix<f64>,
    k_ts: &DMatrix<f64>,
    y_s: &DMatrix<f64>,
    y_t: &DMatrix<f64>,
    ridge: Ridge,
) -> DMatrix<f64> {
    let model = fit(k_ss, y_s, ridge).unwrap();
    let r = predict(k_ts, &model.alpha) - y_t;
    let chol = Cholesky::factor(k_ss, ridge.value(k_ss)).unwrap();
    chol.solve(&(k_ts.transpose() * r)) / (y_t.len() as f64)
}

#[test]
fn label_solve_zeroes_the_loss_gradient() {
    let kernel = KernelSpec::fc_ntk(1).build();
    for (n_s, n_t, d, c, seed) in [(20, 200, 50, 3, 1), (40, 300, 30, 10, 2), (10, 10, 20, 2, 3)] {
        let (x_s, x_t) = (points(n_s, d, seed), points(n_t, d, seed + 100));
        let (_, y_s) = labels(n_s, c, seed + 200);
        let (_, y_t) = labels(n_t, c, seed + 300);
        let k_ss = kernel.gram_sym(&x_s).unwrap();
        let k_ts = kernel.gram(&x_t, &x_s).unwrap();
        let ridge = Ridge::default();
        let y_ls = label_solve(&k_ss, &k_ts, &y_t, ridge).unwrap();
        let g0 = grad(&k_ss, &k_ts, &y_s, &y_t, ridge).abs().max();
        let g1 = grad(&k_ss, &k_ts, &y_ls, &y_t, ridge).abs().max();
        println!(
            "n_s={n_s} n_t={n_t}: |grad| at one-hot {g0:.3e}, at LS {g1:.3e}, ratio {:.2e}",
            g1 / g0
        );
        assert!(g1 <= 1e-8 * g0, "gradient ratio {:e}", g1 / g0);
        // And the loss itself can only go down.
        let loss = |y: &DMatrix<f64>| kip_krr::mse_loss(&predict(&k_ts, &fit(&k_ss, y, ridge).unwrap().alpha), &y_t);
        assert!(loss(&y_ls) <= loss(&y_s));
    }
}

#[test]
fn square_case_with_vanishing_ridge_reproduces_the_targets() {
    let kernel = KernelSpec::fc_ntk(1).build();
    let (n, d, c) = (15, 200, 4);
    let x_s = points(n, d, 7);
    let (_, y_t) = labels(n, c, 8);
    let k_ss = kernel.gram_sym(&x_s).unwrap();
    let ev = nalgebra::SymmetricEigen::new(k_ss.clone()).eigenvalues;
    println!("cond(K_ss) = {:.1}", ev.max() / ev.min());
    let ridge = Ridge::Absolute(1e-12);
    // Targets = support points: A = K(K+λI)⁻¹ ≈ I, so y_s* ≈ y_t.
    let y_ls = label_solve(&k_ss, &k_ss, &y_t, ridge).unwrap();
    assert!(rel(&y_ls, &y_t) < 1e-8, "{:e}", rel(&y_ls, &y_t));
    // Different targets, n_t = n_s: A is invertible, predictions reproduce y_t.
    let x_t = points(n, d, 9);
    let k_ts = kernel.gram(&x_t, &x_s).unwrap();
    let y_ls = label_solve(&k_ss, &k_ts, &y_t, ridge).unwrap();
    let pred = predict(&k_ts, &fit(&k_ss, &y_ls, ridge).unwrap().alpha);
    assert!(rel(&pred, &y_t) < 1e-8, "{:e}", rel(&pred, &y_t));
}

#[test]
fn streaming_label_solve_equals_dense() {
    let kernel = KernelSpec::fc_ntk(2).build();
    let (x_s, x_t) = (points(30, 40, 11), points(517, 40, 12));
    let (_, y_t) = labels(517, 10, 13);
    let k_ss = kernel.gram_sym(&x_s).unwrap();
    let k_ts = kernel.gram(&x_t, &x_s).unwrap();
    let dense = label_solve(&k_ss, &k_ts, &y_t, Ridge::default()).unwrap();
    for block in [1, 64, 500, 517, 10_000] {
        let s = label_solve_streaming(&kernel, view(&x_s), view(&x_t), &y_t, Ridge::default(), block).unwrap();
        let e = rel(&s, &dense);
        assert!(e < 1e-9, "block {block}: {e:e}");
    }
    // The accumulator in uneven pieces, out of order.
    let mut acc = LabelSolveAccumulator::new(30, 10);
    for (start, len) in [(300, 217), (0, 100), (100, 200)] {
        acc.add_block(&k_ts.rows(start, len).into_owned(), &y_t.rows(start, len).into_owned())
            .unwrap();
    }
    assert_eq!(acc.n_target(), 517);
    assert!(rel(&acc.finish(&k_ss, Ridge::default()).unwrap(), &dense) < 1e-9);
}

#[test]
fn duplicate_support_points_with_zero_ridge_never_give_nan() {
    let kernel = KernelSpec::fc_ntk(1).build();
    let mut x_s = points(12, 20, 21);
    for j in 0..20 {
        x_s[(5, j)] = x_s[(2, j)];
        x_s[(9, j)] = x_s[(2, j)];
    }
    let (_, y_s) = labels(12, 3, 22);
    let k_ss = kernel.gram_sym(&x_s).unwrap();
    for ridge in [Ridge::Relative(0.0), Ridge::Absolute(0.0)] {
        match fit(&k_ss, &y_s, ridge) {
            Ok(m) => {
                println!("duplicates, {ridge:?}: jitter {:.3e} reported", m.jitter);
                assert!(m.jitter > 0.0);
                assert!(m.alpha.iter().all(|v| v.is_finite()));
            }
            Err(e) => {
                assert!(matches!(e, KrrError::NotPositiveDefinite { .. }), "{e}");
                assert!(!e.to_string().is_empty());
            }
        }
        let x_t = points(50, 20, 23);
        let (_, y_t) = labels(50, 3, 24);
        let k_ts = kernel.gram(&x_t, &x_s).unwrap();
        let y_ls = label_solve(&k_ss, &k_ts, &y_t, ridge).unwrap();
        assert!(y_ls.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn non_finite_kernels_and_bad_ridges_are_errors() {
    let k = DMatrix::<f64>::identity(4, 4);
    let y = DMatrix::from_element(4, 2, 0.5);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut kb = k.clone();
        kb[(3, 1)] = bad;
        kb[(1, 3)] = bad;
        assert!(matches!(
            fit(&kb, &y, Ridge::default()),
            Err(KrrError::NonFinite { .. })
        ));
        assert!(matches!(Cholesky::factor(&kb, 0.1), Err(KrrError::NonFinite { .. })));
        let mut kts = DMatrix::from_element(6, 4, 0.1);
        kts[(2, 2)] = bad;
        assert!(matches!(
            label_solve(&k, &kts, &DMatrix::zeros(6, 2), Ridge::default()),
            Err(KrrError::NonFinite { what: "k_ts" })
        ));
        assert!(matches!(
            label_solve(
                &kb,
                &DMatrix::from_element(6, 4, 0.1),
                &DMatrix::zeros(6, 2),
                Ridge::default()
            ),
            Err(KrrError::NonFinite { what: "k_ss" })
        ));
    }
    for ridge in [
        Ridge::Relative(-1e-6),
        Ridge::Absolute(f64::NAN),
        Ridge::Relative(f64::INFINITY),
    ] {
        assert!(matches!(fit(&k, &y, ridge), Err(KrrError::InvalidParam { .. })));
        assert!(matches!(
            label_solve(&k, &k, &y, ridge),
            Err(KrrError::InvalidParam { .. })
        ));
    }
    let e = fit(&k, &y, Ridge::Relative(-1.0)).unwrap_err().to_string();
    assert!(e.contains("reg") && e.contains("-1"), "{e}");
}
