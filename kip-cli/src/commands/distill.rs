//! `kip distill`: the KIP main job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kip_kernels::points;
use kip_meta::{checkpoint, AdamParams, Init, Kip, KipParams, MetaError};
use serde_json::{json, Value};

use crate::cli::{DataArgs, DistillArgs};
use crate::data::{default_out, prepare, support_set, Prepared};
use crate::error::{CliError, Result};
use crate::progress::bar;
use crate::rundir::{RunDir, CHECKPOINT, CONFIG, SUMMARY};

/// Exit code after an interrupt that saved a checkpoint.
const EXIT_INTERRUPTED: i32 = 130;

fn kip_params(a: &DistillArgs, target: usize) -> Result<KipParams> {
    let init = match a.init.as_str() {
        "real" => Init::Real,
        "noise" => Init::Noise { std: a.init_std },
        other => return Err(CliError::Usage(format!("--init `{other}`: expected real or noise"))),
    };
    let kernels = kip_kernels::KernelSpec::parse_list(&a.kernel)?
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(KipParams {
        kernels,
        n_support: a.support,
        n_target: target,
        steps: a.steps,
        adam: AdamParams {
            lr: a.lr,
            first_step_index: a.adam_first_step,
            ..AdamParams::default()
        },
        lr_schedule: a
            .lr_schedule
            .parse()
            .map_err(|e| CliError::Usage(format!("--lr-schedule {e}")))?,
        precision: a
            .precision
            .parse()
            .map_err(|e| CliError::Usage(format!("--precision {e}")))?,
        reg: a.reg,
        learn_labels: a.learn_labels,
        init,
        corrupt: a.corrupt,
        seed: a.seed,
    })
}

/// The largest class-balanced batch the training set allows.
fn max_balanced(prep: &Prepared) -> usize {
    let counts = prep.train.class_counts();
    counts.iter().copied().min().unwrap_or(0) * counts.len()
}

struct Setup {
    args: DistillArgs,
    data: DataArgs,
    params: KipParams,
    dir: RunDir,
    resume: bool,
}

/// Build the settings: from flags, or from the run's config.json on --resume.
fn setup(args: DistillArgs) -> Result<Setup> {
    if let Some(path) = args.resume.clone() {
        let dir = RunDir::open(&path)?;
        let cfg = dir.read_json(CONFIG)?;
        let bad = |what: &str| CliError::Runtime(format!("{}: bad {what}", dir.file(CONFIG).display()));
        let data: DataArgs = DataArgs {
            dataset: cfg["dataset"].as_str().ok_or_else(|| bad("dataset"))?.to_string(),
            data_dir: args
                .data
                .data_dir
                .clone()
                .or_else(|| cfg["data_dir"].as_str().map(Into::into)),
            preprocess: cfg["preprocess"].as_str().ok_or_else(|| bad("preprocess"))?.to_string(),
            holdout: cfg["holdout"].as_u64().ok_or_else(|| bad("holdout"))? as usize,
        };
        let mut params: KipParams = serde_json::from_value(cfg["kip"].clone()).map_err(|_| bad("kip parameters"))?;
        params.steps = args.steps;
        return Ok(Setup {
            data,
            params,
            dir,
            resume: true,
            args,
        });
    }
    let data = args.data.clone();
    // Parse what can be parsed before touching the data.
    let params = kip_params(&args, args.target_batch.unwrap_or(1))?;
    params.clone().check()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&format!("{}-{}", data.dataset.replace(':', "_"), args.support)));
    if out.join(CHECKPOINT).exists() {
        return Err(CliError::Usage(format!(
            "{} already holds a run; continue it with --resume {} or choose another --out",
            out.display(),
            out.display()
        )));
    }
    let dir = RunDir::create(&out)?;
    Ok(Setup {
        data,
        params,
        dir,
        resume: false,
        args,
    })
}

pub fn run(args: DistillArgs) -> Result<i32> {
    let t0 = Instant::now();
    let Setup {
        args,
        data,
        mut params,
        dir,
        resume,
    } = setup(args)?;
    let quiet = args.quiet;
    let say = |s: String| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    let prep = prepare(&data)?;
    for n in &prep.notes {
        say(format!("note: {n}"));
    }
    if !resume {
        params.n_target = args.target_batch.unwrap_or_else(|| 5000.min(max_balanced(&prep)));
    }
    let valid = params.clone().check()?;
    let shape = prep.train.shape();
    // A run killed before its first checkpoint has a config.json but no
    // checkpoint.bin: --resume then starts it again from step 0 (same seed,
    // so the same result).
    // Step of the last metrics line already on disk (a resumed run).
    let mut logged = None;
    let mut kip = if resume && dir.file(CHECKPOINT).is_file() {
        let (state, meta) = checkpoint::load(&dir.file(CHECKPOINT))?;
        if meta.kernels != params.kernels {
            return Err(CliError::Runtime(format!(
                "{}: kernels {:?} differ from the run's config {:?}",
                dir.file(CHECKPOINT).display(),
                meta.kernels,
                params.kernels
            )));
        }
        logged = dir.truncate_metrics(state.step)?;
        say(format!("resuming {} at step {}", dir.path.display(), state.step));
        Kip::from_state(valid, prep.train.clone(), state)?
    } else if resume {
        dir.truncate_metrics(0)?;
        say(format!(
            "no checkpoint in {} yet: starting at step 0",
            dir.path.display()
        ));
        Kip::new(valid, prep.train.clone())?
    } else {
        let cfg = json!({
            "command": "distill",
            "version": env!("CARGO_PKG_VERSION"),
            "dataset": data.dataset,
            "data_dir": data.data_dir,
            "preprocess": data.preprocess,
            "holdout": data.holdout,
            "kip": params,
            "eval_every": args.eval_every,
            "checkpoint_every": args.checkpoint_every,
            "train_size": prep.train.len(),
            "test_size": prep.test.len(),
            "image_shape": [shape.h, shape.w, shape.c],
        });
        // Build first: it checks the settings against the data, and a
        // rejected run must not leave a config.json behind.
        let kip = Kip::new(valid, prep.train.clone())?;
        dir.write_json(CONFIG, &cfg)?;
        kip
    };
    let x_test = prep.test.to_matrix();
    let labels_test = prep.test.labels();
    let evaluate = |kip: &Kip| kip.evaluate(points(&x_test), labels_test, args.eval_block.max(1));
    let init_eval = evaluate(&kip)?;
    say(format!(
        "{}: {} train / {} test images, {} support, target batch {}, kernel {}",
        data.dataset,
        prep.train.len(),
        prep.test.len(),
        params.n_support,
        params.n_target,
        params.kernels.join(",")
    ));
    say(format!(
        "test accuracy at step {}: {:.4}",
        kip.state().step,
        init_eval.accuracy
    ));

    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted))
        .map_err(|e| CliError::Runtime(format!("cannot install the SIGINT handler: {e}")))?;
    let save = |kip: &Kip| -> Result<()> {
        checkpoint::save(&dir.file(CHECKPOINT), kip.state(), &params.kernels)?;
        let st = kip.state();
        dir.write_support(&support_set(&st.x_s, &st.y_s, &st.labels, &prep, shape), prep.pixel_max)
    };
    let pb = bar(params.steps, kip.state().step, quiet);
    let mut last: Option<Value> = None;
    let mut final_eval = init_eval;
    while kip.state().step < params.steps {
        if interrupted.load(Ordering::SeqCst) {
            save(&kip)?;
            pb.abandon();
            eprintln!(
                "interrupted: checkpoint written at step {}; resume with: kip distill --resume {} --steps {}",
                kip.state().step,
                dir.path.display(),
                params.steps
            );
            return Ok(EXIT_INTERRUPTED);
        }
        let info = match kip.step() {
            Ok(info) => info,
            Err(e) => {
                pb.abandon();
                // A failed step leaves the state as it was: keep the last good one on disk.
                let step = kip.state().step;
                save(&kip)?;
                let what = match e {
                    e @ MetaError::NonFinite { .. } => e.to_string(),
                    e => format!("{e} (at step {step})"),
                };
                return Err(CliError::Runtime(format!(
                    "{what}; the last good support set (step {step}) is in {}",
                    dir.path.display()
                )));
            }
        };
        let done = kip.state().step;
        let mut line = json!({
            "step": done,
            "loss": info.stats.loss,
            "target_acc": info.stats.target_acc,
            "elapsed_s": t0.elapsed().as_secs_f64(),
        });
        if info.jitter > 0.0 {
            line["jitter"] = json!(info.jitter);
        }
        if (args.eval_every > 0 && done % args.eval_every == 0) || done == params.steps {
            let ev = evaluate(&kip)?;
            line["test_acc"] = json!(ev.accuracy);
            line["test_loss"] = json!(ev.loss);
            final_eval = ev;
            pb.set_message(format!("loss {:.4e} test acc {:.4}", info.stats.loss, ev.accuracy));
        } else if done % 10 == 0 {
            pb.set_message(format!(
                "loss {:.4e} test acc {:.4}",
                info.stats.loss, final_eval.accuracy
            ));
        }
        dir.append_metrics(&line)?;
        last = Some(line);
        if args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < params.steps {
            save(&kip)?;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    save(&kip)?;
    if last.is_none() && logged != Some(kip.state().step) {
        // Nothing left to do (resumed at the end) and the log does not reach
        // this step (a run killed after its last step was logged has it
        // already): log a final evaluation.
        dir.append_metrics(&json!({
            "step": kip.state().step, "loss": null, "elapsed_s": t0.elapsed().as_secs_f64(),
            "test_acc": final_eval.accuracy, "test_loss": final_eval.loss,
        }))?;
    }
    let summary = json!({
        "run": dir.path,
        "dataset": data.dataset,
        "steps": kip.state().step,
        "support": params.n_support,
        "kernels": params.kernels,
        "init_test_acc": init_eval.accuracy,
        "final_test_acc": final_eval.accuracy,
        "final_test_loss": final_eval.loss,
        "test_size": prep.test.len(),
        "elapsed_s": t0.elapsed().as_secs_f64(),
    });
    dir.write_json(SUMMARY, &summary)?;
    say(format!(
        "test accuracy: {:.4} -> {:.4} after {} steps ({:.1} s); run directory {}",
        init_eval.accuracy,
        final_eval.accuracy,
        kip.state().step,
        t0.elapsed().as_secs_f64(),
        dir.path.display()
    ));
    if args.json {
        println!("{summary}");
    }
    Ok(0)
}
