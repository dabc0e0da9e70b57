//! `kip distill`: flags into a [`RunConfig`], then the library's [`Runner`]
//! with a progress bar.

use kip_data::{DataSpec, Prepared};
use kip_meta::{
    default_target_batch, AdamParams, Init, KipParams, Ranks, Resume, RunConfig, RunDir, RunOutcome, Runner,
};

use crate::cli::DistillArgs;
use crate::commands::{data_spec, default_out, load};
use crate::error::{CliError, Result};
use crate::progress::Progress;

/// Exit code after a signal stopped the run with a checkpoint: the shell's
/// 128 + signal number (130 after Ctrl-C, 143 after SIGTERM).
fn exit_interrupted(signal: Option<i32>) -> i32 {
    128 + signal.unwrap_or(signal_hook::consts::SIGINT)
}

/// The KIP parameters the flags ask for (`n_target` from --target-batch,
/// or 1 until the data says what the default is).
fn kip_params(a: &DistillArgs, ranks: &Ranks) -> Result<KipParams> {
    let init = Init::from_name(&a.init, a.init_std).map_err(|e| CliError::Usage(format!("--init {e}")))?;
    let kernels = kip_kernels::KernelSpec::parse_list(&a.kernel)?
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(KipParams {
        kernels,
        n_support: a.support,
        n_target: a.target_batch.unwrap_or(1),
        steps: a.steps.unwrap_or(kip_meta::DEFAULT_STEPS),
        adam: AdamParams {
            lr: a.lr,
            first_step_index: a.adam_first_step,
            ..AdamParams::default()
        },
        lr_schedule: a.lr_schedule.parse().map_err(|e| CliError::flag("--lr-schedule", e))?,
        precision: a.precision.parse()?,
        reg: a.reg,
        learn_labels: a.learn_labels,
        init,
        corrupt: a.corrupt,
        seed: a.seed,
        target_shards: a.target_shards.unwrap_or(ranks.size()),
        augment: a.augment.parse().map_err(|e| CliError::flag("--augment", e))?,
        augment_support: a
            .augment_support
            .parse()
            .map_err(|e| CliError::flag("--augment-support", e))?,
        loss: a.loss.parse().map_err(|e| CliError::flag("--loss", e))?,
        eval_kernel: a
            .eval_kernel
            .as_deref()
            .map(|s| s.parse::<kip_kernels::KernelSpec>().map(|k| k.to_string()))
            .transpose()?,
    })
}

/// A new run from the flags: everything that can be checked is checked
/// before the data is read, and nothing is written before the run can start.
fn create(a: &DistillArgs, ranks: &Ranks) -> Result<Runner> {
    let data = data_spec(&a.data)?;
    let mut kip = kip_params(a, ranks)?;
    kip.clone().check()?;
    RunConfig {
        data: data.clone(),
        eval_every: a.eval_every,
        eval_block: a.eval_block,
        keep_best: a.keep_best.is_some(),
        ..RunConfig::default()
    }
    .check_cadence()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&format!("{}-{}", data.dataset, a.support)));
    RunDir::ensure_new(&out).map_err(|_| {
        CliError::Usage(format!(
            "{} already holds a run; continue it with --resume {} or choose another --out",
            out.display(),
            out.display()
        ))
    })?;
    let prepared = load(&data)?;
    check_classes_left(&data, &prepared)?;
    if a.target_batch.is_none() {
        kip.n_target = default_target_batch(&prepared.train);
    }
    let config = RunConfig {
        data,
        kip,
        eval_every: a.eval_every,
        checkpoint_every: a.checkpoint_every,
        eval_block: a.eval_block,
        keep_best: a.keep_best.is_some(),
        ..RunConfig::default()
    };
    Ok(Runner::create_on(ranks.clone(), &out, config, prepared)?)
}

/// Targets (and the support set) are drawn class-balanced: a --val (or
/// --holdout) that takes a class's last training images is named, rather
/// than the target batch it shrinks to nothing.
fn check_classes_left(data: &DataSpec, prepared: &Prepared) -> Result<()> {
    let flag = match (data.val, data.holdout) {
        (0, 0) => return Ok(()),
        (0, h) => format!("--holdout {h}"),
        (v, _) => format!("--val {v}"),
    };
    let train = &prepared.train;
    let empty: Vec<&str> = train
        .class_counts()
        .iter()
        .zip(train.class_names())
        .filter(|(&n, _)| n == 0)
        .map(|(_, name)| name.as_str())
        .collect();
    if empty.is_empty() {
        return Ok(());
    }
    let shown = empty.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    let more = if empty.len() > 5 { ", …" } else { "" };
    let n = train.len();
    Err(CliError::flag(
        &flag,
        format!(
            "no training images left for targets in {} of the {} classes ({shown}{more}): {n} training image{} remain{}; choose a smaller {}",
            empty.len(),
            train.n_classes(),
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" },
            flag.split(' ').next().unwrap_or_default()
        ),
    ))
}

pub fn run(a: DistillArgs, ranks: &Ranks) -> Result<i32> {
    let mut runner = match &a.resume {
        Some(dir) => Runner::resume_on(
            ranks.clone(),
            dir,
            Resume {
                steps: a.steps,
                data_dir: a.data.data_dir.clone(),
            },
            None,
        )?,
        None => create(&a, ranks)?,
    };
    let (dir, c) = (runner.dir().path().to_path_buf(), runner.config().clone());
    let ranks_note = match ranks.size() {
        1 => String::new(),
        r => format!(", {r} ranks x {} target shards", c.kip.target_shards),
    };
    let detail = format!(
        "{} support, target batch {}, kernel {}{ranks_note}",
        c.kip.n_support,
        c.kip.n_target,
        c.kip.kernels.join(",")
    );
    let quiet = a.quiet || !ranks.is_root();
    let mut progress = Progress::new(dir.clone(), c.data.dataset.clone(), detail, quiet)?;
    match runner.run(&mut progress) {
        Ok(RunOutcome::Finished(summary)) => {
            progress.finish();
            progress.say(&format!(
                "test accuracy: {:.4} -> {:.4} after {} steps ({:.1} s); run directory {}",
                summary.init_test_acc,
                summary.final_test_acc,
                summary.steps,
                summary.elapsed_s,
                dir.display()
            ));
            if let Some(b) = summary.best {
                progress.say(&format!(
                    "best on validation: step {} (val {:.4}), test accuracy {:.4}; its set is in {}",
                    b.step,
                    b.val_acc,
                    b.test_acc,
                    dir.join(kip_meta::BEST_DIR).display()
                ));
            }
            if a.json && ranks.is_root() {
                println!("{}", serde_json::to_string(&summary).expect("the summary serialises"));
            }
            Ok(0)
        }
        Ok(RunOutcome::Stopped { step }) => {
            progress.abandon();
            if ranks.is_root() {
                eprintln!(
                    "interrupted: checkpoint written at step {step}; resume with: kip distill --resume {} --steps {}",
                    dir.display(),
                    c.kip.steps
                );
            }
            Ok(exit_interrupted(progress.signal()))
        }
        Err(e) => {
            progress.abandon();
            Err(e.into())
        }
    }
}
