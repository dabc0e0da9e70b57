//! Checkpoint selection on validation ([`RunConfig::keep_best`]): beside
//! the latest state, a run keeps the support set whose validation accuracy
//! was the best of its evaluations so far, in the folder `best/` of the run
//! directory — the honest form of early stopping (chosen on `val`, never
//! on the test split).
//!
//! `best/` holds `support.npz`, `support.png`, a copy of the run's
//! `config.json` (so `kip eval RUN/best` and `kip transfer RUN/best` read
//! it as they read a run) and [`BEST`] last, which names the step, both
//! accuracies and a hash of the `support.npz` it describes. Each file is
//! written atomically; a `best.json` whose hash does not match its
//! `support.npz` (a crash between the two writes) counts as no best, and
//! the next evaluation writes both again.
//!
//! [`RunConfig::keep_best`]: crate::RunConfig::keep_best

use std::path::Path;

use kip_data::SupportSet;
use kip_krr::Eval;
use serde::{Deserialize, Serialize};

use crate::checkpoint::fnv1a;
use crate::config::{RunConfig, RunRecord};
use crate::error::{MetaError, Result};
use crate::run_dir::{RunDir, CONFIG, SUPPORT};

/// The folder of the best-on-validation support set, in the run directory.
pub const BEST_DIR: &str = "best";
/// The record of the best set, in [`BEST_DIR`].
pub const BEST: &str = "best.json";

/// The support set with the best validation accuracy so far: when, and how
/// it scores. `summary.json` reports it as `best`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The step it was evaluated at (0: the initial set).
    pub step: usize,
    /// Its validation accuracy (what chose it).
    pub val_acc: f64,
    /// Its test accuracy (reported, never used to choose).
    pub test_acc: f64,
    /// Its test loss.
    pub test_loss: Option<f64>,
}

/// What `best.json` holds: the record and the hash of its `support.npz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct BestFile {
    #[serde(flatten)]
    best: Best,
    /// FNV-1a of the `support.npz` bytes it describes, 16 hex digits.
    support_fnv: String,
}

fn hash_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| MetaError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:016x}", fnv1a(&bytes)))
}

/// The best set recorded in `dir`'s [`BEST_DIR`], if there is a readable
/// record that matches its `support.npz` (else `None`: the next
/// evaluation writes one).
pub(crate) fn load(dir: &RunDir) -> Option<Best> {
    let best = RunDir::at(&dir.file(BEST_DIR));
    let file: BestFile = best.read_json(BEST).ok()?;
    let hash = hash_of(&best.file(SUPPORT)).ok()?;
    (hash == file.support_fnv).then_some(file.best)
}

/// Whether an evaluation with validation figures `val` beats `current`
/// (strictly: on ties the earlier set stays).
pub(crate) fn improves(current: Option<&Best>, val: Option<Eval>) -> bool {
    match (current, val) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(b), Some(v)) => v.accuracy > b.val_acc,
    }
}

/// Writes `support` as the best set of the run in `dir`, with its record.
///
/// # Errors
/// Write failures.
pub(crate) fn save(
    dir: &RunDir,
    config: &RunConfig,
    support: &SupportSet,
    display: kip_data::PngScale,
    best: Best,
) -> Result<()> {
    let path = dir.file(BEST_DIR);
    std::fs::create_dir_all(&path).map_err(|source| MetaError::Io {
        path: path.clone(),
        source,
    })?;
    let folder = RunDir::at(&path);
    folder.write_support(support, display)?;
    folder.write_json(CONFIG, &RunRecord::Distill(config.clone()))?;
    let file = BestFile {
        best,
        support_fnv: hash_of(&folder.file(SUPPORT))?,
    };
    folder.write_json(BEST, &file)
}

/// Whether `dir` is the [`BEST_DIR`] of a run (it holds a [`BEST`]): a
/// snapshot to evaluate, not a run to resume.
pub(crate) fn is_snapshot(dir: &Path) -> bool {
    dir.join(BEST).is_file()
}
