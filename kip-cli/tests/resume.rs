//! `kip distill --resume`: what it continues, what it refuses — a damaged
//! or foreign checkpoint, flags that would change the run, a finished run
//! whose checkpoint is gone — and that a refusal changes nothing on disk.

mod common;

use std::path::Path;

use common::*;

#[test]
fn resume_without_config() {
    let t = tempdir();
    let d = t.path().to_string_lossy().into_owned();
    let r = kip(t.path(), &["distill", "--resume", &d, "--steps", "4", "--quiet"]);
    expect_error(&r, 2, &[&d, "config.json"]);
    assert!(files_in(t.path()).is_empty());
}

#[test]
fn resume_missing_dir() {
    let t = tempdir();
    let d = join(t.path(), "nope");
    let r = kip(t.path(), &["distill", "--resume", &d, "--steps", "4", "--quiet"]);
    expect_error(&r, 2, &[&d]);
    assert!(!Path::new(&d).exists());
}

fn damaged_checkpoint_case(damage: impl Fn(&mut Vec<u8>), needles: &[&str]) {
    let t = tempdir();
    let run = small_run(t.path());
    let ck = Path::new(&run).join("checkpoint.bin");
    let mut bytes = std::fs::read(&ck).unwrap();
    damage(&mut bytes);
    std::fs::write(&ck, &bytes).unwrap();
    let support = std::fs::read(Path::new(&run).join("support.npz")).unwrap();
    let r = kip(t.path(), &["distill", "--resume", &run, "--steps", "4", "--quiet"]);
    let mut all = vec!["checkpoint.bin"];
    all.extend_from_slice(needles);
    expect_error(&r, 1, &all);
    // Nothing was overwritten.
    assert_eq!(std::fs::read(&ck).unwrap(), bytes);
    assert_eq!(std::fs::read(Path::new(&run).join("support.npz")).unwrap(), support);
}

#[test]
fn resume_flipped_checkpoint_byte() {
    damaged_checkpoint_case(
        |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
        },
        &["checksum"],
    );
}

#[test]
fn resume_truncated_checkpoint() {
    damaged_checkpoint_case(|b| b.truncate(b.len() - 100), &["checksum"]);
}

#[test]
fn resume_checkpoint_not_a_checkpoint() {
    damaged_checkpoint_case(|b| b[0] ^= 0xff, &["not a kip checkpoint"]);
}

#[test]
fn resume_bad_config() {
    let t = tempdir();
    let run = small_run(t.path());
    std::fs::write(Path::new(&run).join("config.json"), "{ not json").unwrap();
    let r = kip(t.path(), &["distill", "--resume", &run, "--steps", "4", "--quiet"]);
    expect_error(&r, 1, &["config.json", "JSON"]);
}

#[test]
fn out_is_an_existing_run() {
    let t = tempdir();
    let run = small_run(t.path());
    let before: Vec<Vec<u8>> = ["checkpoint.bin", "support.npz", "config.json", "metrics.jsonl"]
        .iter()
        .map(|f| std::fs::read(Path::new(&run).join(f)).unwrap())
        .collect();
    let r = kip(t.path(), &["distill", "--out", &run, "--quiet", "--steps", "2"]);
    expect_error(&r, 2, &[&run, "already holds a run", "--resume"]);
    let after: Vec<Vec<u8>> = ["checkpoint.bin", "support.npz", "config.json", "metrics.jsonl"]
        .iter()
        .map(|f| std::fs::read(Path::new(&run).join(f)).unwrap())
        .collect();
    assert!(before == after, "the existing run was modified");
}

/// Flags that would change the run are refused with `--resume` (they used
/// to be ignored silently: the run went on with its recorded kernel and
/// wrote into the resumed folder, not `--out`); `--steps` is accepted.
#[test]
fn resume_refuses_flags_that_would_change_the_run() {
    let t = tempdir();
    let run = small_run(t.path());
    let ck = std::fs::read(Path::new(&run).join("checkpoint.bin")).unwrap();
    let other = join(t.path(), "x");
    for (flags, name) in [
        (vec!["--kernel", "fc3-ntk"], "--kernel"),
        (vec!["--support", "50"], "--support"),
        (vec!["--out", other.as_str()], "--out"),
        (vec!["--lr", "0.5"], "--lr"),
        (vec!["--dataset", "mnist"], "--dataset"),
    ] {
        let mut args = vec!["distill", "--resume", &run, "--steps", "4", "--quiet"];
        args.extend_from_slice(&flags);
        let r = kip(t.path(), &args);
        assert_eq!(r.code, Some(2), "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains("--resume") && r.stderr.contains(name), "{}", r.stderr);
    }
    assert!(!Path::new(&other).exists());
    assert_eq!(std::fs::read(Path::new(&run).join("checkpoint.bin")).unwrap(), ck);
    kip_ok(t.path(), &["distill", "--resume", &run, "--steps", "4", "--quiet"]);
}

/// A checkpoint copied from another run of the same sizes is refused by
/// its run identity; the run's own files stay as they were.
#[test]
fn resume_refuses_a_checkpoint_from_another_run() {
    let t = tempdir();
    let run = small_run(t.path());
    let other = small_run_with(t.path(), "other", &["--seed", "1"]);
    let foreign = std::fs::read(Path::new(&other).join("checkpoint.bin")).unwrap();
    std::fs::write(Path::new(&run).join("checkpoint.bin"), &foreign).unwrap();
    let support = std::fs::read(Path::new(&run).join("support.npz")).unwrap();
    let r = kip(t.path(), &["distill", "--resume", &run, "--steps", "4", "--quiet"]);
    expect_error(&r, 1, &["checkpoint.bin", "another run"]);
    assert_eq!(std::fs::read(Path::new(&run).join("support.npz")).unwrap(), support);
}

/// A finished run whose checkpoint is gone is not recomputed from step 0
/// behind the user's back: refused, naming the file to delete to do so.
#[test]
fn resume_of_a_finished_run_without_checkpoint_asks_first() {
    let t = tempdir();
    let run = small_run(t.path());
    std::fs::remove_file(Path::new(&run).join("checkpoint.bin")).unwrap();
    let before = files_in(Path::new(&run));
    let r = kip(t.path(), &["distill", "--resume", &run, "--steps", "4", "--quiet"]);
    expect_error(&r, 2, &["checkpoint.bin", "finished", "summary.json"]);
    assert_eq!(files_in(Path::new(&run)), before);
    std::fs::remove_file(Path::new(&run).join("summary.json")).unwrap();
    kip_ok(t.path(), &["distill", "--resume", &run, "--steps", "4", "--quiet"]);
}
