//! Scoring a support set: KRR test accuracy and loss (paper Eq. 2), and its
//! best labels in closed form (Label Solve).

use kip_data::{one_hot, Dataset};
use kip_kernels::{points, Kernel, PointsView};
use kip_krr::{Eval, Ridge};
use nalgebra::DMatrix;

use crate::error::{MetaError, Result};

/// KRR accuracy and loss of the support set `(x_s, y_s)` on test points
/// with class ids `test_labels` (targets: their centred one-hot vectors),
/// ridge `reg·tr(K_ss)/n_s`, `K_ts` formed `block` test rows at a time.
///
/// # Shapes
/// `x_s`: `n_s × d`; `y_s`: `n_s × C`; `x_test`: `n_t × d`; `test_labels`:
/// `n_t` ids in `0..C`.
///
/// # Errors
/// [`MetaError::Label`] for an id outside `0..C`; kernel/KRR failures
/// (shapes, non-finite values, `block` 0, a bad `reg`).
pub fn evaluate_support(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    reg: f64,
    x_test: PointsView<'_>,
    test_labels: &[usize],
    block: usize,
) -> Result<Eval> {
    let c = y_s.ncols();
    if let Some((index, &label)) = test_labels.iter().enumerate().find(|(_, &l)| l >= c) {
        return Err(MetaError::Label {
            what: "test_labels",
            index,
            label,
            classes: c,
        });
    }
    let y_test = one_hot(test_labels, c, true);
    Ok(kip_krr::evaluate(
        kernel,
        x_s,
        y_s,
        Ridge::Relative(reg),
        x_test,
        test_labels,
        Some(&y_test),
        block,
    )?)
}

/// Label Solve with every image of `train` as a target: the support labels
/// `y_s* = (K_ts (K_ss+λI)⁻¹)⁺ y_t` (centred one-hot `y_t`), `K_ts` streamed
/// `block` targets at a time ([`kip_krr::label_solve_streaming`]).
///
/// # Shapes
/// `x_s`: `n_s × d` (the training set's `d`) → `n_s × C`.
///
/// # Errors
/// Kernel/KRR failures (dimensions, `block` 0, a bad `reg`, a singular
/// system).
pub fn label_solve(
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    train: &Dataset,
    reg: f64,
    block: usize,
) -> Result<DMatrix<f64>> {
    let x_train = train.to_matrix();
    let y_train = one_hot(train.labels(), train.n_classes(), true);
    Ok(kip_krr::label_solve_streaming(
        kernel,
        x_s,
        points(&x_train),
        &y_train,
        Ridge::Relative(reg),
        block,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kip_kernels::KernelSpec;
    use rand::SeedableRng;

    #[test]
    fn label_solve_beats_one_hot_labels_and_bad_ids_are_errors() {
        let split = kip_data::digits();
        let t = kip_data::Preprocess::Standard.fit(&split.train).unwrap();
        let (train, test) = (t.apply(&split.train), t.apply(&split.test));
        let kernel = KernelSpec::fc_ntk(1).build();
        let s = train
            .sample_balanced(20, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        let x_test = test.to_matrix();
        let y0 = one_hot(&s.labels, 10, true);
        let before = evaluate_support(&kernel, points(&s.x), &y0, 1e-6, points(&x_test), test.labels(), 100).unwrap();
        let y = label_solve(&kernel, points(&s.x), &train, 1e-6, 500).unwrap();
        let after = evaluate_support(&kernel, points(&s.x), &y, 1e-6, points(&x_test), test.labels(), 100).unwrap();
        assert!(after.loss.unwrap() < before.loss.unwrap(), "{before:?} -> {after:?}");
        let mut labels = test.labels().to_vec();
        labels[3] = 10;
        let e = evaluate_support(&kernel, points(&s.x), &y, 1e-6, points(&x_test), &labels, 100).unwrap_err();
        assert!(
            matches!(
                e,
                MetaError::Label {
                    index: 3,
                    label: 10,
                    classes: 10,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
