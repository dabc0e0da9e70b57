//! The finite ConvNet classifier through the public API: it learns the
//! embedded digits, is deterministic for a seed whatever the thread count,
//! transfers like the MLP, and rejects data it cannot run on with errors
//! naming the parameter. (The gradient check against central differences
//! is a unit test in `src/convnet.rs`.)

use kip_data::{one_hot, Dataset, ImageShape, Preprocess, SupportSet};
use kip_nn::{
    centered_one_hot, train_convnet, transfer_arch, Arch, ConvClassifier, Loss, MlpParams, NnError, ValidParams,
};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The embedded digits, standardised: (train, test).
fn digits() -> (Dataset, Dataset) {
    let split = kip_data::digits();
    let t = Preprocess::Standard.fit(&split.train).unwrap();
    (t.apply(&split.train), t.apply(&split.test))
}

fn small(width: usize, steps: usize, loss: Loss) -> ValidParams {
    MlpParams {
        width,
        steps,
        batch: 100,
        loss,
        ..Default::default()
    }
    .check()
    .unwrap()
}

#[test]
fn a_small_convnet_learns_the_digits() {
    let (train, test) = digits();
    let (x, xt) = (train.to_matrix(), test.to_matrix());
    let y = centered_one_hot(train.labels(), 10);
    // Measured (300 steps, batch 100, width 16, depth 1, seed 0): MSE
    // (SGD, lr 10) ≈ 0.90, cross-entropy (SGD, lr 3) ≈ 0.98; chance 0.1.
    for (loss, floor) in [(Loss::Mse, 0.8), (Loss::CrossEntropy, 0.9)] {
        let p = small(16, 300, loss);
        let t0 = std::time::Instant::now();
        let r = train_convnet(&p, 1, train.shape(), &x, &y, train.labels(), Some((&xt, test.labels()))).unwrap();
        let acc = r.test_accuracy.unwrap();
        println!(
            "digits, ConvNet depth 1 width 16, {loss}, 300 steps: test accuracy {acc:.4}, train {:.4} ({:.2}s)",
            r.final_train_accuracy,
            t0.elapsed().as_secs_f64()
        );
        assert!(acc > floor, "{loss}: test accuracy {acc} <= {floor}");
        assert_eq!(r.steps_run, 300);
        assert_eq!(r.model.depth(), 1);
        assert_eq!(r.model.n_out(), 10);
        assert_eq!(r.model.input_shape(), ImageShape::new(8, 8, 1));
        // The report's accuracy is the model's.
        let pred = r.model.predict_labels(&xt);
        let hits = pred.iter().zip(test.labels()).filter(|(a, b)| a == b).count();
        assert_eq!(hits as f64 / test.len() as f64, acc);
        assert_eq!(r.model.evaluate(&xt, test.labels(), None).unwrap().accuracy, acc);
    }
}

#[test]
fn same_seed_same_parameters_whatever_the_thread_count() {
    let (train, _) = digits();
    let idx: Vec<usize> = (0..150).collect();
    let sub = train.subset(&idx);
    let (x, y) = (sub.to_matrix(), centered_one_hot(sub.labels(), 10));
    let p = MlpParams {
        width: 8,
        steps: 25,
        batch: 32,
        center: true,
        ..Default::default()
    }
    .check()
    .unwrap();
    let run = |threads: usize, p: &ValidParams| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| train_convnet(p, 2, sub.shape(), &x, &y, sub.labels(), None).unwrap())
    };
    let (a, b) = (run(1, &p), run(2, &p));
    assert_eq!(a.model, b.model, "1 vs 2 threads");
    assert_eq!(a.final_train_loss.to_bits(), b.final_train_loss.to_bits());
    let bits = |m: &ConvClassifier| -> Vec<u32> {
        m.body()
            .params()
            .iter()
            .chain(m.head_weights().iter())
            .chain(m.head_bias().iter())
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&a.model), bits(&b.model));
    assert_eq!(bits(&a.model).len(), a.model.num_params());
    let other = MlpParams {
        seed: 1,
        ..p.params().clone()
    }
    .check()
    .unwrap();
    assert_ne!(run(2, &other).model, a.model, "another seed, another network");
}

#[test]
fn transfer_trains_convnets_on_the_support_set_and_a_natural_sample() {
    let split = kip_data::digits();
    let t = Preprocess::Standard.fit(&split.train).unwrap();
    let (train, test) = (t.apply(&split.train), t.apply(&split.test));
    // The support set is the seed-0 natural sample itself.
    let s = train.sample_balanced(50, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let support =
        SupportSet::from_model(&s.x, &one_hot(&s.labels, 10, true), &s.labels, &t, train.class_names()).unwrap();
    let p = MlpParams {
        width: 8,
        steps: 60,
        batch: 50,
        center: true,
        ..Default::default()
    };
    let r = transfer_arch(Arch::ConvNet { depth: 1 }, &p, &support, &train, &test, 2).unwrap();
    assert_eq!(r.distilled.test_acc[0], r.natural.test_acc[0], "same data, same seed");
    assert_eq!(r.distilled.test_acc.len(), 2);
    assert!(r.distilled.mean > 0.5, "{r:?}");
}

/// `r` is an [`NnError::InvalidParam`] naming `field` whose message holds
/// every needle.
fn trips<T>(r: Result<T, NnError>, field: &str, needles: &[&str]) {
    match r {
        Err(e @ NnError::InvalidParam { name, .. }) => {
            assert_eq!(name, field, "{e}");
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} lacks {n:?}");
            }
        }
        Err(e) => panic!("expected InvalidParam({field}), got {e}"),
        Ok(_) => panic!("expected InvalidParam({field}), got a result"),
    }
}

#[test]
fn data_the_convnet_cannot_run_on_is_a_clear_error() {
    let p = small(4, 2, Loss::Mse);
    // Flat data (1 × 10 × 1).
    let labels: Vec<usize> = (0..20).map(|i| i % 2).collect();
    let x = DMatrix::from_fn(20, 10, |i, j| ((i + j) % 3) as f64);
    let y = centered_one_hot(&labels, 2);
    let flat = ImageShape::new(1, 10, 1);
    trips(
        train_convnet(&p, 1, flat, &x, &y, &labels, None),
        "arch",
        &["flat", "1x10x1", "mlp"],
    );
    trips(ConvClassifier::new(flat, 2, 0, &p, 0), "arch", &["flat"]);
    // Too deep for 8 × 8 (three 2×2 poolings at most).
    let (train, _) = digits();
    let (xd, yd) = (train.to_matrix(), centered_one_hot(train.labels(), 10));
    trips(
        train_convnet(&p, 4, train.shape(), &xd, &yd, train.labels(), None),
        "depth",
        &["4", "8x8", "at most 3"],
    );
    // Images of another size than the shape says.
    assert!(matches!(
        train_convnet(&p, 1, ImageShape::new(4, 4, 1), &xd, &yd, train.labels(), None),
        Err(NnError::ShapeMismatch { .. })
    ));
    // Standard parameterisation is not available for the ConvNet.
    let standard = MlpParams {
        param: kip_nn::Parameterization::Standard,
        ..p.params().clone()
    }
    .check()
    .unwrap();
    trips(
        train_convnet(&standard, 1, train.shape(), &xd, &yd, train.labels(), None),
        "param",
        &["standard"],
    );
    // transfer_arch checks before training anything.
    let flat_ds = Dataset::new(
        flat,
        (0..200).map(|i| (i % 7) as f32).collect(),
        labels.clone(),
        vec!["a".into(), "b".into()],
    )
    .unwrap();
    let support = SupportSet::from_model(
        &x.rows(0, 4).into_owned(),
        &y.rows(0, 4).into_owned(),
        &labels[..4],
        &Preprocess::None.fit(&flat_ds).unwrap(),
        flat_ds.class_names(),
    )
    .unwrap();
    trips(
        transfer_arch(Arch::ConvNet { depth: 1 }, p.params(), &support, &flat_ds, &flat_ds, 1),
        "arch",
        &["flat"],
    );
    assert!(transfer_arch(Arch::Mlp, p.params(), &support, &flat_ds, &flat_ds, 1).is_ok());
}
