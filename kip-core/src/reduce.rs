//! Reductions with one fixed rule each: the dot product's summation order
//! and argmax's treatment of ties and NaN.

/// Index of the largest value: ties go to the lowest index, and a NaN never
/// wins (it is skipped); 0 when there is no value or every value is NaN.
///
/// This is the rule of every class prediction in kip (KRR accuracy, the
/// KIP target accuracy, the trainer's predictions, learned labels).
///
/// # Examples
/// ```
/// use kip_core::argmax;
/// assert_eq!(argmax([0.5, 2.0, 2.0]), 1);
/// assert_eq!(argmax([f64::NAN, -1.0, -3.0]), 1);
/// assert_eq!(argmax(Vec::<f32>::new()), 0);
/// ```
pub fn argmax<T: PartialOrd>(values: impl IntoIterator<Item = T>) -> usize {
    let mut best: Option<(usize, T)> = None;
    for (i, v) in values.into_iter().enumerate() {
        // NaN is the only value not comparable with itself.
        if v.partial_cmp(&v).is_none() {
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| v > *b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// `Σ a_i b_i` in f64 with eight independent accumulators, so that the loop
/// vectorises instead of waiting on one add chain. The order is fixed: the
/// result depends on the inputs only, never on threads.
///
/// # Panics
/// If the lengths differ.
///
/// # Examples
/// ```
/// assert_eq!(kip_core::dot(&[1.0f32, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
#[inline]
pub fn dot<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths");
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k].into() * y[k].into();
        }
    }
    let mut tail = 0.0;
    for (&x, &y) in ra.iter().zip(rb) {
        tail += x.into() * y.into();
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `Σ a_i` in f64 with eight independent accumulators, in the fixed order
/// of [`dot`].
///
/// # Examples
/// ```
/// assert_eq!(kip_core::sum(&[1.0f64, 2.0, 3.0]), 6.0);
/// ```
#[inline]
pub fn sum<T: Copy + Into<f64>>(a: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let tail: f64 = ca.remainder().iter().map(|&x| x.into()).sum();
    for x in ca {
        for k in 0..8 {
            acc[k] += x[k].into();
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn argmax_ties_nan_and_empty() {
        assert_eq!(argmax([1.0, 1.0, 0.0]), 0);
        assert_eq!(argmax([f64::NAN, 0.5, 0.7]), 2);
        assert_eq!(argmax([0.0, 2.0, 2.0]), 1);
        assert_eq!(argmax([0.0, f64::NAN, 2.0, f64::NAN]), 2);
        assert_eq!(argmax([f64::NAN, f64::NAN]), 0);
        assert_eq!(argmax([f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax([-1i32, 5, 5]), 1);
    }

    proptest! {
        #[test]
        fn argmax_is_the_first_maximum_of_the_numbers(v in proptest::collection::vec(prop_oneof![Just(f64::NAN), -3.0..3.0f64, Just(1.0)], 1..20)) {
            let i = argmax(v.iter().copied());
            let numbers: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            if numbers.is_empty() {
                prop_assert_eq!(i, 0);
            } else {
                let max = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                prop_assert_eq!(v[i], max);
                prop_assert!(v[..i].iter().all(|&x| x.is_nan() || x < max));
            }
        }
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0usize, 1, 7, 8, 9, 63, 784] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, &y)| x * f64::from(y)).sum();
            let b64: Vec<f64> = b.iter().map(|&y| f64::from(y)).collect();
            assert!((dot(&a, &b64) - want).abs() <= 1e-12 * (1.0 + want.abs()), "{n}");
            let sq: f64 = b.iter().map(|&y| f64::from(y) * f64::from(y)).sum();
            assert!((dot(&b, &b) - sq).abs() <= 1e-12 * (1.0 + sq), "{n}");
        }
    }
}
