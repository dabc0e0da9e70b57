//! [`Arch`]: which finite network [`transfer_arch`](crate::transfer_arch)
//! trains, with the per-architecture defaults and the checks that tie an
//! architecture to the data's image shape.

use std::fmt;
use std::str::FromStr;

use kip_core::ImageShape;

use crate::error::{NnError, Result};
use crate::params::{default_lr, Loss, Optimizer, Parameterization, ValidParams};

/// Default hidden units of the fully connected network
/// ([`MlpParams::width`](crate::MlpParams::width)'s default).
pub const MLP_DEFAULT_WIDTH: usize = 1024;
/// Default `[Conv, ReLU, AvgPool]` blocks of the ConvNet (the follow-up
/// paper's ConvNet-3, for 32×32 images).
pub const CONVNET_DEFAULT_DEPTH: usize = 3;
/// Default channels per Conv of the ConvNet.
pub const CONVNET_DEFAULT_WIDTH: usize = 128;

/// The architecture of a finite network.
///
/// | variant | layers | `width` means |
/// |---|---|---|
/// | `Mlp` | [`MlpParams::depth`](crate::MlpParams::depth) × [Dense, ReLU], Dense | hidden units |
/// | `ConvNet { depth }` | Conv, ReLU, `depth` × [Conv, ReLU, AvgPool 2×2], Flatten, Dense | channels per Conv |
///
/// The ConvNet is the follow-up paper's (Nguyen, Novak, Xiao, Lee 2021,
/// "Dataset Distillation with Infinitely Wide Convolutional Networks"):
/// Conv 3×3 SAME, AvgPool 2×2 stride 2, NTK parameterisation
/// ([`ConvClassifier`](crate::ConvClassifier)); the infinite-width limit of
/// its depth-`L` form is the `convnetL-ntk` kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// Fully connected ReLU network ([`Mlp`](crate::Mlp)).
    #[default]
    Mlp,
    /// ConvNet with `depth` pooling blocks ([`ConvClassifier`](crate::ConvClassifier));
    /// every block halves the image, so `depth ≤ ⌊log₂ min(h, w)⌋`.
    ConvNet {
        /// `[Conv, ReLU, AvgPool]` blocks after the first Conv, ReLU.
        depth: usize,
    },
}

impl Arch {
    /// The default `width`: [`MLP_DEFAULT_WIDTH`] hidden units or
    /// [`CONVNET_DEFAULT_WIDTH`] channels.
    pub fn default_width(self) -> usize {
        match self {
            Arch::Mlp => MLP_DEFAULT_WIDTH,
            Arch::ConvNet { .. } => CONVNET_DEFAULT_WIDTH,
        }
    }

    /// The learning rate used when [`MlpParams::lr`](crate::MlpParams::lr)
    /// is `None`: [`default_lr`] for both architectures (the ConvNet with
    /// the NTK parameterisation it has): SGD 10 with MSE, 3 with
    /// cross-entropy, Adam 1e-2.
    ///
    /// For the ConvNet these were checked by sweeps (300 steps, batch 100,
    /// `docs/transfer.md`): on the embedded digits (depths 0–3, width 64)
    /// and on CIFAR-10 (ZCA, depths 1 and 3, width 32; NTK
    /// parameterisation makes the stable range width-independent). SGD
    /// with MSE: best at 10–30, first failure at 30 (depths 0–1) or 100
    /// (depth 3 on CIFAR); SGD with cross-entropy: best at 3–10, failure
    /// at 30; Adam: best at 1e-2–3e-2.
    pub fn default_lr(self, param: Parameterization, optimizer: Optimizer, loss: Loss) -> f64 {
        match self {
            Arch::Mlp => default_lr(param, optimizer, loss),
            Arch::ConvNet { .. } => default_lr(Parameterization::Ntk, optimizer, loss),
        }
    }

    /// The peak learning rate this architecture trains with under
    /// `params`: the explicit [`MlpParams::lr`](crate::MlpParams::lr), else
    /// [`Arch::default_lr`].
    pub fn lr(self, params: &ValidParams) -> f64 {
        match self {
            Arch::Mlp => params.lr(),
            Arch::ConvNet { .. } => params
                .params()
                .lr
                .unwrap_or_else(|| self.default_lr(params.param, params.optimizer, params.loss)),
        }
    }

    /// The learning rate at 0-based `step`: [`Arch::lr`] times the
    /// schedule's factor over `params.steps`.
    pub fn lr_at(self, params: &ValidParams, step: usize) -> f64 {
        self.lr(params) * params.lr_schedule.factor(step, params.steps)
    }

    /// The largest ConvNet depth an `h × w` image allows: the number of
    /// 2×2 poolings before a side drops below 2, `⌊log₂ min(h, w)⌋`
    /// (0 for a side below 2).
    pub fn max_convnet_depth(shape: ImageShape) -> usize {
        let side = shape.h.min(shape.w);
        if side < 2 {
            0
        } else {
            side.ilog2() as usize
        }
    }

    /// Checks that this architecture can train on images of `shape` with
    /// `params`. Always fine for the MLP (any data is a flat vector). The
    /// ConvNet needs image data (height and width ≥ 2), a depth whose
    /// poolings fit the image ([`Arch::max_convnet_depth`]), the NTK
    /// parameterisation, and no weight decay or validation split (not
    /// implemented for it).
    ///
    /// # Errors
    /// [`NnError::InvalidParam`] naming `arch` (flat data), `depth`,
    /// `param`, `weight_decay` or `val_fraction`.
    pub fn check(self, shape: ImageShape, params: &ValidParams) -> Result<()> {
        let Arch::ConvNet { depth } = self else {
            return self.check_memory(shape, params);
        };
        if shape.h < 2 || shape.w < 2 {
            return Err(NnError::InvalidParam {
                name: "arch",
                value: format!("{self} (the data is flat: {}x{}x{})", shape.h, shape.w, shape.c),
                expected: "mlp for flat data (a ConvNet needs images of at least 2x2 pixels)",
            });
        }
        let max = Self::max_convnet_depth(shape);
        if depth > max {
            return Err(NnError::InvalidParam {
                name: "depth",
                value: format!(
                    "{depth} ({}x{} images allow at most {max} AvgPool 2x2 blocks)",
                    shape.h, shape.w
                ),
                expected: "a ConvNet depth whose poolings fit the image",
            });
        }
        if params.param != Parameterization::Ntk {
            return Err(NnError::InvalidParam {
                name: "param",
                value: params.param.to_string(),
                expected: "ntk with a ConvNet (its layers use the NTK parameterisation)",
            });
        }
        if params.weight_decay != 0.0 {
            return Err(NnError::InvalidParam {
                name: "weight_decay",
                value: params.weight_decay.to_string(),
                expected: "0 with a ConvNet (weight decay is not implemented for it)",
            });
        }
        if params.val_fraction != 0.0 {
            return Err(NnError::InvalidParam {
                name: "val_fraction",
                value: params.val_fraction.to_string(),
                expected: "0 with a ConvNet (early stopping is not implemented for it)",
            });
        }
        self.check_memory(shape, params)
    }

    /// kip's memory rule for training this architecture on `shape` with
    /// `params`: the weights with their gradients and two optimiser moments
    /// (4 × 4 bytes per parameter) and one batch's activations (float32),
    /// refused beyond the memory available, naming `width`.
    fn check_memory(self, shape: ImageShape, params: &ValidParams) -> Result<()> {
        use kip_core::{bytes_of, sum_bytes};
        let (w, batch) = (params.width, params.batch);
        let (n_params, acts) = match self {
            Arch::Mlp => {
                let d = shape.checked_dim().unwrap_or(usize::MAX) as u64;
                let (w64, depth) = (w as u64, params.depth as u64);
                let hidden = w64
                    .checked_mul(w64)
                    .and_then(|ww| ww.checked_mul(depth.saturating_sub(1)));
                let first = d.checked_mul(w64).filter(|_| depth > 0);
                (
                    sum_bytes(&[first.or(Some(0)), hidden]),
                    bytes_of(&[batch, w, params.depth.max(1)], 4),
                )
            }
            Arch::ConvNet { depth } => {
                let body = crate::convnet::convnet_body(depth);
                let (n, f) = convnet_size(&body, shape, w);
                let map = bytes_of(&[batch.min(256), shape.h, shape.w, w, 3 * depth], 4);
                (sum_bytes(&[n, f]), map)
            }
        };
        let need = sum_bytes(&[n_params.and_then(|n| n.checked_mul(16)), acts]);
        kip_core::check_memory(need, || {
            format!(
                "training a {self} of width {w} on {shape} images (--width {w}: {} parameters)",
                n_params.map_or("more than 2^64".into(), |n| n.to_string())
            )
        })?;
        Ok(())
    }
}

/// Parameters and features of the ConvNet body (`None` on overflow or a
/// body that does not fit; [`Arch::check`] reports the latter first).
fn convnet_size(body: &[kip_kernels::rf::NetLayer], shape: ImageShape, width: usize) -> (Option<u64>, Option<u64>) {
    kip_kernels::rf::ConvNet::size_of(body, kip_kernels::rf::NetReadout::Flatten, shape, width).unwrap_or((None, None))
}

impl FromStr for Arch {
    type Err = NnError;
    /// `"mlp"`, `"convnet"` (depth [`CONVNET_DEFAULT_DEPTH`]) or
    /// `"convnetL"` (depth `L`).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "mlp" {
            return Ok(Arch::Mlp);
        }
        if let Some(rest) = t.strip_prefix("convnet") {
            if rest.is_empty() {
                return Ok(Arch::ConvNet {
                    depth: CONVNET_DEFAULT_DEPTH,
                });
            }
            if let Ok(depth) = rest.parse::<usize>() {
                return Ok(Arch::ConvNet { depth });
            }
        }
        Err(NnError::InvalidParam {
            name: "arch",
            value: s.to_string(),
            expected: "one of: mlp, convnet (or convnetL for depth L)",
        })
    }
}

impl fmt::Display for Arch {
    /// `mlp` or `convnetL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Mlp => f.write_str("mlp"),
            Arch::ConvNet { depth } => write!(f, "convnet{depth}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::MlpParams;

    #[test]
    fn parses_round_trips_and_lists_accepted_values() {
        assert_eq!("mlp".parse::<Arch>().unwrap(), Arch::Mlp);
        assert_eq!("ConvNet".parse::<Arch>().unwrap(), Arch::ConvNet { depth: 3 });
        for a in [Arch::Mlp, Arch::ConvNet { depth: 0 }, Arch::ConvNet { depth: 2 }] {
            assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        }
        for bad in ["resnet", "convnetx", "convnet-1"] {
            let e = bad.parse::<Arch>().unwrap_err().to_string();
            assert!(e.contains("arch") && e.contains("mlp, convnet"), "{e}");
        }
    }

    #[test]
    fn defaults_depend_on_the_architecture() {
        let p = MlpParams::default().check().unwrap();
        assert_eq!(Arch::Mlp.lr(&p), p.lr());
        assert_eq!(Arch::Mlp.default_width(), MlpParams::default().width);
        let conv = Arch::ConvNet { depth: 1 };
        assert_eq!(conv.default_width(), CONVNET_DEFAULT_WIDTH);
        assert_eq!(conv.lr(&p), conv.default_lr(p.param, p.optimizer, p.loss));
        let p = MlpParams {
            lr: Some(0.25),
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(conv.lr(&p), 0.25);
        assert_eq!(conv.lr_at(&p, 0), 0.25);
    }

    #[test]
    fn the_convnet_must_fit_the_image() {
        let p = MlpParams::default().check().unwrap();
        let img = ImageShape::new(8, 8, 1);
        assert_eq!(Arch::max_convnet_depth(img), 3);
        assert_eq!(Arch::max_convnet_depth(ImageShape::new(32, 28, 3)), 4);
        assert_eq!(Arch::max_convnet_depth(ImageShape::new(1, 64, 1)), 0);
        assert!(Arch::ConvNet { depth: 3 }.check(img, &p).is_ok());
        assert!(Arch::Mlp.check(ImageShape::new(1, 10, 1), &p).is_ok());
        let trips = |arch: Arch, shape, p: &ValidParams, field: &str| match arch.check(shape, p) {
            Err(NnError::InvalidParam { name, .. }) => assert_eq!(name, field),
            other => panic!("expected InvalidParam({field}), got {other:?}"),
        };
        trips(Arch::ConvNet { depth: 4 }, img, &p, "depth");
        trips(Arch::ConvNet { depth: 0 }, ImageShape::new(1, 10, 1), &p, "arch");
        let e = Arch::ConvNet { depth: 1 }
            .check(ImageShape::new(1, 10, 1), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("flat") && e.contains("1x10x1"), "{e}");
        let d = MlpParams::default;
        let conv = Arch::ConvNet { depth: 1 };
        let standard = MlpParams {
            param: Parameterization::Standard,
            ..d()
        };
        trips(conv, img, &standard.check().unwrap(), "param");
        let wd = MlpParams {
            weight_decay: 1e-3,
            ..d()
        };
        trips(conv, img, &wd.check().unwrap(), "weight_decay");
        let val = MlpParams {
            val_fraction: 0.1,
            ..d()
        };
        trips(conv, img, &val.check().unwrap(), "val_fraction");
    }
}
