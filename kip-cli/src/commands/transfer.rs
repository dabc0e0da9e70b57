//! `kip transfer`: train finite-width networks on a run's support set and
//! on a natural class-balanced sample of the same size; compare test
//! accuracy. `--protocol kip` trains the networks of `--arch` on the
//! support labels; `--protocol dc` runs the field's standard evaluation
//! (`kip_nn::dc`).

use std::time::Instant;

use kip_nn::dc::{DcParams, DcStage};
use kip_nn::{Arch, Loss, MlpParams, Optimizer, Parameterization};
use serde_json::json;

use crate::cli::TransferArgs;
use crate::commands::{load, open_run};
use crate::error::{CliError, Result};

/// The protocols `--protocol` accepts.
const PROTOCOLS: &str = "kip or dc";

pub fn run(a: TransferArgs) -> Result<i32> {
    match a.protocol.as_str() {
        "kip" => run_kip(a),
        "dc" => run_dc(a),
        other => Err(CliError::flag(
            &format!("--protocol {other}"),
            format!("unknown protocol: expected {PROTOCOLS}"),
        )),
    }
}

/// Refuses the flags of the other protocol (never ignore a flag silently).
fn refuse_flags(protocol: &str, given: &[(&str, bool)]) -> Result<()> {
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(CliError::flag(
            flag,
            format!("does not apply to --protocol {protocol} (see kip transfer --help)"),
        )),
        None => Ok(()),
    }
}

fn run_dc(a: TransferArgs) -> Result<i32> {
    refuse_flags(
        "dc",
        &[
            ("--arch", a.arch.is_some()),
            ("--param", a.param.is_some()),
            ("--loss", a.loss.is_some()),
            ("--optimizer", a.optimizer.is_some()),
            ("--lr-schedule", a.lr_schedule.is_some()),
            ("--steps", a.steps.is_some()),
            ("--center", a.center.is_some()),
            ("--seeds", a.seeds.is_some()),
        ],
    )?;
    let d = DcParams::default();
    let params = DcParams {
        epochs: a.epochs.unwrap_or(d.epochs),
        runs: a.runs.unwrap_or(d.runs),
        lr: a.lr.unwrap_or(d.lr),
        batch: a.batch.unwrap_or(d.batch),
        width: a.width.unwrap_or(d.width),
        depth: a.depth.unwrap_or(d.depth),
        dsa: if a.dsa.unwrap_or(true) { d.dsa } else { None },
        seed: a.seed.unwrap_or(d.seed),
        natural: a.natural.unwrap_or(d.natural),
        ..d
    };
    let on_val = match a.eval_on.as_str() {
        "test" => false,
        "val" => true,
        other => return Err(CliError::flag(&format!("--eval-on {other}"), "expected test or val")),
    };
    for (flag, v, zero) in [
        ("--epochs", params.epochs, params.epochs == 0),
        ("--runs", params.runs, params.runs == 0),
        ("--batch", params.batch, params.batch == 0),
        ("--depth", params.depth, params.depth == 0),
    ] {
        if zero {
            return Err(CliError::flag(&format!("{flag} {v}"), "expected >= 1"));
        }
    }
    params
        .check()
        .map_err(|e| CliError::flag("kip transfer --protocol dc", e))?;
    let (dir, record) = open_run(&a.run, a.data_dir.clone())?;
    let support = dir.read_support()?;
    let shape = support.shape;
    if shape.h < 2 || shape.w < 2 {
        return Err(CliError::flag(
            "--protocol dc",
            format!("the run's data are flat ({shape}): the standard protocol trains a ConvNet on images"),
        ));
    }
    if shape.h >> params.depth == 0 || shape.w >> params.depth == 0 {
        return Err(CliError::flag(
            &format!("--depth {}", params.depth),
            format!("too deep for {shape} images: each block halves them"),
        ));
    }
    if on_val && record.data().val == 0 {
        return Err(CliError::flag(
            "--eval-on val",
            format!(
                "the run in {} has no validation split (it was made without --val)",
                a.run.display()
            ),
        ));
    }
    // Hours of training are not thrown away on an unwritable run folder.
    kip_data::check_writable(&dir.file(&format!("transfer_dc_{}.json", if on_val { "val" } else { "test" })))?;
    let prep = load(record.data())?;
    let eval_set = match (&prep.val, on_val) {
        (Some(v), true) => v,
        _ => &prep.test,
    };
    let split = if on_val { "val" } else { "test" };
    let n = support.labels.len();
    let sets = if params.natural { 2 } else { 1 };
    let total_epochs = sets * params.runs * (params.epochs + 1);
    eprintln!(
        "kip transfer --protocol dc: ConvNet-{} width {}, {} epochs, {} runs each on {n} KIP{} images; {split} {} images",
        params.depth,
        params.width,
        params.epochs,
        params.runs,
        if params.natural { format!(" and {n} natural") } else { String::new() },
        eval_set.len()
    );
    let started = Instant::now();
    let mut done = 0usize;
    let mut last_note = Instant::now();
    let report = kip_nn::dc::protocol_dc(&params, &support, &prep.train, eval_set, &mut |stage, epoch| {
        done += 1;
        let end_of_run = epoch == params.epochs;
        if end_of_run || last_note.elapsed().as_secs() >= 30 {
            last_note = Instant::now();
            let (set, run) = match stage {
                DcStage::Distilled { run } => ("KIP", run),
                DcStage::Natural { run } => ("natural", run),
            };
            let el = started.elapsed().as_secs_f64();
            let left = el / done as f64 * (total_epochs - done) as f64;
            eprintln!(
                "  {set} run {}/{}: epoch {epoch}/{}  ({el:.0} s, about {left:.0} s left)",
                run + 1,
                params.runs,
                params.epochs
            );
        }
    })?;
    let out = json!({
        "protocol": "dc",
        "settings": {
            "arch": format!("ConvNet-{} width {} instancenorm relu avgpool", params.depth, params.width),
            "depth": params.depth, "width": params.width, "epochs": params.epochs, "runs": params.runs,
            "lr": params.lr, "momentum": params.momentum, "weight_decay": params.weight_decay,
            "batch": params.batch, "dsa": params.dsa.is_some(), "seed": params.seed,
            "labels": "hard (argmax of the support labels)", "support": n,
            "eval_on": split, "eval_size": eval_set.len(),
        },
        "kip": report.distilled,
        "natural": report.natural,
        "kip_runs": report.distilled_runs,
        "natural_runs": report.natural_runs,
    });
    dir.write_json(&format!("transfer_dc_{split}.json"), &out)?;
    if a.json {
        println!("{out}");
    } else {
        let natural = match &report.natural {
            Some(r) => format!("   natural {:.4} ± {:.4}", r.mean, r.std),
            None => String::new(),
        };
        println!(
            "standard protocol (ConvNet-{} width {}, DSA {}, {} epochs), {n} images, {} runs, {split} accuracy: KIP {:.4} ± {:.4}{natural}",
            params.depth,
            params.width,
            if params.dsa.is_some() { "on" } else { "off" },
            params.epochs,
            params.runs,
            report.distilled.mean,
            report.distilled.std,
        );
    }
    Ok(0)
}

fn run_kip(a: TransferArgs) -> Result<i32> {
    refuse_flags(
        "kip",
        &[
            ("--epochs", a.epochs.is_some()),
            ("--runs", a.runs.is_some()),
            ("--dsa", a.dsa.is_some()),
            ("--seed", a.seed.is_some()),
            ("--natural", a.natural.is_some()),
            ("--eval-on", a.eval_on != "test"),
        ],
    )?;
    let param_s = a.param.unwrap_or_else(|| "ntk".into());
    let loss_s = a.loss.unwrap_or_else(|| "mse".into());
    let optimizer_s = a.optimizer.unwrap_or_else(|| "sgd".into());
    let param: Parameterization = param_s.parse()?;
    let loss: Loss = loss_s.parse()?;
    let optimizer: Optimizer = optimizer_s.parse()?;
    let seeds = a.seeds.unwrap_or(3);
    let steps = a.steps.unwrap_or(1000);
    let batch = a.batch.unwrap_or(100);
    let center = a.center.unwrap_or(true);
    if seeds == 0 {
        return Err(CliError::flag("--seeds 0", "expected >= 1"));
    }
    let arch = match a.arch.as_deref().unwrap_or("mlp").parse::<Arch>()? {
        Arch::Mlp => Arch::Mlp,
        Arch::ConvNet { depth } => Arch::ConvNet {
            depth: a.depth.unwrap_or(depth),
        },
    };
    let (depth, width) = match arch {
        Arch::Mlp => (
            a.depth.unwrap_or(MlpParams::default().depth),
            a.width.unwrap_or(arch.default_width()),
        ),
        Arch::ConvNet { depth } => (depth, a.width.unwrap_or(arch.default_width())),
    };
    let base = MlpParams {
        // The ConvNet's depth travels in `arch`; the MLP's in the params.
        depth: if arch == Arch::Mlp {
            depth
        } else {
            MlpParams::default().depth
        },
        width,
        param,
        loss,
        optimizer,
        lr: a.lr,
        lr_schedule: a
            .lr_schedule
            .as_deref()
            .unwrap_or("cosine")
            .parse()
            .map_err(|e| CliError::flag("--lr-schedule", e))?,
        steps,
        batch,
        center,
        ..MlpParams::default()
    };
    let lr = arch.lr(&base.clone().check()?);
    let (dir, record) = open_run(&a.run, a.data_dir.clone())?;
    let support = dir.read_support()?;
    let prep = load(record.data())?;
    let report = kip_nn::transfer_arch(arch, &base, &support, &prep.train, &prep.test, seeds)?;
    let arch_name = match arch {
        Arch::Mlp => "mlp",
        Arch::ConvNet { .. } => "convnet",
    };
    let out = json!({
        "settings": {
            "arch": arch_name, "depth": depth, "width": width, "param": param_s, "loss": loss_s, "optimizer": optimizer_s,
            "lr": lr, "lr_schedule": base.lr_schedule.to_string(), "steps": steps, "batch": batch,
            "center": center, "seeds": seeds, "support": support.labels.len(), "test_size": prep.test.len(),
        },
        "kip": report.distilled,
        "natural": report.natural,
    });
    dir.write_json("transfer.json", &out)?;
    if a.json {
        println!("{out}");
    } else {
        let name = match arch {
            Arch::Mlp => format!("FC{depth} width {width}"),
            Arch::ConvNet { depth } => format!("ConvNet{depth} width {width}"),
        };
        println!(
            "{name} ({param_s}, {loss_s}{}), {} images, {seeds} seeds: KIP {:.4} ± {:.4}   natural {:.4} ± {:.4}",
            if center { ", centred" } else { "" },
            support.labels.len(),
            report.distilled.mean,
            report.distilled.std,
            report.natural.mean,
            report.natural.std
        );
    }
    Ok(0)
}
