//! Loading a dataset for a command: resolve, hold out, fit preprocessing.

use std::path::PathBuf;

use kip_data::{Dataset, ImageShape, Preprocess, SupportSet, Transform};
use nalgebra::DMatrix;

use crate::cli::DataArgs;
use crate::error::{CliError, Result};

/// A dataset ready for KIP: model-space splits and the fitted transform.
pub struct Prepared {
    /// Training images in model space (targets are drawn from here).
    pub train: Dataset,
    /// Test images in model space.
    pub test: Dataset,
    /// The fitted preprocessing (inverted for export and pictures).
    pub transform: Transform,
    /// Largest raw pixel value of the training set (PNG scaling).
    pub pixel_max: f64,
    /// Loader notes (e.g. a partial CIFAR-10 test file) and the test-set origin.
    pub notes: Vec<String>,
}

/// Check the cheap things first (preprocess name, files present), then load.
///
/// # Errors
/// Usage errors for bad names or missing files; loader errors.
pub fn prepare(args: &DataArgs) -> Result<Prepared> {
    let pre: Preprocess = args
        .preprocess
        .parse()
        .map_err(|e: kip_data::DataError| CliError::Usage(format!("--preprocess: {e}")))?;
    kip_data::check_available(&args.dataset, args.data_dir.as_deref()).map_err(|e| match e {
        // A missing `npz:PATH` file is a usage error like a missing dataset folder.
        kip_data::DataError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::Usage(format!("--dataset {}: {e}", args.dataset))
        }
        e => e.into(),
    })?;
    let split = kip_data::resolve(&args.dataset, args.data_dir.as_deref())?;
    let mut notes = split.notes.clone();
    let (train_raw, test_raw) = if args.holdout > 0 {
        let (tr, te) = split
            .train
            .holdout(args.holdout)
            .map_err(|e| CliError::Usage(format!("--holdout {}: {e}", args.holdout)))?;
        notes.push(format!(
            "test set: the last {} training images (held out, never targets)",
            args.holdout
        ));
        (tr, te)
    } else {
        notes.push(format!("test set: the {} official test images", split.test.len()));
        (split.train, split.test)
    };
    let transform = pre.fit(&train_raw)?;
    let pixel_max = train_raw.pixels().iter().fold(0.0f32, |m, &v| m.max(v)) as f64;
    Ok(Prepared {
        train: transform.apply(&train_raw),
        test: transform.apply(&test_raw),
        transform,
        pixel_max: if pixel_max > 0.0 { pixel_max } else { 1.0 },
        notes,
    })
}

/// A support set for export: model space plus the original pixel scale.
pub fn support_set(
    x_model: &DMatrix<f64>,
    y: &DMatrix<f64>,
    labels: &[usize],
    prep: &Prepared,
    shape: ImageShape,
) -> SupportSet {
    let (n, d) = x_model.shape();
    let mut rows: Vec<f64> = (0..n * d).map(|k| x_model[(k / d, k % d)]).collect();
    prep.transform.invert_rows(&mut rows, n);
    SupportSet {
        shape,
        x_model: x_model.clone(),
        x_pixels: DMatrix::from_row_slice(n, d, &rows),
        y: y.clone(),
        labels: labels.to_vec(),
        class_names: prep.train.class_names().to_vec(),
    }
}

/// The default output folder `runs/<stem>-<unix time>`.
pub fn default_out(stem: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{stem}-{t}"))
}
