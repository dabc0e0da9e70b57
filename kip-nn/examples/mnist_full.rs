//! Trains a fully connected network on MNIST read straight from
//! `$KIP_DATA_DIR/mnist/*-idx?-ubyte.gz` and prints the test accuracy.
//!
//! ```text
//! KIP_DATA_DIR=../shared/data cargo run --release -p kip-nn --example mnist_full
//! KIP_DATA_DIR=... cargo run --release -p kip-nn --example mnist_full -- \
//!     epochs=5 n=60000 depth=1 width=1024 param=standard loss=xent opt=sgd batch=128 lr=0.1
//! ```
//!
//! Defaults: FC1, width 1024, standard parameterisation, cross-entropy,
//! SGD (momentum 0.9, cosine decay, the default rate 0.1), batch 128,
//! 5 epochs. Images are scaled to [0, 1] and standardised with the training set's
//! pixel mean and standard deviation (one channel).

use std::error::Error;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use flate2::read::GzDecoder;
use kip_nn::{centered_one_hot, train, MlpParams};
use nalgebra::DMatrix;

/// Reads a gzip IDX file: returns (dimensions, payload bytes).
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), Box<dyn Error>> {
    let mut bytes = Vec::new();
    GzDecoder::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?).read_to_end(&mut bytes)?;
    let word = |i: usize| -> Result<u32, Box<dyn Error>> {
        let b = bytes
            .get(4 * i..4 * i + 4)
            .ok_or_else(|| format!("{}: truncated header at byte {}", path.display(), 4 * i))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let got = word(0)?;
    if got != magic {
        return Err(format!("{}: magic {got:#010x}, expected {magic:#010x}", path.display()).into());
    }
    let ndim = (magic & 0xff) as usize;
    let dims: Vec<usize> = (1..=ndim)
        .map(|i| word(i).map(|w| w as usize))
        .collect::<Result<_, _>>()?;
    let start = 4 * (ndim + 1);
    let len: usize = dims.iter().product();
    if bytes.len() != start + len {
        return Err(format!(
            "{}: header promises {len} bytes of data at offset {start}, file has {}",
            path.display(),
            bytes.len() - start.min(bytes.len())
        )
        .into());
    }
    Ok((dims, bytes[start..].to_vec()))
}

/// (images `n × 784` in [0, 1], labels) for `prefix` = `train` or `t10k`.
fn load(dir: &Path, prefix: &str) -> Result<(DMatrix<f64>, Vec<usize>), Box<dyn Error>> {
    let (dims, pixels) = read_idx(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")), 0x803)?;
    let (ldims, labels) = read_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), 0x801)?;
    if ldims[0] != dims[0] {
        return Err(format!("{prefix}: {} images but {} labels", dims[0], ldims[0]).into());
    }
    let d = dims[1] * dims[2];
    let x = DMatrix::from_fn(dims[0], d, |i, j| f64::from(pixels[i * d + j]) / 255.0);
    Ok((x, labels.iter().map(|&l| usize::from(l)).collect()))
}

fn main() -> Result<(), Box<dyn Error>> {
    let Some(root) = std::env::var_os("KIP_DATA_DIR") else {
        eprintln!("KIP_DATA_DIR is not set: point it at the folder holding mnist/");
        std::process::exit(2);
    };
    let mut opts = std::collections::HashMap::new();
    for a in std::env::args().skip(1) {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {a}"))?;
        opts.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str, default: &str| opts.get(k).cloned().unwrap_or_else(|| default.to_string());

    let t0 = Instant::now();
    let dir = Path::new(&root).join("mnist");
    let (mut x, mut labels) = load(&dir, "train")?;
    let (mut xt, lt) = load(&dir, "t10k")?;
    let n: usize = get("n", "60000").parse()?;
    if n < x.nrows() {
        x = x.rows(0, n).into_owned();
        labels.truncate(n);
    }
    let mean = x.mean();
    let std = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt() / (x.len() as f64).sqrt();
    x.apply(|v| *v = (*v - mean) / std);
    xt.apply(|v| *v = (*v - mean) / std);
    let y = centered_one_hot(&labels, 10);
    println!(
        "loaded {} train / {} test images in {:.1?}",
        x.nrows(),
        xt.nrows(),
        t0.elapsed()
    );

    let batch: usize = get("batch", "128").parse()?;
    let epochs: f64 = get("epochs", "5").parse()?;
    let steps = ((epochs * x.nrows() as f64 / batch as f64).ceil() as usize).max(1);
    let lr = opts.get("lr").map(|v| v.parse()).transpose()?;
    let params = MlpParams {
        depth: get("depth", "1").parse()?,
        width: get("width", "1024").parse()?,
        param: get("param", "standard").parse()?,
        loss: get("loss", "xent").parse()?,
        optimizer: get("opt", "sgd").parse()?,
        lr,
        steps,
        batch,
        seed: get("seed", "0").parse()?,
        ..MlpParams::default()
    }
    .check()?;
    println!(
        "FC{} width {} {} {} {} lr {} batch {} steps {} ({epochs} epochs)",
        params.depth,
        params.width,
        params.param,
        params.loss,
        params.optimizer,
        params.lr(),
        params.batch,
        params.steps
    );
    let t1 = Instant::now();
    let report = train(&params, &x, &y, &labels, Some((&xt, &lt)))?;
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "train loss {:.5}  train acc {:.4}  test loss {:.5}  test acc {:.4}  ({} steps, {secs:.1} s, {:.1} ms/step)",
        report.final_train_loss,
        report.final_train_accuracy,
        report.test_loss.unwrap_or(f64::NAN),
        report.test_accuracy.unwrap_or(f64::NAN),
        report.steps_run,
        1e3 * secs / report.steps_run as f64
    );
    Ok(())
}
