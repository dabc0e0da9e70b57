//! `kip label-solve`: closed-form optimal support labels (Label Solve) for a
//! run's support images or a fresh class-balanced sample.

use std::time::Instant;

use kip_data::one_hot;
use kip_kernels::{points, Kernel, KernelSpec};
use kip_meta::{evaluate_support_on, label_solve_on, LabelSolveConfig, Ranks, RunDir, RunRecord, CONFIG, SUMMARY};
use rand::SeedableRng;
use serde_json::json;

use crate::cli::LabelSolveArgs;
use crate::commands::{check_reg_and_block, data_spec, default_out, load, open_run};
use crate::error::{CliError, Result};

pub fn run(a: LabelSolveArgs, ranks: &Ranks) -> Result<i32> {
    let t0 = Instant::now();
    let kernel = a.kernel.parse::<KernelSpec>()?.build();
    check_reg_and_block(a.reg, a.block)?;
    let (data, source) = match &a.run {
        Some(run) => {
            let (dir, record) = open_run(run, a.data.data_dir.clone())?;
            (record.data().clone(), Some(dir))
        }
        None => (data_spec(&a.data)?, None),
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let n = source.as_ref().map_or(a.support.to_string(), |_| "run".into());
        default_out(&format!("label-solve-{}-{n}", data.dataset))
    });
    RunDir::ensure_new(&out)?;
    let prep = load(&data)?;
    let kernel = kernel.for_images(prep.train.shape());
    let (x_s, labels) = match &source {
        Some(dir) => {
            let s = dir.read_support()?;
            (s.x_model, s.labels)
        }
        None => {
            let s = prep
                .train
                .sample_balanced(a.support, &mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed))
                .map_err(|e| CliError::flag(&format!("--support {}", a.support), e))?;
            (s.x, s.labels)
        }
    };
    let x_test = prep.test.to_matrix();
    // Convolutional kernels cost milliseconds per pair: count them on a bar
    // (the two scores and the solve).
    let n_s = labels.len();
    let sym = n_s * (n_s + 1) / 2;
    let pairs = (3 * sym + n_s * (2 * prep.test.len() + prep.train.len())) as u64;
    let quiet = a.json || !kernel.needs_image_shape() || !ranks.is_root();
    let counted = crate::progress::CountedKernel::new(&kernel, pairs, "kernel", quiet);
    let score = |y: &nalgebra::DMatrix<f64>| {
        evaluate_support_on(
            &**ranks,
            &counted,
            points(&x_s),
            y,
            a.reg,
            points(&x_test),
            prep.test.labels(),
            2000,
        )
    };
    let before = score(&one_hot(&labels, prep.train.n_classes(), true))?;
    let y = label_solve_on(&**ranks, &counted, points(&x_s), &prep.train, a.reg, a.block)?;
    let after = score(&y)?;
    counted.finish();
    if !ranks.is_root() {
        return Ok(0);
    }
    let dir = RunDir::create(&out)?;
    let config = LabelSolveConfig {
        version: env!("CARGO_PKG_VERSION").to_string(),
        data,
        kernel: kernel.spec().to_string(),
        reg: a.reg,
        seed: a.seed,
        support: labels.len(),
        from_run: a.run.clone(),
    };
    dir.write_json(CONFIG, &RunRecord::LabelSolve(config))?;
    dir.write_support(&prep.support_set(&x_s, &y, &labels)?, prep.display())?;
    let summary = json!({
        "run": dir.path(), "support": labels.len(), "targets": prep.train.len(), "test_size": prep.test.len(),
        "test_acc_before": before.accuracy, "test_acc_after": after.accuracy,
        "elapsed_s": t0.elapsed().as_secs_f64(),
    });
    dir.write_json(SUMMARY, &summary)?;
    if a.json {
        println!("{summary}");
    } else {
        for n in &prep.notes {
            eprintln!("note: {n}");
        }
        println!(
            "label solve over {} targets: test accuracy {:.4} -> {:.4} ({} support, {:.1} s); written to {}",
            prep.train.len(),
            before.accuracy,
            after.accuracy,
            labels.len(),
            t0.elapsed().as_secs_f64(),
            dir.path().display()
        );
    }
    Ok(0)
}
