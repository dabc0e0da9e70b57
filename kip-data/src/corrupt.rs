//! Corruption: frozen-pixel masks and Gaussian noise initialisation.

use nalgebra::DMatrix;
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{DataError, Result};

/// A fixed mask over an `n × d` support set (the paper's corrupted-pixel
/// "privacy" runs): frozen pixels keep their initial value because their
/// gradient is zeroed every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelMask {
    frozen: DMatrix<bool>,
}

impl PixelMask {
    /// Draws each of the `n · d` entries frozen independently with
    /// probability `p` (one `rng.random::<f64>()` per entry, in row-major
    /// order: image by image).
    ///
    /// # Errors
    /// [`DataError::Invalid`] unless `0 <= p < 1`.
    pub fn bernoulli<R: Rng + ?Sized>(n: usize, d: usize, p: f64, rng: &mut R) -> Result<PixelMask> {
        if !(0.0..1.0).contains(&p) {
            return Err(DataError::invalid(format!(
                "pixel corruption fraction must be in [0, 1), got {p}"
            )));
        }
        let draws: Vec<bool> = (0..n * d).map(|_| rng.random::<f64>() < p).collect();
        Ok(PixelMask {
            frozen: DMatrix::from_row_slice(n, d, &draws),
        })
    }

    /// A mask with the given frozen entries (`n × d`), e.g. read back from
    /// a checkpoint.
    pub fn from_frozen(frozen: DMatrix<bool>) -> PixelMask {
        PixelMask { frozen }
    }

    /// The frozen entries, `n × d`.
    pub fn frozen(&self) -> &DMatrix<bool> {
        &self.frozen
    }

    /// Whether pixel `j` of image `i` is frozen.
    ///
    /// # Panics
    /// If `(i, j)` lies outside `n × d`.
    pub fn is_frozen(&self, i: usize, j: usize) -> bool {
        self.frozen[(i, j)]
    }

    /// Number of frozen entries.
    pub fn frozen_count(&self) -> usize {
        self.frozen.iter().filter(|&&f| f).count()
    }

    /// `(n, d)`.
    pub fn dims(&self) -> (usize, usize) {
        self.frozen.shape()
    }

    /// Sets the frozen entries of `x` to those of `values` (the corruption
    /// itself); the others are left alone.
    ///
    /// # Panics
    /// If `x` or `values` is not `n × d`.
    pub fn fill_frozen(&self, x: &mut DMatrix<f64>, values: &DMatrix<f64>) {
        self.check_shape("fill_frozen", x.shape());
        self.check_shape("fill_frozen", values.shape());
        for ((v, &f), &new) in x.iter_mut().zip(self.frozen.iter()).zip(values.iter()) {
            if f {
                *v = new;
            }
        }
    }

    /// Zeros the frozen entries of an `n × d` gradient.
    ///
    /// # Panics
    /// If `grad` is not `n × d`.
    pub fn apply_to_gradient(&self, grad: &mut DMatrix<f64>) {
        self.check_shape("apply_to_gradient", grad.shape());
        for (g, &f) in grad.iter_mut().zip(self.frozen.iter()) {
            if f {
                *g = 0.0;
            }
        }
    }

    fn check_shape(&self, what: &str, shape: (usize, usize)) {
        assert_eq!(
            shape,
            self.frozen.shape(),
            "PixelMask::{what}: a {shape:?} matrix for a mask over {:?}",
            self.frozen.shape()
        );
    }
}

/// `n · d` independent `N(0, std²)` draws, row-major `n × d` (noise-initialised
/// support images).
///
/// # Panics
/// If `std` is negative or not finite.
pub fn gaussian_images<R: Rng + ?Sized>(n: usize, d: usize, std: f64, rng: &mut R) -> Vec<f64> {
    let dist = Normal::new(0.0, std).expect("gaussian_images: std must be finite and >= 0");
    (0..n * d).map(|_| dist.sample(rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mask_freezes_fraction_and_only_frozen_entries() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert!(PixelMask::bernoulli(2, 2, 1.0, &mut rng).is_err());
        assert!(PixelMask::bernoulli(2, 2, -0.1, &mut rng).is_err());
        let m = PixelMask::bernoulli(100, 100, 0.3, &mut rng).unwrap();
        let f = m.frozen_count() as f64 / 1e4;
        assert!((f - 0.3).abs() < 0.03, "{f}");
        let mut g = DMatrix::from_element(100, 100, 1.0);
        m.apply_to_gradient(&mut g);
        let mut x = DMatrix::from_element(100, 100, 1.0);
        m.fill_frozen(&mut x, &DMatrix::from_element(100, 100, 7.0));
        for i in 0..100 {
            for j in 0..100 {
                assert_eq!(g[(i, j)] == 0.0, m.is_frozen(i, j));
                assert_eq!(x[(i, j)] == 7.0, m.is_frozen(i, j));
            }
        }
        let z = PixelMask::bernoulli(3, 3, 0.0, &mut rng).unwrap();
        assert_eq!(z.frozen_count(), 0);
    }

    #[test]
    fn draws_are_row_major() {
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut b = a.clone();
        let m = PixelMask::bernoulli(3, 4, 0.5, &mut a).unwrap();
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(m.is_frozen(i, j), b.random::<f64>() < 0.5);
            }
        }
    }

    #[test]
    #[should_panic(expected = "apply_to_gradient")]
    fn a_gradient_of_another_shape_is_refused() {
        let m = PixelMask::from_frozen(DMatrix::from_element(2, 3, true));
        m.apply_to_gradient(&mut DMatrix::zeros(3, 2));
    }

    #[test]
    fn gaussian_moments() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let v = gaussian_images(100, 100, 2.0, &mut rng);
        let m = v.iter().sum::<f64>() / 1e4;
        let s = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 1e4).sqrt();
        assert!(m.abs() < 0.1 && (s - 2.0).abs() < 0.1, "{m} {s}");
    }
}
