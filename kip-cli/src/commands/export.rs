//! `kip export`: a run's support set in another tool's format.

use crate::cli::ExportArgs;
use crate::commands::{load, open_run};
use crate::error::{CliError, Result};

/// The formats `--format` accepts.
const FORMATS: &str = "dc-bench";

pub fn run(a: ExportArgs) -> Result<i32> {
    if a.format != "dc-bench" {
        return Err(CliError::flag(
            &format!("--format {}", a.format),
            format!("unknown format: expected {FORMATS}"),
        ));
    }
    kip_data::check_writable(&a.out)?;
    let (dir, record) = open_run(&a.run, a.data_dir.clone())?;
    let support = dir.read_support()?;
    let spec = record.data();
    let preprocess = spec.preprocess.to_string();
    // Standardisation's channel statistics come from a refit on the run's
    // training split (the same split, so the same numbers); ZCA is named
    // by its strength only.
    let prep = if preprocess == "standard" {
        Some(load(spec)?)
    } else {
        None
    };
    support.write_dc_bench(&a.out, &preprocess, prep.as_ref().map(|p| &p.transform))?;
    eprintln!(
        "wrote {} ({} images {}, one-hot labels, preprocessing {preprocess})",
        a.out.display(),
        support.labels.len(),
        support.shape
    );
    Ok(0)
}
