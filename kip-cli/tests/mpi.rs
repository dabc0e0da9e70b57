//! `mpirun -n R kip …` on the embedded digits set (binary built with
//! `--features mpi`; Open MPI's `mpirun` on the PATH): bitwise the
//! single-process run, resume across rank counts, a killed rank.

#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `mpirun -n ranks kip --threads 1 args…` in `cwd` (oversubscribed: CI
/// machines have fewer cores than ranks; root allowed: containers).
fn mpirun(cwd: &Path, ranks: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-n",
        &ranks.to_string(),
        KIP,
        "--threads",
        "1",
    ])
    .args(args)
    .current_dir(cwd)
    .env_remove("KIP_DATA_DIR");
    c
}

fn mpirun_ok(cwd: &Path, ranks: usize, args: &[&str]) -> String {
    let r: Run = mpirun(cwd, ranks, args).output().expect("mpirun runs").into();
    assert_eq!(r.code, Some(0), "mpirun -n {ranks} kip {args:?} failed:\n{}", r.stderr);
    r.stdout
}

/// The distill flags of these tests: small, fast, labels learned, eval
/// blocks small enough that two ranks share the test set.
const RUN: [&str; 12] = [
    "distill",
    "--support",
    "10",
    "--seed",
    "5",
    "--learn-labels",
    "--eval-every",
    "10",
    "--eval-block",
    "100",
    "--target-shards",
    "4",
];

fn metrics_without_time(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .map(|l| l.split(",\"elapsed_s\"").next().unwrap_or(l).to_string())
        .collect()
}

#[test]
fn ranks_reproduce_one_process_bit_for_bit() {
    let t = tempdir();
    let one = p(t.path(), "one");
    kip_ok(
        t.path(),
        &[
            &["--threads", "1"][..],
            &RUN,
            &["--steps", "30", "--quiet", "--out", &join(t.path(), "one")],
        ]
        .concat(),
    );
    for ranks in [2, 3] {
        let name = format!("r{ranks}");
        mpirun_ok(
            t.path(),
            ranks,
            &[&RUN[..], &["--steps", "30", "--quiet", "--out", &name]].concat(),
        );
        let dir = p(t.path(), &name);
        assert_same_support(&one.join("support.npz"), &dir.join("support.npz"));
        assert_eq!(metrics_without_time(&one), metrics_without_time(&dir), "{ranks} ranks");
        // Rank 0 alone wrote: one metrics line per step, no stray files.
        assert_eq!(metrics_without_time(&dir).len(), 31);
    }
    // The evaluation command spreads its test blocks too.
    let single = kip_ok(t.path(), &["eval", "one", "--block", "50", "--json"]);
    let spread = mpirun_ok(t.path(), 2, &["eval", "one", "--block", "50", "--json"]);
    assert_eq!(single.trim(), spread.trim());
    // Label Solve: the ranks take turns with the target blocks.
    let ls = ["label-solve", "--support", "30", "--block", "100", "--json", "--out"];
    kip_ok(t.path(), &[&ls[..], &["ls1"]].concat());
    mpirun_ok(t.path(), 3, &[&ls[..], &["ls3"]].concat());
    assert_same_support(
        &p(t.path(), "ls1").join("support.npz"),
        &p(t.path(), "ls3").join("support.npz"),
    );
}

#[test]
fn resume_across_rank_counts_is_bitwise() {
    let t = tempdir();
    let straight = join(t.path(), "straight");
    kip_ok(
        t.path(),
        &[&RUN[..], &["--steps", "40", "--quiet", "--out", &straight]].concat(),
    );
    // 2 ranks, then 1 process.
    mpirun_ok(
        t.path(),
        2,
        &[&RUN[..], &["--steps", "20", "--quiet", "--out", "a"]].concat(),
    );
    kip_ok(t.path(), &["distill", "--resume", "a", "--steps", "40", "--quiet"]);
    // 1 process, then 2 ranks.
    kip_ok(
        t.path(),
        &[&RUN[..], &["--steps", "20", "--quiet", "--out", &join(t.path(), "b")]].concat(),
    );
    mpirun_ok(t.path(), 2, &["distill", "--resume", "b", "--steps", "40", "--quiet"]);
    for run in ["a", "b"] {
        let dir = p(t.path(), run);
        assert_same_support(&p(t.path(), "straight").join("support.npz"), &dir.join("support.npz"));
        assert_eq!(
            metrics_without_time(&p(t.path(), "straight")),
            metrics_without_time(&dir),
            "{run}"
        );
    }
}

/// The pid of the process of `rank` whose command line mentions `tag`.
fn pid_of_rank(rank: usize, tag: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let has = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        if has(&env, &format!("OMPI_COMM_WORLD_RANK={rank}\0")) && has(&cmd, tag) && has(&cmd, "distill") {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_ends_the_job_and_the_checkpoint_resumes() {
    let t = tempdir();
    let out = join(t.path(), "killed-run");
    let child = mpirun(
        t.path(),
        2,
        &[
            &RUN[..],
            &[
                "--steps",
                "1000000",
                "--checkpoint-every",
                "20",
                "--quiet",
                "--out",
                &out,
            ],
        ]
        .concat(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("mpirun starts");
    let ckpt = Path::new(&out).join("checkpoint.bin");
    let t0 = Instant::now();
    while !ckpt.is_file() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no checkpoint after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = pid_of_rank(1, "killed-run").expect("rank 1 is running");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let r: Run = child.wait_with_output().expect("mpirun ends").into();
    assert_ne!(r.code, Some(0), "the job must fail:\n{}", r.stderr);
    assert!(r.stderr.contains("rank 1"), "the message names the rank:\n{}", r.stderr);
    // The last checkpoint loads; a resume (one process) completes.
    let logged = metrics_without_time(Path::new(&out)).len();
    let steps = (logged + 20).to_string();
    kip_ok(t.path(), &["distill", "--resume", &out, "--steps", &steps, "--quiet"]);
    assert!(Path::new(&out).join("summary.json").is_file());
}
