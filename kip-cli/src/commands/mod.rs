//! One module per subcommand.

mod distill;
mod eval;
mod inspect;
mod label_solve;
mod transfer;

use crate::cli::Command;
use crate::error::Result;

/// Run a subcommand; returns the process exit code.
pub fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Distill(a) => distill::run(a),
        Command::LabelSolve(a) => label_solve::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Transfer(a) => transfer::run(a),
        Command::Inspect(a) => inspect::run(a),
    }
}

/// The data settings a run directory was made with (`--data-dir` overrides).
pub(crate) fn run_data(
    cfg: &serde_json::Value,
    dir: &crate::rundir::RunDir,
    data_dir: Option<std::path::PathBuf>,
) -> Result<crate::cli::DataArgs> {
    let bad = |what: &str| {
        crate::error::CliError::Runtime(format!("{}: missing {what}", dir.file(crate::rundir::CONFIG).display()))
    };
    Ok(crate::cli::DataArgs {
        dataset: cfg["dataset"].as_str().ok_or_else(|| bad("dataset"))?.to_string(),
        data_dir: data_dir.or_else(|| cfg["data_dir"].as_str().map(Into::into)),
        preprocess: cfg["preprocess"].as_str().ok_or_else(|| bad("preprocess"))?.to_string(),
        holdout: cfg["holdout"].as_u64().ok_or_else(|| bad("holdout"))? as usize,
    })
}
