//! Bad input never crashes `kip`: every case exits with the documented code
//! (2: usage, 1: runtime), prints one `error: ...` line naming the flag or
//! file and the problem, and leaves no partial output behind.

mod common;

use std::path::Path;

use common::*;

/// `kip distill ARGS --out OUT --quiet` in a fresh folder must fail with
/// `code` and the needles, leaving no file in OUT.
fn distill_fails(args: &[&str], code: i32, needles: &[&str]) {
    let t = tempdir();
    let out = join(t.path(), "out");
    let mut all = vec!["distill", "--out", &out, "--quiet"];
    if !args.contains(&"--steps") {
        all.extend_from_slice(&["--steps", "2"]);
    }
    all.extend_from_slice(args);
    let r = kip(t.path(), &all);
    expect_error(&r, code, needles);
    assert_eq!(
        files_in(Path::new(&out)),
        Vec::<String>::new(),
        "partial output in --out"
    );
    assert!(!t.path().join("runs").exists(), "a default run folder was created");
}

// ---- distill flags -------------------------------------------------------

#[test]
fn support_zero() {
    distill_fails(&["--support", "0"], 2, &["support", "0", ">= 1"]);
}

#[test]
fn support_fewer_than_classes() {
    distill_fails(&["--support", "5"], 2, &["support", "5", "10"]);
}

#[test]
fn support_more_than_exist() {
    distill_fails(&["--support", "100000"], 2, &["support", "100000", "class"]);
}

#[test]
fn target_batch_zero() {
    distill_fails(&["--target-batch", "0"], 2, &["target-batch", "0"]);
}

#[test]
fn target_batch_larger_than_training_set() {
    distill_fails(&["--target-batch", "100000"], 2, &["target-batch", "100000"]);
}

#[test]
fn steps_zero() {
    distill_fails(&["--steps", "0"], 2, &["steps", "0"]);
}

#[test]
fn lr_zero() {
    distill_fails(&["--lr", "0"], 2, &["lr", "0", "> 0"]);
}

#[test]
fn lr_negative() {
    distill_fails(&["--lr", "-1"], 2, &["lr", "-1"]);
}

#[test]
fn lr_nan() {
    distill_fails(&["--lr", "nan"], 2, &["lr", "NaN"]);
}

#[test]
fn lr_schedule_unknown() {
    distill_fails(
        &["--lr-schedule", "linear"],
        2,
        &["--lr-schedule", "linear", "cosine:M"],
    );
}

#[test]
fn precision_unknown() {
    distill_fails(&["--precision", "f16"], 2, &["--precision", "f16", "f64 or f32"]);
}

#[test]
fn lr_not_a_number() {
    distill_fails(&["--lr", "fast"], 2, &["--lr", "fast"]);
}

#[test]
fn reg_negative() {
    distill_fails(&["--reg", "-1"], 2, &["reg", "-1"]);
}

/// As [`distill_fails`], and the --out folder does not exist afterwards
/// (the check comes before the run directory is created).
fn distill_fails_before_the_run_dir(args: &[&str], needles: &[&str]) {
    let t = tempdir();
    let out = join(t.path(), "out");
    let mut all = vec!["distill", "--out", &out, "--quiet", "--steps", "2"];
    all.extend_from_slice(args);
    let r = kip(t.path(), &all);
    expect_error(&r, 2, needles);
    assert!(!Path::new(&out).exists(), "{out} was created");
}

#[test]
fn reg_whose_ridge_overflows() {
    // A finite reg, but reg · tr(K_ss)/n_s is not: named as the user's flag
    // (there is no --ridge), before anything is written.
    distill_fails_before_the_run_dir(&["--reg", "1e308"], &["--reg 1e308", "ridge"]);
    let t = tempdir();
    let out = join(t.path(), "ls");
    let r = kip(t.path(), &["label-solve", "--reg", "1e308", "--out", &out]);
    expect_error(&r, 2, &["--reg"]);
    assert!(!r.first_line().contains("--ridge"), "{}", r.first_line());
    assert!(!Path::new(&out).exists());
}

#[test]
fn val_that_leaves_no_targets() {
    // digits has 1438 training images: --val 1437 leaves one, so most
    // classes have none to draw targets from.
    distill_fails_before_the_run_dir(&["--val", "1437"], &["--val 1437", "no training images left"]);
    distill_fails_before_the_run_dir(
        &["--val", "1437", "--target-batch", "10"],
        &["--val 1437", "no training images left"],
    );
    // More than the training images: exit 2 and the flag, as --holdout.
    distill_fails_before_the_run_dir(&["--val", "5000"], &["--val 5000", "need 0 < val < 1438"]);
    distill_fails_before_the_run_dir(&["--holdout", "5000"], &["--holdout 5000", "need 0 < holdout < 1438"]);
}

#[test]
fn corrupt_one() {
    distill_fails(&["--corrupt", "1"], 2, &["corrupt", "1"]);
}

#[test]
fn corrupt_negative() {
    distill_fails(&["--corrupt", "-0.1"], 2, &["corrupt", "-0.1"]);
}

#[test]
fn kernel_typo_suggests() {
    // The message names the flag, the spec, and what the kind should be.
    distill_fails(&["--kernel", "fc1-ntq"], 2, &["--kernel", "fc1-ntq", "ntk"]);
}

#[test]
fn kernel_unknown() {
    distill_fails(&["--kernel", "bogus"], 2, &["--kernel", "bogus", "accepted"]);
}

#[test]
fn kernel_negative_w_std() {
    distill_fails(&["--kernel", "fc1-ntk:w_std=-1"], 2, &["--kernel", "w_std", "-1"]);
}

#[test]
fn kernel_list_with_bad_member() {
    distill_fails(&["--kernel", "fc1-ntk,fc2-nngp:gamma=1"], 2, &["--kernel", "gamma"]);
}

#[test]
fn init_unknown() {
    distill_fails(&["--init", "foo"], 2, &["--init", "foo", "real", "noise"]);
}

#[test]
fn init_std_negative() {
    distill_fails(&["--init", "noise", "--init-std", "-1"], 2, &["init-std", "-1"]);
}

#[test]
fn adam_first_step_out_of_range() {
    distill_fails(&["--adam-first-step", "5"], 2, &["adam-first-step", "5"]);
}

#[test]
fn preprocess_unknown() {
    distill_fails(&["--preprocess", "bogus"], 2, &["--preprocess", "bogus", "zca"]);
}

#[test]
fn holdout_not_smaller_than_training_set() {
    distill_fails(&["--holdout", "1438"], 2, &["--holdout", "1438"]);
    distill_fails(&["--holdout", "100000"], 2, &["--holdout", "100000"]);
}

#[test]
fn unknown_flag() {
    distill_fails(&["--frobnicate"], 2, &["--frobnicate"]);
}

#[test]
fn threads_zero() {
    let t = tempdir();
    let out = join(t.path(), "out");
    let r = kip(
        t.path(),
        &["--threads", "0", "distill", "--out", &out, "--quiet", "--steps", "2"],
    );
    expect_error(&r, 2, &["--threads", "0"]);
    assert!(files_in(Path::new(&out)).is_empty());
}

#[test]
fn threads_above_the_cap() {
    // Thousands of threads hung the pool's start: refused, naming the cap
    // (max(256, 8 per core)) and the cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cap = (8 * cores).max(256);
    let n = (cap + 1).max(5000).to_string();
    let t = tempdir();
    let out = join(t.path(), "out");
    let r = kip(
        t.path(),
        &["--threads", &n, "distill", "--out", &out, "--quiet", "--steps", "2"],
    );
    expect_error(
        &r,
        2,
        &[
            &format!("--threads {n}"),
            &format!("at most {cap}"),
            &format!("{cores} core"),
        ],
    );
    assert!(!Path::new(&out).exists());
}

// ---- datasets ------------------------------------------------------------

#[test]
fn dataset_unknown() {
    distill_fails(&["--dataset", "nosuch"], 2, &["nosuch", "digits", "mnist", "npz:PATH"]);
}

#[test]
fn dataset_mnist_empty_data_dir() {
    let empty = tempdir();
    let dir = empty.path().to_string_lossy().into_owned();
    distill_fails(
        &["--dataset", "mnist", "--data-dir", &dir],
        2,
        &["mnist", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &dir],
    );
}

#[test]
fn dataset_npz_missing_file() {
    distill_fails(
        &["--dataset", "npz:/nonexistent.npz"],
        2,
        &["/nonexistent.npz", "not found"],
    );
}

#[test]
fn dataset_npz_not_a_zip() {
    let t = tempdir();
    let f = join(t.path(), "garbage.npz");
    std::fs::write(&f, b"PK\x03\x04 this is not a zip archive").unwrap();
    distill_fails(&["--dataset", &format!("npz:{f}")], 1, &[&f, "npz"]);
}

#[test]
fn dataset_npz_empty_file() {
    let t = tempdir();
    let f = join(t.path(), "empty.npz");
    std::fs::write(&f, b"").unwrap();
    distill_fails(&["--dataset", &format!("npz:{f}")], 1, &[&f, "npz"]);
}

/// (file name, python expression for `np.savez(name, ...)` arguments, needles)
const BAD_NPZ: &[(&str, &str, &[&str])] = &[
    (
        "dtype.npz",
        "x=np.array(['a'] * 30), y=np.arange(30) % 10",
        &["`x`", "dtype"],
    ),
    ("nox.npz", "y=np.arange(30) % 10", &["`x`", "missing"]),
    ("noy.npz", "x=r(30, 4, 4, 1)", &["`y`", "missing"]),
    (
        "complex.npz",
        "x=np.zeros((30, 4, 4, 1), np.complex64), y=np.arange(30) % 10",
        &["`x`", "dtype"],
    ),
    (
        "nan.npz",
        "x=np.full((30, 4, 4, 1), np.nan), y=np.arange(30) % 10",
        &["`x`", "finite"],
    ),
    (
        "neglabel.npz",
        "x=r(30, 4, 4, 1), y=np.arange(30) % 10 - 1",
        &["`y`", "-1"],
    ),
    (
        "len.npz",
        "x=r(30, 4, 4, 1), y=np.arange(29) % 10",
        &["`y`", "29", "30"],
    ),
    ("rank.npz", "x=r(30), y=np.arange(30) % 10", &["`x`", "rank"]),
    (
        "testshape.npz",
        "x=r(30, 4, 4, 1), y=np.arange(30) % 10, x_test=r(20, 5, 5, 1), y_test=np.arange(20) % 10",
        &["x_test", "shape"],
    ),
];

#[test]
fn dataset_npz_bad_contents() {
    if !numpy("the npz content cases") {
        return;
    }
    let t = tempdir();
    let mut script = String::from("import numpy as np\ng = np.random.default_rng(0)\nr = lambda *s: g.random(s)\n");
    for (name, args, _) in BAD_NPZ {
        script.push_str(&format!("np.savez('{name}', {args})\n"));
    }
    python(t.path(), &script);
    for (name, _, needles) in BAD_NPZ {
        let f = join(t.path(), name);
        let mut all: Vec<&str> = vec![&f];
        all.extend_from_slice(needles);
        distill_fails(&["--dataset", &format!("npz:{f}"), "--support", "10"], 1, &all);
    }
}

fn idx_images(n: u32, magic: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [magic, n, 4, 4] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend((0..n * 16).map(|i| (i % 256) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&2049u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// A small MNIST folder; `train_images`/`train_labels` replace the good files.
fn mnist_dir(dir: &Path, train_images: Option<Vec<u8>>, train_labels: Option<Vec<u8>>) {
    let labels: Vec<u8> = (0..30).map(|i| (i % 10) as u8).collect();
    let test_labels: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    let files = [
        (
            "train-images-idx3-ubyte",
            train_images.unwrap_or_else(|| idx_images(30, 2051)),
        ),
        (
            "train-labels-idx1-ubyte",
            train_labels.unwrap_or_else(|| idx_labels(&labels)),
        ),
        ("t10k-images-idx3-ubyte", idx_images(20, 2051)),
        ("t10k-labels-idx1-ubyte", idx_labels(&test_labels)),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn mnist_case(train_images: Option<Vec<u8>>, train_labels: Option<Vec<u8>>, code: i32, needles: &[&str]) {
    let t = tempdir();
    mnist_dir(t.path(), train_images, train_labels);
    let dir = t.path().to_string_lossy().into_owned();
    distill_fails(
        &["--dataset", "mnist", "--data-dir", &dir, "--support", "10"],
        code,
        needles,
    );
}

#[test]
fn idx_good_folder_runs() {
    // The baseline of the IDX cases below: the same folder, unbroken, works.
    let t = tempdir();
    mnist_dir(t.path(), None, None);
    let dir = t.path().to_string_lossy().into_owned();
    let out = join(t.path(), "out");
    kip_ok(
        t.path(),
        &[
            "distill",
            "--dataset",
            "mnist",
            "--data-dir",
            &dir,
            "--support",
            "10",
            "--steps",
            "2",
            "--quiet",
            "--out",
            &out,
        ],
    );
}

#[test]
fn idx_truncated_images() {
    let mut img = idx_images(30, 2051);
    img.truncate(100);
    mnist_case(Some(img), None, 1, &["train-images-idx3-ubyte", "truncated"]);
}

#[test]
fn idx_bad_magic() {
    mnist_case(
        Some(idx_images(30, 1234)),
        None,
        1,
        &["train-images-idx3-ubyte", "magic"],
    );
}

#[test]
fn idx_label_out_of_range() {
    let mut labels: Vec<u8> = (0..30).map(|i| (i % 10) as u8).collect();
    labels[29] = 42;
    mnist_case(
        None,
        Some(idx_labels(&labels)),
        1,
        &["train-labels-idx1-ubyte", "42", "out of range"],
    );
}

#[test]
fn idx_label_count_mismatch() {
    let labels: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    mnist_case(
        None,
        Some(idx_labels(&labels)),
        1,
        &["train-labels-idx1-ubyte", "20", "30"],
    );
}

#[test]
fn idx_corrupt_gzip() {
    let mut gz = vec![0x1f, 0x8b];
    gz.extend_from_slice(b"definitely not deflate data");
    mnist_case(Some(gz), None, 1, &["train-images-idx3-ubyte", "gzip"]);
}

#[test]
fn idx_empty_file() {
    mnist_case(Some(Vec::new()), None, 1, &["train-images-idx3-ubyte"]);
}

#[test]
fn eval_of_a_non_run_dir() {
    let t = tempdir();
    let d = t.path().to_string_lossy().into_owned();
    let r = kip(t.path(), &["eval", &d]);
    expect_error(&r, 2, &[&d, "not a kip run directory"]);
}

#[test]
fn eval_bad_kernel_and_reg() {
    let t = tempdir();
    let run = small_run(t.path());
    expect_error(
        &kip(t.path(), &["eval", &run, "--kernel", "bogus"]),
        2,
        &["--kernel", "bogus"],
    );
    expect_error(&kip(t.path(), &["eval", &run, "--reg", "-1"]), 2, &["reg", "-1"]);
}

#[test]
fn eval_missing_support_file() {
    let t = tempdir();
    let run = small_run(t.path());
    std::fs::remove_file(Path::new(&run).join("support.npz")).unwrap();
    let r = kip(t.path(), &["eval", &run]);
    expect_error(&r, 2, &[&run, "no support.npz yet"]);
}

#[test]
fn transfer_bad_flags() {
    let t = tempdir();
    let run = small_run(t.path());
    let cases: &[(&[&str], &[&str])] = &[
        (&["--param", "bogus"], &["--param", "bogus", "ntk"]),
        (&["--seeds", "0"], &["--seeds", "0"]),
        (&["--width", "0"], &["width", "0"]),
        (&["--loss", "hinge"], &["loss", "hinge"]),
        (&["--optimizer", "lbfgs"], &["optimizer", "lbfgs"]),
        (&["--lr", "-1"], &["lr", "-1"]),
    ];
    for (flags, needles) in cases {
        let mut all = vec!["transfer", &run, "--steps", "2"];
        all.extend_from_slice(flags);
        let r = kip(t.path(), &all);
        expect_error(&r, 2, needles);
        assert!(!Path::new(&run).join("transfer.json").exists());
    }
}

#[test]
fn transfer_of_a_non_run_dir() {
    let t = tempdir();
    let d = t.path().to_string_lossy().into_owned();
    expect_error(&kip(t.path(), &["transfer", &d]), 2, &[&d, "config.json"]);
}

#[test]
fn label_solve_bad_flags() {
    let t = tempdir();
    let out = join(t.path(), "ls");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--block", "0"], &["--block", "0"]),
        (&["--reg", "-1"], &["reg", "-1"]),
        (&["--kernel", "fc1-ntq"], &["--kernel", "fc1-ntq"]),
        (&["--support", "100000"], &["--support", "100000"]),
        (&["--preprocess", "bogus"], &["--preprocess", "bogus"]),
        (&["--dataset", "nosuch"], &["nosuch"]),
    ];
    for (flags, needles) in cases {
        let mut all = vec!["label-solve", "--out", &out];
        all.extend_from_slice(flags);
        expect_error(&kip(t.path(), &all), 2, needles);
        assert!(files_in(Path::new(&out)).is_empty(), "partial output after {flags:?}");
    }
}

#[test]
fn inspect_bad_inputs() {
    let t = tempdir();
    expect_error(&kip(t.path(), &["inspect", "--dataset", "nosuch"]), 2, &["nosuch"]);
    let d = join(t.path(), "nope");
    expect_error(&kip(t.path(), &["inspect", &d]), 2, &[&d]);
    let e = t.path().to_string_lossy().into_owned();
    expect_error(
        &kip(t.path(), &["inspect", "--dataset", "cifar10", "--data-dir", &e]),
        2,
        &["cifar10", "data_batch_1", &e],
    );
}

#[test]
fn gram_image_shape_that_overflows() {
    // h·w·c wrapped to the points' 16 values, passed the size check and
    // then panicked with a capacity overflow.
    let t = tempdir();
    let x: Vec<f64> = (0..48).map(|i| f64::from(i) / 48.0).collect();
    kip_data::write_npy_f64(&p(t.path(), "ok.npy"), 3, 16, &x).unwrap();
    let out = join(t.path(), "k.npy");
    for kernel in ["convvec1-ntk", "convnet1-ntk", "rf-convnet1"] {
        for shape in ["8589934603x1219619441754028592x1", "4294967296x4294967296x1"] {
            let r = kip(
                t.path(),
                &[
                    "gram",
                    "--kernel",
                    kernel,
                    "ok.npy",
                    "--image-shape",
                    shape,
                    "--out",
                    &out,
                ],
            );
            expect_error(&r, 2, &[&format!("--image-shape {shape}"), "overflow"]);
            assert!(!Path::new(&out).exists());
        }
    }
}

/// `KIP_SIMD` caps kip's own loops (avx512, avx2, scalar); any other value
/// is a usage error naming it, and a capped run distills like any other.
#[test]
fn simd_cap_is_checked_and_honoured() {
    let t = tempdir();
    let out = join(t.path(), "out");
    let r: Run = command(t.path(), &["distill", "--out", &out, "--quiet", "--steps", "2"])
        .env("KIP_SIMD", "avx3")
        .output()
        .expect("kip runs")
        .into();
    expect_error(&r, 2, &["KIP_SIMD=avx3", "avx512, avx2 or scalar"]);
    assert!(!Path::new(&out).exists());
    for level in ["avx2", "scalar"] {
        let out = join(t.path(), level);
        let r: Run = command(t.path(), &["distill", "--out", &out, "--quiet", "--steps", "3"])
            .env("KIP_SIMD", level)
            .output()
            .expect("kip runs")
            .into();
        assert_eq!(r.code, Some(0), "KIP_SIMD={level}: {}", r.stderr);
        assert!(Path::new(&out).join("support.npz").exists());
    }
}
