//! Kernel ridge regression and Label Solve for kip.
//!
//! Kernel ridge regression (KRR) as used by Kernel Inducing Points (Nguyen,
//! Chen, Lee, "Dataset Meta-Learning from Kernel Ridge-Regression", ICLR
//! 2021): for a support set `(X_s, y_s)` and target points `X_t`,
//!
//! ```text
//! ŷ_t = K_ts (K_ss + λI)⁻¹ y_s,     λ = reg · tr(K_ss)/n_s   (paper Eq. 2)
//! L   = ½ · mean((ŷ_t − y_t)²)                             (the KIP loss, Eq. 3)
//! ```
//!
//! * [`Ridge`]: the trace-scaled ridge (`reg = 1e-6` by default) or an
//!   absolute one.
//! * [`Cholesky`]: faer's blocked LLᵀ of `K + λI` on nalgebra buffers, with
//!   documented jitter retries ([`JITTER_STEPS`]) that are reported, never
//!   silent.
//! * [`fit`] → [`KrrModel`]; [`predict()`] (one GEMM) and [`predict_blocked`]
//!   (a `block × n_s` slice of `K_ts` at a time); [`evaluate`] → [`Eval`].
//! * [`accuracy`] (argmax, ties → lowest class) and [`mse_loss`].
//! * Label Solve ([`label_solve()`], [`LabelSolveAccumulator`],
//!   [`label_solve_streaming`]): `y_s* = (K_ts (K_ss+λI)⁻¹)⁺ y_t`, computed
//!   stably as `(K_ss+λI) K_ts⁺ y_t` from normal equations that can be
//!   accumulated over target blocks.
//!
//! Kernels enter as matrices or through [`kip_kernels::Kernel`].
//!
//! # Examples
//! ```
//! use kip_kernels::{points, Kernel, KernelSpec};
//! use kip_krr::{fit, predict, predict_blocked, Ridge};
//! use nalgebra::DMatrix;
//!
//! let kernel = KernelSpec::fc_ntk(1).build();
//! let x_s = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 0.0, 1.0, -1.0, 0.5]);
//! let y_s = DMatrix::from_row_slice(3, 1, &[1.0, -1.0, 0.5]);
//! let k_ss = kernel.gram_sym(&x_s)?;
//! let model = fit(&k_ss, &y_s, Ridge::Absolute(1e-12))?;
//! // With a vanishing ridge KRR interpolates its support set.
//! let pred = predict(&k_ss, &model.alpha);
//! assert!((&pred - &y_s).abs().max() < 1e-9);
//! // Blocked prediction on new points equals the one-shot product.
//! let x_t = DMatrix::from_row_slice(2, 2, &[0.5, 0.5, -0.2, 1.0]);
//! let one_shot = predict(&kernel.gram(&x_t, &x_s)?, &model.alpha);
//! let blocked = predict_blocked(&kernel, points(&x_s), &model.alpha, points(&x_t), 1)?;
//! assert!((one_shot - blocked).abs().max() < 1e-12);
//! # Ok::<(), kip_krr::KrrError>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cholesky;
pub mod error;
pub mod label_solve;
pub mod metrics;
pub mod predict;
pub mod ridge;

pub use cholesky::{Cholesky, JITTER_STEPS, PARALLEL_MIN_N};
pub use error::{KrrError, Result};
pub use label_solve::{label_solve, label_solve_streaming, LabelSolveAccumulator, LS_REFINEMENTS, LS_TIKHONOV};
pub use metrics::{accuracy, mse_loss};
pub use predict::{evaluate, predict, predict_blocked, Eval};
pub use ridge::{fit, KrrModel, Ridge, DEFAULT_REG};
