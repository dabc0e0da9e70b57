//! # kip-data
//!
//! Data for kip (Kernel Inducing Points, after Nguyen, Chen & Lee, ICLR 2021,
//! "Dataset Meta-Learning from Kernel Ridge-Regression"): loaders, fitted
//! invertible preprocessing, label targets, class-balanced sampling,
//! corruption masks and support-set export.
//!
//! * [`Dataset`]: images as compact `f32`, row-major `n × d` (HWC pixel
//!   order), class ids, class names, [`ImageShape`].
//! * Loaders (gzip or raw, detected by magic bytes): [`load_idx`] /
//!   [`load_mnist_dir`] (MNIST, Fashion-MNIST), [`load_cifar10_dir`]
//!   (accepts a partial test file and says so in [`Split::notes`]),
//!   [`load_npz`], the embedded sklearn digits [`digits()`], and by name
//!   [`resolve`] (`digits`, `mnist`, `fashion-mnist`, `cifar10`, `npz:PATH`).
//! * [`Preprocess`] → [`Transform`]: none, channel standardisation, ZCA with
//!   layer norm and ridge `strength · tr(cov) / d`.
//! * [`one_hot`] (centred by `1/C`), [`class_balanced`], [`PixelMask`],
//!   [`gaussian_images`], [`SupportSet`] (`support.npz`), [`write_png_grid`].
//!
//! Bad files never panic: every failure is a [`DataError`] naming the file
//! and the problem (byte offset, array, row/column).
//!
//! # Examples
//! ```
//! use kip_data::{class_balanced, digits, one_hot, Preprocess};
//! use rand::SeedableRng;
//!
//! let split = digits(); // embedded, no files needed
//! assert_eq!(split.train.shape(), kip_data::ImageShape { h: 8, w: 8, c: 1 });
//! let t = Preprocess::Standard.fit(&split.train)?;
//! let train = t.apply(&split.train);
//!
//! // One KIP-style target batch: 100 images, 10 per class, as f64 rows.
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let idx = class_balanced(&train.indices_by_class(), 100, &mut rng)?;
//! let mut x = vec![0.0; idx.len() * train.dim()];
//! train.gather_into(&idx, &mut x);
//! let labels: Vec<usize> = idx.iter().map(|&i| train.labels()[i]).collect();
//! let y = one_hot(&labels, train.n_classes(), true);
//! assert_eq!((y.nrows(), y.ncols()), (100, 10));
//!
//! // Standardised pixels have (about) zero mean overall.
//! let mean = train.pixels().iter().map(|&v| v as f64).sum::<f64>() / train.pixels().len() as f64;
//! assert!(mean.abs() < 1e-5);
//! # Ok::<(), kip_data::DataError>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod arrays;
mod augment;
mod cifar;
mod corrupt;
mod dataset;
mod digits;
mod dsa;
mod error;
mod export;
mod idx;
mod io;
mod npz;
mod png_grid;
mod prepared;
mod preprocess;
mod resolve;
mod sampling;
mod targets;

pub use arrays::{read_points, write_npy_f64, write_npy_f64_blocks, PointArray};
pub use augment::{Augment, Draws, ParseAugmentError};
pub use cifar::{cifar10_expected_files, load_cifar10_dir, load_cifar_batch, CIFAR10_CLASSES, CIFAR_RECORD};
pub use corrupt::{gaussian_images, PixelMask};
pub use dataset::{Dataset, ImageShape, Split};
pub use digits::{digits, digits_all, load_digits_csv};
pub use dsa::{Dsa, DsaFamily};
pub use error::{DataError, Result};
pub use export::SupportSet;
pub use idx::{
    load_idx, load_idx_dir, load_idx_with_classes, load_mnist_dir, FASHION_MNIST_CLASSES, IDX_FILES, MNIST_CLASSES,
};
pub use io::{check_writable, read_maybe_gz, write_atomic, write_file_atomic};
pub use npz::{load_npz, load_npz_split, NpzLayout};
pub use png_grid::{write_png_grid, PngScale, MIN_DISPLAY_SIDE};
pub use prepared::{DataSpec, Prepared};
pub use preprocess::{layer_norm_rows, Preprocess, Transform, ZCA_DEFAULT_STRENGTH, ZCA_EIGEN_CUTOFF};
pub use resolve::{check_available, resolve, DATASET_NAMES, DATA_DIR_ENV, IN_MEMORY_DATASET};
pub use sampling::{balanced_counts, class_balanced, Sample};
pub use targets::{one_hot, one_hot_into};
