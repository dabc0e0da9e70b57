//! Random-feature ConvNet kernels end to end on digits (8×8×1 images):
//! `kip distill --kernel rf-…` learns, `--eval-kernel` evaluates with
//! another kernel (recorded; `kip eval` uses it), `kip gram` computes the
//! fixed-seed kernel, and bad specs fail naming the flag.

mod common;

use common::*;
use serde_json::Value;

fn last_line(dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn distill_with_random_features_learns_and_evaluates_with_the_eval_kernel() {
    let t = tempdir();
    let base = [
        "distill",
        "--kernel",
        "rf-convnet1:channels=16,models=2",
        "--support",
        "20",
        "--target-batch",
        "400",
        "--steps",
        "40",
        "--eval-every",
        "0",
        "--quiet",
    ];
    kip_ok(t.path(), &[&base[..], &["--out", &join(t.path(), "rf")]].concat());
    let rf = last_line(&p(t.path(), "rf"));
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(p(t.path(), "rf").join("metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let (start, end) = (first["test_acc"].as_f64().unwrap(), rf["test_acc"].as_f64().unwrap());
    assert!(end > start + 0.02, "random-feature KIP learns: {start} -> {end}");
    // The same run evaluated under FC1: the training is identical, the
    // evaluation kernel is recorded and used by `kip eval`.
    kip_ok(
        t.path(),
        &[&base[..], &["--eval-kernel", "fc1-ntk", "--out", &join(t.path(), "fc")]].concat(),
    );
    let fc = last_line(&p(t.path(), "fc"));
    assert_eq!(fc["loss"], rf["loss"], "--eval-kernel changes evaluation only");
    assert_ne!(fc["test_acc"], rf["test_acc"]);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(p(t.path(), "fc").join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kip"]["eval_kernel"], "fc1-ntk", "{config}");
    let eval = kip_ok(t.path(), &["eval", &join(t.path(), "fc"), "--json"]);
    let eval: Value = serde_json::from_str(eval.trim().lines().last().unwrap()).unwrap();
    assert_eq!(eval["kernel"], "fc1-ntk", "{eval}");
    assert_eq!(eval["test_acc"], fc["test_acc"], "{eval}");
}

#[test]
fn bad_random_feature_specs_name_the_flag() {
    let t = tempdir();
    for (flag, spec, needle) in [
        ("--kernel", "rf-convnet1:channels=0", "channels"),
        ("--kernel", "rf-conv:layers=CEFD", "ReLU"),
        ("--eval-kernel", "rf-convnet1:models=x", "not a non-negative integer"),
        ("--kernel", "rf-convnet4", "too small to pool"),
        ("--kernel", "convnet4-ntk", "too small to pool"),
        ("--eval-kernel", "convnet4-nngp", "too small to pool"),
    ] {
        let out = kip(
            t.path(),
            &["distill", flag, spec, "--steps", "2", "--out", &join(t.path(), "bad")],
        );
        assert_ne!(out.code, Some(0), "{flag} {spec}");
        assert!(out.stderr.contains(needle), "{flag} {spec}: {}", out.stderr);
        assert!(!p(t.path(), "bad").exists(), "nothing written for {spec}");
    }
}

#[test]
fn platt_loss_runs_resume_bitwise_and_bad_values_name_the_flag() {
    let t = tempdir();
    let base = [
        "distill",
        "--loss",
        "platt",
        "--support",
        "10",
        "--learn-labels",
        "--quiet",
    ];
    kip_ok(
        t.path(),
        &[&base[..], &["--steps", "30", "--out", &join(t.path(), "a")]].concat(),
    );
    kip_ok(
        t.path(),
        &[&base[..], &["--steps", "15", "--out", &join(t.path(), "b")]].concat(),
    );
    kip_ok(
        t.path(),
        &["distill", "--resume", &join(t.path(), "b"), "--steps", "30", "--quiet"],
    );
    assert_same_support(
        &p(t.path(), "a").join("support.npz"),
        &p(t.path(), "b").join("support.npz"),
    );
    let end = last_line(&p(t.path(), "a"));
    assert!(end["test_acc"].as_f64().unwrap() > 0.8, "{end}");
    let out = kip(
        t.path(),
        &["distill", "--loss", "hinge", "--out", &join(t.path(), "bad")],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--loss") && out.stderr.contains("mse or platt"),
        "{}",
        out.stderr
    );
}
