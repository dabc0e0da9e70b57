//! Helpers shared by the integration tests: run the built `kip` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built binary.
pub const KIP: &str = env!("CARGO_BIN_EXE_kip");

/// What a finished `kip` process left.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The first line of stderr.
    pub fn first_line(&self) -> &str {
        self.stderr.lines().next().unwrap_or("")
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A `kip` command in `cwd`, with no data folder from the environment.
pub fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(KIP);
    c.args(args).current_dir(cwd).env_remove("KIP_DATA_DIR");
    c
}

/// Run `kip` to completion.
pub fn kip(cwd: &Path, args: &[&str]) -> Run {
    command(cwd, args).output().expect("kip runs").into()
}

/// Run `kip`, asserting success; returns stdout.
pub fn kip_ok(cwd: &Path, args: &[&str]) -> String {
    let r = kip(cwd, args);
    assert_eq!(r.code, Some(0), "kip {args:?} failed:\n{}", r.stderr);
    r.stdout
}

/// Files (not folders) directly in `dir`; empty when it does not exist.
pub fn files_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[path = "../../../kip-data/tests/support/test_env.rs"]
mod test_env;
#[allow(unused_imports)]
pub use test_env::numpy;

/// Run a python3 script (numpy available) in `cwd`.
pub fn python(cwd: &Path, script: &str) {
    let o = Command::new("python3")
        .args(["-c", script])
        .current_dir(cwd)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `dir/name` as a string.
pub fn join(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Path helper.
pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Both support sets hold bit-identical arrays.
pub fn assert_same_support(a: &Path, b: &Path) {
    let sa = kip_data::SupportSet::read_npz(a).expect("support a reads");
    let sb = kip_data::SupportSet::read_npz(b).expect("support b reads");
    let bits = |m: &nalgebra::DMatrix<f64>| m.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    assert_eq!(sa.x_model.shape(), sb.x_model.shape());
    assert!(
        bits(&sa.x_model) == bits(&sb.x_model),
        "x_model differs: {a:?} vs {b:?}"
    );
    assert!(bits(&sa.y) == bits(&sb.y), "y differs: {a:?} vs {b:?}");
    assert!(
        bits(&sa.x_pixels) == bits(&sb.x_pixels),
        "x_pixels differs: {a:?} vs {b:?}"
    );
    assert_eq!(sa.labels, sb.labels);
}

/// Assert the exit code and that the first stderr line starts with `error:`
/// and contains every needle (case-sensitive).
pub fn expect_error(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.code, Some(code), "exit code; stderr:\n{}", r.stderr);
    let first = r.first_line();
    assert!(first.starts_with("error: "), "first stderr line: {first:?}");
    for n in needles {
        assert!(first.contains(n), "first stderr line {first:?} lacks {n:?}");
    }
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
}

/// A finished 2-step digits run in `dir/run`.
pub fn small_run(dir: &Path) -> String {
    small_run_with(dir, "run", &[])
}

/// A finished 2-step digits run in `dir/name`, with `extra` flags.
pub fn small_run_with(dir: &Path, name: &str, extra: &[&str]) -> String {
    let out = join(dir, name);
    let mut args = vec![
        "distill",
        "--out",
        &out,
        "--quiet",
        "--steps",
        "2",
        "--target-batch",
        "100",
        "--eval-every",
        "0",
    ];
    args.extend_from_slice(extra);
    kip_ok(dir, &args);
    out
}

/// A C-ordered `.npy` of `descr` (`<f8`, `<f4`, `<i8`) with `shape`.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], values: &[f64]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.push_str(&" ".repeat(total - 11 - header.len()));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for &v in values {
        match descr {
            "<f8" => bytes.extend_from_slice(&v.to_le_bytes()),
            "<f4" => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
            _ => bytes.extend_from_slice(&(v as i64).to_le_bytes()),
        }
    }
    std::fs::write(path, bytes).unwrap();
}
