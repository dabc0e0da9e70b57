//! The run driver through the library alone: a run stopped by its observer
//! and resumed equals the straight run bit for bit, logs each step once
//! after its step-0 baseline, and every way a run directory can be misused
//! is an error that names it.

use std::ops::ControlFlow;
use std::path::Path;

use kip_meta::{
    checkpoint, KipParams, MetaError, MetricsLine, Observer, Resume, RunConfig, RunDir, RunOutcome, RunRecord,
    RunStart, Runner, Start, CHECKPOINT, CONFIG, SUMMARY,
};

fn config(steps: usize) -> RunConfig {
    RunConfig {
        kip: KipParams {
            kernels: vec!["fc1-ntk".into(), "fc2-ntk".into()],
            n_support: 20,
            n_target: 300,
            steps,
            learn_labels: true,
            lr_schedule: "cosine:0.1".parse().unwrap(),
            corrupt: 0.1,
            seed: 7,
            ..KipParams::default()
        },
        eval_every: 4,
        checkpoint_every: 5,
        ..RunConfig::default()
    }
}

/// Stops the run after `after` steps; records what it saw.
struct StopAfter {
    after: usize,
    started: Option<(Start, usize, usize)>,
    seen: Vec<usize>,
}

impl Observer for StopAfter {
    fn started(&mut self, s: &RunStart<'_>) -> ControlFlow<()> {
        assert!(s.notes.iter().any(|n| n.contains("test set")), "{:?}", s.notes);
        assert!((0.0..=1.0).contains(&s.eval.accuracy));
        self.started = Some((s.start, s.step, s.steps));
        ControlFlow::Continue(())
    }
    fn step(&mut self, line: &MetricsLine) -> ControlFlow<()> {
        self.seen.push(line.step);
        if line.step >= self.after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn bits(dir: &Path) -> Vec<u64> {
    let (s, _) = checkpoint::load(&dir.join(CHECKPOINT)).unwrap();
    s.x_s.iter().chain(s.y_s.iter()).map(|v| v.to_bits()).collect()
}

fn steps_logged(dir: &Path) -> Vec<usize> {
    RunDir::open(dir)
        .unwrap()
        .read_metrics()
        .unwrap()
        .iter()
        .map(|l| l.step)
        .collect()
}

#[test]
fn stopped_and_resumed_equals_straight_bitwise() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let RunOutcome::Finished(straight) = Runner::create(&a, config(12)).unwrap().run(&mut ()).unwrap() else {
        panic!("the straight run finishes")
    };
    assert_eq!(straight.steps, 12);

    let mut stop = StopAfter {
        after: 7,
        started: None,
        seen: Vec::new(),
    };
    let outcome = Runner::create(&b, config(12)).unwrap().run(&mut stop).unwrap();
    assert_eq!(outcome, RunOutcome::Stopped { step: 7 });
    assert_eq!(stop.started, Some((Start::New, 0, 12)));
    assert_eq!(stop.seen, (1..=7).collect::<Vec<_>>());
    assert!(!b.join(SUMMARY).exists(), "a stopped run has no summary");
    assert_eq!(checkpoint::load(&b.join(CHECKPOINT)).unwrap().0.step, 7);

    let mut watch = StopAfter {
        after: usize::MAX,
        started: None,
        seen: Vec::new(),
    };
    let mut runner = Runner::resume(&b, Resume::default()).unwrap();
    assert_eq!(runner.start(), Start::Resumed { step: 7 });
    let RunOutcome::Finished(resumed) = runner.run(&mut watch).unwrap() else {
        panic!("the resumed run finishes")
    };
    assert_eq!(watch.started, Some((Start::Resumed { step: 7 }, 7, 12)));
    assert_eq!(bits(&a), bits(&b), "support images and labels, bit for bit");
    assert_eq!(
        steps_logged(&b),
        (0..=12).collect::<Vec<_>>(),
        "the baseline, then each step once"
    );
    assert_eq!(steps_logged(&a), steps_logged(&b));
    // The baseline is the first line; the summary reports it.
    let first = &RunDir::open(&b).unwrap().read_metrics().unwrap()[0];
    assert!(
        first.loss.is_none() && first.test_acc.is_some() && first.test_loss.is_some(),
        "{first:?}"
    );
    assert_eq!(resumed.init_test_acc, first.test_acc.unwrap());
    assert_eq!(resumed.init_test_acc, straight.init_test_acc);
    assert_eq!(resumed.final_test_acc, straight.final_test_acc);
    // config.json is the typed configuration.
    let RunRecord::Distill(c) = RunDir::open(&b).unwrap().read_config().unwrap() else {
        panic!("distill")
    };
    assert_eq!(
        (c.kip, c.train_size, c.test_size, c.image_shape),
        (config(12).kip, 1438, 359, [8, 8, 1])
    );
}

#[test]
fn a_run_without_checkpoint_restarts_and_one_at_its_end_only_finishes() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    Runner::create(&a, config(6)).unwrap().run(&mut ()).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(a.join(CONFIG), b.join(CONFIG)).unwrap();
    let mut r = Runner::resume(&b, Resume::default()).unwrap();
    assert_eq!(r.start(), Start::Restarted);
    r.run(&mut ()).unwrap();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(steps_logged(&b), (0..=6).collect::<Vec<_>>());
    // Resumed at its end (summary lost): nothing is logged twice.
    std::fs::remove_file(b.join(SUMMARY)).unwrap();
    Runner::resume(&b, Resume::default()).unwrap().run(&mut ()).unwrap();
    assert_eq!(steps_logged(&b), (0..=6).collect::<Vec<_>>());
    assert!(b.join(SUMMARY).is_file());
}

#[test]
fn misuse_is_an_error_that_names_the_folder() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let bad = RunConfig {
        kip: KipParams {
            n_support: 0,
            ..config(3).kip
        },
        ..config(3)
    };
    assert!(matches!(
        Runner::create(&a, bad),
        Err(MetaError::Param { name: "n_support", .. })
    ));
    assert!(!a.exists(), "a rejected run leaves no folder");
    let too_many = RunConfig {
        kip: KipParams {
            n_support: 5000,
            ..config(3).kip
        },
        ..config(3)
    };
    assert!(matches!(
        Runner::create(&a, too_many),
        Err(MetaError::Param { name: "n_support", .. })
    ));
    assert!(!a.join(CONFIG).exists());
    Runner::create(&a, config(3)).unwrap().run(&mut ()).unwrap();
    let e = Runner::create(&a, config(3)).unwrap_err().to_string();
    assert!(
        e.contains("already holds a run") && e.contains(&a.display().to_string()),
        "{e}"
    );
    let e = Runner::resume(t.path(), Resume::default()).unwrap_err().to_string();
    assert!(e.contains("not a kip run directory"), "{e}");
    // A configuration whose data no longer has the recorded sizes.
    let mut rec = RunDir::open(&a).unwrap().read_config().unwrap();
    rec.data_mut().holdout = 100;
    RunDir::open(&a).unwrap().write_json(CONFIG, &rec).unwrap();
    let e = Runner::resume(&a, Resume::default()).unwrap_err().to_string();
    assert!(e.contains("no longer matches"), "{e}");
}

#[test]
fn a_diverging_step_keeps_the_last_good_state() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let mut c = config(50);
    c.kip.adam.lr = 1e300;
    c.checkpoint_every = 0;
    let e = Runner::create(&a, c).unwrap().run(&mut ()).unwrap_err();
    let MetaError::StepFailed {
        step,
        ref dir,
        ref source,
    } = e
    else {
        panic!("{e:?}")
    };
    assert!(matches!(**source, MetaError::NonFinite { .. }), "{source:?}");
    assert_eq!(dir, &a);
    let (state, _) = checkpoint::load(&a.join(CHECKPOINT)).unwrap();
    assert_eq!(state.step, step);
    assert!(state.x_s.iter().all(|v| v.is_finite()));
    let text = e.to_string();
    // The step that failed is named, and the state before it is kept: the
    // failing step started from a state its forward pass could not use.
    assert!(
        text.contains(&format!("at step {}", step + 1))
            && text.contains(&format!("last good support set (step {step})")),
        "{text}"
    );
}

/// A run whose rate blows the support set up (finite values whose kernel
/// overflows) keeps the last state a step succeeded from as "last good":
/// finite images and a checkpoint that evaluates, not the garbage.
#[test]
fn a_diverged_run_keeps_a_usable_last_good_state() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("blown");
    let mut cfg = config(5);
    cfg.kip.adam.lr = 1e300;
    cfg.kip.corrupt = 0.0;
    let err = Runner::create(&dir, cfg).unwrap().run(&mut ()).unwrap_err();
    let MetaError::StepFailed { step, .. } = &err else {
        panic!("a step failure: {err}")
    };
    let (state, _) = checkpoint::load(&dir.join(CHECKPOINT)).unwrap();
    assert_eq!(state.step, *step, "{err}");
    assert!(state.x_s.iter().all(|v| v.is_finite() && v.abs() < 1e3), "{err}");
    let support = RunDir::open(&dir).unwrap().read_support().unwrap();
    assert!(support.x_pixels.iter().all(|v| v.is_finite()), "{err}");
    // The saved state is usable: resuming re-runs its step (and fails the
    // same way), instead of failing on a kernel of overflowing values.
    let again = Runner::resume(&dir, Resume::default())
        .unwrap()
        .run(&mut ())
        .unwrap_err();
    assert!(
        matches!(again, MetaError::StepFailed { step: s, .. } if s == *step),
        "{again}"
    );
}
