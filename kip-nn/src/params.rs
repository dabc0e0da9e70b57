//! Hyperparameters: [`MlpParams`] (plain, with defaults) and its checked form
//! [`ValidParams`] (obtainable only through [`MlpParams::check`]).

use std::fmt;
use std::str::FromStr;

use kip_core::LrSchedule;

use crate::error::{NnError, Result};

/// How weights enter the forward pass.
///
/// With fan-in `n` and `σ_w = w_std`, `σ_b = b_std`, a dense layer computes
/// `z = s_w·W·h + s_b·b` with parameters initialised as `W ~ N(0, v_w)`,
/// `b ~ N(0, v_b)`:
///
/// | parameterisation | `s_w` | `s_b` | `v_w` | `v_b` |
/// |---|---|---|---|---|
/// | `Ntk` | `σ_w/√n` | `σ_b` | 1 | 1 |
/// | `Standard` | 1 | 1 | `σ_w²/n` | `σ_b²` |
///
/// Both give the same function at initialisation; they differ in how
/// gradient descent scales per layer (the NTK one has a width-independent
/// kernel limit, the one the KIP kernels describe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parameterization {
    /// NTK parameterisation (Jacot et al.), as in neural-tangents.
    #[default]
    Ntk,
    /// Standard parameterisation (scaled initialisation, plain forward).
    Standard,
}

/// Training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// `½·mean((f − y)²)` over all `n × C` entries, against target vectors
    /// (like the KRR loss of the paper).
    #[default]
    Mse,
    /// Softmax cross-entropy `mean(−log softmax(f)[label])` over the `n`
    /// rows, against class ids.
    CrossEntropy,
}

/// Optimiser. Both take the learning rate `lr_t` of [`MlpParams::lr_schedule`]
/// at step `t` (by default a cosine decay from `lr` to 0 at the last step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// SGD with heavy-ball momentum: `v ← μ·v + g`, `θ ← θ − lr_t·v`.
    Sgd {
        /// `μ`, in `[0, 1)`; 0.9 by default and when parsed from `"sgd"`.
        momentum: f64,
    },
    /// Adam with `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8`, bias-corrected.
    Adam,
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Sgd { momentum: 0.9 }
    }
}

impl FromStr for Parameterization {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ntk" => Ok(Self::Ntk),
            "standard" => Ok(Self::Standard),
            _ => Err(NnError::InvalidParam {
                name: "param",
                value: s.to_string(),
                expected: "one of: ntk, standard",
            }),
        }
    }
}

impl fmt::Display for Parameterization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ntk => "ntk",
            Self::Standard => "standard",
        })
    }
}

impl FromStr for Loss {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mse" => Ok(Self::Mse),
            "xent" => Ok(Self::CrossEntropy),
            _ => Err(NnError::InvalidParam {
                name: "loss",
                value: s.to_string(),
                expected: "one of: mse, xent",
            }),
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mse => "mse",
            Self::CrossEntropy => "xent",
        })
    }
}

impl FromStr for Optimizer {
    type Err = NnError;
    /// `"sgd"` (momentum 0.9) or `"adam"`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sgd" => Ok(Self::default()),
            "adam" => Ok(Self::Adam),
            _ => Err(NnError::InvalidParam {
                name: "optimizer",
                value: s.to_string(),
                expected: "one of: sgd, adam",
            }),
        }
    }
}

impl fmt::Display for Optimizer {
    /// `sgd` or `adam` (the momentum is not printed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sgd { .. } => "sgd",
            Self::Adam => "adam",
        })
    }
}

/// The learning rate used when [`MlpParams::lr`] is `None`.
///
/// | optimiser | NTK param. | standard param. |
/// |---|---|---|
/// | SGD (momentum 0.9), MSE | 10 | 0.03 |
/// | SGD (momentum 0.9), cross-entropy | 3 | 0.1 |
/// | Adam (either loss) | 1e-2 | 1e-3 |
///
/// Chosen by a sweep of rates on MNIST (the table is in
/// `docs/transfer.md`).
///
/// The defaults sit at or one step below the best rate, at least a factor
/// 3 below the first unstable one, to leave room for deeper networks and
/// smaller inputs. MSE needs different rates from cross-entropy because
/// it averages over the `C` outputs too; NTK parameterisation needs larger
/// SGD rates because a weight enters the forward pass scaled by
/// `w_std/√fan_in`, and larger Adam rates because Adam's step is
/// scale-free while NTK weights are `O(1)`.
pub fn default_lr(param: Parameterization, optimizer: Optimizer, loss: Loss) -> f64 {
    match (optimizer, param, loss) {
        (Optimizer::Adam, Parameterization::Ntk, _) => 1e-2,
        (Optimizer::Adam, Parameterization::Standard, _) => 1e-3,
        (Optimizer::Sgd { .. }, Parameterization::Ntk, Loss::Mse) => 10.0,
        (Optimizer::Sgd { .. }, Parameterization::Ntk, Loss::CrossEntropy) => 3.0,
        (Optimizer::Sgd { .. }, Parameterization::Standard, Loss::Mse) => 0.03,
        (Optimizer::Sgd { .. }, Parameterization::Standard, Loss::CrossEntropy) => 0.1,
    }
}

/// Hyperparameters of a fully connected ReLU network and its training run.
///
/// | name | default | meaning | range |
/// |---|---|---|---|
/// | `depth` | 1 | hidden layers `L` (FC-L) | 1 ..= 64 |
/// | `width` | 1024 | units per hidden layer | 1 ..= 65536 |
/// | `param` | `Ntk` | [`Parameterization`] | — |
/// | `w_std` | √2 | weight standard deviation `σ_w` | finite, > 0 |
/// | `b_std` | 0.1 | bias standard deviation `σ_b` | finite, ≥ 0 |
/// | `loss` | `Mse` | [`Loss`] | — |
/// | `optimizer` | SGD, momentum 0.9 | [`Optimizer`] | momentum in [0, 1) |
/// | `lr` | `None` | peak learning rate; `None` = [`default_lr`] | finite, > 0 |
/// | `lr_schedule` | cosine to 0 | learning-rate multiplier over `steps` ([`LrSchedule`], the one KIP uses) | cosine floor in [0, 1] |
/// | `steps` | 1000 | optimiser steps (not epochs) | ≥ 1 |
/// | `batch` | 128 | mini-batch size; ≥ n means full batch | ≥ 1 |
/// | `weight_decay` | 0 | L2 coefficient λ: adds `½λ‖W‖²` (weights only, not biases) to the objective | finite, ≥ 0 |
/// | `val_fraction` | 0 | fraction of the training rows held out for early stopping; 0 = none | [0, 1) |
/// | `patience` | 10 | with a validation split: stop after this many evaluations (one per epoch) without a new best validation loss; 0 = never stop early (the best parameters are still kept) | any |
/// | `center` | `false` | train and predict with the centred network `f(x; θ) − f(x; θ₀)` (see below) | — |
/// | `seed` | 0 | seeds initialisation, the validation split and the shuffles | any |
///
/// **Centring.** At initialisation a network outputs a random function
/// `f(·; θ₀)` with `O(1)` entries, as large as the centred one-hot
/// targets (`0.9` / `−0.1`). Trained with MSE in the NTK (lazy) regime, the network
/// converges to `f(·; θ₀) + Θ(·, X)·Θ(X, X)⁻¹·(Y − f(X; θ₀))`: the NTK
/// regression of `Y` *plus* the random initial function away from the
/// training points, which swamps the prediction when the training set is
/// small (`docs/transfer.md` has the measurement). With `center = true`
/// the network is `f(x; θ) − f(x; θ₀)` (θ₀ frozen), which is zero at
/// initialisation, has the same NTK, and converges to the plain NTK
/// regression that KIP optimises. It costs one extra forward pass of the
/// initial network per step and per evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpParams {
    /// Number of hidden layers.
    pub depth: usize,
    /// Units per hidden layer.
    pub width: usize,
    /// Parameterisation.
    pub param: Parameterization,
    /// Weight standard deviation `σ_w`.
    pub w_std: f64,
    /// Bias standard deviation `σ_b`.
    pub b_std: f64,
    /// Training loss.
    pub loss: Loss,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Peak learning rate; `None` picks [`default_lr`].
    pub lr: Option<f64>,
    /// How the learning rate changes over `steps`.
    pub lr_schedule: LrSchedule,
    /// Number of optimiser steps.
    pub steps: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// L2 weight-decay coefficient (weights only).
    pub weight_decay: f64,
    /// Validation fraction for early stopping (0 = none).
    pub val_fraction: f64,
    /// Early-stopping patience in evaluations (0 = never stop early).
    pub patience: usize,
    /// Random seed.
    pub seed: u64,
    /// Centred network `f(x; θ) − f(x; θ₀)`.
    pub center: bool,
}

impl Default for MlpParams {
    fn default() -> Self {
        Self {
            depth: 1,
            width: 1024,
            param: Parameterization::Ntk,
            w_std: std::f64::consts::SQRT_2,
            b_std: 0.1,
            loss: Loss::Mse,
            optimizer: Optimizer::default(),
            lr: None,
            lr_schedule: LrSchedule::Cosine { min_factor: 0.0 },
            steps: 1000,
            batch: 128,
            weight_decay: 0.0,
            val_fraction: 0.0,
            patience: 10,
            seed: 0,
            center: false,
        }
    }
}

/// Checked [`MlpParams`], with the learning rate resolved. Obtain it from
/// [`MlpParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams {
    inner: MlpParams,
    lr: f64,
}

impl ValidParams {
    /// The checked parameters (with `lr` as given, possibly `None`).
    pub fn params(&self) -> &MlpParams {
        &self.inner
    }
    /// The resolved peak learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }
    /// The learning rate at 0-based `step`: the peak rate times the
    /// schedule's factor ([`LrSchedule::factor`] over `steps`).
    pub fn lr_at(&self, step: usize) -> f64 {
        self.lr * self.inner.lr_schedule.factor(step, self.inner.steps)
    }
}

impl std::ops::Deref for ValidParams {
    type Target = MlpParams;
    fn deref(&self) -> &MlpParams {
        &self.inner
    }
}

fn invalid(name: &'static str, value: impl fmt::Display, expected: &'static str) -> NnError {
    NnError::InvalidParam {
        name,
        value: value.to_string(),
        expected,
    }
}

impl MlpParams {
    /// Validates every field (see the table on [`MlpParams`]) and resolves
    /// the default learning rate.
    ///
    /// # Errors
    ///
    /// [`NnError::InvalidParam`] naming the first field out of range.
    pub fn check(self) -> Result<ValidParams> {
        if !(1..=64).contains(&self.depth) {
            return Err(invalid("depth", self.depth, "1 ..= 64"));
        }
        if !(1..=65536).contains(&self.width) {
            return Err(invalid("width", self.width, "1 ..= 65536"));
        }
        if !(self.w_std.is_finite() && self.w_std > 0.0) {
            return Err(invalid("w_std", self.w_std, "finite and > 0"));
        }
        if !(self.b_std.is_finite() && self.b_std >= 0.0) {
            return Err(invalid("b_std", self.b_std, "finite and >= 0"));
        }
        if let Optimizer::Sgd { momentum } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return Err(invalid("momentum", momentum, "in [0, 1)"));
            }
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(invalid("lr", lr, "finite and > 0"));
            }
        }
        if !self.lr_schedule.is_valid() {
            return Err(invalid("lr_schedule", self.lr_schedule, "a cosine floor in [0, 1]"));
        }
        if self.steps == 0 {
            return Err(invalid("steps", self.steps, ">= 1"));
        }
        if self.batch == 0 {
            return Err(invalid("batch", self.batch, ">= 1"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid("weight_decay", self.weight_decay, "finite and >= 0"));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(invalid("val_fraction", self.val_fraction, "in [0, 1)"));
        }
        let lr = self
            .lr
            .unwrap_or_else(|| default_lr(self.param, self.optimizer, self.loss));
        Ok(ValidParams { inner: self, lr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trips(p: MlpParams, field: &str) {
        match p.check() {
            Err(NnError::InvalidParam { name, .. }) => assert_eq!(name, field),
            other => panic!("expected InvalidParam({field}), got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let v = MlpParams::default().check().unwrap();
        assert_eq!(v.lr(), 10.0);
        assert_eq!(v.depth, 1);
    }

    #[test]
    fn every_range_is_checked() {
        let d = MlpParams::default;
        trips(MlpParams { depth: 0, ..d() }, "depth");
        trips(MlpParams { depth: 65, ..d() }, "depth");
        trips(MlpParams { width: 0, ..d() }, "width");
        trips(MlpParams { width: 65537, ..d() }, "width");
        trips(MlpParams { w_std: 0.0, ..d() }, "w_std");
        trips(MlpParams { w_std: f64::NAN, ..d() }, "w_std");
        trips(MlpParams { b_std: -0.1, ..d() }, "b_std");
        trips(
            MlpParams {
                b_std: f64::INFINITY,
                ..d()
            },
            "b_std",
        );
        trips(
            MlpParams {
                optimizer: Optimizer::Sgd { momentum: 1.0 },
                ..d()
            },
            "momentum",
        );
        trips(
            MlpParams {
                optimizer: Optimizer::Sgd { momentum: -0.1 },
                ..d()
            },
            "momentum",
        );
        trips(MlpParams { lr: Some(0.0), ..d() }, "lr");
        trips(
            MlpParams {
                lr: Some(f64::NAN),
                ..d()
            },
            "lr",
        );
        trips(
            MlpParams {
                lr_schedule: LrSchedule::Cosine { min_factor: 2.0 },
                ..d()
            },
            "lr_schedule",
        );
        trips(MlpParams { steps: 0, ..d() }, "steps");
        trips(MlpParams { batch: 0, ..d() }, "batch");
        trips(
            MlpParams {
                weight_decay: -1e-4,
                ..d()
            },
            "weight_decay",
        );
        trips(
            MlpParams {
                weight_decay: f64::NAN,
                ..d()
            },
            "weight_decay",
        );
        trips(
            MlpParams {
                val_fraction: 1.0,
                ..d()
            },
            "val_fraction",
        );
        trips(
            MlpParams {
                val_fraction: -0.1,
                ..d()
            },
            "val_fraction",
        );
    }

    #[test]
    fn explicit_lr_wins_and_defaults_depend_on_setting() {
        let v = MlpParams {
            lr: Some(0.3),
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(v.lr(), 0.3);
        let v = MlpParams {
            param: Parameterization::Standard,
            loss: Loss::CrossEntropy,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(v.lr(), 0.1);
        let v = MlpParams {
            optimizer: Optimizer::Adam,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(v.lr(), 1e-2);
    }

    #[test]
    fn enums_round_trip_and_list_accepted_values() {
        for p in [Parameterization::Ntk, Parameterization::Standard] {
            assert_eq!(p.to_string().parse::<Parameterization>().unwrap(), p);
        }
        for l in [Loss::Mse, Loss::CrossEntropy] {
            assert_eq!(l.to_string().parse::<Loss>().unwrap(), l);
        }
        for o in [Optimizer::default(), Optimizer::Adam] {
            assert_eq!(o.to_string().parse::<Optimizer>().unwrap(), o);
        }
        let e = "relu".parse::<Parameterization>().unwrap_err().to_string();
        assert!(e.contains("ntk, standard"), "{e}");
        let e = "l1".parse::<Loss>().unwrap_err().to_string();
        assert!(e.contains("mse, xent"), "{e}");
        let e = "lbfgs".parse::<Optimizer>().unwrap_err().to_string();
        assert!(e.contains("sgd, adam"), "{e}");
    }
}
