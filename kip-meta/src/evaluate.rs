//! Scoring a support set: KRR test accuracy and loss (paper Eq. 2), and its
//! best labels in closed form (Label Solve).

use kip_data::{one_hot, Dataset};
use kip_kernels::{points, Kernel, PointsView};
use kip_krr::{Eval, Ridge};
use nalgebra::DMatrix;

use crate::collective::{agree_on_failure, share, Collective};
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
    check_labels(test_labels, c)?;
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

/// [`evaluate_support`] spread over `ranks`: every rank fits the same
/// model; the test blocks are shared out (whole blocks, so each is
/// computed exactly as one process computes it), the predictions gathered
/// and scored on every rank. Bitwise the single-process result.
///
/// # Errors
/// As [`evaluate_support`]; [`MetaError::Rank`] when another rank failed.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_support_on(
    ranks: &dyn Collective,
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    y_s: &DMatrix<f64>,
    reg: f64,
    x_test: PointsView<'_>,
    test_labels: &[usize],
    block: usize,
) -> Result<Eval> {
    if ranks.size() == 1 {
        return evaluate_support(kernel, x_s, y_s, reg, x_test, test_labels, block);
    }
    let (c, n_t) = (y_s.ncols(), x_test.nrows());
    check_labels(test_labels, c)?;
    if block == 0 || test_labels.len() != n_t {
        // The single-process path reports these (the same on every rank).
        return evaluate_support(kernel, x_s, y_s, reg, x_test, test_labels, block);
    }
    let mut k_ss = DMatrix::zeros(0, 0);
    kernel.gram_sym_into(x_s, &mut k_ss)?;
    let model = kip_krr::fit(&k_ss, y_s, Ridge::Relative(reg))?;
    let blocks = n_t.div_ceil(block);
    let rows_of = |r: usize| {
        let b = share(blocks, r, ranks.size());
        (b.start * block).min(n_t)..(b.end * block).min(n_t)
    };
    let mine = rows_of(ranks.rank());
    let local = kip_krr::predict_blocked(kernel, x_s, &model.alpha, x_test.rows(mine.start, mine.len()), block)
        .map(|p| p.transpose().as_slice().to_vec());
    let message = local.as_ref().err().map(ToString::to_string);
    if let Some((rank, message)) = agree_on_failure(ranks, message.as_deref()) {
        return Err(local.err().map_or(MetaError::Rank { rank, message }, MetaError::from));
    }
    let counts: Vec<usize> = (0..ranks.size()).map(|r| rows_of(r).len() * c).collect();
    let mut all = vec![0.0; n_t * c];
    ranks.all_gather(&local.expect("no rank failed"), &counts, &mut all);
    let pred = DMatrix::from_row_slice(n_t, c, &all);
    let y_test = one_hot(test_labels, c, true);
    Ok(Eval {
        accuracy: kip_krr::accuracy(&pred, test_labels),
        loss: Some(kip_krr::mse_loss(&pred, &y_test)),
    })
}

/// Every class id is below `c`.
fn check_labels(test_labels: &[usize], c: usize) -> Result<()> {
    match test_labels.iter().enumerate().find(|(_, &l)| l >= c) {
        Some((index, &label)) => Err(MetaError::Label {
            what: "test_labels",
            index,
            label,
            classes: c,
        }),
        None => Ok(()),
    }
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

/// [`label_solve`] spread over `ranks`: the ranks take turns computing
/// the target blocks of `K_ts` (the kernel evaluations, the whole cost for
/// convolutional kernels), exchange each round's blocks, and every rank
/// folds them into the normal equations in block order, exactly as one
/// process does. Bitwise the single-process labels.
///
/// # Errors
/// As [`label_solve`]; [`MetaError::Rank`] when another rank failed.
pub fn label_solve_on(
    ranks: &dyn Collective,
    kernel: &dyn Kernel,
    x_s: PointsView<'_>,
    train: &Dataset,
    reg: f64,
    block: usize,
) -> Result<DMatrix<f64>> {
    if ranks.size() == 1 || block == 0 {
        return label_solve(kernel, x_s, train, reg, block);
    }
    let ridge = Ridge::Relative(reg).check()?;
    let x_train = train.to_matrix();
    let x_t = points(&x_train);
    let y_train = one_hot(train.labels(), train.n_classes(), true);
    let (n_t, n_s, size) = (x_train.nrows(), x_s.nrows(), ranks.size());
    let mut k_ss = DMatrix::zeros(0, 0);
    kernel.gram_sym_into(x_s, &mut k_ss)?;
    let mut acc = kip_krr::LabelSolveAccumulator::new(n_s, y_train.ncols());
    let rows = |j: usize| (j * block).min(n_t)..((j + 1) * block).min(n_t);
    let blocks = n_t.div_ceil(block);
    let mut k_block = DMatrix::zeros(0, 0);
    for round in 0..blocks.div_ceil(size) {
        let mine = rows(round * size + ranks.rank());
        let local = kernel
            .gram_into(x_t.rows(mine.start, mine.len()), x_s, &mut k_block)
            .map(|_| k_block.as_slice().to_vec());
        let message = local.as_ref().err().map(ToString::to_string);
        if let Some((rank, message)) = agree_on_failure(ranks, message.as_deref()) {
            return Err(local.err().map_or(MetaError::Rank { rank, message }, MetaError::from));
        }
        let counts: Vec<usize> = (0..size).map(|r| rows(round * size + r).len() * n_s).collect();
        let mut all = vec![0.0; counts.iter().sum()];
        ranks.all_gather(&local.expect("no rank failed"), &counts, &mut all);
        let mut offset = 0;
        for r in 0..size {
            let span = rows(round * size + r);
            if span.is_empty() {
                continue;
            }
            let k = DMatrix::from_column_slice(span.len(), n_s, &all[offset..offset + span.len() * n_s]);
            offset += span.len() * n_s;
            acc.add_block(&k, &y_train.rows(span.start, span.len()).into_owned())?;
        }
    }
    Ok(acc.finish(&k_ss, ridge)?)
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
