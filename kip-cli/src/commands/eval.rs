//! `kip eval`: KRR test accuracy of a saved support set.

use kip_kernels::{points, KernelSpec};
use kip_krr::Ridge;
use serde_json::json;

use crate::cli::EvalArgs;
use crate::commands::run_data;
use crate::error::{CliError, Result};
use crate::rundir::{RunDir, SUPPORT};

pub fn run(a: EvalArgs) -> Result<i32> {
    let dir = RunDir::open(&a.run)?;
    let cfg = dir.read_json(crate::rundir::CONFIG)?;
    let kernel_str = match &a.kernel {
        Some(k) => k.clone(),
        None => run_kernel(&cfg),
    };
    let kernel = kernel_str.parse::<KernelSpec>()?.build();
    let reg = a
        .reg
        .or_else(|| cfg["kip"]["reg"].as_f64())
        .or_else(|| cfg["reg"].as_f64())
        .unwrap_or(1e-6);
    let ridge = Ridge::Relative(reg);
    ridge.check().map_err(|e| CliError::Usage(format!("--reg: {e}")))?;
    let prep = crate::data::prepare(&run_data(&cfg, &dir, a.data_dir.clone())?)?;
    let support = kip_data::SupportSet::read_npz(&dir.file(SUPPORT))?;
    let x_test = prep.test.to_matrix();
    let ev = kip_krr::evaluate(
        &kernel,
        points(&support.x_model),
        &support.y,
        ridge,
        points(&x_test),
        prep.test.labels(),
        Some(&kip_data::one_hot(prep.test.labels(), prep.test.n_classes(), true)),
        a.block.max(1),
    )?;
    let out = json!({
        "run": dir.path, "kernel": kernel_str, "reg": reg, "support": support.labels.len(),
        "test_size": prep.test.len(), "test_acc": ev.accuracy, "test_loss": ev.loss,
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{}: kernel {kernel_str}, {} support images, test accuracy {:.4} on {} images",
            dir.path.display(),
            support.labels.len(),
            ev.accuracy,
            prep.test.len()
        );
    }
    Ok(0)
}

/// The first kernel a run used.
pub fn run_kernel(cfg: &serde_json::Value) -> String {
    cfg["kip"]["kernels"][0]
        .as_str()
        .or_else(|| cfg["kernel"].as_str())
        .unwrap_or("fc1-ntk")
        .to_string()
}
