//! Corruption: frozen-pixel masks and Gaussian noise initialisation.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{DataError, Result};

/// A fixed Bernoulli mask over an `n × d` support set: frozen pixels keep
/// their initial value because their gradient is zeroed every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelMask {
    n: usize,
    d: usize,
    frozen: Vec<bool>,
    fraction_bits: u64,
}

impl PixelMask {
    /// Draws each of the `n · d` entries frozen independently with
    /// probability `p` (one `rng.random::<f64>()` per entry, row-major).
    ///
    /// # Errors
    /// [`DataError::Invalid`] unless `0 <= p < 1`.
    pub fn bernoulli<R: Rng + ?Sized>(n: usize, d: usize, p: f64, rng: &mut R) -> Result<PixelMask> {
        if !(0.0..1.0).contains(&p) {
            return Err(DataError::invalid(format!(
                "pixel corruption fraction must be in [0, 1), got {p}"
            )));
        }
        let frozen = (0..n * d).map(|_| rng.random::<f64>() < p).collect();
        Ok(PixelMask {
            n,
            d,
            frozen,
            fraction_bits: p.to_bits(),
        })
    }

    /// Whether entry `i` (row-major index into `n × d`) is frozen.
    ///
    /// # Panics
    /// If `i >= n · d`.
    pub fn is_frozen(&self, i: usize) -> bool {
        self.frozen[i]
    }

    /// Zeros the frozen entries of a row-major `n × d` gradient.
    ///
    /// # Panics
    /// If `grad.len() != n · d`.
    pub fn apply_to_gradient(&self, grad: &mut [f64]) {
        assert_eq!(
            grad.len(),
            self.frozen.len(),
            "apply_to_gradient: gradient has {} values, mask covers {} x {}",
            grad.len(),
            self.n,
            self.d
        );
        for (g, &f) in grad.iter_mut().zip(&self.frozen) {
            if f {
                *g = 0.0;
            }
        }
    }

    /// The requested frozen probability `p`.
    pub fn fraction(&self) -> f64 {
        f64::from_bits(self.fraction_bits)
    }

    /// Number of frozen entries actually drawn.
    pub fn frozen_count(&self) -> usize {
        self.frozen.iter().filter(|&&f| f).count()
    }

    /// `(n, d)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.d)
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
    fn mask_freezes_fraction() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert!(PixelMask::bernoulli(2, 2, 1.0, &mut rng).is_err());
        assert!(PixelMask::bernoulli(2, 2, -0.1, &mut rng).is_err());
        let m = PixelMask::bernoulli(100, 100, 0.3, &mut rng).unwrap();
        let f = m.frozen_count() as f64 / 1e4;
        assert!((f - 0.3).abs() < 0.03, "{f}");
        let mut g = vec![1.0; 10_000];
        m.apply_to_gradient(&mut g);
        for (i, &v) in g.iter().enumerate() {
            assert_eq!(v == 0.0, m.is_frozen(i));
        }
        assert_eq!(m.fraction(), 0.3);
        let z = PixelMask::bernoulli(3, 3, 0.0, &mut rng).unwrap();
        assert_eq!(z.frozen_count(), 0);
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
