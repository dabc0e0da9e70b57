//! `kip transfer`: train finite-width networks on a run's support set and on
//! a natural class-balanced sample of the same size; compare test accuracy.

use kip_nn::{Loss, MlpParams, Optimizer, Parameterization};
use nalgebra::DMatrix;
use rand::SeedableRng;
use serde_json::json;

use crate::cli::TransferArgs;
use crate::commands::run_data;
use crate::error::{CliError, Result};
use crate::rundir::{RunDir, CONFIG, SUPPORT};

fn usage<E: std::fmt::Display>(flag: &'static str) -> impl FnOnce(E) -> CliError {
    move |e| CliError::Usage(format!("{flag}: {e}"))
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

pub fn run(a: TransferArgs) -> Result<i32> {
    let param: Parameterization = a.param.parse().map_err(usage("--param"))?;
    let loss: Loss = a.loss.parse().map_err(usage("--loss"))?;
    let optimizer: Optimizer = a.optimizer.parse().map_err(usage("--optimizer"))?;
    if a.seeds == 0 {
        return Err(CliError::Usage("--seeds 0: expected >= 1".into()));
    }
    let base = MlpParams {
        depth: a.depth,
        width: a.width,
        param,
        loss,
        optimizer,
        lr: a.lr,
        steps: a.steps,
        batch: a.batch,
        center: a.center,
        ..MlpParams::default()
    };
    base.clone().check()?;
    let dir = RunDir::open(&a.run)?;
    let cfg = dir.read_json(CONFIG)?;
    let prep = crate::data::prepare(&run_data(&cfg, &dir, a.data_dir.clone())?)?;
    let support = kip_data::SupportSet::read_npz(&dir.file(SUPPORT))?;
    let n = support.labels.len();
    let c = prep.train.n_classes();
    let x_test = prep.test.to_matrix();
    // The learned labels' argmax for cross-entropy; the vectors for MSE.
    let kip_labels: Vec<usize> = (0..n).map(|i| support.y.row(i).transpose().argmax().0).collect();
    let mut kip_acc = Vec::new();
    let mut nat_acc = Vec::new();
    for seed in 0..a.seeds as u64 {
        let p = MlpParams { seed, ..base.clone() }.check()?;
        let r = kip_nn::train(
            &p,
            &support.x_model,
            &support.y,
            &kip_labels,
            Some((&x_test, prep.test.labels())),
        )?;
        kip_acc.push(r.test_accuracy.unwrap_or(f64::NAN));
        // Natural baseline: a class-balanced sample of the same size and seed.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let idx = kip_data::class_balanced(&prep.train.indices_by_class(), n, &mut rng)?;
        let mut rows = vec![0.0; n * prep.train.dim()];
        prep.train.gather_into(&idx, &mut rows);
        let x_nat = DMatrix::from_row_slice(n, prep.train.dim(), &rows);
        let lab: Vec<usize> = idx.iter().map(|&i| prep.train.labels()[i]).collect();
        let y_nat = kip_data::one_hot(&lab, c, true);
        let r = kip_nn::train(&p, &x_nat, &y_nat, &lab, Some((&x_test, prep.test.labels())))?;
        nat_acc.push(r.test_accuracy.unwrap_or(f64::NAN));
    }
    let (km, ks) = mean_std(&kip_acc);
    let (nm, ns) = mean_std(&nat_acc);
    let out = json!({
        "settings": {
            "depth": a.depth, "width": a.width, "param": a.param, "loss": a.loss, "optimizer": a.optimizer,
            "lr": base.clone().check()?.lr(), "steps": a.steps, "batch": a.batch, "center": a.center, "seeds": a.seeds,
            "support": n, "test_size": prep.test.len(),
        },
        "kip": { "test_acc": kip_acc, "mean": km, "std": ks },
        "natural": { "test_acc": nat_acc, "mean": nm, "std": ns },
    });
    dir.write_json("transfer.json", &out)?;
    if a.json {
        println!("{out}");
    } else {
        println!(
            "FC{} width {} ({}, {}{}), {} images, {} seeds: KIP {:.4} ± {:.4}   natural {:.4} ± {:.4}",
            a.depth,
            a.width,
            a.param,
            a.loss,
            if a.center { ", centred" } else { "" },
            n,
            a.seeds,
            km,
            ks,
            nm,
            ns
        );
    }
    Ok(0)
}
