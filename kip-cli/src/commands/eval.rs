//! `kip eval`: KRR test accuracy of a saved support set, under any kernel.

use kip_kernels::{points, KernelSpec};
use serde_json::json;

use crate::cli::EvalArgs;
use crate::commands::{check_reg_and_block, load, open_run};
use crate::error::Result;

pub fn run(a: EvalArgs, ranks: &kip_meta::Ranks) -> Result<i32> {
    let (dir, mut record) = open_run(&a.run, a.data_dir.clone())?;
    if let Some(h) = a.holdout {
        record.data_mut().holdout = h;
    }
    let kernel_spec = a.kernel.clone().unwrap_or_else(|| record.eval_kernel().to_string());
    let kernel = kernel_spec.parse::<KernelSpec>()?.build();
    let reg = a.reg.unwrap_or(record.reg());
    check_reg_and_block(reg, a.block)?;
    let support = dir.read_support()?;
    let prep = load(record.data())?;
    let kernel = kernel.for_images(prep.test.shape());
    let x_test = prep.test.to_matrix();
    // Convolutional kernels cost milliseconds per pair: count them on a bar
    // (blocks of at most 128 test images, so it moves).
    let slow = kernel.needs_image_shape();
    let n_s = support.labels.len();
    let pairs = (n_s * (n_s + 1) / 2 + n_s * prep.test.len()) as u64;
    let quiet = a.json || !slow || !ranks.is_root();
    let counted = crate::progress::CountedKernel::new(&kernel, pairs, "kernel", quiet);
    let block = if slow { a.block.min(128) } else { a.block };
    // Under MPI the test blocks are shared out (the same figures).
    let ev = kip_meta::evaluate_support_on(
        &**ranks,
        &counted,
        points(&support.x_model),
        &support.y,
        reg,
        points(&x_test),
        prep.test.labels(),
        block,
    )?;
    counted.finish();
    if !ranks.is_root() {
        return Ok(0);
    }
    if a.json {
        let out = json!({
            "run": dir.path(), "kernel": kernel_spec, "reg": reg, "support": support.labels.len(),
            "holdout": record.data().holdout, "test_size": prep.test.len(), "test_acc": ev.accuracy, "test_loss": ev.loss,
        });
        println!("{out}");
    } else {
        println!(
            "{}: kernel {kernel_spec}, {} support images, test accuracy {:.4} on {} images",
            dir.path().display(),
            support.labels.len(),
            ev.accuracy,
            prep.test.len()
        );
    }
    Ok(0)
}
