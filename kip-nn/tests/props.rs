//! Properties of the public API (proptest).

use kip_nn::{centered_one_hot, evaluate, train, train_in, Mlp, MlpParams, Parameterization};
use nalgebra::DMatrix;
use proptest::prelude::*;

fn matrix(rows: usize, cols: usize) -> impl Strategy<Value = DMatrix<f64>> {
    proptest::collection::vec(-3.0f64..3.0, rows * cols).prop_map(move |v| DMatrix::from_vec(rows, cols, v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// With `b_std = 0` a ReLU network is positively homogeneous:
    /// `f(αx) = α·f(x)` for `α > 0`.
    #[test]
    fn bias_free_network_is_positively_homogeneous(
        x in matrix(3, 5),
        alpha in 0.1f64..10.0,
        depth in 1usize..4,
        ntk in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let param = if ntk { Parameterization::Ntk } else { Parameterization::Standard };
        let p = MlpParams { depth, width: 6, b_std: 0.0, param, ..Default::default() }.check().unwrap();
        let m = Mlp::<f64>::init(5, 2, &p, seed);
        let f = m.forward(&x);
        let g = m.forward(&(&x * alpha));
        prop_assert!((&g - &f * alpha).norm() <= 1e-10 * (1.0 + g.norm()));
    }

    /// A row's output does not depend on the other rows it is evaluated with.
    #[test]
    fn rows_are_independent(x in matrix(6, 4), seed in any::<u64>()) {
        let p = MlpParams { width: 8, ..Default::default() }.check().unwrap();
        let m = Mlp::<f64>::init(4, 3, &p, seed);
        let all = m.forward(&x);
        for i in 0..6 {
            let one = m.forward(&x.rows(i, 1).into_owned());
            prop_assert!((one.row(0) - all.row(i)).norm() <= 1e-12 * (1.0 + all.row(i).norm()));
        }
    }

    /// Centred one-hot rows sum to zero and have their maximum at the label.
    #[test]
    fn centered_one_hot_rows(labels in proptest::collection::vec(0usize..7, 1..20)) {
        let y = centered_one_hot(&labels, 7);
        for (i, &l) in labels.iter().enumerate() {
            prop_assert!(y.row(i).sum().abs() < 1e-12);
            prop_assert!((y[(i, l)] - 6.0 / 7.0).abs() < 1e-12);
        }
    }

    /// Accuracy is a fraction and loss is finite and non-negative.
    #[test]
    fn evaluation_is_well_formed(x in matrix(9, 3), seed in any::<u64>(), xent in any::<bool>()) {
        let loss = if xent { kip_nn::Loss::CrossEntropy } else { kip_nn::Loss::Mse };
        let p = MlpParams { width: 5, loss, ..Default::default() }.check().unwrap();
        let m = Mlp::new(3, 3, &p, seed);
        let labels: Vec<usize> = (0..9).map(|i| i % 3).collect();
        let e = evaluate(&m, &x, &labels, None).unwrap();
        prop_assert!((0.0..=1.0).contains(&e.accuracy));
        prop_assert!(e.loss.is_finite() && e.loss >= 0.0);
    }
}

/// Training in `f32` (the default) follows the `f64` trajectory closely.
#[test]
fn f32_training_tracks_f64() {
    let labels: Vec<usize> = (0..24).map(|i| i % 3).collect();
    let x = DMatrix::from_fn(24, 5, |i, j| {
        ((i * 7 + j * 5) % 9) as f64 / 4.0 - 1.0 + if j == labels[i] { 1.0 } else { 0.0 }
    });
    let y = centered_one_hot(&labels, 3);
    let p = MlpParams {
        width: 32,
        steps: 30,
        batch: 8,
        lr: Some(1.0),
        ..Default::default()
    }
    .check()
    .unwrap();
    let a = train(&p, &x, &y, &labels, None).unwrap();
    let b = train_in::<f64>(&p, &x, &y, &labels, None).unwrap();
    let rel = (a.final_train_loss - b.final_train_loss).abs() / b.final_train_loss;
    assert!(rel < 1e-3, "f32 {} vs f64 {}", a.final_train_loss, b.final_train_loss);
}
