//! Class-balanced sampling without replacement.

use rand::Rng;

use crate::error::{DataError, Result};

/// Draws `n` indices, class-balanced, without replacement.
///
/// Each class gets `n / C` indices; the remainder `n % C` goes one each to
/// the FIRST `n % C` classes. Within a class the indices are a uniform random
/// subset (`rand::seq::index::sample`, O(k) per class). Output is ordered by
/// class, then draw order. The same `rng` state gives the same indices.
///
/// # Errors
/// [`DataError::Invalid`] if `by_class` is empty, or a class holds fewer
/// indices than it must supply (the message names the class).
///
/// # Examples
/// ```
/// use rand::SeedableRng;
/// let by = vec![(0..10).collect::<Vec<_>>(), (10..20).collect()];
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let idx = kip_data::class_balanced(&by, 5, &mut rng).unwrap();
/// assert_eq!(idx.iter().filter(|&&i| i < 10).count(), 3);
/// ```
pub fn class_balanced<R: Rng + ?Sized>(by_class: &[Vec<usize>], n: usize, rng: &mut R) -> Result<Vec<usize>> {
    let c = by_class.len();
    if c == 0 {
        return Err(DataError::invalid("class_balanced: no classes"));
    }
    let (base, rem) = (n / c, n % c);
    for (k, members) in by_class.iter().enumerate() {
        let want = base + usize::from(k < rem);
        if want > members.len() {
            return Err(DataError::invalid(format!(
                "class_balanced: class {k} has {} images but {want} are needed for {n} samples over {c} classes",
                members.len()
            )));
        }
    }
    let mut out = Vec::with_capacity(n);
    for (k, members) in by_class.iter().enumerate() {
        let want = base + usize::from(k < rem);
        if want == 0 {
            continue;
        }
        let pick = rand::seq::index::sample(rng, members.len(), want);
        out.extend(pick.into_iter().map(|j| members[j]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zero_samples() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert!(class_balanced(&[vec![1]], 0, &mut rng).unwrap().is_empty());
        assert!(class_balanced(&[], 1, &mut rng).is_err());
    }
}
