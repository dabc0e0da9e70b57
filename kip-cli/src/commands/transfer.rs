//! `kip transfer`: train finite-width networks (fully connected or the
//! ConvNet) on a run's support set and on a natural class-balanced sample
//! of the same size; compare test accuracy.

use kip_nn::{Arch, Loss, MlpParams, Optimizer, Parameterization};
use serde_json::json;

use crate::cli::TransferArgs;
use crate::commands::{load, open_run};
use crate::error::{CliError, Result};

pub fn run(a: TransferArgs) -> Result<i32> {
    let param: Parameterization = a.param.parse()?;
    let loss: Loss = a.loss.parse()?;
    let optimizer: Optimizer = a.optimizer.parse()?;
    if a.seeds == 0 {
        return Err(CliError::flag("--seeds 0", "expected >= 1"));
    }
    let arch = match a.arch.parse::<Arch>()? {
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
        lr_schedule: a.lr_schedule.parse().map_err(|e| CliError::flag("--lr-schedule", e))?,
        steps: a.steps,
        batch: a.batch,
        center: a.center,
        ..MlpParams::default()
    };
    let lr = arch.lr(&base.clone().check()?);
    let (dir, record) = open_run(&a.run, a.data_dir.clone())?;
    let support = dir.read_support()?;
    let prep = load(record.data())?;
    let report = kip_nn::transfer_arch(arch, &base, &support, &prep.train, &prep.test, a.seeds)?;
    let arch_name = match arch {
        Arch::Mlp => "mlp",
        Arch::ConvNet { .. } => "convnet",
    };
    let out = json!({
        "settings": {
            "arch": arch_name, "depth": depth, "width": width, "param": a.param, "loss": a.loss, "optimizer": a.optimizer,
            "lr": lr, "lr_schedule": base.lr_schedule.to_string(), "steps": a.steps, "batch": a.batch,
            "center": a.center, "seeds": a.seeds, "support": support.labels.len(), "test_size": prep.test.len(),
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
            "{name} ({}, {}{}), {} images, {} seeds: KIP {:.4} ± {:.4}   natural {:.4} ± {:.4}",
            a.param,
            a.loss,
            if a.center { ", centred" } else { "" },
            support.labels.len(),
            a.seeds,
            report.distilled.mean,
            report.distilled.std,
            report.natural.mean,
            report.natural.std
        );
    }
    Ok(0)
}
