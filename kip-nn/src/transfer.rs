//! The transfer check (paper §4): do finite networks trained on a distilled
//! support set beat the same networks trained on natural images?

use kip_core::argmax;
use kip_data::{one_hot, Dataset, SupportSet};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::arch::Arch;
use crate::convnet_train::train_convnet;
use crate::error::{NnError, Result};
use crate::params::MlpParams;
use crate::train::train;

/// Test accuracies per seed, with their mean and sample standard deviation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedAccuracies {
    /// Test accuracy of seed `0, 1, …`.
    pub test_acc: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (0 for one seed).
    pub std: f64,
}

impl SeedAccuracies {
    pub(crate) fn new(test_acc: Vec<f64>) -> Self {
        let n = test_acc.len() as f64;
        let mean = test_acc.iter().sum::<f64>() / n;
        let var = test_acc.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
        Self {
            test_acc,
            mean,
            std: var.sqrt(),
        }
    }
}

/// What [`transfer`] measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TransferReport {
    /// Networks trained on the support set.
    pub distilled: SeedAccuracies,
    /// The same networks trained on a natural class-balanced sample of the
    /// same size.
    pub natural: SeedAccuracies,
}

/// Trains fully connected networks with `base`: [`transfer_arch`] with
/// [`Arch::Mlp`].
///
/// # Errors
/// As [`transfer_arch`].
pub fn transfer(
    base: &MlpParams,
    support: &SupportSet,
    train_set: &Dataset,
    test: &Dataset,
    seeds: usize,
) -> Result<TransferReport> {
    transfer_arch(Arch::Mlp, base, support, train_set, test, seeds)
}

/// Trains networks of architecture `arch` with `base` (its seed replaced
/// by `0..seeds`) on the support set and, with the same seed, on a
/// class-balanced sample of as many training images (drawn with that
/// seed), and evaluates both on `test`.
///
/// For [`Arch::Mlp`], `base` describes the whole network
/// ([`train`]); for [`Arch::ConvNet`], `base.width` is the channels per
/// Conv, `base.depth` is unused, and the images have the shape of
/// `train_set` ([`train_convnet`]).
///
/// With the MSE loss the networks fit the support set's label vectors
/// (learned ones included); with cross-entropy, their argmax.
///
/// # Errors
/// [`NnError::InvalidParam`] for `seeds = 0`, bad `base` parameters, or an
/// architecture that does not fit the data ([`Arch::check`]: a ConvNet on
/// flat data names `arch`, one too deep for the images names `depth`),
/// before anything is trained; [`NnError::NaturalSample`] if `train`
/// cannot serve the sample; training errors (shapes, divergence).
pub fn transfer_arch(
    arch: Arch,
    base: &MlpParams,
    support: &SupportSet,
    train_set: &Dataset,
    test: &Dataset,
    seeds: usize,
) -> Result<TransferReport> {
    if seeds == 0 {
        return Err(NnError::InvalidParam {
            name: "seeds",
            value: "0".into(),
            expected: ">= 1",
        });
    }
    let shape = train_set.shape();
    arch.check(shape, &base.clone().check()?)?;
    let n = support.labels.len();
    let c = train_set.n_classes();
    let x_test = test.to_matrix();
    let test_set = Some((&x_test, test.labels()));
    let support_labels: Vec<usize> = (0..n).map(|i| argmax(support.y.row(i).iter().copied())).collect();
    let fit = |p: &crate::ValidParams, x: &DMatrix<f64>, y: &DMatrix<f64>, labels: &[usize]| {
        Ok::<_, NnError>(match arch {
            Arch::Mlp => train(p, x, y, labels, test_set)?.test_accuracy,
            Arch::ConvNet { depth } => train_convnet(p, depth, shape, x, y, labels, test_set)?.test_accuracy,
        })
    };
    let (mut distilled, mut natural) = (Vec::new(), Vec::new());
    for seed in 0..seeds as u64 {
        let p = MlpParams { seed, ..base.clone() }.check()?;
        let acc = fit(&p, &support.x_model, &support.y, &support_labels)?;
        distilled.push(acc.unwrap_or(f64::NAN));
        let sample = train_set
            .sample_balanced(n, &mut ChaCha8Rng::seed_from_u64(seed))
            .map_err(|e| NnError::NaturalSample {
                n,
                reason: e.to_string(),
            })?;
        let y = one_hot(&sample.labels, c, true);
        let acc = fit(&p, &sample.x, &y, &sample.labels)?;
        natural.push(acc.unwrap_or(f64::NAN));
    }
    Ok(TransferReport {
        distilled: SeedAccuracies::new(distilled),
        natural: SeedAccuracies::new(natural),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_natural_support_set_transfers_like_a_natural_sample() {
        let split = kip_data::digits();
        let t = kip_data::Preprocess::Standard.fit(&split.train).unwrap();
        let (train_set, test) = (t.apply(&split.train), t.apply(&split.test));
        // The support set is the seed-0 natural sample itself.
        let s = train_set
            .sample_balanced(30, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        let support = SupportSet::from_model(
            &s.x,
            &one_hot(&s.labels, 10, true),
            &s.labels,
            &t,
            train_set.class_names(),
        )
        .unwrap();
        let p = MlpParams {
            width: 64,
            steps: 50,
            batch: 30,
            center: true,
            ..MlpParams::default()
        };
        let r = transfer(&p, &support, &train_set, &test, 2).unwrap();
        assert_eq!(r.distilled.test_acc[0], r.natural.test_acc[0], "same data, same seed");
        assert!(r.distilled.mean > 0.5, "{r:?}");
        assert!(matches!(
            transfer(&p, &support, &train_set, &test, 0),
            Err(NnError::InvalidParam { name: "seeds", .. })
        ));
        let too_big = SupportSet::from_model(
            &DMatrix::zeros(2000, 64),
            &DMatrix::zeros(2000, 10),
            &vec![0; 2000],
            &t,
            train_set.class_names(),
        )
        .unwrap();
        assert!(matches!(
            transfer(&p, &too_big, &train_set, &test, 1),
            Err(NnError::NaturalSample { n: 2000, .. })
        ));
    }
}
