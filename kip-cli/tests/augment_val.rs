//! `--augment` (target augmentation) and `--val` (a validation split) end
//! to end on digits: determinism under resume, the logged figures, errors.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const AUG: [&str; 7] = ["distill", "--support", "10", "--seed", "2", "--augment", "flip,shift:2"];

/// A run with `flags` (after [`AUG`]'s first five) resumed halfway ends
/// bitwise where the straight run does and away from the plain run; its
/// config.json records `key`. Returns the straight run's folder.
fn resumes_bitwise_and_differs(t: &Path, flags: &[&str], key: &str) -> std::path::PathBuf {
    let dir = |n: &str| join(t, n);
    let base = [&AUG[..5], flags, &["--quiet"]].concat();
    kip_ok(t, &[&base[..], &["--steps", "20", "--out", &dir("straight")]].concat());
    kip_ok(t, &[&base[..], &["--steps", "8", "--out", &dir("split")]].concat());
    kip_ok(t, &["distill", "--resume", &dir("split"), "--steps", "20", "--quiet"]);
    assert_same_support(
        &p(t, "straight").join("support.npz"),
        &p(t, "split").join("support.npz"),
    );
    kip_ok(
        t,
        &[&AUG[..5], &["--quiet", "--steps", "20", "--out", &dir("plain")]].concat(),
    );
    let a = kip_data::SupportSet::read_npz(&p(t, "straight").join("support.npz")).unwrap();
    let b = kip_data::SupportSet::read_npz(&p(t, "plain").join("support.npz")).unwrap();
    assert!(
        (&a.x_model - &b.x_model).abs().max() > 1e-6,
        "{flags:?} changed nothing"
    );
    let config = std::fs::read_to_string(p(t, "straight").join("config.json")).unwrap();
    assert!(config.contains(&format!("\"{key}\"")), "{config}");
    let plain_config = std::fs::read_to_string(p(t, "plain").join("config.json")).unwrap();
    assert!(
        !plain_config.contains("augment") && !plain_config.contains(r#""val""#),
        "{plain_config}"
    );
    p(t, "straight")
}

#[test]
fn augmented_runs_resume_bitwise_and_differ_from_plain_ones() {
    let t = tempdir();
    resumes_bitwise_and_differs(t.path(), &AUG[5..7], "augment");
}

#[test]
fn support_augmented_runs_resume_bitwise_and_learn_a_different_set() {
    let t = tempdir();
    let dir = resumes_bitwise_and_differs(t.path(), &["--augment-support", "flip,shift:1"], "augment_support");
    // The run learns: its test accuracy after 20 steps is above chance.
    let last = lines(&dir).pop().unwrap();
    assert!(last["test_acc"].as_f64().unwrap() > 0.5, "{last}");
}

#[test]
fn validation_figures_are_logged_beside_the_test_figures() {
    let t = tempdir();
    let out = join(t.path(), "v");
    let summary = kip_ok(
        t.path(),
        &[
            "distill",
            "--support",
            "10",
            "--steps",
            "20",
            "--eval-every",
            "10",
            "--val",
            "300",
            "--out",
            &out,
            "--quiet",
            "--json",
        ],
    );
    let summary: Value = serde_json::from_str(summary.trim()).unwrap();
    let ls = lines(Path::new(&out));
    let evals: Vec<usize> = ls
        .iter()
        .filter(|l| l.get("val_acc").is_some())
        .map(|l| l["step"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(evals, [0, 10, 20]);
    for l in ls.iter().filter(|l| l.get("test_acc").is_some()) {
        assert!(l["val_acc"].as_f64().unwrap() > 0.0 && l["val_loss"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(summary["final_val_acc"], ls.last().unwrap()["val_acc"]);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("config.json")).unwrap()).unwrap();
    assert_eq!(config["val"], 300);
    assert_eq!(config["train_size"], 1438 - 300);
}

#[test]
fn bad_values_name_their_flag() {
    let t = tempdir();
    for (flag, value, expected) in [
        ("--augment", "rotate:3", "--augment"),
        ("--augment", "shift:0", "expected none, or a comma list"),
        ("--augment-support", "flop", "--augment-support"),
        ("--val", "1438", "validation set of 1438"),
    ] {
        let r = kip(
            t.path(),
            &["distill", flag, value, "--steps", "2", "--out", &join(t.path(), "x")],
        );
        assert_ne!(r.code, Some(0), "{flag} {value} succeeded");
        assert!(r.stderr.contains(expected), "{flag} {value}: {}", r.stderr);
        assert!(files_in(&p(t.path(), "x")).is_empty(), "{flag} {value} left files");
    }
}
