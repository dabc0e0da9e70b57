//! Kernel Inducing Points (KIP): learn a small support set on which kernel
//! ridge regression predicts a large training set well (Nguyen, Chen, Lee,
//! "Dataset Meta-Learning from Kernel Ridge-Regression", ICLR 2021).
//!
//! * [`kip_loss_grad`]: the loss ½·mean((K_ts (K_ss+λI)⁻¹ y_s − y_t)²) and
//!   its exact gradient with respect to the support images and labels.
//! * [`Kip`]: the loop (fresh class-balanced target batch each step, Adam,
//!   optional label learning, corruption, kernel sampling), with
//!   [`checkpoint`]s that resume the identical trajectory.
//!
//! ```
//! use kip_meta::{Kip, KipParams};
//!
//! let split = kip_data::digits();
//! let t = kip_data::Preprocess::Standard.fit(&split.train)?;
//! let (train, test) = (t.apply(&split.train), t.apply(&split.test));
//! let params = KipParams { n_support: 10, n_target: 200, steps: 20, ..KipParams::default() }.check()?;
//! let mut kip = Kip::new(params, train)?;
//! let x_test = test.to_matrix();
//! let before = kip.evaluate(kip_kernels::points(&x_test), test.labels(), 1000)?;
//! for _ in 0..20 {
//!     kip.step()?;
//! }
//! let after = kip.evaluate(kip_kernels::points(&x_test), test.labels(), 1000)?;
//! assert!(after.accuracy > before.accuracy);
//! # Ok::<(), kip_meta::MetaError>(())
//! ```

#![warn(missing_docs)]

pub mod adam;
pub mod checkpoint;
mod error;
mod kip;
mod loss;
mod params;

pub use adam::{AdamParams, AdamState};
pub use error::{MetaError, Result};
pub use kip::{Kip, KipState, StepInfo};
pub use loss::{kip_loss_grad, KipWorkspace, LossStats};
pub use params::{Init, KipParams, LrSchedule, Precision, ValidKipParams};
