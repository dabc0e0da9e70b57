//! `kip distill --keep-best val`: the set chosen on validation, its step
//! and test accuracy in summary.json, `best/` readable as a run, resume
//! keeping the best, and the uses that are refused.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// A digits run whose validation accuracy peaks mid-run (lr 0.5: it
/// peaks at step 35 of 60 and falls back; measured when written).
const PEAKED: [&str; 13] = [
    "distill",
    "--support",
    "10",
    "--val",
    "300",
    "--eval-every",
    "5",
    "--lr",
    "0.5",
    "--keep-best",
    "val",
    "--checkpoint-every",
    "10",
];

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(step, val_acc, test_acc)` of every evaluation in the metrics log.
fn evaluations(run: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("val_acc").is_some_and(|v| !v.is_null()))
        .map(|l| {
            (
                l["step"].as_u64().unwrap(),
                l["val_acc"].as_f64().unwrap(),
                l["test_acc"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_set_with_the_best_validation_accuracy_is_kept_and_reported() {
    let t = tempdir();
    let out = join(t.path(), "r");
    let summary: Value = serde_json::from_str(
        kip_ok(
            t.path(),
            &[&PEAKED[..], &["--steps", "60", "--out", &out, "--json"]].concat(),
        )
        .trim(),
    )
    .unwrap();
    let evals = evaluations(Path::new(&out));
    // The first evaluation with the highest validation accuracy.
    let top = evals.iter().map(|e| e.1).fold(f64::MIN, f64::max);
    let chosen = evals.iter().find(|e| e.1 == top).unwrap();
    let best = &summary["best"];
    assert_eq!(best["step"].as_u64().unwrap(), chosen.0, "{best} vs {evals:?}");
    assert_eq!(best["val_acc"].as_f64().unwrap(), chosen.1);
    assert_eq!(best["test_acc"].as_f64().unwrap(), chosen.2);
    assert!(
        0 < chosen.0 && chosen.0 < 60 && evals.last().unwrap().1 < top,
        "the run should peak mid-run: {evals:?}"
    );
    assert_ne!(best["test_acc"], summary["final_test_acc"]);
    // best/ is read as a run: kip eval scores its set at the recorded accuracy.
    let eval = kip_ok(t.path(), &["eval", &join(Path::new(&out), "best")]);
    assert!(
        eval.contains(&format!("test accuracy {:.4}", chosen.2)),
        "{eval} vs {chosen:?}"
    );
    let record = json(&p(Path::new(&out), "best").join("best.json"));
    assert_eq!(record["step"], best["step"]);
}

#[test]
fn a_resumed_run_keeps_the_best_it_had_and_ends_as_a_straight_run() {
    let t = tempdir();
    let (straight, split) = (join(t.path(), "straight"), join(t.path(), "split"));
    kip_ok(
        t.path(),
        &[&PEAKED[..], &["--steps", "60", "--quiet", "--out", &straight]].concat(),
    );
    // Stop after the peak (step 35), then continue to 60: the best stays.
    kip_ok(
        t.path(),
        &[&PEAKED[..], &["--steps", "40", "--quiet", "--out", &split]].concat(),
    );
    let before = json(&p(t.path(), "split").join("best/best.json"));
    kip_ok(t.path(), &["distill", "--resume", &split, "--steps", "60", "--quiet"]);
    let after = json(&p(t.path(), "split").join("best/best.json"));
    assert_eq!(before, after, "the best before the resume is still the best");
    assert_eq!(after, json(&p(t.path(), "straight").join("best/best.json")));
    assert_same_support(
        &p(t.path(), "straight").join("best/support.npz"),
        &p(t.path(), "split").join("best/support.npz"),
    );
    assert_eq!(
        json(&p(t.path(), "split").join("summary.json"))["best"],
        json(&p(t.path(), "straight").join("summary.json"))["best"]
    );
}

#[test]
fn keep_best_without_a_validation_split_or_on_a_snapshot_is_refused() {
    let t = tempdir();
    let out = join(t.path(), "x");
    for (args, needles) in [
        (vec!["--keep-best", "val"], vec!["--keep-best val", "validation split"]),
        (
            vec!["--keep-best", "val", "--val", "300", "--eval-every", "0"],
            vec!["--keep-best val", "eval_every"],
        ),
    ] {
        let r = kip(
            t.path(),
            &[&["distill", "--steps", "2", "--out", &out][..], &args].concat(),
        );
        expect_error(&r, 2, &needles);
        assert!(files_in(&p(t.path(), "x")).is_empty(), "{args:?} left files");
    }
    // Only validation selects: the test split is not a choice.
    let r = kip(t.path(), &["distill", "--keep-best", "test", "--out", &out]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--keep-best"), "{}", r.stderr);
    // best/ is a snapshot to evaluate, not a run to continue.
    let run = join(t.path(), "r");
    kip_ok(
        t.path(),
        &[&PEAKED[..], &["--steps", "10", "--quiet", "--out", &run]].concat(),
    );
    let r = kip(t.path(), &["distill", "--resume", &join(Path::new(&run), "best")]);
    expect_error(&r, 2, &["best.json", "not a run"]);
}
