//! One module per subcommand, and the data loading they share.

mod distill;
mod eval;
mod export;
mod gram;
mod inspect;
mod label_solve;
mod reproduce;
mod transfer;

use std::path::PathBuf;

use kip_data::{DataError, DataSpec, Prepared};
use kip_meta::Ranks;

use crate::cli::{Cli, Command, DataArgs};
use crate::error::{CliError, Result};

/// The most `--threads` accepted: 8 per core, at least [`MIN_THREAD_CAP`]
/// (thousands of threads hung the pool's start).
const THREADS_PER_CORE: usize = 8;
/// The thread cap of small machines.
const MIN_THREAD_CAP: usize = 256;

/// Size the thread pool, run a subcommand; returns the process exit code.
pub fn run(cli: Cli, ranks: &Ranks) -> Result<i32> {
    kip_core::simd_cap().map_err(CliError::Usage)?;
    if let Ok(v) = std::env::var(kip_core::MEMORY_ENV) {
        if kip_core::parse_limit(&v).is_none() {
            return Err(CliError::Usage(format!(
                "{}={}: expected bytes, or a number with a K, M, G or T suffix (e.g. 8G)",
                kip_core::MEMORY_ENV,
                kip_core::ellipsize(&v, 40)
            )));
        }
    }
    if let Some(n) = cli.threads {
        if n == 0 {
            return Err(CliError::flag(
                "--threads 0",
                "expected >= 1 (omit --threads to use all cores)",
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let cap = cores.saturating_mul(THREADS_PER_CORE).max(MIN_THREAD_CAP);
        if n > cap {
            let s = if cores == 1 { "" } else { "s" };
            return Err(CliError::flag(
                &format!("--threads {n}"),
                format!(
                    "expected at most {cap} (this machine has {cores} core{s}; the cap is {THREADS_PER_CORE} per core, at least {MIN_THREAD_CAP})"
                ),
            ));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::flag(&format!("--threads {n}"), e))?;
    }
    dispatch(cli.command, ranks)
}

/// Run one subcommand.
fn dispatch(command: Command, ranks: &Ranks) -> Result<i32> {
    match command {
        Command::Reproduce(a) => reproduce::run(a, ranks),
        Command::Distill(a) => distill::run(a, ranks),
        Command::LabelSolve(a) => label_solve::run(a, ranks),
        Command::Eval(a) => eval::run(a, ranks),
        Command::Transfer(a) => transfer::run(a),
        Command::Export(a) => export::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Gram(a) => gram::run(a),
    }
}

/// The data flags as the library's [`DataSpec`].
fn data_spec(args: &DataArgs) -> Result<DataSpec> {
    Ok(DataSpec {
        dataset: args.dataset.clone(),
        data_dir: args.data_dir.clone(),
        preprocess: args.preprocess.parse().map_err(|e| CliError::flag("--preprocess", e))?,
        holdout: args.holdout,
        val: args.val,
    })
}

/// Check that the files are there (cheap), then load and prepare.
fn load(spec: &DataSpec) -> Result<Prepared> {
    spec.check_available().map_err(|e| match e {
        // A missing `npz:PATH` file is a usage error like a missing dataset folder.
        DataError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::flag(&format!("--dataset {}", spec.dataset), e)
        }
        e => e.into(),
    })?;
    Ok(spec.load()?)
}

/// The default output folder `runs/<stem>-<unix time>`.
fn default_out(stem: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{}-{t}", stem.replace(':', "_")))
}

/// A run directory's record, with its data folder replaced by `data_dir`
/// when given.
fn open_run(run: &std::path::Path, data_dir: Option<PathBuf>) -> Result<(kip_meta::RunDir, kip_meta::RunRecord)> {
    let dir = kip_meta::RunDir::open(run)?;
    let mut record = dir.read_config()?;
    if data_dir.is_some() {
        record.data_mut().data_dir = data_dir;
    }
    Ok((dir, record))
}

/// `--reg` and `--block` (or `--eval-block`) before any data is read.
fn check_reg_and_block(reg: f64, block: usize) -> Result<()> {
    kip_krr::Ridge::Relative(reg).check()?;
    if block == 0 {
        return Err(CliError::flag("--block 0", "expected >= 1"));
    }
    Ok(())
}
