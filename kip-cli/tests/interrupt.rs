//! Interruptions and numerical trouble never lose work: SIGKILL at random
//! points plus `--resume` reproduces an uninterrupted run bit for bit; SIGINT
//! (SIGTERM) writes a final checkpoint and exits 130 (143) with a resume
//! hint; a non-finite step keeps the last good state on disk.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn signal(child: &Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("kill runs");
    // The process may have finished on its own: that is fine.
    let _ = st;
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("kip did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// xorshift64*: the kill times, reproducible.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const FLAGS: &[&str] = &[
    "--support",
    "50",
    "--target-batch",
    "1000",
    "--steps",
    "400",
    "--checkpoint-every",
    "5",
    "--eval-every",
    "0",
    "--seed",
    "3",
    "--quiet",
];

#[test]
fn sigkill_and_resume_reproduce_the_uninterrupted_run() {
    let t = tempdir();
    let a = join(t.path(), "A");
    let b = join(t.path(), "B");
    let mut args = vec!["distill", "--out", &a];
    args.extend_from_slice(FLAGS);
    kip_ok(t.path(), &args);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0;
    let mut killed = 0;
    let mut attempts = 0;
    let t0 = Instant::now();
    loop {
        attempts += 1;
        assert!(attempts < 40, "no completion after {attempts} attempts");
        // Resume when the run folder has its config, else start it again.
        let args: Vec<&str> = if Path::new(&b).join("config.json").is_file() {
            vec!["distill", "--resume", &b, "--steps", "400", "--quiet"]
        } else {
            let mut v = vec!["distill", "--out", &b];
            v.extend_from_slice(FLAGS);
            v
        };
        let mut child = command(t.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kip starts");
        // Kill at pseudo-random points, 8 times; then let it finish.
        if kills < 8 {
            std::thread::sleep(Duration::from_millis(50 + rng.below(350)));
            signal(&child, "-KILL");
            kills += 1;
        }
        let st = wait_with_timeout(&mut child, Duration::from_secs(60));
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        match st.code() {
            Some(0) => break,
            None => killed += 1, // killed mid-run
            Some(c) => panic!("attempt {attempts} ({args:?}) exited {c}: {err}"),
        }
    }
    eprintln!(
        "{killed} of {kills} kills landed mid-run; {attempts} attempts, {:?}",
        t0.elapsed()
    );
    assert!(killed >= 3, "only {killed} kills landed mid-run: make the run longer");
    assert_same_support(&Path::new(&a).join("support.npz"), &Path::new(&b).join("support.npz"));
    let (sa, _) = kip_meta::checkpoint::load(&Path::new(&a).join("checkpoint.bin")).expect("A's checkpoint");
    let (sb, mb) = kip_meta::checkpoint::load(&Path::new(&b).join("checkpoint.bin")).expect("B's checkpoint");
    assert_eq!(sb.step, 400);
    assert_eq!(mb.step, 400);
    assert_eq!(sa.x_s, sb.x_s);
    assert_eq!(sa.y_s, sb.y_s);
    assert_eq!(sa.adam_x.m, sb.adam_x.m);
    assert_eq!(sa.adam_x.v, sb.adam_x.v);
    // The metrics log has the step-0 baseline, then each step once, in order.
    assert_eq!(logged_steps(&b), (0..=400).collect::<Vec<u64>>());
}

/// Steps of a run's metrics log, in order.
fn logged_steps(run: &str) -> Vec<u64> {
    std::fs::read_to_string(Path::new(run).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// A kill after the last step's checkpoint but before summary.json (the
/// window the SIGKILL test once hit): the resume has nothing left to do and
/// must not log the last step a second time.
#[test]
fn resume_after_the_final_checkpoint_logs_each_step_once() {
    let t = tempdir();
    let run = join(t.path(), "run");
    let mut args = vec!["distill", "--out", &run];
    args.extend_from_slice(FLAGS);
    let mut args: Vec<&str> = args.into_iter().collect();
    let steps = args.iter().position(|&a| a == "--steps").unwrap() + 1;
    args[steps] = "20";
    kip_ok(t.path(), &args);
    std::fs::remove_file(Path::new(&run).join("summary.json")).unwrap();
    kip_ok(t.path(), &["distill", "--resume", &run, "--steps", "20", "--quiet"]);
    assert_eq!(logged_steps(&run), (0..=20).collect::<Vec<u64>>());
    assert!(Path::new(&run).join("summary.json").is_file());
}

#[test]
fn sigint_writes_a_checkpoint_and_exits_130() {
    stop_writes_a_checkpoint("-INT", 130);
}

/// Schedulers (Slurm, Kubernetes, `mpirun` teardown) stop jobs with
/// SIGTERM: the same checkpoint as Ctrl-C, exit 128 + 15.
#[test]
fn sigterm_writes_a_checkpoint_and_exits_143() {
    stop_writes_a_checkpoint("-TERM", 143);
}

/// `sig` (a `kill` option) to a long run once it has checkpointed: a final
/// checkpoint, exit `code`, a resume hint, and the resume continues.
fn stop_writes_a_checkpoint(sig: &str, code: i32) {
    let t = tempdir();
    let run = join(t.path(), "run");
    let mut child = command(
        t.path(),
        &[
            "distill",
            "--out",
            &run,
            "--steps",
            "100000",
            "--checkpoint-every",
            "50",
            "--eval-every",
            "0",
            "--quiet",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("kip starts");
    let metrics = Path::new(&run).join("metrics.jsonl");
    let ck = Path::new(&run).join("checkpoint.bin");
    let t0 = Instant::now();
    while !(ck.is_file() && std::fs::read_to_string(&metrics).is_ok_and(|s| s.lines().count() > 60)) {
        assert!(child.try_wait().unwrap().is_none(), "kip ended early");
        assert!(t0.elapsed() < Duration::from_secs(30), "no checkpoint after 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, sig);
    let st = wait_with_timeout(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(code), "kill {sig}: {st:?}, stderr: {err}");
    assert!(err.contains("resume"), "stderr: {err}");
    assert!(
        err.contains(&format!("kip distill --resume {run} --steps 100000")),
        "stderr: {err}"
    );
    let (state, meta) = kip_meta::checkpoint::load(&ck).expect("checkpoint loads");
    assert!(state.step > 60, "checkpoint at step {}", state.step);
    assert_eq!(meta.step, state.step);
    assert!(err.contains(&format!("step {}", state.step)), "stderr: {err}");
    let s = kip_data::SupportSet::read_npz(&Path::new(&run).join("support.npz")).expect("support.npz reads");
    assert_eq!(s.x_model, state.x_s, "support.npz is the checkpoint's support set");
    // The metrics log ends at the checkpoint's step.
    let last = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"].as_u64(), Some(state.step as u64));
    // And the run continues from there.
    let more = (state.step + 3).to_string();
    kip_ok(t.path(), &["distill", "--resume", &run, "--steps", &more, "--quiet"]);
    let (state2, _) = kip_meta::checkpoint::load(&ck).unwrap();
    assert_eq!(state2.step, state.step + 3);
}

/// A learning rate that passes validation but overflows the support set
/// within a few steps.
fn non_finite_case(lr: &str) {
    let t = tempdir();
    let run = join(t.path(), "run");
    let r = kip(
        t.path(),
        &[
            "distill",
            "--out",
            &run,
            "--lr",
            lr,
            "--steps",
            "50",
            "--eval-every",
            "0",
            "--checkpoint-every",
            "0",
            "--quiet",
        ],
    );
    assert_eq!(r.code, Some(1), "--lr {lr}: stderr: {}", r.stderr);
    let first = r.first_line();
    assert!(first.starts_with("error: "), "{first}");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(first.contains("non-finite"), "--lr {lr}: {first}");
    let number_after = |pat: &str| -> usize {
        first
            .split(pat)
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("--lr {lr}: no `{pat}N` in {first:?}"))
    };
    let failed = number_after("at step ");
    let step = number_after("last good support set (step ");
    assert!(first.contains(&run), "names the run folder: {first}");
    // The last good state is on disk, usable, at a step before the failure.
    let (state, _) = kip_meta::checkpoint::load(&Path::new(&run).join("checkpoint.bin")).expect("checkpoint loads");
    assert_eq!(state.step, step, "the checkpoint holds the last good state");
    assert!(step <= failed, "{first}");
    assert!(state.x_s.iter().all(|v| v.is_finite()));
    let s = kip_data::SupportSet::read_npz(&Path::new(&run).join("support.npz")).expect("support.npz reads");
    assert!(s.x_model.iter().all(|v| v.is_finite()));
    // The pixel-scale images too (the garbage of issue 36: x = inf).
    assert!(
        s.x_pixels.iter().all(|v| v.is_finite()),
        "--lr {lr}: x holds non-finite pixels"
    );
    assert!(s.y.iter().all(|v| v.is_finite()));
    assert_eq!(s.x_model, state.x_s);
    // No summary: the run did not finish.
    assert!(!Path::new(&run).join("summary.json").exists());
}

#[test]
fn non_finite_loss_keeps_the_last_good_state_lr_1e200() {
    non_finite_case("1e200");
}

#[test]
fn non_finite_loss_keeps_the_last_good_state_lr_1e300() {
    non_finite_case("1e300");
}

#[test]
fn resume_before_the_first_checkpoint_starts_over() {
    // A run killed before its first checkpoint has config.json only.
    let t = tempdir();
    let a = join(t.path(), "A");
    let flags = [
        "--steps",
        "10",
        "--seed",
        "5",
        "--support",
        "20",
        "--eval-every",
        "0",
        "--quiet",
    ];
    let mut args = vec!["distill", "--out", &a];
    args.extend_from_slice(&flags);
    kip_ok(t.path(), &args);
    let b = join(t.path(), "B");
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(Path::new(&a).join("config.json"), Path::new(&b).join("config.json")).unwrap();
    kip_ok(t.path(), &["distill", "--resume", &b, "--steps", "10", "--quiet"]);
    assert_same_support(&Path::new(&a).join("support.npz"), &Path::new(&b).join("support.npz"));
}
