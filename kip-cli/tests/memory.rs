//! kip's memory rule through the CLI: a request larger than the memory the
//! process can get is refused before it is allocated (exit 3, naming the
//! size, what asked for it and the memory available), and nothing is
//! written; `kip gram --block` streams a matrix larger than memory.

mod common;

use std::path::Path;

use common::*;

/// A float64 `.npy` of `rows × cols` values `v(i)` (flat index `i`).
fn write_f64(path: &Path, rows: usize, cols: usize, v: impl Fn(usize) -> f64) {
    let values: Vec<f64> = (0..rows * cols).map(v).collect();
    write_npy(path, "<f8", &[rows, cols], &values);
}

fn refused(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(3), "exit 3 for a memory refusal:\n{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("");
    for n in needles.iter().chain(&["is available"]) {
        assert!(line.contains(n), "`{n}` in: {}", r.stderr);
    }
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("memory allocation"),
        "{}",
        r.stderr
    );
}

/// Two million points make a 32 TB Gram matrix: refused by name before
/// anything is allocated (it used to abort with exit 134), no file.
#[test]
fn a_gram_larger_than_memory_is_refused_before_allocating() {
    let t = tempdir();
    write_f64(&t.path().join("many.npy"), 2_000_000, 1, |i| i as f64 * 1e-6);
    let r = kip(t.path(), &["gram", "--kernel", "fc1-ntk", "many.npy", "--out", "k.npy"]);
    refused(&r, &["many.npy", "2000000 x 2000000", "32.0 TB", "--block"]);
    assert!(!t.path().join("k.npy").exists());
}

/// `--block` computes and writes the matrix in row blocks: under a memory
/// cap that refuses the whole matrix, the blocked one is written and equals
/// it (to rounding: the symmetric form becomes row blocks).
#[test]
fn gram_block_streams_a_matrix_larger_than_the_memory_cap() {
    let t = tempdir();
    write_f64(&t.path().join("x.npy"), 50, 4, |i| {
        ((i * 7919) % 101) as f64 / 50.0 - 1.0
    });
    kip_ok(
        t.path(),
        &["gram", "--kernel", "fc2-ntk", "x.npy", "--out", "whole.npy", "--quiet"],
    );
    let capped = |args: &[&str]| -> Run {
        command(t.path(), args)
            .env("KIP_MEMORY_LIMIT", "10K")
            .output()
            .unwrap()
            .into()
    };
    let args = ["gram", "--kernel", "fc2-ntk", "x.npy", "--out", "capped.npy", "--quiet"];
    refused(&capped(&args), &["x.npy", "50 x 50", "KIP_MEMORY_LIMIT"]);
    assert!(!t.path().join("capped.npy").exists());
    let r = capped(&[&args[..], &["--block", "7"]].concat());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let close = |a: &str, b: &str| {
        let (a, b) = (read_f64(&t.path().join(a)), read_f64(&t.path().join(b)));
        assert_eq!((a.len(), b.len()), (2500, 2500));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-12, "blocked differs by {worst}");
    };
    close("whole.npy", "capped.npy");
    kip_ok(
        t.path(),
        &[
            "gram", "--kernel", "fc2-ntk", "x.npy", "x.npy", "--out", "ab.npy", "--quiet",
        ],
    );
    let r = capped(&[
        "gram", "--kernel", "fc2-ntk", "x.npy", "x.npy", "--out", "ab7.npy", "--block", "7",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    close("ab.npy", "ab7.npy");
    let r = kip(
        t.path(),
        &["gram", "--kernel", "fc2-ntk", "x.npy", "--out", "z.npy", "--block", "0"],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.first_line().contains("--block 0"), "{}", r.stderr);
}

fn read_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + hlen..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Random-feature networks of 4096 × 4096-channel models (both in range)
/// would need terabytes: refused before they are drawn (the run used to
/// grow at ~330 MB/s until killed), and no run folder is left.
#[test]
fn random_feature_networks_larger_than_memory_are_refused() {
    let t = tempdir();
    let spec = "rf-convnet3:channels=4096,models=4096";
    let r = kip(
        t.path(),
        &[
            "distill",
            "--dataset",
            "digits",
            "--kernel",
            spec,
            "--steps",
            "2",
            "--out",
            "r",
        ],
    );
    refused(&r, &[spec, "4096 networks", "TB"]);
    assert!(!t.path().join("r").exists(), "no run folder after a refusal");
}

/// A ConvNet of width 65536 (inside the accepted range) for `kip transfer`
/// is refused by `--width` instead of aborting on a 463 GB allocation;
/// the standard protocol's network likewise.
#[test]
fn a_transfer_network_larger_than_memory_is_refused() {
    let t = tempdir();
    let run = join(t.path(), "r");
    kip_ok(t.path(), &["distill", "--out", &run, "--quiet", "--steps", "2"]);
    let r = kip(
        t.path(),
        &[
            "transfer", &run, "--arch", "convnet", "--width", "65536", "--steps", "2",
        ],
    );
    refused(&r, &["--width 65536"]);
    let r = command(
        t.path(),
        &["transfer", &run, "--protocol", "dc", "--width", "4096", "--epochs", "1"],
    )
    .env("KIP_MEMORY_LIMIT", "100M")
    .output()
    .unwrap()
    .into();
    refused(&r, &["--width 4096"]);
    assert!(files_in(Path::new(&run)).iter().all(|f| !f.starts_with("transfer")));
}
