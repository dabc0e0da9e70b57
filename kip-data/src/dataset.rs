//! The in-memory dataset: compact `f32` images plus class ids.

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::{DataError, Result};

pub use kip_core::ImageShape;
use kip_core::Scalar;

/// A labelled image dataset.
///
/// Images are stored compactly as `f32`, row-major `n × d` (each image
/// contiguous, pixel order HWC), in whatever scale the loader produced
/// (raw bytes 0..255 for MNIST/CIFAR, 0..16 for digits). The KIP loop works
/// in `f64`: use [`Dataset::gather_into`] or [`Dataset::to_matrix`].
///
/// Invariants (checked by [`Dataset::new`]): at least one image, every pixel
/// finite, `labels.len() == n`, every label `< class_names.len()`.
#[derive(Clone, Debug)]
pub struct Dataset {
    shape: ImageShape,
    pixels: Vec<f32>,
    labels: Vec<usize>,
    class_names: Vec<String>,
}

/// A train/test pair as returned by the loaders.
#[derive(Clone, Debug)]
pub struct Split {
    /// Training images.
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
    /// Human-readable notes about the data (e.g. a partial test file).
    pub notes: Vec<String>,
}

impl Dataset {
    /// Builds a dataset after validating it.
    ///
    /// # Errors
    /// [`DataError::Invalid`] when the dataset is empty, `d = 0`,
    /// `pixels.len() != labels.len() · d`, a label is `>= class_names.len()`,
    /// or a pixel is not finite.
    pub fn new(shape: ImageShape, pixels: Vec<f32>, labels: Vec<usize>, class_names: Vec<String>) -> Result<Self> {
        let d = shape.dim();
        if d == 0 {
            return Err(DataError::invalid(format!("image shape {shape} has no pixels")));
        }
        if labels.is_empty() {
            return Err(DataError::invalid("dataset is empty (0 images)"));
        }
        if class_names.is_empty() {
            return Err(DataError::invalid("dataset has no class names"));
        }
        if pixels.len() != labels.len() * d {
            return Err(DataError::invalid(format!(
                "{} pixel values for {} labels of shape {shape} (expected {})",
                pixels.len(),
                labels.len(),
                labels.len() * d
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= class_names.len()) {
            return Err(DataError::invalid(format!(
                "label {l} of image {i} is out of range for {} classes",
                class_names.len()
            )));
        }
        if let Some(p) = pixels.iter().position(|v| !v.is_finite()) {
            return Err(DataError::invalid(format!(
                "pixel {} of image {} is not finite ({})",
                p % d,
                p / d,
                pixels[p]
            )));
        }
        Ok(Dataset {
            shape,
            pixels,
            labels,
            class_names,
        })
    }

    /// Constructor for loaders whose data is valid by construction (pixels
    /// from bytes, labels already range-checked).
    pub(crate) fn from_trusted(
        shape: ImageShape,
        pixels: Vec<f32>,
        labels: Vec<usize>,
        class_names: Vec<String>,
    ) -> Self {
        debug_assert_eq!(pixels.len(), labels.len() * shape.dim());
        debug_assert!(labels.iter().all(|&l| l < class_names.len()));
        Dataset {
            shape,
            pixels,
            labels,
            class_names,
        }
    }

    /// Number of images `n`.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when the dataset holds no image (only possible for the empty
    /// half of a [`Dataset::split_at`] at the boundary, which is disallowed, so
    /// in practice always `false`).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per image, `d = h · w · c`.
    pub fn dim(&self) -> usize {
        self.shape.dim()
    }

    /// Number of classes `C` (the length of the class-name list).
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The image shape.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Class ids, one per image, each `< n_classes()`.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Class names; index = class id.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// All pixels, row-major `n × d`.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }

    /// The `d` pixels of image `i` (HWC order).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.pixels[i * d..(i + 1) * d]
    }

    /// The images as an `n × d` `f64` matrix (row `i` = image `i`).
    pub fn to_matrix(&self) -> DMatrix<f64> {
        let d = self.dim();
        DMatrix::from_fn(self.len(), d, |i, j| self.pixels[i * d + j] as f64)
    }

    /// Writes the images `idx` as `f64` (or as stored, `f32`) into `out`,
    /// row-major `idx.len() × d` (row `r` = image `idx[r]`). Parallel (rayon)
    /// when the request exceeds 64 Ki values. Allocation-free.
    ///
    /// # Panics
    /// If `out.len() != idx.len() · d` or an index is `>= len()`.
    pub fn gather_into<T: Scalar>(&self, idx: &[usize], out: &mut [T]) {
        let d = self.dim();
        assert_eq!(
            out.len(),
            idx.len() * d,
            "gather_into: output buffer has {} values, expected {} x {}",
            out.len(),
            idx.len(),
            d
        );
        let n = self.len();
        let copy = |(row, &i): (&mut [T], &usize)| {
            assert!(i < n, "gather_into: index {i} out of range for {n} images");
            T::slice_from_f32(&self.pixels[i * d..(i + 1) * d], row);
        };
        if idx.len() * d >= 1 << 16 {
            out.par_chunks_mut(d).zip(idx.par_iter()).for_each(copy);
        } else {
            out.chunks_mut(d).zip(idx.iter()).for_each(copy);
        }
    }

    /// A new dataset holding images `idx` in that order (duplicates allowed).
    ///
    /// # Panics
    /// If `idx` is empty or an index is `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        assert!(!idx.is_empty(), "subset: empty index list");
        let d = self.dim();
        let mut pixels = Vec::with_capacity(idx.len() * d);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset::from_trusted(self.shape, pixels, labels, self.class_names.clone())
    }

    /// Splits into the first `n` images and the rest.
    ///
    /// # Panics
    /// Unless `0 < n < len()` (both halves must be non-empty); see
    /// [`Dataset::holdout`] for the checked form.
    pub fn split_at(&self, n: usize) -> (Dataset, Dataset) {
        assert!(
            n > 0 && n < self.len(),
            "split_at({n}) on {} images: both halves must be non-empty",
            self.len()
        );
        let d = self.dim();
        let a = Dataset::from_trusted(
            self.shape,
            self.pixels[..n * d].to_vec(),
            self.labels[..n].to_vec(),
            self.class_names.clone(),
        );
        let b = Dataset::from_trusted(
            self.shape,
            self.pixels[n * d..].to_vec(),
            self.labels[n..].to_vec(),
            self.class_names.clone(),
        );
        (a, b)
    }

    /// Holds out the LAST `n_test` images: returns `(first len-n_test, last n_test)`.
    /// This is the `--holdout N` rule. The first part keeps this dataset's
    /// storage (only the held-out images are copied), so no second copy
    /// of a large training set is ever alive.
    ///
    /// # Errors
    /// [`DataError::Holdout`] unless `0 < n_test < len()`.
    pub fn holdout(mut self, n_test: usize) -> Result<(Dataset, Dataset)> {
        if n_test == 0 || n_test >= self.len() {
            return Err(DataError::Holdout {
                holdout: n_test,
                len: self.len(),
            });
        }
        let n = self.len() - n_test;
        let pixels = self.pixels.split_off(n * self.dim());
        let labels = self.labels.split_off(n);
        let test = Dataset::from_trusted(self.shape, pixels, labels, self.class_names.clone());
        Ok((self, test))
    }

    /// Number of images per class (length `n_classes()`).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.n_classes()];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }

    /// For each class, the indices of its images in increasing order.
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.n_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            by[l].push(i);
        }
        by
    }

    /// Consumes the dataset, returning `(shape, pixels, labels, class_names)`.
    pub fn into_parts(self) -> (ImageShape, Vec<f32>, Vec<usize>, Vec<String>) {
        (self.shape, self.pixels, self.labels, self.class_names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        let shape = ImageShape::new(1, 2, 1);
        Dataset::new(
            shape,
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            vec![0, 1, 0],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    #[test]
    fn accessors_and_gather() {
        let ds = toy();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.dim(), 2);
        assert_eq!(ds.image(1), &[2.0, 3.0]);
        let mut out = vec![0.0; 4];
        ds.gather_into(&[2, 0], &mut out);
        assert_eq!(out, vec![4.0, 5.0, 0.0, 1.0]);
        let m = ds.to_matrix();
        assert_eq!((m.nrows(), m.ncols()), (3, 2));
        assert_eq!(m[(2, 1)], 5.0);
        assert_eq!(ds.class_counts(), vec![2, 1]);
        assert_eq!(ds.indices_by_class(), vec![vec![0, 2], vec![1]]);
        let (a, b) = ds.split_at(2);
        assert_eq!((a.len(), b.len()), (2, 1));
        assert_eq!(b.image(0), &[4.0, 5.0]);
        let s = ds.subset(&[1, 1]);
        assert_eq!(s.labels(), &[1, 1]);
        assert!(ds.clone().holdout(3).is_err());
        let (tr, te) = ds.holdout(1).unwrap();
        assert_eq!(
            (tr.labels(), te.labels(), te.image(0)),
            (&[0, 1][..], &[0][..], &[4.0, 5.0][..])
        );
    }

    #[test]
    fn gather_parallel_matches_serial() {
        let shape = ImageShape::new(16, 16, 1);
        let n = 600;
        let pixels: Vec<f32> = (0..n * 256).map(|i| (i % 251) as f32).collect();
        let ds = Dataset::new(shape, pixels, vec![0; n], vec!["x".into()]).unwrap();
        let idx: Vec<usize> = (0..n).rev().collect();
        let mut out = vec![0.0; n * 256];
        ds.gather_into(&idx, &mut out);
        for (r, &i) in idx.iter().enumerate() {
            assert_eq!(out[r * 256 + 7], ds.image(i)[7] as f64);
        }
    }

    #[test]
    fn new_validates() {
        let s = ImageShape::new(1, 1, 1);
        let names = vec!["a".to_string()];
        assert!(Dataset::new(s, vec![], vec![], names.clone()).is_err());
        assert!(Dataset::new(s, vec![1.0], vec![1], names.clone()).is_err());
        assert!(Dataset::new(s, vec![f32::NAN], vec![0], names.clone()).is_err());
        assert!(Dataset::new(s, vec![1.0, 2.0], vec![0], names).is_err());
    }
}
