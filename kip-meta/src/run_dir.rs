//! The run directory: `config.json`, `metrics.jsonl`, `support.npz`,
//! `support.png`, `checkpoint.bin`, `summary.json`. Every file but the
//! metrics log is written atomically ([`kip_data::write_atomic`]); the log
//! is appended to, and cut back atomically on resume.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kip_data::SupportSet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::RunRecord;
use crate::error::{MetaError, Result};

/// The run's configuration ([`RunRecord`]).
pub const CONFIG: &str = "config.json";
/// Metrics log, one JSON object ([`MetricsLine`]) per line.
pub const METRICS: &str = "metrics.jsonl";
/// The support set.
pub const SUPPORT: &str = "support.npz";
/// Picture of the support set, a row per class.
pub const SUPPORT_PNG: &str = "support.png";
/// The KIP checkpoint ([`crate::checkpoint`]).
pub const CHECKPOINT: &str = "checkpoint.bin";
/// The final summary ([`crate::RunSummary`]).
pub const SUMMARY: &str = "summary.json";

/// One line of `metrics.jsonl`. The first line of a run is its natural
/// baseline (step 0: the test figures of the initial support set); then a
/// line per step; the last line always carries the test figures of the
/// final support set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Steps done.
    pub step: usize,
    /// Loss on the step's target batch (before its update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Accuracy on the step's target batch (before its update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_acc: Option<f64>,
    /// Jitter the step's Cholesky needed, when it needed any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// Test accuracy, on evaluation steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_acc: Option<f64>,
    /// Test loss, on evaluation steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Validation accuracy, on evaluation steps of a run with a validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
    /// Validation loss, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
}

/// A run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RunDir {
    /// Fails if `path` already holds a run (a `config.json` or a
    /// checkpoint); creates nothing.
    ///
    /// # Errors
    /// [`MetaError::RunDir`].
    pub fn ensure_new(path: &Path) -> Result<()> {
        if path.join(CONFIG).exists() || path.join(CHECKPOINT).exists() {
            return Err(MetaError::run_dir(
                path,
                "already holds a run (resume it, or choose another folder)",
            ));
        }
        Ok(())
    }

    /// Creates the folder for a new run.
    ///
    /// # Errors
    /// As [`RunDir::ensure_new`]; [`MetaError::Io`] if it cannot be made.
    pub fn create(path: &Path) -> Result<Self> {
        Self::ensure_new(path)?;
        fs::create_dir_all(path).map_err(io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The run directory at `path`, neither checked nor created (what a
    /// rank that never writes it holds).
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Opens an existing run directory (one with a `config.json`).
    ///
    /// # Errors
    /// [`MetaError::RunDir`] if there is none.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join(CONFIG).is_file() {
            return Err(MetaError::run_dir(
                path,
                format!("not a kip run directory (no {CONFIG})"),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of a file in the run.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a JSON file atomically.
    ///
    /// # Errors
    /// [`MetaError::Data`] when it cannot be written.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("kip's records serialise");
        Ok(kip_data::write_file_atomic(&self.file(name), &bytes)?)
    }

    /// Reads a JSON file.
    ///
    /// # Errors
    /// [`MetaError::Io`]; [`MetaError::BadFile`] for JSON that does not
    /// hold a `T`.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let p = self.file(name);
        let s = fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&s).map_err(|e| MetaError::BadFile {
            path: p.clone(),
            reason: format!("invalid JSON: {e}"),
        })
    }

    /// The run's configuration.
    ///
    /// # Errors
    /// As [`RunDir::read_json`].
    pub fn read_config(&self) -> Result<RunRecord> {
        self.read_json(CONFIG)
    }

    /// Appends one line to `metrics.jsonl`.
    ///
    /// # Errors
    /// [`MetaError::Io`].
    pub fn append_metrics(&self, line: &MetricsLine) -> Result<()> {
        let p = self.file(METRICS);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        let text = serde_json::to_string(line).expect("metrics serialise");
        writeln!(f, "{text}").map_err(io(&p))
    }

    /// The lines of `metrics.jsonl` (none if it does not exist yet).
    ///
    /// # Errors
    /// [`MetaError::Io`]; [`MetaError::BadFile`] naming the first line that
    /// is not a metrics line.
    pub fn read_metrics(&self) -> Result<Vec<MetricsLine>> {
        let p = self.file(METRICS);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&p)(e)),
        };
        text.lines()
            .enumerate()
            .map(|(k, l)| {
                serde_json::from_str(l).map_err(|e| MetaError::BadFile {
                    path: p.clone(),
                    reason: format!("line {}: {e}", k + 1),
                })
            })
            .collect()
    }

    /// Cuts `metrics.jsonl` back to its lines up to step `through` (to
    /// nothing with `None`), atomically; returns the step of the last line
    /// kept. A line that does not parse (one torn by a crash) ends the
    /// kept part.
    ///
    /// # Errors
    /// [`MetaError::Io`], [`MetaError::Data`].
    pub fn truncate_metrics(&self, through: Option<usize>) -> Result<Option<usize>> {
        let p = self.file(METRICS);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&p)(e)),
        };
        let mut kept = String::new();
        let mut last = None;
        for l in text.lines() {
            let Ok(line) = serde_json::from_str::<MetricsLine>(l) else {
                break;
            };
            if through.is_none_or(|t| line.step > t) {
                break;
            }
            kept.push_str(l);
            kept.push('\n');
            last = Some(line.step);
        }
        kip_data::write_file_atomic(&p, kept.as_bytes())?;
        Ok(last)
    }

    /// Writes `support.npz` and `support.png`: the pixel-scale images
    /// (`x`) with [`PngScale::Pixels`](kip_data::PngScale), the model-space
    /// ones (`x_model`) each on its own scale with
    /// [`PngScale::PerImage`](kip_data::PngScale) (ZCA runs:
    /// [`kip_data::Prepared::display`]).
    ///
    /// # Errors
    /// [`MetaError::Data`].
    pub fn write_support(&self, s: &SupportSet, display: kip_data::PngScale) -> Result<()> {
        s.write_npz(&self.file(SUPPORT))?;
        let x = match display {
            kip_data::PngScale::Pixels { .. } => &s.x_pixels,
            kip_data::PngScale::PerImage => &s.x_model,
        };
        let (n, d) = x.shape();
        let rows: Vec<f64> = (0..n * d).map(|k| x[(k / d, k % d)]).collect();
        kip_data::write_png_grid(
            &self.file(SUPPORT_PNG),
            &rows,
            s.shape,
            &s.labels,
            s.class_names.len(),
            display,
        )?;
        Ok(())
    }

    /// Reads `support.npz`.
    ///
    /// # Errors
    /// [`MetaError::RunDir`] if the run has not written one yet;
    /// [`MetaError::Data`] if it does not read.
    pub fn read_support(&self) -> Result<SupportSet> {
        let p = self.file(SUPPORT);
        if !p.is_file() {
            return Err(MetaError::run_dir(
                &self.path,
                format!("no {SUPPORT} yet (the run has not written a support set)"),
            ));
        }
        Ok(SupportSet::read_npz(&p)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: usize) -> MetricsLine {
        MetricsLine {
            step,
            loss: Some(0.5),
            target_acc: Some(0.25),
            jitter: None,
            test_acc: None,
            test_loss: None,
            val_acc: None,
            val_loss: None,
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn metrics_append_read_and_truncate() {
        let t = tempfile::tempdir().unwrap();
        let dir = RunDir::create(&t.path().join("run")).unwrap();
        for s in 0..5 {
            dir.append_metrics(&line(s)).unwrap();
        }
        let text = fs::read_to_string(dir.file(METRICS)).unwrap();
        assert!(!text.contains("jitter") && !text.contains("null"), "{text}");
        assert_eq!(dir.read_metrics().unwrap().len(), 5);
        assert_eq!(dir.truncate_metrics(Some(2)).unwrap(), Some(2));
        assert_eq!(dir.read_metrics().unwrap(), vec![line(0), line(1), line(2)]);
        // A torn last line (a crash mid-append) is dropped with what follows.
        let mut f = fs::OpenOptions::new().append(true).open(dir.file(METRICS)).unwrap();
        write!(f, "{{\"step\":3,\"lo").unwrap();
        assert_eq!(dir.truncate_metrics(Some(10)).unwrap(), Some(2));
        assert_eq!(dir.truncate_metrics(None).unwrap(), None);
        assert!(dir.read_metrics().unwrap().is_empty());
    }

    #[test]
    fn a_folder_with_a_run_is_not_new_and_one_without_is_not_a_run() {
        let t = tempfile::tempdir().unwrap();
        let e = RunDir::open(t.path()).unwrap_err().to_string();
        assert!(e.contains("not a kip run directory"), "{e}");
        fs::write(t.path().join(CONFIG), "{}").unwrap();
        let e = RunDir::create(t.path()).unwrap_err().to_string();
        assert!(e.contains("already holds a run"), "{e}");
        let e = RunDir::open(t.path()).unwrap().read_support().unwrap_err().to_string();
        assert!(e.contains("no support.npz yet"), "{e}");
    }
}
