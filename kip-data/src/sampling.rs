//! Class-balanced sampling without replacement: the one sampler behind the
//! KIP support and target batches, Label Solve's support, the transfer
//! check's natural baseline and the examples.

use nalgebra::DMatrix;
use rand::Rng;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// How many images each class supplies to a class-balanced draw of `n`:
/// `n / C` each, and one more for each of the FIRST `n % C` classes.
///
/// # Errors
/// [`DataError::Invalid`] if there are no classes; [`DataError::TooFewInClass`]
/// naming the first class with fewer than its share.
///
/// # Examples
/// ```
/// assert_eq!(kip_data::balanced_counts(&[5, 5, 5], 7)?, vec![3, 2, 2]);
/// assert!(kip_data::balanced_counts(&[5, 1, 5], 7).is_err());
/// # Ok::<(), kip_data::DataError>(())
/// ```
pub fn balanced_counts(class_sizes: &[usize], n: usize) -> Result<Vec<usize>> {
    let c = class_sizes.len();
    if c == 0 {
        return Err(DataError::invalid("class-balanced sampling: no classes"));
    }
    let (base, rem) = (n / c, n % c);
    let counts: Vec<usize> = (0..c).map(|k| base + usize::from(k < rem)).collect();
    if let Some(class) = (0..c).find(|&k| counts[k] > class_sizes[k]) {
        return Err(DataError::TooFewInClass {
            n,
            classes: c,
            class,
            available: class_sizes[class],
            needed: counts[class],
        });
    }
    Ok(counts)
}

/// Draws `n` indices, class-balanced ([`balanced_counts`]), without
/// replacement.
///
/// Within a class the indices are a uniform random subset
/// (`rand::seq::index::sample`, O(k) per class). Output is ordered by
/// class, then draw order. The same `rng` state gives the same indices.
///
/// # Errors
/// As [`balanced_counts`] (nothing is drawn then).
///
/// # Examples
/// ```
/// use rand::SeedableRng;
/// let by = vec![(0..10).collect::<Vec<_>>(), (10..20).collect()];
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let idx = kip_data::class_balanced(&by, 5, &mut rng)?;
/// assert_eq!(idx.iter().filter(|&&i| i < 10).count(), 3);
/// # Ok::<(), kip_data::DataError>(())
/// ```
pub fn class_balanced<R: Rng + ?Sized>(by_class: &[Vec<usize>], n: usize, rng: &mut R) -> Result<Vec<usize>> {
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let counts = balanced_counts(&sizes, n)?;
    let mut out = Vec::with_capacity(n);
    for (members, &want) in by_class.iter().zip(&counts) {
        if want == 0 {
            continue;
        }
        let pick = rand::seq::index::sample(rng, members.len(), want);
        out.extend(pick.into_iter().map(|j| members[j]));
    }
    Ok(out)
}

/// A class-balanced sample of a dataset's images.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Which images, in draw order ([`class_balanced`]'s).
    pub indices: Vec<usize>,
    /// The images, `n × d` (row `r` = image `indices[r]`), as `f64`.
    pub x: DMatrix<f64>,
    /// Their class ids.
    pub labels: Vec<usize>,
}

impl Dataset {
    /// `n` images drawn class-balanced without replacement
    /// ([`class_balanced`]; the same `rng` state, the same sample).
    ///
    /// # Errors
    /// As [`balanced_counts`].
    ///
    /// # Examples
    /// ```
    /// use rand::SeedableRng;
    /// let train = kip_data::digits().train;
    /// let s = train.sample_balanced(20, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))?;
    /// assert_eq!(s.x.shape(), (20, 64));
    /// assert_eq!(s.labels.iter().filter(|&&l| l == 3).count(), 2);
    /// # Ok::<(), kip_data::DataError>(())
    /// ```
    pub fn sample_balanced<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Sample> {
        let indices = class_balanced(&self.indices_by_class(), n, rng)?;
        let d = self.dim();
        let mut rows = vec![0.0; indices.len() * d];
        self.gather_into(&indices, &mut rows);
        let labels = indices.iter().map(|&i| self.labels()[i]).collect();
        Ok(Sample {
            x: DMatrix::from_row_slice(indices.len(), d, &rows),
            indices,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zero_samples_and_no_classes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert!(class_balanced(&[vec![1]], 0, &mut rng).unwrap().is_empty());
        assert!(matches!(
            class_balanced(&[], 1, &mut rng),
            Err(DataError::Invalid { .. })
        ));
    }

    #[test]
    fn sample_rows_are_the_drawn_images() {
        let train = crate::digits().train;
        let s = train
            .sample_balanced(13, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2))
            .unwrap();
        let again = class_balanced(
            &train.indices_by_class(),
            13,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(2),
        )
        .unwrap();
        assert_eq!(s.indices, again);
        for (r, &i) in s.indices.iter().enumerate() {
            assert_eq!(s.labels[r], train.labels()[i]);
            assert!(s.x.row(r).iter().zip(train.image(i)).all(|(&a, &b)| a == f64::from(b)));
        }
    }
}
