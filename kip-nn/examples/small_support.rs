//! Diagnoses training on a small support set: trains an FC1 network
//! full-batch on `n` class-balanced natural MNIST (or CIFAR-10) images, or on
//! a KIP `support.npz`, and prints train loss / accuracy and test accuracy as
//! training goes, plus the spectrum of the infinite-width NTK on the set.
//!
//! ```text
//! cargo run --release -p kip-nn --example small_support -- \
//!     data=/work/shared/data dataset=mnist n=100 param=ntk loss=mse opt=sgd lr=10 steps=500 \
//!     [support=RUN/support.npz] [every=50] [seed=0] [test=2000] [center=1]
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::path::Path;

use kip_core::argmax;
use kip_data::{one_hot, Preprocess, SupportSet};
use kip_nn::{evaluate, Mlp, MlpParams, Trainer};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;

/// Infinite-width FC1 NTK (NTK parameterisation) Gram matrix of the rows of `x`.
fn ntk_fc1(x: &DMatrix<f64>, w_std: f64, b_std: f64) -> DMatrix<f64> {
    let (n, d) = (x.nrows(), x.ncols() as f64);
    let (sw2, sb2) = (w_std * w_std, b_std * b_std);
    let k1 = (x * x.transpose()) * (sw2 / d);
    let k1 = k1.map(|v| v + sb2);
    DMatrix::from_fn(n, n, |i, j| {
        let (a, b, c) = (k1[(i, i)], k1[(j, j)], k1[(i, j)]);
        let norm = (a * b).sqrt();
        let cos = (c / norm).clamp(-1.0, 1.0);
        let th = cos.acos();
        let pi = std::f64::consts::PI;
        let nngp = sw2 * norm / (2.0 * pi) * (th.sin() + (pi - th) * cos) + sb2;
        nngp + c * sw2 * (pi - th) / (2.0 * pi)
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut opts = HashMap::new();
    for a in std::env::args().skip(1) {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {a}"))?;
        opts.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let data = get("data", "/work/shared/data");
    let split = kip_data::resolve(&get("dataset", "mnist"), Some(Path::new(&data)))?;
    let tf = Preprocess::Standard.fit(&split.train)?;
    let train = tf.apply(&split.train);
    let test = tf.apply(&split.test);
    let n_test: usize = get("test", "10000").parse()?;
    let test_idx: Vec<usize> = (0..n_test.min(test.len())).collect();
    let test = test.subset(&test_idx);
    let (xt, lt) = (test.to_matrix(), test.labels().to_vec());
    let c = train.n_classes();
    let seed: u64 = get("seed", "0").parse()?;
    let (x, y, labels) = if let Some(path) = opts.get("support") {
        let s = SupportSet::read_npz(Path::new(path))?;
        let labels: Vec<usize> = (0..s.labels.len())
            .map(|i| argmax(s.y.row(i).iter().copied()))
            .collect();
        (s.x_model, s.y, labels)
    } else {
        let n: usize = get("n", "100").parse()?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let s = train.sample_balanced(n, &mut rng)?;
        (s.x, one_hot(&s.labels, c, true), s.labels)
    };
    let n = x.nrows();
    let params = MlpParams {
        param: get("param", "ntk").parse()?,
        loss: get("loss", "mse").parse()?,
        optimizer: get("opt", "sgd").parse()?,
        lr: opts.get("lr").map(|v| v.parse()).transpose()?,
        steps: get("steps", "500").parse()?,
        batch: n,
        seed,
        center: get("center", "1") == "1",
        ..MlpParams::default()
    }
    .check()?;
    let k = ntk_fc1(&x, params.w_std, params.b_std);
    let mut ev = SymmetricEigen::new(k).eigenvalues.as_slice().to_vec();
    ev.sort_by(|a, b| b.partial_cmp(a).unwrap());
    println!(
        "n {n}, |x|^2/d mean {:.3}; NTK eigenvalues: max {:.2}, 2nd {:.2}, 10th {:.3}, min {:.4}",
        x.row_iter().map(|r| r.norm_squared()).sum::<f64>() / (n * x.ncols()) as f64,
        ev[0],
        ev[1],
        ev[9.min(n - 1)],
        ev[n - 1]
    );
    println!(
        "{} {} {} lr {} steps {} centred {}",
        params.param,
        params.loss,
        params.optimizer,
        params.lr(),
        params.steps,
        params.center
    );
    let model = Mlp::<f32>::init(x.ncols(), c, &params, seed);
    let plain = Mlp::<f32>::init(
        x.ncols(),
        c,
        &MlpParams {
            center: false,
            ..params.params().clone()
        }
        .check()?,
        seed,
    );
    let f0_tr = plain.forward(&x);
    let f0_te = plain.forward(&xt);
    let acc = |f: &DMatrix<f64>, l: &[usize]| {
        f.row_iter()
            .zip(l)
            .filter(|(r, &l)| argmax(r.iter().copied()) == l)
            .count() as f64
            / l.len() as f64
    };
    println!(
        "init: output rms {:.3}, test acc {:.4}",
        (f0_te.norm_squared() / f0_te.len() as f64).sqrt(),
        acc(&f0_te, &lt)
    );
    // Infinite-width NTK regression (zero initial function), for reference.
    {
        let xa = DMatrix::from_fn(n + xt.nrows(), x.ncols(), |i, j| {
            if i < n {
                x[(i, j)]
            } else {
                xt[(i - n, j)]
            }
        });
        let ka = ntk_fc1(&xa, params.w_std, params.b_std);
        let kxx = ka.view((0, 0), (n, n)).into_owned() + DMatrix::identity(n, n) * 1e-6 * ev[0];
        let ktx = ka.view((n, 0), (xt.nrows(), n)).into_owned();
        let chol = kxx.cholesky().ok_or("ntk not pd")?;
        let pred = &ktx * chol.solve(&y);
        let pred0 = &pred + &f0_te - &ktx * chol.solve(&f0_tr);
        println!(
            "NTK KRR test acc {:.4}; with this init's f0 added (lazy limit, uncentred) {:.4}",
            acc(&pred, &lt),
            acc(&pred0, &lt)
        );
    }
    let mut tr = Trainer::new(model, &params);
    let xc: DMatrix<f32> = x.transpose().map(|v| v as f32);
    let yc: DMatrix<f32> = y.transpose().map(|v| v as f32);
    let every: usize = get("every", "50").parse()?;
    for step in 0..params.steps {
        let lr = params.lr_at(step);
        let loss = tr.step(xc.as_view(), yc.as_view(), &labels, lr)?;
        if (step + 1) % every == 0 || step + 1 == params.steps {
            let e_tr = evaluate(tr.model(), &x, &labels, Some(&y))?;
            let e_te = evaluate(tr.model(), &xt, &lt, None)?;
            println!(
                "step {:5}  lr {:8.4}  batch loss {:.5}  train loss {:.5} acc {:.3}  test acc {:.4}",
                step + 1,
                lr,
                loss,
                e_tr.loss,
                e_tr.accuracy,
                e_te.accuracy
            );
        }
    }
    Ok(())
}
