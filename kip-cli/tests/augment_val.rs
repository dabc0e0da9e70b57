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

const AUG: [&str; 8] = [
    "distill",
    "--support",
    "10",
    "--seed",
    "2",
    "--augment",
    "flip,shift:2",
    "--quiet",
];

#[test]
fn augmented_runs_resume_bitwise_and_differ_from_plain_ones() {
    let t = tempdir();
    let dir = |n: &str| join(t.path(), n);
    kip_ok(
        t.path(),
        &[&AUG[..], &["--steps", "30", "--out", &dir("straight")]].concat(),
    );
    kip_ok(
        t.path(),
        &[&AUG[..], &["--steps", "15", "--out", &dir("split")]].concat(),
    );
    kip_ok(
        t.path(),
        &["distill", "--resume", &dir("split"), "--steps", "30", "--quiet"],
    );
    assert_same_support(
        &p(t.path(), "straight").join("support.npz"),
        &p(t.path(), "split").join("support.npz"),
    );
    let plain_dir = dir("plain");
    kip_ok(
        t.path(),
        &[&AUG[..5], &["--quiet", "--steps", "30", "--out", &plain_dir]].concat(),
    );
    let a = kip_data::SupportSet::read_npz(&p(t.path(), "straight").join("support.npz")).unwrap();
    let b = kip_data::SupportSet::read_npz(&p(t.path(), "plain").join("support.npz")).unwrap();
    assert!(
        (&a.x_model - &b.x_model).abs().max() > 1e-6,
        "augmentation changed nothing"
    );
    let config = std::fs::read_to_string(p(t.path(), "straight").join("config.json")).unwrap();
    assert!(config.contains(r#""augment""#), "{config}");
    let plain_config = std::fs::read_to_string(p(t.path(), "plain").join("config.json")).unwrap();
    assert!(
        !plain_config.contains("augment") && !plain_config.contains(r#""val""#),
        "{plain_config}"
    );
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
