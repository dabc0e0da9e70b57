//! Checkpoint/resume continues the identical trajectory, and the thread
//! count does not change results (bitwise).

use kip_meta::{checkpoint, Kip, KipParams, KipState};

const FC: &[&str] = &["fc1-ntk", "fc2-ntk"];
/// A random-feature kernel: new networks every step.
const RF: &[&str] = &["rf-convnet1:channels=8,models=2"];

fn setup(kernels: &[&str]) -> (KipParams, kip_data::Dataset) {
    let split = kip_data::digits();
    let t = kip_data::Preprocess::Standard.fit(&split.train).unwrap();
    let params = KipParams {
        kernels: kernels.iter().map(|k| k.to_string()).collect(),
        n_support: 20,
        n_target: 300,
        steps: 20,
        learn_labels: true,
        lr_schedule: kip_meta::LrSchedule::Cosine { min_factor: 0.1 },
        corrupt: 0.1,
        seed: 11,
        ..KipParams::default()
    };
    (params, t.apply(&split.train))
}

fn run(steps: usize, from: Option<KipState>) -> KipState {
    run_with(FC, steps, from)
}

fn run_with(kernels: &[&str], steps: usize, from: Option<KipState>) -> KipState {
    let (params, train) = setup(kernels);
    let valid = params.check().unwrap();
    let mut kip = match from {
        Some(s) => Kip::from_state(valid, train, s).unwrap(),
        None => Kip::new(valid, train).unwrap(),
    };
    while kip.state().step < steps {
        kip.step().unwrap();
    }
    kip.state().clone()
}

#[test]
fn twenty_straight_equals_ten_plus_resumed_ten_bitwise() {
    let straight = run(20, None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.bin");
    let half = run(10, None);
    checkpoint::save(&path, &half, &["fc1-ntk".into(), "fc2-ntk".into()], None).unwrap();
    let (loaded, meta) = checkpoint::load(&path).unwrap();
    assert_eq!(meta.step, 10);
    let resumed = run(20, Some(loaded));
    assert_eq!(resumed.step, 20);
    // Bitwise: compare the f64 bit patterns, not within a tolerance.
    let bits = |s: &KipState| {
        s.x_s
            .iter()
            .chain(s.y_s.iter())
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&resumed), bits(&straight));
    assert_eq!(resumed, straight);
    assert_ne!(straight.x_s, half.x_s, "the run moved");
}

#[test]
fn random_feature_runs_resume_bitwise() {
    let straight = run_with(RF, 12, None);
    let half = run_with(RF, 6, None);
    let resumed = run_with(RF, 12, Some(half.clone()));
    assert_eq!(resumed, straight);
    assert_ne!(straight.x_s, half.x_s, "the run moved");
}

#[test]
fn thread_count_does_not_change_the_trajectory() {
    let with = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(|| run(8, None))
    };
    let (one, two) = (with(1), with(2));
    assert_eq!(
        one.x_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        two.x_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn frozen_pixels_never_move() {
    let (params, train) = setup(FC);
    let kip0 = Kip::new(params.clone().check().unwrap(), train).unwrap();
    let start = kip0.state().clone();
    let end = run(20, None);
    let mask = start.frozen.as_ref().expect("corrupt > 0 freezes pixels");
    assert!(mask.frozen_count() > 0);
    let (n, d) = mask.dims();
    let mut moved = 0;
    for i in 0..n {
        for j in 0..d {
            if mask.is_frozen(i, j) {
                assert_eq!(start.x_s[(i, j)], end.x_s[(i, j)], "frozen pixel ({i}, {j}) moved");
            } else {
                moved += usize::from(start.x_s[(i, j)] != end.x_s[(i, j)]);
            }
        }
    }
    assert!(moved > 0, "the other pixels move");
}
