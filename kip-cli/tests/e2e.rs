//! End to end on the embedded digits set: distill with the defaults, then
//! eval, inspect, label-solve and transfer; determinism across runs and
//! thread counts.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn read_json(path: &Path) -> Value {
    json(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
}

#[test]
fn distill_defaults_then_eval_inspect_label_solve_transfer() {
    let t = tempdir();
    let run = join(t.path(), "run");
    let summary = json(&kip_ok(t.path(), &["distill", "--out", &run, "--quiet", "--json"]));
    let dir = Path::new(&run);
    for f in [
        "support.npz",
        "metrics.jsonl",
        "config.json",
        "support.png",
        "checkpoint.bin",
        "summary.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // No temporary files left from the atomic writes.
    for f in files_in(dir) {
        assert!(!f.contains(".tmp"), "leftover {f}");
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<Value> = metrics.lines().map(json).collect();
    assert_eq!(lines.len(), 301, "the step-0 baseline, then one line per default step");
    let baseline = &lines[0];
    assert_eq!(baseline["step"].as_u64(), Some(0), "{baseline}");
    assert!(
        baseline["loss"].is_null() && baseline["test_acc"].as_f64().is_some(),
        "{baseline}"
    );
    for (i, l) in lines.iter().enumerate().skip(1) {
        assert_eq!(l["step"].as_u64(), Some(i as u64), "{l}");
        assert!(l["loss"].as_f64().is_some_and(f64::is_finite), "{l}");
        assert!(l["elapsed_s"].as_f64().is_some(), "{l}");
    }
    let last = lines.last().unwrap();
    assert!(
        last["test_acc"].as_f64().is_some() && last["test_loss"].as_f64().is_some(),
        "{last}"
    );
    let on_disk = read_json(&dir.join("summary.json"));
    assert_eq!(on_disk, summary, "--json prints summary.json");
    let init = summary["init_test_acc"].as_f64().unwrap();
    let fin = summary["final_test_acc"].as_f64().unwrap();
    assert!(fin > init, "KIP improves test accuracy: {init} -> {fin}");
    assert_eq!(
        baseline["test_acc"].as_f64(),
        Some(init),
        "the summary's start is the baseline"
    );
    assert_eq!(last["test_acc"].as_f64(), Some(fin));

    // eval reproduces the final accuracy.
    let ev = json(&kip_ok(t.path(), &["eval", &run, "--json"]));
    let acc = ev["test_acc"].as_f64().unwrap();
    assert!((acc - fin).abs() < 1e-9, "eval {acc} vs distill {fin}");
    assert_eq!(ev["support"].as_u64(), Some(10));

    // inspect.
    let ins = json(&kip_ok(t.path(), &["inspect", &run, "--json"]));
    assert_eq!(ins["support"]["images"].as_u64(), Some(10));
    assert_eq!(ins["summary"]["final_test_acc"].as_f64(), Some(fin));
    assert_eq!(ins["config"]["command"].as_str(), Some("distill"));
    let ds = json(&kip_ok(t.path(), &["inspect", "--json"]));
    assert_eq!(ds["train"].as_u64(), Some(1438));
    assert_eq!(ds["test"].as_u64(), Some(359));

    // label-solve improves a natural sample.
    let ls = join(t.path(), "ls");
    let out = json(&kip_ok(
        t.path(),
        &["label-solve", "--support", "20", "--out", &ls, "--json"],
    ));
    let (before, after) = (
        out["test_acc_before"].as_f64().unwrap(),
        out["test_acc_after"].as_f64().unwrap(),
    );
    assert!(after > before, "label solve: {before} -> {after}");
    assert!(Path::new(&ls).join("support.npz").is_file());
    let s = kip_data::SupportSet::read_npz(&Path::new(&ls).join("support.npz")).unwrap();
    assert_eq!(s.labels.len(), 20);

    // transfer.
    let tr = json(&kip_ok(
        t.path(),
        &[
            "transfer", &run, "--steps", "50", "--width", "64", "--seeds", "2", "--json",
        ],
    ));
    let file = read_json(&dir.join("transfer.json"));
    assert_eq!(file, tr);
    for side in ["kip", "natural"] {
        let accs = file[side]["test_acc"].as_array().unwrap();
        assert_eq!(accs.len(), 2, "{file}");
        for key in ["mean", "std"] {
            let v = file[side][key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{side}.{key} = {v}");
        }
        assert!(file[side]["mean"].as_f64().unwrap() > 0.1, "{file}");
    }

    // numpy reads support.npz.
    if numpy("the numpy check of support.npz") {
        python(
            dir,
            "import numpy as np\n\
             z = np.load('support.npz')\n\
             names = set(z.files)\n\
             assert len(names) >= 2, names\n\
             for k in z.files:\n    a = z[k]\n    assert a.shape[0] >= 1, (k, a.shape)\n\
             print(sorted(names))\n",
        );
    }
}

fn distill_to(cwd: &Path, name: &str, extra: &[&str]) -> String {
    distill_with(cwd, name, extra, &[])
}

/// `kip [global] distill --out cwd/name ... [sub]`, 30 steps, seed 7.
fn distill_with(cwd: &Path, name: &str, global: &[&str], sub: &[&str]) -> String {
    let out = join(cwd, name);
    let mut args: Vec<&str> = global.to_vec();
    args.extend_from_slice(&[
        "distill",
        "--out",
        &out,
        "--steps",
        "30",
        "--seed",
        "7",
        "--support",
        "20",
        "--eval-every",
        "0",
        "--quiet",
    ]);
    args.extend_from_slice(sub);
    kip_ok(cwd, &args);
    out
}

#[test]
fn same_seed_gives_the_same_support_set() {
    let t = tempdir();
    let a = distill_to(t.path(), "a", &[]);
    let b = distill_to(t.path(), "b", &[]);
    assert_same_support(&Path::new(&a).join("support.npz"), &Path::new(&b).join("support.npz"));
    // A different seed gives a different one (the check has teeth).
    let c = join(t.path(), "c");
    kip_ok(
        t.path(),
        &[
            "distill",
            "--out",
            &c,
            "--steps",
            "30",
            "--seed",
            "8",
            "--support",
            "20",
            "--eval-every",
            "0",
            "--quiet",
        ],
    );
    let sa = kip_data::SupportSet::read_npz(&Path::new(&a).join("support.npz")).unwrap();
    let sc = kip_data::SupportSet::read_npz(&Path::new(&c).join("support.npz")).unwrap();
    assert_ne!(sa.x_model, sc.x_model);
}

#[test]
fn results_do_not_depend_on_threads() {
    let t = tempdir();
    let one = distill_to(t.path(), "one", &["--threads", "1"]);
    let two = distill_to(t.path(), "two", &["--threads", "2"]);
    let four = distill_to(t.path(), "four", &["--threads", "4"]);
    let s1 = Path::new(&one).join("support.npz");
    assert_same_support(&s1, &Path::new(&two).join("support.npz"));
    assert_same_support(&s1, &Path::new(&four).join("support.npz"));
}

/// Final test accuracy of a run (the last line of metrics.jsonl).
fn final_acc(run: &str) -> f64 {
    let m = std::fs::read_to_string(Path::new(run).join("metrics.jsonl")).unwrap();
    json(m.lines().last().unwrap())["test_acc"].as_f64().unwrap()
}

#[test]
fn f32_precision_is_deterministic_and_close_to_f64() {
    let t = tempdir();
    let f64_run = distill_with(t.path(), "f64", &[], &[]);
    let one = distill_with(t.path(), "f32-1", &["--threads", "1"], &["--precision", "f32"]);
    let two = distill_with(t.path(), "f32-2", &["--threads", "2"], &["--precision", "f32"]);
    let s1 = Path::new(&one).join("support.npz");
    assert_same_support(&s1, &Path::new(&two).join("support.npz"));
    let cfg = read_json(&Path::new(&one).join("config.json"));
    assert_eq!(cfg["kip"]["precision"], "F32", "{cfg}");
    // Not the f64 trajectory bit for bit, but the same result to within a
    // few test images.
    let a = kip_data::SupportSet::read_npz(&s1).unwrap();
    let b = kip_data::SupportSet::read_npz(&Path::new(&f64_run).join("support.npz")).unwrap();
    assert_ne!(a.x_model, b.x_model);
    let (acc32, acc64) = (final_acc(&one), final_acc(&f64_run));
    assert!((acc32 - acc64).abs() <= 0.01, "f32 {acc32} vs f64 {acc64}");
}

/// KIP with a convolutional kernel on digits (8×8×1): it learns, its result
/// does not depend on the thread count, a resumed run ends on the same
/// support set, and `eval` scores it under the pooled ConvNet kernel.
#[test]
fn conv_kernel_distill_is_deterministic_resumes_and_evaluates() {
    let t = tempdir();
    let run = |name: &str, threads: &str, steps: &str| {
        let out = join(t.path(), name);
        kip_ok(
            t.path(),
            &[
                "--threads",
                threads,
                "distill",
                "--out",
                &out,
                "--kernel",
                "convvec2-ntk",
                "--support",
                "20",
                "--target-batch",
                "200",
                "--learn-labels",
                "--steps",
                steps,
                "--eval-every",
                "0",
                "--seed",
                "3",
                "--quiet",
            ],
        );
        out
    };
    let one = run("one", "1", "8");
    let two = run("two", "2", "8");
    let s1 = Path::new(&one).join("support.npz");
    assert_same_support(&s1, &Path::new(&two).join("support.npz"));
    // 4 steps, then resume to 8: the same support set.
    let part = run("part", "2", "4");
    kip_ok(t.path(), &["distill", "--resume", &part, "--steps", "8", "--quiet"]);
    assert_same_support(&s1, &Path::new(&part).join("support.npz"));
    let lines: Vec<Value> = std::fs::read_to_string(Path::new(&one).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(json)
        .collect();
    let (first, last) = (lines[1]["loss"].as_f64().unwrap(), lines[8]["loss"].as_f64().unwrap());
    assert!(last < first, "the loss falls: {first} -> {last}");
    let ev = json(&kip_ok(t.path(), &["eval", &one, "--kernel", "convnet1-ntk", "--json"]));
    let acc = ev["test_acc"].as_f64().unwrap();
    assert!(acc > 0.5 && acc <= 1.0, "{ev}");
    // Another test set: the last 100 training images.
    let ev = json(&kip_ok(t.path(), &["eval", &one, "--holdout", "100", "--json"]));
    assert_eq!(
        (ev["holdout"].as_u64(), ev["test_size"].as_u64()),
        (Some(100), Some(100)),
        "{ev}"
    );
    let r = kip(t.path(), &["eval", &one, "--holdout", "100000"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.first_line().contains("--holdout 100000"), "{}", r.stderr);
}

/// `support.png` of a ZCA run shows the images (each on its own scale, as
/// the field shows ZCA-space images); it used to be a black grid.
#[test]
fn the_support_picture_of_a_zca_run_is_not_blank() {
    let t = tempdir();
    let run = join(t.path(), "zca");
    kip_ok(
        t.path(),
        &[
            "distill",
            "--preprocess",
            "zca",
            "--steps",
            "2",
            "--quiet",
            "--eval-every",
            "0",
            "--out",
            &run,
        ],
    );
    let file = std::fs::File::open(Path::new(&run).join("support.png")).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    // Cells (not the grey frame): a spread of grey levels.
    let cells: Vec<u8> = buf.iter().copied().filter(|&v| v != 128).collect();
    let (bright, dark) = (
        cells.iter().filter(|&&v| v > 180).count(),
        cells.iter().filter(|&&v| v < 75).count(),
    );
    assert!(
        bright > cells.len() / 20 && dark > cells.len() / 20,
        "{bright} bright, {dark} dark of {}",
        cells.len()
    );
}
