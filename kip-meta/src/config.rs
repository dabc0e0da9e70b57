//! What a run directory's `config.json` holds: everything needed to rerun
//! (or resume) the run, typed.

use std::path::PathBuf;

use kip_data::DataSpec;
use serde::{Deserialize, Serialize};

use crate::error::{MetaError, Result};
use crate::params::KipParams;

/// The version of kip writing a configuration.
fn this_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn default_every() -> usize {
    100
}

fn default_eval_block() -> usize {
    2000
}

/// A KIP run: the data, the KIP parameters, and the run's cadence.
///
/// | field | default | meaning | range |
/// |---|---|---|---|
/// | `data` | digits, standardised | [`DataSpec`] | |
/// | `kip` | [`KipParams::default`] | the algorithm's parameters (`kip.steps` is the run's length) | see [`KipParams`] |
/// | `eval_every` | 100 | test evaluation period in steps (0: only at the start and end) | any |
/// | `checkpoint_every` | 100 | checkpoint period in steps (0: only at the end) | any |
/// | `eval_block` | 2000 | test rows per kernel block during evaluation | ≥ 1 |
///
/// `version`, `train_size`, `test_size` and `image_shape` are recorded when
/// the run is created ([`crate::Runner::create`]); a resumed run checks
/// that its data still has these sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// kip version that created the run.
    #[serde(default = "this_version")]
    pub version: String,
    /// Which data, and how it is prepared.
    #[serde(flatten)]
    pub data: DataSpec,
    /// The KIP parameters.
    pub kip: KipParams,
    /// Test evaluation period in steps (0: only at the start and end).
    #[serde(default = "default_every")]
    pub eval_every: usize,
    /// Checkpoint period in steps (0: only at the end).
    #[serde(default = "default_every")]
    pub checkpoint_every: usize,
    /// Test rows per kernel block during evaluation.
    #[serde(default = "default_eval_block")]
    pub eval_block: usize,
    /// Keep, beside the latest state, the support set with the best
    /// validation accuracy of the evaluations so far, in `best/`
    /// ([`crate::best`]); `summary.json` reports its step and test
    /// accuracy. Needs a validation split (`data.val`) and `eval_every`
    /// ≥ 1 (absent in older run configurations: off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_best: bool,
    /// Training images (recorded at creation).
    #[serde(default)]
    pub train_size: usize,
    /// Test images (recorded at creation).
    #[serde(default)]
    pub test_size: usize,
    /// `[h, w, c]` of the images (recorded at creation).
    #[serde(default)]
    pub image_shape: [usize; 3],
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            version: this_version(),
            data: DataSpec::default(),
            kip: KipParams::default(),
            eval_every: default_every(),
            checkpoint_every: default_every(),
            eval_block: default_eval_block(),
            keep_best: false,
            train_size: 0,
            test_size: 0,
            image_shape: [0; 3],
        }
    }
}

impl RunConfig {
    /// Checks the cadence (the KIP parameters are checked by
    /// [`KipParams::check`]).
    ///
    /// # Errors
    /// [`MetaError::Param`] for `eval_block = 0`.
    pub fn check_cadence(&self) -> Result<()> {
        if self.eval_block == 0 {
            return Err(MetaError::param("eval_block", 0, ">= 1"));
        }
        if self.keep_best && self.data.val == 0 {
            return Err(MetaError::param(
                "keep_best",
                "val",
                "a validation split to choose on (val >= 1): the best set is never chosen on the test split",
            ));
        }
        if self.keep_best && self.eval_every == 0 {
            return Err(MetaError::param(
                "keep_best",
                "val",
                "evaluations to choose among (eval_every >= 1)",
            ));
        }
        Ok(())
    }
}

/// A Label Solve: the data, the kernel and where the support images came
/// from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelSolveConfig {
    /// kip version that made it.
    #[serde(default = "this_version")]
    pub version: String,
    /// Which data, and how it is prepared.
    #[serde(flatten)]
    pub data: DataSpec,
    /// Kernel spec.
    pub kernel: String,
    /// Ridge relative to `tr(K_ss)/n_s`.
    pub reg: f64,
    /// Seed of the support sample (when not taken from a run).
    pub seed: u64,
    /// Support images.
    pub support: usize,
    /// The run whose support images were used, if any.
    #[serde(default)]
    pub from_run: Option<PathBuf>,
}

/// A run directory's `config.json`: which command made it, and with what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command")]
// Read once per command and matched by value everywhere: a box would buy
// nothing but indirection.
#[allow(clippy::large_enum_variant)]
pub enum RunRecord {
    /// `kip distill` (a [`crate::Runner`] run).
    #[serde(rename = "distill")]
    Distill(RunConfig),
    /// `kip label-solve`.
    #[serde(rename = "label-solve")]
    LabelSolve(LabelSolveConfig),
}

impl RunRecord {
    /// The data the run used.
    pub fn data(&self) -> &DataSpec {
        match self {
            RunRecord::Distill(c) => &c.data,
            RunRecord::LabelSolve(c) => &c.data,
        }
    }

    /// The data the run used, mutably (e.g. to point at another data
    /// folder).
    pub fn data_mut(&mut self) -> &mut DataSpec {
        match self {
            RunRecord::Distill(c) => &mut c.data,
            RunRecord::LabelSolve(c) => &mut c.data,
        }
    }

    /// The kernel its support set is evaluated with (a KIP run's first).
    pub fn eval_kernel(&self) -> &str {
        match self {
            RunRecord::Distill(c) => c
                .kip
                .eval_kernel
                .as_deref()
                .unwrap_or_else(|| c.kip.kernels.first().map_or("fc1-ntk", String::as_str)),
            RunRecord::LabelSolve(c) => &c.kernel,
        }
    }

    /// Its relative ridge.
    pub fn reg(&self) -> f64 {
        match self {
            RunRecord::Distill(c) => c.kip.reg,
            RunRecord::LabelSolve(c) => c.reg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_their_command_tag() {
        let d = RunRecord::Distill(RunConfig::default());
        let text = serde_json::to_string(&d).unwrap();
        assert!(
            text.contains(r#""command":"distill""#) && text.contains(r#""dataset":"digits""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<RunRecord>(&text).unwrap(), d);
        let ls = RunRecord::LabelSolve(LabelSolveConfig {
            version: "0.1.0".into(),
            data: DataSpec::default(),
            kernel: "fc3-ntk".into(),
            reg: 1e-4,
            seed: 2,
            support: 50,
            from_run: None,
        });
        let text = serde_json::to_string(&ls).unwrap();
        let back: RunRecord = serde_json::from_str(&text).unwrap();
        assert_eq!((back.eval_kernel(), back.reg()), ("fc3-ntk", 1e-4));
    }

    /// The layout written by kip 0.1.0 before the configuration was typed.
    #[test]
    fn earlier_configurations_still_read() {
        let old = r#"{"checkpoint_every":100,"command":"distill","data_dir":null,"dataset":"digits",
            "eval_every":100,"holdout":0,"image_shape":[8,8,1],
            "kip":{"adam":{"b1":0.9,"b2":0.999,"eps":1e-8,"first_step_index":1,"lr":0.01},"corrupt":0.0,
                   "init":"Real","kernels":["fc1-ntk"],"learn_labels":false,"lr_schedule":"Constant",
                   "n_support":10,"n_target":1270,"precision":"F64","reg":1e-6,"seed":0,"steps":300},
            "preprocess":"standard","test_size":359,"train_size":1438,"version":"0.1.0"}"#;
        let RunRecord::Distill(c) = serde_json::from_str::<RunRecord>(old).unwrap() else {
            panic!("a distill record")
        };
        assert_eq!((c.kip.n_target, c.train_size, c.eval_block), (1270, 1438, 2000));
        let old_ls = r#"{"command":"label-solve","version":"0.1.0","dataset":"mnist","data_dir":"/d",
            "preprocess":"standard","holdout":0,"kernel":"fc1-ntk","reg":1e-6,"seed":0,"support":100,
            "from_run":null,"kip":{"kernels":["fc1-ntk"],"reg":1e-6}}"#;
        let r: RunRecord = serde_json::from_str(old_ls).unwrap();
        assert_eq!(r.data().dataset, "mnist");
    }
}
