//! # kip-nn — finite-width fully connected and convolutional networks
//!
//! Trains real (finite-width) ReLU networks to check that a distilled
//! support set *transfers*: KIP learns images (and labels) for the
//! infinite-width NTK/NNGP kernels, and the paper (Nguyen, Chen, Lee,
//! ICLR 2021, §4) trains finite networks on them to see whether the gain
//! survives.
//!
//! - Architectures ([`Arch`]): `depth` hidden layers of `width` units
//!   (FC-L, [`Mlp`]), ReLU, a linear readout to `C` outputs; NTK or
//!   standard [`Parameterization`] with `w_std = √2`, `b_std = 0.1`. Or the
//!   follow-up paper's ConvNet ([`ConvClassifier`], [`train_convnet`]):
//!   Conv 3×3, ReLU, `depth` × [Conv, ReLU, AvgPool 2×2], Flatten, Dense,
//!   `width` channels, NTK parameterisation, `f32`; its body is
//!   `kip_kernels::rf::ConvNet`, the layers of the random-feature kernel.
//! - The field's standard evaluation ([`dc`], `kip transfer --protocol
//!   dc`): DatasetCondensation's ConvNet-3 (width 128, instance norm,
//!   average pooling, PyTorch initialisation) trained on hard labels with
//!   SGD and DSA augmentation, mean over several networks.
//! - Losses: `½·mean` squared error over all `n × C` entries (like the KRR
//!   loss) or softmax cross-entropy ([`Loss`]).
//! - Optimisers: SGD with momentum 0.9 or Adam, with a learning-rate
//!   schedule (`kip_core::LrSchedule`, cosine decay by default);
//!   L2 weight decay on the weights; seeded mini-batches; optional early
//!   stopping on a validation split ([`MlpParams`]).
//! - Optional centring ([`MlpParams::center`]): train `f(x; θ) − f(x; θ₀)`,
//!   whose MSE lazy limit is the NTK regression KIP optimises; needed to
//!   train on small (distilled) sets with MSE.
//! - Precision: training computes in `f32` by default ([`train`],
//!   [`Mlp::new`]): twice the GEMM throughput of `f64` and ample for SGD.
//!   Everything is generic over [`Real`], and `f64` ([`train_in`],
//!   [`Mlp::init`]) is what the gradient check uses. Inputs and reports
//!   are `f64`; inputs are converted once.
//! - Performance: forward and backward are batched GEMMs on the `gemm`
//!   crate (AVX-512 kernels chosen at run time, rayon-parallel) over
//!   zero-copy transposed views; elementwise passes are fused and parallel;
//!   the [`Trainer`] reuses its buffers, so a step allocates nothing.
//!
//! Default learning rates ([`default_lr`]) depend on the parameterisation,
//! loss and optimiser; see there for how they were chosen.
//!
//! # Examples
//!
//! Fit three well-separated clusters:
//!
//! ```
//! use kip_nn::{centered_one_hot, train, MlpParams};
//! use nalgebra::DMatrix;
//!
//! let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
//! let x = DMatrix::from_fn(30, 4, |i, j| {
//!     let wobble = ((i * 7 + j * 3) % 5) as f64 * 0.05;
//!     if j == labels[i] { 1.0 + wobble } else { wobble }
//! });
//! let y = centered_one_hot(&labels, 3);
//! let params = MlpParams { width: 64, steps: 100, batch: 10, ..Default::default() }
//!     .check()?;
//! let report = train(&params, &x, &y, &labels, Some((&x, &labels)))?;
//! assert_eq!(report.test_accuracy, Some(1.0));
//! assert!(report.final_train_loss < 0.05, "{}", report.final_train_loss);
//! assert_eq!(report.model.predict_labels(&x), labels);
//! # Ok::<(), kip_nn::NnError>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod arch;
mod backprop;
mod convnet;
mod convnet_train;
pub mod dc;
mod error;
mod eval;
mod mlp;
mod optim;
mod params;
mod train;
mod transfer;

pub use crate::arch::{Arch, CONVNET_DEFAULT_DEPTH, CONVNET_DEFAULT_WIDTH, MLP_DEFAULT_WIDTH};
pub use crate::convnet::ConvClassifier;
pub use crate::convnet_train::{train_convnet, ConvTrainReport, ConvTrainer};
pub use crate::error::{NnError, Result};
pub use crate::eval::{centered_one_hot, evaluate, Eval};
pub use crate::mlp::{Layer, Mlp};
pub use crate::optim::{ADAM_BETA1, ADAM_BETA2, ADAM_EPS};
pub use crate::params::{default_lr, Loss, MlpParams, Optimizer, Parameterization, ValidParams};
pub use crate::train::{train, train_in, TrainReport, Trainer};
pub use crate::transfer::{transfer, transfer_arch, SeedAccuracies, TransferReport};
pub use kip_core::Real;

/// Deterministic values in [-1, 1] (xorshift): the unit tests' inputs.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}
