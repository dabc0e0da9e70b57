//! Kernel Inducing Points (KIP): learn a small support set on which kernel
//! ridge regression predicts a large training set well (Nguyen, Chen, Lee,
//! "Dataset Meta-Learning from Kernel Ridge-Regression", ICLR 2021).
//!
//! * [`kip_loss`] / [`kip_loss_grad`]: the loss ½·mean((K_ts (K_ss+λI)⁻¹
//!   y_s − y_t)²) and its exact gradient with respect to the support images
//!   and labels.
//! * [`Kip`]: one step at a time (fresh class-balanced target batch, Adam,
//!   optional label learning, corrupted pixels, kernel sampling), its state
//!   a [`KipState`] that [`checkpoint`]s save and restore exactly.
//! * [`evaluate_support`] (KRR test accuracy of any support set) and
//!   [`label_solve`] (its best labels in closed form, every training image
//!   a target).
//! * [`Runner`]: a whole run in a run directory ([`RunDir`]): the typed
//!   [`RunConfig`] in `config.json`, the metrics log, evaluation and
//!   checkpoint cadence, resume (bitwise the same trajectory) and recovery
//!   after a failed step; an [`Observer`] watches it and may stop it.
//!
//! A checkpointed distillation on the embedded digits set, stopped and
//! resumed:
//!
//! ```
//! use kip_meta::{KipParams, Resume, RunConfig, RunOutcome, Runner};
//!
//! let tmp = tempfile::tempdir()?;
//! let dir = tmp.path().join("run");
//! let kip = KipParams { n_support: 10, n_target: 300, steps: 20, ..KipParams::default() };
//! let config = RunConfig { kip, checkpoint_every: 10, eval_every: 10, ..RunConfig::default() };
//! Runner::create(&dir, config)?.run(&mut ())?;
//! // Later: ten more steps from the checkpoint.
//! let resumed = Runner::resume(&dir, Resume { steps: Some(30), ..Resume::default() })?.run(&mut ())?;
//! let RunOutcome::Finished(summary) = resumed else { unreachable!("nothing stops it") };
//! assert_eq!(summary.steps, 30);
//! assert!(summary.final_test_acc > summary.init_test_acc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod adam;
pub mod best;
pub mod checkpoint;
pub mod collective;
mod config;
mod error;
mod evaluate;
mod loss;
mod objective;
mod params;
mod run_dir;
mod runner;
mod step;

pub use adam::{AdamParams, AdamState};
pub use best::{Best, BEST, BEST_DIR};
pub use collective::{single_process, Collective, Ranks, SingleProcess};
pub use config::{LabelSolveConfig, RunConfig, RunRecord};
pub use error::{MetaError, Result};
pub use evaluate::{evaluate_support, evaluate_support_on, label_solve, label_solve_on};
pub use loss::{
    kip_loss, kip_loss_grad, kip_loss_grad_objective, kip_loss_grad_sharded, KipWorkspace, LossGrad, LossStats, Shards,
};
pub use objective::{Loss, Objective};
pub use params::{default_target_batch, Init, KipParams, LrSchedule, Precision, ValidKipParams, DEFAULT_STEPS};
pub use run_dir::{MetricsLine, RunDir, CHECKPOINT, CONFIG, METRICS, SUMMARY, SUPPORT, SUPPORT_PNG};
pub use runner::{Observer, Resume, RunOutcome, RunStart, RunSummary, Runner, Start};
pub use step::{Kip, KipState, StepInfo};
