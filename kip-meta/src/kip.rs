//! The KIP loop: sample a class-balanced target batch, compute the loss and
//! its gradient, take an Adam step on the support images (and labels).

use kip_data::{class_balanced, gaussian_images, one_hot, one_hot_into, Dataset, PixelMask};
use kip_kernels::{points, points_row_major, row_norms, AnyKernel, AnyPoints, Kernel, PointsF32, PointsView};
use kip_krr::{Eval, Ridge};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adam::{AdamParams, AdamState};
use crate::error::{MetaError, Result};
use crate::loss::{kip_loss_grad, KipWorkspace, LossStats};
use crate::params::{Init, Precision, ValidKipParams};

/// Everything that evolves during a run; a checkpoint is exactly this.
#[derive(Clone, Debug, PartialEq)]
pub struct KipState {
    /// Steps done so far.
    pub step: usize,
    /// Support images in model space, `n_s × d`.
    pub x_s: DMatrix<f64>,
    /// Support labels, `n_s × C`.
    pub y_s: DMatrix<f64>,
    /// Class each support image was initialised from.
    pub labels: Vec<usize>,
    /// Adam moments of `x_s` (column-major, as `x_s`).
    pub adam_x: AdamState,
    /// Adam moments of `y_s`.
    pub adam_y: AdamState,
    /// Frozen (corrupted) pixels, column-major as `x_s`; empty if none.
    pub frozen: Vec<bool>,
    /// The run's random stream (target batches, kernel draws).
    pub rng: ChaCha8Rng,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// Index of the step (0-based).
    pub step: usize,
    /// Loss and target accuracy on this step's batch (before the update).
    pub stats: LossStats,
    /// Which kernel of the list was drawn.
    pub kernel: usize,
    /// Jitter the Cholesky needed (0 if none).
    pub jitter: f64,
}

/// A KIP run over a training set in model space.
#[derive(Debug)]
pub struct Kip {
    params: ValidKipParams,
    kernels: Vec<AnyKernel>,
    train: Dataset,
    by_class: Vec<Vec<usize>>,
    state: KipState,
    ws: KipWorkspace,
    /// `‖x_i‖²/d` of every training image, computed once: the target
    /// batches' norms are looked up, not recomputed each step.
    train_norms: Vec<f64>,
    t_idx: Vec<usize>,
    t_labels: Vec<usize>,
    t_norms: Vec<f64>,
    /// The target batch, row-major, in the step's precision (one is empty).
    x_t: Vec<f64>,
    x_t32: Vec<f32>,
    y_t_rm: Vec<f64>,
    y_t: DMatrix<f64>,
}

fn check_per_class(what: &'static str, n: usize, by_class: &[Vec<usize>]) -> Result<()> {
    let c = by_class.len();
    let (base, rem) = (n / c, n % c);
    if n < c {
        return Err(MetaError::Param {
            name: what,
            value: n.to_string(),
            expected: format!(">= {c} (one image per class)"),
        });
    }
    for (k, members) in by_class.iter().enumerate() {
        let want = base + usize::from(k < rem);
        if want > members.len() {
            return Err(MetaError::Param {
                name: what,
                value: n.to_string(),
                expected: format!(
                    "at most {} images of class {k} exist in the training set",
                    members.len()
                ),
            });
        }
    }
    Ok(())
}

impl Kip {
    /// Start a run: draws the initial support set from `train` (model space).
    ///
    /// # Errors
    /// Support or target sizes the training set cannot serve class-balanced.
    pub fn new(params: ValidKipParams, train: Dataset) -> Result<Self> {
        let p = params.params().clone();
        let by_class = train.indices_by_class();
        check_per_class("support", p.n_support, &by_class)?;
        check_per_class("target-batch", p.n_target, &by_class)?;
        let (n_s, d, c) = (p.n_support, train.dim(), train.n_classes());
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let idx = class_balanced(&by_class, n_s, &mut rng)?;
        let labels: Vec<usize> = idx.iter().map(|&i| train.labels()[i]).collect();
        let rows = match p.init {
            Init::Real => {
                let mut buf = vec![0.0; n_s * d];
                train.gather_into(&idx, &mut buf);
                buf
            }
            Init::Noise { std } => gaussian_images(n_s, d, std, &mut rng),
        };
        let mut x_s = DMatrix::from_row_slice(n_s, d, &rows);
        let mut frozen = Vec::new();
        if p.corrupt > 0.0 {
            let mask = PixelMask::bernoulli(n_s, d, p.corrupt, &mut rng)?;
            let noise = gaussian_images(n_s, d, 1.0, &mut rng);
            frozen = vec![false; n_s * d];
            for i in 0..n_s {
                for j in 0..d {
                    if mask.is_frozen(i * d + j) {
                        frozen[j * n_s + i] = true;
                        x_s[(i, j)] = noise[i * d + j];
                    }
                }
            }
        }
        let y_s = one_hot(&labels, c, true);
        let state = KipState {
            step: 0,
            x_s,
            y_s,
            labels,
            adam_x: AdamState::new(n_s * d),
            adam_y: AdamState::new(n_s * c),
            frozen,
            rng,
        };
        Self::from_state(params, train, state)
    }

    /// Continue from a saved state (see [`crate::checkpoint`]).
    ///
    /// # Errors
    /// A state whose shapes do not fit the parameters or the data.
    pub fn from_state(params: ValidKipParams, train: Dataset, state: KipState) -> Result<Self> {
        let p = params.params();
        let by_class = train.indices_by_class();
        check_per_class("target-batch", p.n_target, &by_class)?;
        let (n_s, d, c) = (p.n_support, train.dim(), train.n_classes());
        let ok = state.x_s.shape() == (n_s, d)
            && state.y_s.shape() == (n_s, c)
            && state.labels.len() == n_s
            && state.adam_x.m.len() == n_s * d
            && state.adam_y.m.len() == n_s * c
            && (state.frozen.is_empty() || state.frozen.len() == n_s * d);
        if !ok {
            return Err(MetaError::Param {
                name: "resume",
                value: format!(
                    "state with support {:?}, labels {:?}",
                    state.x_s.shape(),
                    state.y_s.shape()
                ),
                expected: format!("support {n_s} x {d} and {c} classes, as the run's parameters and data"),
            });
        }
        let kernels = params.kernels().iter().map(|s| s.build()).collect();
        let n_t = p.n_target;
        let f32_targets = p.precision == Precision::F32;
        let train_norms = row_norms(PointsF32::new(train.pixels(), train.len(), d))?;
        Ok(Self {
            kernels,
            by_class,
            state,
            ws: KipWorkspace::default(),
            t_idx: Vec::with_capacity(n_t),
            t_labels: Vec::with_capacity(n_t),
            t_norms: Vec::with_capacity(n_t),
            train_norms,
            x_t: if f32_targets { Vec::new() } else { vec![0.0; n_t * d] },
            x_t32: if f32_targets { vec![0.0; n_t * d] } else { Vec::new() },
            y_t_rm: vec![0.0; n_t * c],
            y_t: DMatrix::zeros(n_t, c),
            train,
            params,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &ValidKipParams {
        &self.params
    }

    /// The current state.
    pub fn state(&self) -> &KipState {
        &self.state
    }

    /// The training set (model space).
    pub fn train(&self) -> &Dataset {
        &self.train
    }

    /// One KIP step. On a non-finite loss or gradient the state is left as
    /// it was and [`MetaError::NonFinite`] is returned.
    ///
    /// # Errors
    /// [`MetaError::NonFinite`]; kernel/KRR failures.
    pub fn step(&mut self) -> Result<StepInfo> {
        let p = self.params.params();
        let step = self.state.step;
        let (d, c) = (self.train.dim(), self.train.n_classes());
        // Work on a copy of the rng so that a failed step changes nothing.
        let mut rng = self.state.rng.clone();
        let which = if self.kernels.len() > 1 {
            rng.random_range(0..self.kernels.len())
        } else {
            0
        };
        self.t_idx = class_balanced(&self.by_class, p.n_target, &mut rng)?;
        self.t_labels.clear();
        self.t_labels.extend(self.t_idx.iter().map(|&i| self.train.labels()[i]));
        self.t_norms.clear();
        self.t_norms.extend(self.t_idx.iter().map(|&i| self.train_norms[i]));
        match p.precision {
            Precision::F64 => self.train.gather_into(&self.t_idx, &mut self.x_t),
            Precision::F32 => self.train.gather_into(&self.t_idx, &mut self.x_t32),
        }
        one_hot_into(&self.t_labels, c, true, &mut self.y_t_rm);
        let n_t = self.t_idx.len();
        for i in 0..n_t {
            for j in 0..c {
                self.y_t[(i, j)] = self.y_t_rm[i * c + j];
            }
        }
        let (kernel, x_s) = (&self.kernels[which], points(&self.state.x_s));
        let x_t: AnyPoints<'_> = match p.precision {
            Precision::F64 => points_row_major(&self.x_t, n_t, d).into(),
            Precision::F32 => PointsF32::new(&self.x_t32, n_t, d).into(),
        };
        let x_t = x_t.with_norms(&self.t_norms);
        let stats = kip_loss_grad(kernel, x_s, &self.state.y_s, x_t, &self.y_t, p.reg, true, &mut self.ws).map_err(
            |e| match e {
                // Support values whose squares overflow (a diverged run) reach
                // the kernel as non-finite norms: report the step, not the kernel.
                MetaError::Kernel(kip_kernels::KernelError::NonFinite { .. })
                | MetaError::Krr(kip_krr::KrrError::NonFinite { .. }) => MetaError::NonFinite {
                    what: "kernel matrix (support values overflow)",
                    step,
                },
                e => e,
            },
        )?;
        if !stats.loss.is_finite() {
            return Err(MetaError::NonFinite { what: "loss", step });
        }
        let gx = self.ws.grad_x.as_mut_slice();
        if !gx.iter().all(|v| v.is_finite()) || (p.learn_labels && !self.ws.grad_y.iter().all(|v| v.is_finite())) {
            return Err(MetaError::NonFinite { what: "gradient", step });
        }
        if !self.state.frozen.is_empty() {
            for (g, &f) in gx.iter_mut().zip(&self.state.frozen) {
                if f {
                    *g = 0.0;
                }
            }
        }
        // Labels first (checked, unchanged on failure), then images: either
        // both updates are applied or neither.
        let adam = AdamParams {
            lr: p.adam.lr * p.lr_schedule.factor(step, p.steps),
            ..p.adam
        };
        let st = &mut self.state;
        if p.learn_labels {
            let mut trial = st.adam_y.clone();
            let mut y = st.y_s.clone();
            if !trial.try_update(&adam, step, y.as_mut_slice(), self.ws.grad_y.as_slice()) {
                return Err(MetaError::NonFinite {
                    what: "label update",
                    step,
                });
            }
            if !st
                .adam_x
                .try_update(&adam, step, st.x_s.as_mut_slice(), self.ws.grad_x.as_slice())
            {
                return Err(MetaError::NonFinite {
                    what: "support update",
                    step,
                });
            }
            (st.y_s, st.adam_y) = (y, trial);
        } else if !st
            .adam_x
            .try_update(&adam, step, st.x_s.as_mut_slice(), self.ws.grad_x.as_slice())
        {
            return Err(MetaError::NonFinite {
                what: "support update",
                step,
            });
        }
        self.state.rng = rng;
        self.state.step += 1;
        Ok(StepInfo {
            step,
            stats,
            kernel: which,
            jitter: self.ws.jitter,
        })
    }

    /// KRR accuracy and loss of the current support set on a test set, with
    /// the first kernel of the list, predicting in blocks of `block` rows.
    ///
    /// # Errors
    /// Kernel/KRR failures.
    pub fn evaluate(&self, x_test: PointsView<'_>, test_labels: &[usize], block: usize) -> Result<Eval> {
        let c = self.train.n_classes();
        let y_test = one_hot(test_labels, c, true);
        Ok(kip_krr::evaluate(
            &self.kernels[0],
            points(&self.state.x_s),
            &self.state.y_s,
            Ridge::Relative(self.params.params().reg),
            x_test,
            test_labels,
            Some(&y_test),
            block,
        )?)
    }

    /// The kernel used for evaluation (the first of the list).
    pub fn eval_kernel(&self) -> &dyn Kernel {
        &self.kernels[0]
    }
}
