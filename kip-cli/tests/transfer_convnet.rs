//! `kip transfer --arch convnet`: a finite ConvNet trained on a distilled
//! digits support set and on a natural sample reports accuracies; a ConvNet
//! on flat data, one too deep for the images, or an unknown architecture
//! is a usage error naming the flag, with no transfer.json left behind.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Exit code 2 and a first stderr line `error: ...` holding every needle.
fn usage_error(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(2), "exit code; stderr:\n{}", r.stderr);
    let first = r.first_line();
    assert!(first.starts_with("error: "), "first stderr line: {first:?}");
    for n in needles {
        assert!(first.contains(n), "first stderr line {first:?} lacks {n:?}");
    }
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
}

#[test]
fn convnet_transfer_on_distilled_digits() {
    let t = tempdir();
    let run = join(t.path(), "run");
    kip_ok(t.path(), &["distill", "--out", &run, "--quiet", "--steps", "5"]);
    let file = Path::new(&run).join("transfer.json");

    // Bad flags first: nothing is written.
    let bad: &[(&[&str], &[&str])] = &[
        (
            &["--arch", "convnet", "--depth", "4"],
            &["--depth", "4", "8x8", "at most 3"],
        ),
        (&["--arch", "resnet"], &["--arch", "resnet", "mlp, convnet"]),
        (
            &["--arch", "convnet", "--param", "standard"],
            &["--param", "standard", "ntk"],
        ),
        (&["--arch", "convnet", "--width", "0"], &["--width", "0"]),
    ];
    for (flags, needles) in bad {
        let mut args = vec!["transfer", &run, "--steps", "2"];
        args.extend_from_slice(flags);
        usage_error(&kip(t.path(), &args), needles);
        assert!(!file.exists(), "transfer.json after {flags:?}");
    }

    let args = [
        "transfer", &run, "--arch", "convnet", "--width", "8", "--depth", "1", "--steps", "30", "--seeds", "2",
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out: Value = serde_json::from_str(kip_ok(t.path(), &json_args).trim()).unwrap();
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(out, on_disk, "--json prints transfer.json");
    let s = &out["settings"];
    assert_eq!(s["arch"], "convnet", "{s}");
    assert_eq!(s["depth"], 1, "{s}");
    assert_eq!(s["width"], 8, "{s}");
    assert_eq!(s["steps"], 30, "{s}");
    assert!(s["lr"].as_f64().is_some_and(|lr| lr > 0.0), "{s}");
    for side in ["kip", "natural"] {
        let accs = out[side]["test_acc"].as_array().unwrap();
        assert_eq!(accs.len(), 2, "{out}");
        let mean = out[side]["mean"].as_f64().unwrap();
        // 10 classes: chance is 0.1; a centred ConvNet on 10 images does far better.
        assert!(mean.is_finite() && mean > 0.2, "{side}: {out}");
        assert!(out[side]["std"].as_f64().is_some_and(|v| v >= 0.0), "{out}");
    }

    // The human-readable report names the architecture; the same seeds give
    // the same accuracies.
    let text = kip_ok(t.path(), &args);
    assert!(
        text.starts_with("ConvNet1 width 8 (ntk, mse, centred), 10 images, 2 seeds: KIP "),
        "{text}"
    );
    let kip_mean = out["kip"]["mean"].as_f64().unwrap();
    assert!(text.contains(&format!("KIP {kip_mean:.4}")), "{text} vs {kip_mean}");

    // The default architecture is unchanged.
    let mlp = kip_ok(
        t.path(),
        &["transfer", &run, "--steps", "5", "--width", "16", "--seeds", "1"],
    );
    assert!(
        mlp.starts_with("FC1 width 16 (ntk, mse, centred), 10 images, 1 seeds: "),
        "{mlp}"
    );
}

#[test]
fn convnet_transfer_on_flat_data_names_arch() {
    if !numpy("the flat npz dataset") {
        return;
    }
    let t = tempdir();
    // 10 values per point: not a square, so the dataset is flat (1 × 10 × 1).
    python(
        t.path(),
        "import numpy as np\n\
         g = np.random.default_rng(0)\n\
         np.savez('flat.npz', x=g.random((60, 10)), y=np.arange(60) % 3)\n",
    );
    let run = join(t.path(), "run");
    let data = format!("npz:{}", join(t.path(), "flat.npz"));
    kip_ok(
        t.path(),
        &[
            "distill",
            "--dataset",
            &data,
            "--support",
            "6",
            "--steps",
            "2",
            "--out",
            &run,
            "--quiet",
        ],
    );
    let r = kip(t.path(), &["transfer", &run, "--arch", "convnet", "--steps", "2"]);
    usage_error(&r, &["--arch", "flat", "1x10x1", "mlp"]);
    assert!(!Path::new(&run).join("transfer.json").exists());
    // The MLP trains on it.
    kip_ok(
        t.path(),
        &["transfer", &run, "--steps", "2", "--width", "8", "--seeds", "1"],
    );
}

/// `kip transfer --protocol dc` (the field's standard evaluation) on a
/// distilled digits run: bad settings are usage errors naming the flag with
/// no file left behind; a small run reports per-run figures, prints what
/// it wrote, and repeats bitwise.
#[test]
fn standard_protocol_on_distilled_digits() {
    let t = tempdir();
    let run = join(t.path(), "run");
    kip_ok(t.path(), &["distill", "--out", &run, "--quiet", "--steps", "5"]);
    let file = Path::new(&run).join("transfer_dc_test.json");
    let bad: &[(&[&str], &[&str])] = &[
        (&["--protocol", "dd"], &["--protocol", "dd", "kip or dc"]),
        (&["--protocol", "dc", "--runs", "0"], &["--runs", "0", ">= 1"]),
        (&["--protocol", "dc", "--epochs", "0"], &["--epochs", "0", ">= 1"]),
        (&["--protocol", "dc", "--depth", "4"], &["--depth", "4", "8x8"]),
        (
            &["--protocol", "dc", "--loss", "mse"],
            &["--loss", "does not apply", "dc"],
        ),
        (
            &["--protocol", "dc", "--eval-on", "val"],
            &["--eval-on val", "no validation split"],
        ),
        (
            &["--protocol", "dc", "--eval-on", "train"],
            &["--eval-on train", "test or val"],
        ),
        (&["--runs", "2"], &["--runs", "does not apply", "kip"]),
    ];
    for (flags, needles) in bad {
        let mut args = vec!["transfer", &run];
        args.extend_from_slice(flags);
        usage_error(&kip(t.path(), &args), needles);
        assert!(!file.exists(), "transfer_dc_test.json after {flags:?}");
    }
    let args = [
        "transfer",
        &run,
        "--protocol",
        "dc",
        "--width",
        "8",
        "--depth",
        "2",
        "--epochs",
        "4",
        "--runs",
        "2",
        "--json",
    ];
    let out: Value = serde_json::from_str(kip_ok(t.path(), &args).trim()).unwrap();
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(out, on_disk, "--json prints transfer_dc_test.json");
    assert_eq!(out["protocol"], "dc");
    let s = &out["settings"];
    assert_eq!(
        (s["epochs"].as_u64(), s["runs"].as_u64(), s["width"].as_u64()),
        (Some(4), Some(2), Some(8))
    );
    assert_eq!(s["eval_on"], "test");
    for side in ["kip", "natural"] {
        let accs = out[side]["test_acc"].as_array().unwrap();
        assert_eq!(accs.len(), 2, "{out}");
        assert!(
            accs.iter()
                .all(|a| a.as_f64().is_some_and(|a| (0.0..=1.0).contains(&a))),
            "{out}"
        );
        assert_eq!(out[format!("{side}_runs")].as_array().unwrap().len(), 2, "{out}");
    }
    let again: Value = serde_json::from_str(kip_ok(t.path(), &args).trim()).unwrap();
    assert_eq!(out["kip"], again["kip"], "same seeds, same accuracies");
    // Without the natural row.
    let one = [
        "transfer",
        &run,
        "--protocol",
        "dc",
        "--width",
        "8",
        "--depth",
        "2",
        "--epochs",
        "2",
        "--natural",
        "false",
    ];
    let text = kip_ok(t.path(), &one);
    assert!(
        text.contains("test accuracy: KIP ") && !text.contains("natural"),
        "{text}"
    );
}

/// `kip export --format dc-bench`: numpy opens the file; images are the
/// model-space support set, labels one-hot rows.
#[test]
fn export_dc_bench_round_trips() {
    let t = tempdir();
    let run = join(t.path(), "run");
    kip_ok(t.path(), &["distill", "--out", &run, "--quiet", "--steps", "3"]);
    let out = join(t.path(), "set.npz");
    let r = kip(t.path(), &["export", &run, "--format", "bench", &out]);
    usage_error(&r, &["--format bench", "dc-bench"]);
    assert!(!Path::new(&out).exists());
    kip_ok(t.path(), &["export", &run, "--format", "dc-bench", &out]);
    if !numpy("the exported dc-bench file") {
        return;
    }
    python(
        t.path(),
        &format!(
            "import numpy as np\n\
             e = np.load({out:?}); s = np.load({sup:?})\n\
             assert e['images'].dtype == np.float32 and e['images'].shape == (10, 8, 8, 1), e['images'].shape\n\
             assert np.allclose(e['images'], s['x_model'].reshape(10, 8, 8, 1), atol=1e-6)\n\
             l = e['labels']\n\
             assert l.shape == (10, 10) and set(np.unique(l)) == {{0.0, 1.0}} and (l.sum(1) == 1).all()\n\
             assert (l.argmax(1) == s['y'].argmax(1)).all() and (e['class_ids'] == l.argmax(1)).all()\n\
             assert bytes(e['preprocess_utf8']).decode() == 'standard'\n\
             assert e['channel_mean'].shape == (1,) and e['channel_std'].shape == (1,)\n",
            sup = join(Path::new(&run), "support.npz"),
        ),
    );
}
