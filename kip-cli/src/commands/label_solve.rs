//! `kip label-solve`: closed-form optimal support labels (Label Solve).

use std::time::Instant;

use kip_kernels::{points, KernelSpec};
use kip_krr::Ridge;
use nalgebra::DMatrix;
use rand::SeedableRng;
use serde_json::json;

use crate::cli::LabelSolveArgs;
use crate::commands::run_data;
use crate::data::{default_out, prepare, support_set};
use crate::error::{CliError, Result};
use crate::rundir::{RunDir, CONFIG, SUMMARY, SUPPORT};

pub fn run(a: LabelSolveArgs) -> Result<i32> {
    let t0 = Instant::now();
    let kernel = a.kernel.parse::<KernelSpec>()?.build();
    let ridge = Ridge::Relative(a.reg);
    ridge.check().map_err(|e| CliError::Usage(format!("--reg: {e}")))?;
    if a.block == 0 {
        return Err(CliError::Usage("--block 0: expected >= 1".into()));
    }
    let (data, source) = match &a.run {
        Some(run) => {
            let dir = RunDir::open(run)?;
            let cfg = dir.read_json(CONFIG)?;
            (run_data(&cfg, &dir, a.data.data_dir.clone())?, Some(dir))
        }
        None => (a.data.clone(), None),
    };
    let prep = prepare(&data)?;
    let c = prep.train.n_classes();
    let (x_s, labels) = match &source {
        Some(dir) => {
            let s = kip_data::SupportSet::read_npz(&dir.file(SUPPORT))?;
            (s.x_model, s.labels)
        }
        None => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
            let idx = kip_data::class_balanced(&prep.train.indices_by_class(), a.support, &mut rng)
                .map_err(|e| CliError::Usage(format!("--support {}: {e}", a.support)))?;
            let mut rows = vec![0.0; idx.len() * prep.train.dim()];
            prep.train.gather_into(&idx, &mut rows);
            let labels: Vec<usize> = idx.iter().map(|&i| prep.train.labels()[i]).collect();
            (DMatrix::from_row_slice(idx.len(), prep.train.dim(), &rows), labels)
        }
    };
    let y0 = kip_data::one_hot(&labels, c, true);
    let x_train = prep.train.to_matrix();
    let y_train = kip_data::one_hot(prep.train.labels(), c, true);
    let x_test = prep.test.to_matrix();
    let y_test = kip_data::one_hot(prep.test.labels(), c, true);
    let eval = |y: &DMatrix<f64>| {
        kip_krr::evaluate(
            &kernel,
            points(&x_s),
            y,
            ridge,
            points(&x_test),
            prep.test.labels(),
            Some(&y_test),
            2000,
        )
    };
    let before = eval(&y0)?;
    let y_ls = kip_krr::label_solve_streaming(&kernel, points(&x_s), points(&x_train), &y_train, ridge, a.block)?;
    let after = eval(&y_ls)?;
    let out = a.out.clone().unwrap_or_else(|| {
        default_out(&format!(
            "label-solve-{}-{}",
            data.dataset.replace(':', "_"),
            labels.len()
        ))
    });
    let dir = RunDir::create(&out)?;
    let shape = prep.train.shape();
    dir.write_json(
        CONFIG,
        &json!({
            "command": "label-solve", "version": env!("CARGO_PKG_VERSION"),
            "dataset": data.dataset, "data_dir": data.data_dir, "preprocess": data.preprocess,
            "holdout": data.holdout, "kernel": a.kernel, "reg": a.reg, "seed": a.seed,
            "support": labels.len(), "from_run": a.run,
            "kip": { "kernels": [a.kernel], "reg": a.reg },
        }),
    )?;
    dir.write_support(&support_set(&x_s, &y_ls, &labels, &prep, shape), prep.pixel_max)?;
    let summary = json!({
        "run": dir.path, "support": labels.len(), "targets": prep.train.len(), "test_size": prep.test.len(),
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
            dir.path.display()
        );
    }
    Ok(0)
}
