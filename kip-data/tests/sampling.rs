//! Class-balanced sampling properties.

use kip_data::{class_balanced, digits};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn by_class(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut next = 0;
    sizes
        .iter()
        .map(|&s| {
            let v: Vec<usize> = (next..next + s).collect();
            next += s;
            v
        })
        .collect()
}

#[test]
fn balanced_counts_and_no_duplicates() {
    let by = by_class(&[100; 10]);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let idx = class_balanced(&by, 50, &mut rng).unwrap();
    assert_eq!(idx.len(), 50);
    for (k, members) in by.iter().enumerate() {
        let got: Vec<usize> = idx[k * 5..(k + 1) * 5].to_vec();
        assert!(got.iter().all(|i| members.contains(i)), "class {k} block out of order");
    }
    let mut s = idx.clone();
    s.sort_unstable();
    s.dedup();
    assert_eq!(s.len(), 50);
}

#[test]
fn remainder_goes_to_first_classes() {
    let by = by_class(&[10, 10, 10, 10]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let idx = class_balanced(&by, 7, &mut rng).unwrap();
    let counts: Vec<usize> = by
        .iter()
        .map(|m| idx.iter().filter(|i| m.contains(i)).count())
        .collect();
    assert_eq!(counts, vec![2, 2, 2, 1]);
}

#[test]
fn over_ask_names_the_class() {
    let by = by_class(&[10, 3, 10]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let e = class_balanced(&by, 12, &mut rng).unwrap_err();
    assert!(
        matches!(
            e,
            kip_data::DataError::TooFewInClass {
                n: 12,
                classes: 3,
                class: 1,
                available: 3,
                needed: 4
            }
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("need 4 of class 1, which has 3"), "{e}");
}

#[test]
fn deterministic_for_same_seed() {
    let ds = digits().train;
    let by = ds.indices_by_class();
    let a = class_balanced(&by, 500, &mut ChaCha8Rng::seed_from_u64(42)).unwrap();
    let b = class_balanced(&by, 500, &mut ChaCha8Rng::seed_from_u64(42)).unwrap();
    let c = class_balanced(&by, 500, &mut ChaCha8Rng::seed_from_u64(43)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    for (k, block) in a.chunks(50).enumerate() {
        assert!(block.iter().all(|&i| ds.labels()[i] == k));
    }
}

proptest! {
    #[test]
    fn prop_balanced(sizes in proptest::collection::vec(0usize..30, 1..8), n in 0usize..60, seed in any::<u64>()) {
        let by = by_class(&sizes);
        let c = sizes.len();
        let need = |k: usize| n / c + usize::from(k < n % c);
        let feasible = (0..c).all(|k| need(k) <= sizes[k]);
        let r = class_balanced(&by, n, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(r.is_ok(), feasible);
        if let Ok(idx) = r {
            prop_assert_eq!(idx.len(), n);
            let mut s = idx.clone();
            s.sort_unstable();
            s.dedup();
            prop_assert_eq!(s.len(), n);
            let mut pos = 0;
            for k in 0..c {
                for &i in &idx[pos..pos + need(k)] {
                    prop_assert!(by[k].contains(&i));
                }
                pos += need(k);
            }
        }
    }
}
