//! Label Solve on CIFAR-10, as in the KIP paper's notebook.
//!
//! FC1 NTK (W_std = √2, b_std = 0.1), float64, per-channel standardisation,
//! 500 class-balanced training images (seed 0) as the support set with
//! centred one-hot labels; reg = 1e-6 (trace-scaled). KRR test accuracy
//! before and after Label Solve, where Label Solve uses *all* 50,000
//! training images as targets, streamed in blocks of 5,000 (no 50000 × 500
//! kernel in memory, and the f64 images are gathered block by block too).
//!
//! Two settings:
//! 1. pool = all 50,000 training images, test = the 1,000 real test images
//!    at hand (`test_batch_first1000.bin.gz`);
//! 2. held out: pool = batches 1–4 (first 40,000 training images; the
//!    standardisation is fitted on them), test = `data_batch_5` (10,000).
//!
//! The authors' notebook reports 32.11% → 46.99%.
//!
//! ```text
//! cargo run --release -p kip-krr --example label_solve_cifar -- [DATA_DIR] [SEED]
//! ```
//! `DATA_DIR` defaults to `$KIP_DATA_DIR` (the folder holding `cifar10/`).

#[path = "../tests/support/real_krr.rs"]
mod real_krr;

use std::path::PathBuf;
use std::time::Instant;

use kip_data::{one_hot, Dataset, Preprocess};
use kip_kernels::{points, points_row_major, Kernel, KernelSpec};
use kip_krr::{LabelSolveAccumulator, Ridge};
use nalgebra::DMatrix;
use real_krr::{balanced_support, TestSet};

const N_SUPPORT: usize = 500;
const BLOCK: usize = 5000;

type AnyError = Box<dyn std::error::Error>;

/// Accuracy before and after Label Solve for one (pool, test) pair.
fn run(label: &str, pool: &Dataset, test: &Dataset, seed: u64) -> Result<(), AnyError> {
    let t0 = Instant::now();
    let kernel = KernelSpec::fc_ntk(1).build();
    let ridge = Ridge::default();
    let c = pool.n_classes();
    let d = pool.dim();

    let (x_s, y_s) = balanced_support(pool, N_SUPPORT, seed)?;
    let test_set = TestSet::new(test, c);
    let before = test_set.evaluate(&kernel, &x_s, &y_s, ridge, BLOCK)?;

    // Label Solve over the whole pool, BLOCK targets at a time.
    let t_ls = Instant::now();
    let k_ss = kernel.gram_sym(&x_s)?;
    let mut acc = LabelSolveAccumulator::new(N_SUPPORT, c);
    let mut x_block = vec![0.0; BLOCK * d];
    let mut k_block = DMatrix::zeros(0, 0);
    let mut start = 0;
    while start < pool.len() {
        let len = BLOCK.min(pool.len() - start);
        let rows: Vec<usize> = (start..start + len).collect();
        pool.gather_into(&rows, &mut x_block[..len * d]);
        kernel.gram_into(
            points_row_major(&x_block[..len * d], len, d),
            points(&x_s),
            &mut k_block,
        )?;
        acc.add_block(&k_block, &one_hot(&pool.labels()[start..start + len], c, true))?;
        start += len;
    }
    let n_target = acc.n_target();
    let y_ls = acc.finish(&k_ss, ridge)?;
    let ls_secs = t_ls.elapsed().as_secs_f64();

    let after = test_set.evaluate(&kernel, &x_s, &y_ls, ridge, BLOCK)?;
    println!(
        "{label}: support {N_SUPPORT} (seed {seed}), {n_target} LS targets, {} test images: \
         accuracy {:.2}% -> {:.2}% after Label Solve (test loss {:.5} -> {:.5}); LS {ls_secs:.1} s, total {:.1} s",
        test.len(),
        100.0 * before.accuracy,
        100.0 * after.accuracy,
        before.loss.unwrap_or(f64::NAN),
        after.loss.unwrap_or(f64::NAN),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), AnyError> {
    let mut args = std::env::args().skip(1);
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("KIP_DATA_DIR").ok_or("pass DATA_DIR or set KIP_DATA_DIR")?),
    };
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let t0 = Instant::now();
    let split = kip_data::resolve("cifar10", Some(&dir))?;
    for note in &split.notes {
        println!("note: {note}");
    }
    println!(
        "loaded CIFAR-10: {} train, {} test ({:.1} s)",
        split.train.len(),
        split.test.len(),
        t0.elapsed().as_secs_f64()
    );

    // 1. All 50,000 training images as the pool, the real test images.
    let transform = Preprocess::Standard.fit(&split.train)?;
    let train = transform.apply(&split.train);
    let test = transform.apply(&split.test);
    run("pool = 50k train, test = real test images", &train, &test, seed)?;
    drop((train, test));

    // 2. Held out: batches 1-4 as the pool, data_batch_5 as the test set.
    let (pool, held_out) = split.train.split_at(40_000);
    let transform = Preprocess::Standard.fit(&pool)?;
    run(
        "pool = batches 1-4 (40k), test = data_batch_5",
        &transform.apply(&pool),
        &transform.apply(&held_out),
        seed,
    )?;
    Ok(())
}
