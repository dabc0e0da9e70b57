//! KIP hyperparameters, validated once (linfa's ParamGuard idea).

pub use kip_core::LrSchedule;
use kip_data::Augment;
use kip_kernels::KernelSpec;
use serde::{Deserialize, Serialize};

use crate::adam::AdamParams;
use crate::error::{MetaError, Result};
use crate::objective::Loss;

/// How the support images start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Init {
    /// A class-balanced sample of real training images (the reference).
    Real,
    /// Gaussian noise `N(0, std²)` in model space, labels class-balanced.
    Noise {
        /// Standard deviation.
        std: f64,
    },
}

impl Init {
    /// The initialisation a user names: `real`, or `noise` with standard
    /// deviation `std` (used only by `noise`).
    ///
    /// # Errors
    /// Any other name, as a message naming the accepted ones.
    pub fn from_name(name: &str, std: f64) -> std::result::Result<Self, String> {
        match name {
            "real" => Ok(Init::Real),
            "noise" => Ok(Init::Noise { std }),
            other => Err(format!("`{other}`: expected real or noise")),
        }
    }
}

/// Arithmetic of the two big products of a step (`K_ts`'s inner products
/// `X_t X_sᵀ` and the gradient product `Pᵀ X_t`, ~97% of a step's flops).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// Everything in float64 (the reference's `--x64`).
    #[default]
    F64,
    /// Those two GEMMs in float32 (target images kept as f32, support images
    /// rounded for the product); the kernel recursion, the solve, the loss,
    /// Adam and the stored support set stay float64. About twice the GEMM
    /// throughput; inner products carry ~1e-7·√d relative error. The
    /// convolutional kernels of the step run their pair passes in f32
    /// (`precision=f32` of their spec: about twice as fast, values to
    /// ~1e-6 relative); the evaluation kernel keeps its own spec.
    F32,
}

impl std::str::FromStr for Precision {
    type Err = MetaError;

    /// `f64` or `f32`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f64" => Ok(Precision::F64),
            "f32" => Ok(Precision::F32),
            _ => Err(bad("precision", format!("`{s}`"), "f64 or f32")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
        })
    }
}

/// KIP parameters. Defaults are the reference's.
///
/// | name | default | meaning | range |
/// |---|---|---|---|
/// | `kernels` | `[fc1-ntk]` | kernel; several = one drawn per step ("sampling") | non-empty |
/// | `n_support` | 100 | support images | ≥ number of classes, ≤ training size per class |
/// | `n_target` | 5000 | target images drawn (class-balanced) each step | ≥ number of classes, ≤ training size per class |
/// | `steps` | 300 ([`DEFAULT_STEPS`]) | Adam steps | ≥ 1 |
/// | `adam.lr` | 0.01 | learning rate | finite, > 0 |
/// | `lr_schedule` | `Constant` | learning-rate decay over `steps` | cosine floor in [0, 1] |
/// | `precision` | `F64` | arithmetic of the step's two big GEMMs | f64, f32 |
/// | `adam.b1`, `adam.b2` | 0.9, 0.999 | moment decays | [0, 1) |
/// | `adam.eps` | 1e-8 | Adam ε | finite, > 0 |
/// | `adam.first_step_index` | 1 | bias-correction index of the first step (notebook: 1, textbook: 0) | 0 or 1 |
/// | `reg` | 1e-6 | ridge relative to tr(K_ss)/n_s | finite, ≥ 0 |
/// | `learn_labels` | false | also optimise the support labels | |
/// | `init` | `Real` | support initialisation | noise std finite, > 0 |
/// | `corrupt` | 0 | fraction of support pixels replaced by N(0,1) noise and frozen | [0, 1) |
/// | `seed` | 0 | seeds init, target batches and kernel draws | any |
/// | `augment` | none | random flips / translations of each target batch (`flip`, `shift:K`) | K ≥ 1 |
/// | `augment_support` | none | the same, drawn afresh each step, applied to the support images the kernel sees (the gradient flows back through them: the set is learned for a learner that augments it) | K ≥ 1 |
/// | `eval_kernel` | none | kernel of every evaluation (test, validation), when not the first of `kernels` (e.g. a high-fidelity random-feature kernel for a run trained with a cheap one) | a kernel spec |
/// | `loss` | `Mse` | `Mse` (the paper's) or `Platt` (RFAD's cross-entropy with a learned temperature, class targets only) | |
/// | `target_shards` | 1 | row shards of each target batch, whose loss terms are summed in order: fixes the arithmetic of a run spread over processes ([`crate::collective`]) | ≥ 1, ≤ `n_target` |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KipParams {
    /// Kernel specs (`fc1-ntk`, ...).
    pub kernels: Vec<String>,
    /// Support set size.
    pub n_support: usize,
    /// Target batch size.
    pub n_target: usize,
    /// Number of steps.
    pub steps: usize,
    /// Adam settings (learning rate included).
    pub adam: AdamParams,
    /// Learning-rate schedule over `steps` (absent in older run
    /// configurations: constant).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Arithmetic of the two big GEMMs of a step (absent in older run
    /// configurations: f64).
    #[serde(default)]
    pub precision: Precision,
    /// Relative ridge.
    pub reg: f64,
    /// Learn the labels too.
    pub learn_labels: bool,
    /// Initialisation.
    pub init: Init,
    /// Corrupted (frozen) pixel fraction.
    pub corrupt: f64,
    /// Seed.
    pub seed: u64,
    /// Row shards of each target batch (absent in older run
    /// configurations: 1). Any number of processes reproduces a run bit
    /// for bit; the shard count is what fixes its arithmetic.
    #[serde(default = "one_shard")]
    pub target_shards: usize,
    /// Augmentation of each step's target batch (absent in older run
    /// configurations: none), drawn from the run's generator after the batch.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// Augmentation of the support images inside each step (absent in
    /// older run configurations: none), drawn from the run's generator
    /// after the target batch's.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment_support: Augment,
    /// Kernel of the evaluations, when not the first of `kernels` (absent
    /// in older run configurations: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_kernel: Option<String>,
    /// The loss (absent in older run configurations: MSE).
    #[serde(default, skip_serializing_if = "Loss::is_mse")]
    pub loss: Loss,
}

fn one_shard() -> usize {
    1
}

/// The default step count of a run ([`KipParams::steps`]): the CLI's and
/// the Python package's too.
pub const DEFAULT_STEPS: usize = 300;

impl Default for KipParams {
    fn default() -> Self {
        Self {
            kernels: vec!["fc1-ntk".into()],
            n_support: 100,
            n_target: 5000,
            steps: DEFAULT_STEPS,
            adam: AdamParams::default(),
            lr_schedule: LrSchedule::Constant,
            precision: Precision::F64,
            reg: kip_krr::DEFAULT_REG,
            learn_labels: false,
            init: Init::Real,
            corrupt: 0.0,
            seed: 0,
            target_shards: 1,
            augment: Augment::default(),
            augment_support: Augment::default(),
            eval_kernel: None,
            loss: Loss::Mse,
        }
    }
}

/// The target batch when none is asked for: the reference's 5000, or the
/// largest class-balanced batch `train` can serve when that is smaller
/// (`C` times the smallest class).
pub fn default_target_batch(train: &kip_data::Dataset) -> usize {
    let counts = train.class_counts();
    5000.min(counts.iter().copied().min().unwrap_or(0) * counts.len())
}

/// Parameters that passed [`KipParams::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct ValidKipParams {
    params: KipParams,
    kernels: Vec<KernelSpec>,
    eval_kernel: KernelSpec,
}

impl ValidKipParams {
    /// The checked parameters.
    pub fn params(&self) -> &KipParams {
        &self.params
    }
    /// The parsed kernel specs.
    pub fn kernels(&self) -> &[KernelSpec] {
        &self.kernels
    }
    /// The kernel of the evaluations: `eval_kernel`, or the first of
    /// `kernels`.
    pub fn eval_kernel(&self) -> KernelSpec {
        self.eval_kernel
    }
}

fn bad(name: &'static str, value: impl ToString, expected: &str) -> MetaError {
    MetaError::param(name, value, expected)
}

impl KipParams {
    /// Validate every field (the data-dependent limits, such as images per
    /// class, are checked when the run starts).
    ///
    /// # Errors
    /// [`MetaError::Param`] naming the first bad field; kernel spec errors.
    pub fn check(self) -> Result<ValidKipParams> {
        if self.kernels.is_empty() {
            return Err(bad("kernels", "(none)", "at least one kernel spec"));
        }
        let kernels = self
            .kernels
            .iter()
            .map(|s| s.parse::<KernelSpec>())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if self.n_support == 0 {
            return Err(bad("n_support", self.n_support, ">= 1"));
        }
        if self.n_target == 0 {
            return Err(bad("n_target", self.n_target, ">= 1"));
        }
        if self.steps == 0 {
            return Err(bad("steps", self.steps, ">= 1"));
        }
        let a = &self.adam;
        if !(a.lr.is_finite() && a.lr > 0.0) {
            return Err(bad("adam.lr", a.lr, "a finite number > 0"));
        }
        if !(0.0..1.0).contains(&a.b1) {
            return Err(bad("adam.b1", a.b1, "[0, 1)"));
        }
        if !(0.0..1.0).contains(&a.b2) {
            return Err(bad("adam.b2", a.b2, "[0, 1)"));
        }
        if !(a.eps.is_finite() && a.eps > 0.0) {
            return Err(bad("adam.eps", a.eps, "a finite number > 0"));
        }
        if a.first_step_index > 1 {
            return Err(bad(
                "adam.first_step_index",
                a.first_step_index,
                "0 (textbook) or 1 (reference notebook)",
            ));
        }
        if !self.lr_schedule.is_valid() {
            return Err(bad("lr_schedule", self.lr_schedule, "a cosine floor in [0, 1]"));
        }
        if !(self.reg.is_finite() && self.reg >= 0.0) {
            return Err(bad("reg", self.reg, "a finite number >= 0"));
        }
        if let Init::Noise { std } = self.init {
            if !(std.is_finite() && std > 0.0) {
                return Err(bad("init.std", std, "a finite number > 0"));
            }
        }
        if !(0.0..1.0).contains(&self.corrupt) {
            return Err(bad("corrupt", self.corrupt, "[0, 1)"));
        }
        // (At most n_target: checked with the data, when n_target is known.)
        if self.target_shards == 0 {
            return Err(bad("target_shards", self.target_shards, ">= 1"));
        }
        let eval_kernel = match &self.eval_kernel {
            Some(s) => s.parse::<KernelSpec>()?,
            None => kernels[0],
        };
        Ok(ValidKipParams {
            params: self,
            kernels,
            eval_kernel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_check_trips() {
        assert!(KipParams::default().check().is_ok());
        let cases: Vec<(KipParams, &str)> = vec![
            (
                KipParams {
                    kernels: vec![],
                    ..Default::default()
                },
                "kernels",
            ),
            (
                KipParams {
                    kernels: vec!["fc1-ntq".into()],
                    ..Default::default()
                },
                "fc1-ntq",
            ),
            (
                KipParams {
                    n_support: 0,
                    ..Default::default()
                },
                "n_support",
            ),
            (
                KipParams {
                    n_target: 0,
                    ..Default::default()
                },
                "n_target",
            ),
            (
                KipParams {
                    steps: 0,
                    ..Default::default()
                },
                "steps",
            ),
            (
                KipParams {
                    adam: AdamParams {
                        lr: 0.0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "adam.lr",
            ),
            (
                KipParams {
                    adam: AdamParams {
                        lr: f64::NAN,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "adam.lr",
            ),
            (
                KipParams {
                    adam: AdamParams {
                        b1: 1.0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "adam.b1",
            ),
            (
                KipParams {
                    adam: AdamParams {
                        b2: -0.1,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "adam.b2",
            ),
            (
                KipParams {
                    adam: AdamParams {
                        eps: 0.0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "adam.eps",
            ),
            (
                KipParams {
                    adam: AdamParams {
                        first_step_index: 2,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "adam.first_step_index",
            ),
            (
                KipParams {
                    lr_schedule: LrSchedule::Cosine { min_factor: 1.5 },
                    ..Default::default()
                },
                "lr_schedule",
            ),
            (
                KipParams {
                    reg: -1.0,
                    ..Default::default()
                },
                "reg",
            ),
            (
                KipParams {
                    init: Init::Noise { std: 0.0 },
                    ..Default::default()
                },
                "init.std",
            ),
            (
                KipParams {
                    corrupt: 1.0,
                    ..Default::default()
                },
                "corrupt",
            ),
        ];
        for (p, needle) in cases {
            let e = p.check().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
