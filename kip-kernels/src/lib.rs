//! Analytic infinite-width network kernels with exact gradients.
//!
//! Kernels of fully connected networks in the infinite-width limit (NNGP and
//! NTK, ReLU and Erf, any depth, NTK parameterisation exactly as
//! `neural_tangents.stax`), plus RBF and linear kernels. Each comes with its
//! vector-Jacobian product with respect to its inputs, derived by hand (no
//! autodiff), which is what Kernel Inducing Points (Nguyen, Chen, Lee,
//! ICLR 2021) differentiates through.
//!
//! The hot path is one GEMM (the `gemm` crate through `kip-core`, AVX-512
//! or AVX2 chosen at run time) and one fused, vectorised, parallel
//! elementwise pass per Gram matrix.
//!
//! ```
//! use kip_kernels::{Kernel, KernelSpec};
//! use nalgebra::DMatrix;
//!
//! let kernel = "fc1-ntk".parse::<KernelSpec>()?.build();
//! let x = DMatrix::from_row_slice(2, 3, &[1.0, 0.0, -1.0, 0.5, 2.0, 0.0]);
//! let k = kernel.gram_sym(&x)?;
//! // Diagonal of the FC1 ReLU NTK: q = 2·‖x‖²/d + 0.01, K = 2·(q/2) + 0.01 + 2·q·½.
//! let q = 2.0 * 2.0 / 3.0 + 0.01;
//! assert!((k[(0, 0)] - (q + 0.01 + q)).abs() < 1e-12);
//! // Gradient of sum(K) with respect to the points.
//! let g = DMatrix::from_element(2, 2, 1.0);
//! let dx = kernel.vjp_sym(&x, &g)?;
//! assert_eq!(dx.shape(), (2, 3));
//! # Ok::<(), kip_kernels::KernelError>(())
//! ```

#![warn(missing_docs)]

mod any_kernel;
mod conv;
mod error;
mod fc;
mod kernel;
mod linear;
mod linearization;
mod norms;
mod points;
mod rbf;
pub mod rf;
mod simd;
mod spec;
mod tiles;
mod vjp;

pub use any_kernel::{kernel_from_str, AnyKernel, DotSpecKernel};
pub use conv::{ConvArch, ConvKernel, ConvLayer, ImageShape};
pub use error::{KernelError, Result};
pub use fc::{Activation, FcKind, FcParams, PartialsMut};
pub use kernel::{DotKernel, FeatureKernel, Kernel};
pub use linearization::Linearization;
pub use norms::row_norms;
pub use points::{points, points_row_major, AnyPoints, NormedPoints, PointsF32, PointsView};
pub use rf::{RfKernel, RfSpec};
pub use spec::KernelSpec;
