//! Properties: blocked prediction equals one-shot prediction, streaming Label
//! Solve equals dense, predictions are invariant to the support order.

mod common;

use common::{labels, points};
use kip_kernels::{points as view, Kernel, KernelSpec};
use kip_krr::{evaluate, fit, label_solve, label_solve_streaming, predict, predict_blocked, Ridge};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn blocked_prediction_equals_one_shot(
        n_s in 1usize..40, n_t in 1usize..120, d in 1usize..30, c in 1usize..6,
        block in 1usize..150, depth in 0usize..3, seed in 0u64..1000,
    ) {
        let kernel = KernelSpec::fc_ntk(depth).build();
        let (x_s, x_t) = (points(n_s, d, seed), points(n_t, d, seed + 1));
        let (_, y_s) = labels(n_s, c, seed + 2);
        let model = fit(&kernel.gram_sym(&x_s).unwrap(), &y_s, Ridge::Relative(1e-3)).unwrap();
        let one_shot = predict(&kernel.gram(&x_t, &x_s).unwrap(), &model.alpha);
        let blocked = predict_blocked(&kernel, view(&x_s), &model.alpha, view(&x_t), block).unwrap();
        prop_assert!((&blocked - &one_shot).abs().max() <= 1e-12 * one_shot.abs().max().max(1e-300));
    }

    #[test]
    fn streaming_label_solve_equals_dense_for_any_block(
        n_s in 1usize..25, extra in 0usize..80, d in 2usize..30, c in 1usize..5,
        block in 1usize..120, seed in 0u64..1000,
    ) {
        let n_t = n_s + extra;
        let kernel = KernelSpec::fc_ntk(1).build();
        let (x_s, x_t) = (points(n_s, d, seed), points(n_t, d, seed + 1));
        let (_, y_t) = labels(n_t, c, seed + 2);
        let k_ss = kernel.gram_sym(&x_s).unwrap();
        let dense = label_solve(&k_ss, &kernel.gram(&x_t, &x_s).unwrap(), &y_t, Ridge::default()).unwrap();
        let stream = label_solve_streaming(&kernel, view(&x_s), view(&x_t), &y_t, Ridge::default(), block).unwrap();
        prop_assert!(stream.iter().all(|v| v.is_finite()));
        let err = (&stream - &dense).abs().max();
        prop_assert!(err <= 1e-7 * dense.abs().max().max(1e-12), "{err:e}");
    }

    #[test]
    fn evaluation_is_invariant_to_support_order(n_s in 2usize..30, seed in 0u64..1000) {
        let kernel = KernelSpec::fc_ntk(1).build();
        let (x_s, x_t) = (points(n_s, 12, seed), points(60, 12, seed + 1));
        let (_, y_s) = labels(n_s, 3, seed + 2);
        let (l_t, y_t) = labels(60, 3, seed + 3);
        let perm: Vec<usize> = (0..n_s).rev().collect();
        let (xp, yp) = (x_s.select_rows(&perm), y_s.select_rows(&perm));
        let a = evaluate(&kernel, view(&x_s), &y_s, Ridge::default(), view(&x_t), &l_t, Some(&y_t), 7).unwrap();
        let b = evaluate(&kernel, view(&xp), &yp, Ridge::default(), view(&x_t), &l_t, Some(&y_t), 64).unwrap();
        let (la, lb) = (a.loss.unwrap(), b.loss.unwrap());
        prop_assert!((la - lb).abs() <= 1e-9 * la.abs().max(1e-12));
    }
}
