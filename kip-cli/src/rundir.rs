//! The run directory: config.json, metrics.jsonl, support.npz, support.png,
//! checkpoint.bin, summary.json. Every file but the metrics log is written
//! atomically (temporary file + rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kip_data::SupportSet;
use serde_json::Value;

use crate::error::{io, CliError, Result};

/// Names of the files in a run directory.
pub const CONFIG: &str = "config.json";
/// Metrics log, one JSON object per line.
pub const METRICS: &str = "metrics.jsonl";
/// The support set.
pub const SUPPORT: &str = "support.npz";
/// Picture of the support set.
pub const SUPPORT_PNG: &str = "support.png";
/// The KIP checkpoint.
pub const CHECKPOINT: &str = "checkpoint.bin";
/// The final summary.
pub const SUMMARY: &str = "summary.json";

/// A run directory.
pub struct RunDir {
    /// Its path.
    pub path: PathBuf,
}

impl RunDir {
    /// Create (or open) the directory.
    pub fn create(path: &Path) -> Result<Self> {
        fs::create_dir_all(path).map_err(io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Open an existing run directory.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join(CONFIG).is_file() {
            return Err(CliError::Usage(format!(
                "{}: not a kip run directory (no {CONFIG})",
                path.display()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Path of a file in the run.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write a JSON file atomically.
    pub fn write_json(&self, name: &str, v: &Value) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(v).expect("JSON serialises");
        kip_meta::checkpoint::write_atomic(&self.file(name), &bytes)?;
        Ok(())
    }

    /// Read a JSON file.
    pub fn read_json(&self, name: &str) -> Result<Value> {
        let p = self.file(name);
        let s = fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&s).map_err(|e| CliError::Runtime(format!("{}: invalid JSON: {e}", p.display())))
    }

    /// Append one line to metrics.jsonl.
    pub fn append_metrics(&self, v: &Value) -> Result<()> {
        let p = self.file(METRICS);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        writeln!(f, "{v}").map_err(io(&p))
    }

    /// Drop metrics lines past `step` (after resuming from a checkpoint);
    /// returns the step of the last line kept (`None`: no line).
    pub fn truncate_metrics(&self, step: usize) -> Result<Option<usize>> {
        let p = self.file(METRICS);
        let Ok(s) = fs::read_to_string(&p) else { return Ok(None) };
        let mut last = None;
        let kept: Vec<&str> = s
            .lines()
            .filter(|l| {
                let st = serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .map(|st| st as usize)
                    .filter(|&st| st <= step);
                if st.is_some() {
                    last = st;
                }
                st.is_some()
            })
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        kip_meta::checkpoint::write_atomic(&p, text.as_bytes())?;
        Ok(last)
    }

    /// Write support.npz and support.png.
    pub fn write_support(&self, s: &SupportSet, pixel_max: f64) -> Result<()> {
        s.write_npz(&self.file(SUPPORT))?;
        let (n, d) = s.x_pixels.shape();
        let rows: Vec<f64> = (0..n * d).map(|k| s.x_pixels[(k / d, k % d)]).collect();
        kip_data::write_png_grid(
            &self.file(SUPPORT_PNG),
            &rows,
            s.shape,
            &s.labels,
            s.class_names.len(),
            pixel_max,
        )?;
        Ok(())
    }
}
