//! A dataset ready for a run: which data, how it is split and prepared
//! ([`DataSpec`], what a run's `config.json` records), and the result
//! ([`Prepared`]: model-space splits and the fitted, invertible transform).

use std::path::PathBuf;

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Split};
use crate::error::{DataError, Result};
use crate::export::SupportSet;
use crate::preprocess::{Preprocess, Transform};
use crate::resolve::{check_available, resolve};

/// Which data a run uses and how it is prepared.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `dataset` | `digits` | `digits` (embedded), `mnist`, `fashion-mnist`, `cifar10`, `npz:PATH` ([`crate::resolve`]) |
/// | `data_dir` | none (`$KIP_DATA_DIR`) | folder with the dataset's files, or its parent |
/// | `preprocess` | `standard` | [`Preprocess`], fitted on the training images |
/// | `holdout` | 0 | the last `holdout` training images become the test set (never targets) |
/// | `val` | 0 | the last `val` training images left after the holdout become a validation set (never targets; for choosing recipes without looking at the test set) |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Dataset name.
    pub dataset: String,
    /// Folder with the dataset's files (or its parent); `None`: `$KIP_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// Preprocessing fitted on the training split (written as its string
    /// form, e.g. `standard` or `zca:0.1`).
    #[serde(with = "preprocess_string")]
    pub preprocess: Preprocess,
    /// Training images held out as the test set (0: the official test set).
    pub holdout: usize,
    /// Training images set aside as a validation set (0: none; absent in
    /// older run configurations).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub val: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            dataset: "digits".into(),
            data_dir: None,
            preprocess: Preprocess::Standard,
            holdout: 0,
            val: 0,
        }
    }
}

/// [`Preprocess`] as the string it parses from.
mod preprocess_string {
    use super::Preprocess;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Preprocess, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Preprocess, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A dataset ready for a run: both splits in model space and the fitted
/// transform that maps support images back to pixels.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Training images in model space (targets are drawn from here).
    pub train: Dataset,
    /// Test images in model space.
    pub test: Dataset,
    /// Validation images in model space (`val` > 0).
    pub val: Option<Dataset>,
    /// The fitted preprocessing (inverted for export and pictures).
    pub transform: Transform,
    /// Largest raw pixel value of the training set (1 if none is positive):
    /// the white point of support pictures.
    pub pixel_max: f64,
    /// What the user should know: loader notes (e.g. a partial CIFAR-10
    /// test file) and where the test set comes from.
    pub notes: Vec<String>,
}

impl DataSpec {
    /// Whether the dataset's files can be found, without reading them
    /// (cheap: for checking a command line before heavy work).
    ///
    /// # Errors
    /// As [`crate::check_available`].
    pub fn check_available(&self) -> Result<()> {
        check_available(&self.dataset, self.data_dir.as_deref()).map(|_| ())
    }

    /// Load the dataset, hold out the test set, fit the preprocessing on
    /// the training split and apply it to both.
    ///
    /// # Errors
    /// Loader errors ([`crate::resolve`]); [`crate::DataError::Holdout`] for a
    /// holdout that leaves no training image; preprocessing errors.
    ///
    /// # Examples
    /// ```
    /// let prep = kip_data::DataSpec { holdout: 300, ..Default::default() }.load()?;
    /// assert_eq!((prep.train.len(), prep.test.len()), (1138, 300));
    /// # Ok::<(), kip_data::DataError>(())
    /// ```
    pub fn load(&self) -> Result<Prepared> {
        self.prepare(resolve(&self.dataset, self.data_dir.as_deref())?)
    }

    /// What [`DataSpec::load`] does after reading the files, on a split the
    /// caller already holds (e.g. arrays handed over from Python): hold out
    /// the test set, fit the preprocessing on the training split and apply
    /// it to both. `self.dataset` and `self.data_dir` are not used.
    ///
    /// # Errors
    /// As [`DataSpec::load`], without the loader errors.
    pub fn prepare(&self, split: Split) -> Result<Prepared> {
        let Split { train, test, mut notes } = split;
        let (train_raw, test_raw) = if self.holdout > 0 {
            let (tr, te) = train.holdout(self.holdout)?;
            notes.push(format!(
                "test set: the last {} training images (held out, never targets)",
                self.holdout
            ));
            (tr, te)
        } else {
            notes.push(format!("test set: the {} official test images", test.len()));
            (train, test)
        };
        let (train_raw, val_raw) = if self.val > 0 {
            let (tr, va) = train_raw.holdout(self.val).map_err(|e| match e {
                DataError::Holdout { holdout, len } => DataError::ValSplit { val: holdout, len },
                e => e,
            })?;
            notes.push(format!(
                "validation set: the last {} remaining training images (never targets)",
                self.val
            ));
            (tr, Some(va))
        } else {
            (train_raw, None)
        };
        let transform = self.preprocess.fit(&train_raw)?;
        let pixel_max = f64::from(train_raw.pixels().iter().fold(0.0f32, |m, &v| m.max(v)));
        Ok(Prepared {
            train: transform.apply_owned(train_raw),
            test: transform.apply_owned(test_raw),
            val: val_raw.map(|v| transform.apply_owned(v)),
            transform,
            pixel_max: if pixel_max > 0.0 { pixel_max } else { 1.0 },
            notes,
        })
    }
}

impl Prepared {
    /// How support pictures show this data: ZCA-space images per image
    /// ([`crate::PngScale::PerImage`], the field's convention: the layer
    /// norm that ZCA applies first cannot be undone), others on the pixel
    /// scale with white point [`Prepared::pixel_max`].
    pub fn display(&self) -> crate::PngScale {
        if self.transform.zca_ridge().is_some() {
            crate::PngScale::PerImage
        } else {
            crate::PngScale::Pixels { max: self.pixel_max }
        }
    }

    /// A support set for export: the model-space images `x_model` (`n × d`),
    /// their labels `y` and class ids, and the images mapped back to the
    /// original pixel scale.
    ///
    /// # Errors
    /// As [`SupportSet::from_model`].
    pub fn support_set(&self, x_model: &DMatrix<f64>, y: &DMatrix<f64>, labels: &[usize]) -> Result<SupportSet> {
        SupportSet::from_model(x_model, y, labels, &self.transform, self.train.class_names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_json_and_loads_digits() {
        let spec = DataSpec {
            preprocess: "zca:0.25".parse().unwrap(),
            holdout: 100,
            ..Default::default()
        };
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""preprocess":"zca:0.25""#), "{text}");
        assert_eq!(serde_json::from_str::<DataSpec>(&text).unwrap(), spec);
        let prep = spec.load().unwrap();
        assert_eq!(prep.test.len(), 100);
        assert!(prep.notes.iter().any(|n| n.contains("held out")));
    }

    #[test]
    fn validation_images_are_the_last_training_images_and_never_train() {
        let raw = crate::digits();
        let spec = DataSpec {
            preprocess: Preprocess::None,
            holdout: 100,
            val: 200,
            ..Default::default()
        };
        let prep = spec.load().unwrap();
        let val = prep.val.as_ref().expect("a validation set");
        let n = raw.train.len();
        assert_eq!((prep.train.len(), val.len(), prep.test.len()), (n - 300, 200, 100));
        // Val = the 200 images before the held-out 100; train = everything before.
        assert_eq!(val.pixels(), &raw.train.pixels()[(n - 300) * 64..(n - 100) * 64]);
        assert_eq!(prep.train.pixels(), &raw.train.pixels()[..(n - 300) * 64]);
        assert!(prep.notes.iter().any(|m| m.contains("validation set")));
        // Absent from the JSON when 0 (older configurations read the same).
        let plain = serde_json::to_string(&DataSpec::default()).unwrap();
        assert!(!plain.contains("val"), "{plain}");
        assert_eq!(
            serde_json::from_str::<DataSpec>(&serde_json::to_string(&spec).unwrap()).unwrap(),
            spec
        );
        let e = DataSpec {
            val: n,
            ..Default::default()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("validation set of 1438") && e.contains("val <"), "{e}");
    }

    #[test]
    fn bad_holdout_and_support_shapes_are_errors() {
        let e = DataSpec {
            holdout: 1438,
            ..Default::default()
        }
        .load()
        .unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Holdout {
                    holdout: 1438,
                    len: 1438
                }
            ),
            "{e:?}"
        );
        let prep = DataSpec::default().load().unwrap();
        let x = DMatrix::zeros(2, 64);
        assert!(prep.support_set(&x, &DMatrix::zeros(2, 10), &[0, 1]).is_ok());
        assert!(prep.support_set(&x, &DMatrix::zeros(2, 9), &[0, 1]).is_err());
        assert!(prep.support_set(&x, &DMatrix::zeros(2, 10), &[0]).is_err());
        assert!(prep
            .support_set(&DMatrix::zeros(2, 63), &DMatrix::zeros(2, 10), &[0, 1])
            .is_err());
    }
}
