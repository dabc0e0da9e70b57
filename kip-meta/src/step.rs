//! One KIP step at a time: [`Kip`] samples a class-balanced target batch,
//! computes the loss and its gradient, and takes an Adam step on the
//! support images (and labels); [`KipState`] is everything that evolves.

use kip_data::{
    balanced_counts, class_balanced, gaussian_images, one_hot, one_hot_into, DataError, Dataset, PixelMask,
};
use kip_kernels::{
    points, points_row_major, row_norms, AnyKernel, AnyPoints, Kernel, KernelSpec, PointsF32, PointsView,
};
use kip_krr::Eval;
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adam::{AdamParams, AdamState};
use crate::collective::{single_process, Ranks};
use crate::error::{MetaError, Result};
use crate::evaluate::evaluate_support_on;
use crate::loss::{kip_loss_grad_objective, KipWorkspace, LossStats, Shards};
use crate::objective::{Loss, Objective};
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
    /// Frozen (corrupted) pixels, if the run corrupts any.
    pub frozen: Option<PixelMask>,
    /// The run's random stream (target batches, kernel draws).
    pub rng: ChaCha8Rng,
    /// Log-temperature θ of the Platt loss (0 and unused with MSE).
    pub log_temp: f64,
    /// Adam moments of θ (one value each).
    pub adam_t: AdamState,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// Index of the step (0-based).
    pub step: usize,
    /// Loss, target accuracy and Cholesky jitter on this step's batch
    /// (before the update).
    pub stats: LossStats,
    /// Which kernel of the list was drawn.
    pub kernel: usize,
}

/// A KIP run over a training set in model space.
#[derive(Debug)]
pub struct Kip {
    params: ValidKipParams,
    kernels: Vec<AnyKernel>,
    /// The kernel of evaluations (`eval_kernel`, or the first of `kernels`).
    eval_kernel: AnyKernel,
    train: Dataset,
    by_class: Vec<Vec<usize>>,
    state: KipState,
    ws: KipWorkspace,
    /// The processes that share each step's target shards.
    ranks: Ranks,
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

/// `n` class-balanced images (parameter `name`) can be drawn from classes
/// of these sizes.
/// The seed of a random-feature kernel's networks at `step` of a run
/// seeded `seed`.
pub fn step_kernel_seed(seed: u64, step: usize) -> u64 {
    kip_kernels::rf::mix_seed(seed ^ kip_kernels::rf::mix_seed(step as u64 ^ 0x005E_ED0F_57E9))
}

fn check_balanced(name: &'static str, n: usize, by_class: &[Vec<usize>]) -> Result<()> {
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    balanced_counts(&sizes, n).map(|_| ()).map_err(|e| match e {
        DataError::TooFewInClass { class, available, needed, .. } => MetaError::param(
            name,
            n,
            format!(
                "at most what the training set can serve class-balanced: class {class} has {available} images, {needed} needed"
            ),
        ),
        e => e.into(),
    })?;
    if n < by_class.len() {
        return Err(MetaError::param(
            name,
            n,
            format!(">= {} (one image per class)", by_class.len()),
        ));
    }
    Ok(())
}

impl Kip {
    /// Start a run: draws the initial support set from `train` (model space).
    ///
    /// # Errors
    /// Support or target sizes the training set cannot serve class-balanced;
    /// a `reg` whose ridge overflows ([`Kip::check_ridge`]).
    pub fn new(params: ValidKipParams, train: Dataset) -> Result<Self> {
        let p = params.params().clone();
        let by_class = train.indices_by_class();
        check_balanced("n_support", p.n_support, &by_class)?;
        check_balanced("n_target", p.n_target, &by_class)?;
        let (n_s, d, c) = (p.n_support, train.dim(), train.n_classes());
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let sample = train.sample_balanced(n_s, &mut rng)?;
        let mut x_s = match p.init {
            Init::Real => sample.x,
            Init::Noise { std } => DMatrix::from_row_slice(n_s, d, &gaussian_images(n_s, d, std, &mut rng)),
        };
        let labels = sample.labels;
        let mut frozen = None;
        if p.corrupt > 0.0 {
            let mask = PixelMask::bernoulli(n_s, d, p.corrupt, &mut rng)?;
            let noise = DMatrix::from_row_slice(n_s, d, &gaussian_images(n_s, d, 1.0, &mut rng));
            mask.fill_frozen(&mut x_s, &noise);
            frozen = Some(mask);
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
            log_temp: 0.0,
            adam_t: AdamState::new(1),
        };
        let kip = Self::from_state(params, train, state)?;
        kip.check_ridge()?;
        Ok(kip)
    }

    /// Check that the ridge `λ = reg · tr(K_ss)/n_s` of the current support
    /// set is finite with every training kernel of the run (a finite `reg`
    /// can still overflow it). Costs one kernel diagonal of the support set
    /// per kernel, before a run writes anything.
    ///
    /// # Errors
    /// [`MetaError::Param`] naming `reg` and the largest value that fits;
    /// kernel failures.
    pub fn check_ridge(&self) -> Result<()> {
        let reg = self.params.params().reg;
        let x_s = &self.state.x_s;
        let n_s = x_s.nrows();
        if reg == 0.0 || n_s == 0 {
            return Ok(());
        }
        // The training kernels only: an expensive evaluation kernel's
        // diagonal would cost more than the check is worth.
        for k in &self.kernels {
            let trace: f64 = k.gram_diag(points(x_s))?.iter().sum();
            // As `Ridge::value`; a non-finite trace is the data's problem.
            if trace.is_finite() && !(reg * trace / n_s as f64).is_finite() {
                return Err(MetaError::param(
                    "reg",
                    format!("{reg:?}"),
                    format!(
                        "at most about {:.3e} here: the ridge reg · tr(K_ss)/n_s overflows (tr(K_ss) = {trace:.3e} with {})",
                        f64::MAX / trace,
                        k.spec()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Continue from a saved state (see [`crate::checkpoint`]).
    ///
    /// # Errors
    /// A state whose shapes do not fit the parameters or the data.
    pub fn from_state(params: ValidKipParams, train: Dataset, state: KipState) -> Result<Self> {
        let p = params.params();
        let by_class = train.indices_by_class();
        check_balanced("n_target", p.n_target, &by_class)?;
        if p.target_shards > p.n_target {
            return Err(MetaError::param(
                "target_shards",
                p.target_shards,
                format!("at most n_target ({})", p.n_target),
            ));
        }
        let (n_s, d, c) = (p.n_support, train.dim(), train.n_classes());
        let ok = state.x_s.shape() == (n_s, d)
            && state.y_s.shape() == (n_s, c)
            && state.labels.len() == n_s
            && state.adam_x.m.len() == n_s * d
            && state.adam_y.m.len() == n_s * c
            && state.frozen.as_ref().is_none_or(|m| m.dims() == (n_s, d));
        if !ok {
            return Err(MetaError::Shape {
                what: "state",
                expected: format!("support {n_s} x {d} and {c} classes, as the parameters and data"),
                got: format!("support {:?}, labels {:?}", state.x_s.shape(), state.y_s.shape()),
            });
        }
        // `--precision f32` runs the conv kernels' pair passes in f32 too.
        let single = |s: &KernelSpec| match p.precision {
            Precision::F32 => s.in_single_precision(),
            Precision::F64 => *s,
        };
        let kernels: Vec<AnyKernel> = params
            .kernels()
            .iter()
            .map(|s| single(s).build().for_images(train.shape()))
            .collect();
        let eval_kernel: AnyKernel = params.eval_kernel().build().for_images(train.shape());
        // Every kernel must fit the data (image shape, pooling depth): one
        // point through each, before a run writes anything.
        let first: Vec<f64> = train.pixels()[..d].iter().map(|&v| f64::from(v)).collect();
        for k in kernels.iter().chain([&eval_kernel]) {
            k.gram_diag(points_row_major(&first, 1, d))?;
        }
        let n_t = p.n_target;
        let f32_targets = p.precision == Precision::F32;
        let train_norms = row_norms(PointsF32::new(train.pixels(), train.len(), d))?;
        Ok(Self {
            kernels,
            eval_kernel,
            by_class,
            state,
            ws: KipWorkspace::default(),
            ranks: single_process(),
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

    /// Spread the steps and evaluations over `ranks` (every rank must run
    /// the same `Kip`): the results are bitwise those of one process.
    #[must_use]
    pub fn on_ranks(mut self, ranks: Ranks) -> Self {
        self.ranks = ranks;
        self
    }

    /// The ranks this run is spread over.
    pub fn ranks(&self) -> &Ranks {
        &self.ranks
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
        if !p.augment.is_none() {
            // Moved pixels change the norms: recompute them for this batch.
            let (n, shape) = (self.t_idx.len(), self.train.shape());
            self.t_norms = match p.precision {
                Precision::F64 => {
                    p.augment.apply(shape, &mut self.x_t, &mut rng);
                    row_norms(points_row_major(&self.x_t, n, d))?
                }
                Precision::F32 => {
                    p.augment.apply(shape, &mut self.x_t32, &mut rng);
                    row_norms(PointsF32::new(&self.x_t32, n, d))?
                }
            };
        }
        one_hot_into(&self.t_labels, c, true, &mut self.y_t_rm);
        let n_t = self.t_idx.len();
        for i in 0..n_t {
            for j in 0..c {
                self.y_t[(i, j)] = self.y_t_rm[i * c + j];
            }
        }
        // Random-feature kernels draw new networks every step, from the
        // run's seed and the step (a resumed run draws the same ones).
        let drawn = self.kernels[which].redrawn(step_kernel_seed(p.seed, step));
        let kernel = drawn.as_ref().unwrap_or(&self.kernels[which]);
        // Support augmentation: the kernel sees A(x_s); the gradient goes
        // back through Aᵀ below.
        let support_aug = (!p.augment_support.is_none()).then(|| {
            let draws = p.augment_support.draw(self.state.x_s.nrows(), &mut rng);
            let mut x = self.state.x_s.transpose();
            draws.apply(self.train.shape(), x.as_mut_slice());
            (draws, x.transpose())
        });
        let x_s = points(support_aug.as_ref().map_or(&self.state.x_s, |(_, x)| x));
        let x_t: AnyPoints<'_> = match p.precision {
            Precision::F64 => points_row_major(&self.x_t, n_t, d).into(),
            Precision::F32 => PointsF32::new(&self.x_t32, n_t, d).into(),
        };
        let x_t = x_t.with_norms(&self.t_norms);
        let shards = Shards {
            count: p.target_shards,
            ranks: &*self.ranks,
        };
        let objective = match p.loss {
            Loss::Mse => Objective::Mse,
            Loss::Platt => Objective::Platt {
                log_temp: self.state.log_temp,
            },
        };
        let out = kip_loss_grad_objective(
            kernel,
            x_s,
            &self.state.y_s,
            x_t,
            &self.y_t,
            p.reg,
            objective,
            &mut self.ws,
            shards,
        )
        .map_err(|e| match e {
            // Support values whose squares overflow (a diverged run) reach
            // the kernel as non-finite norms: report the step, not the kernel.
            MetaError::Kernel(
                kip_kernels::KernelError::NonFinite { .. } | kip_kernels::KernelError::NormOverflow { .. },
            )
            | MetaError::Krr(kip_krr::KrrError::NonFinite { .. }) => MetaError::NonFinite {
                what: "kernel matrix (support values overflow)",
                step,
            },
            e => e,
        })?;
        let stats = out.stats;
        if !stats.loss.is_finite() {
            return Err(MetaError::NonFinite { what: "loss", step });
        }
        if !out.grad_x.iter().all(|v| v.is_finite()) || (p.learn_labels && !out.grad_y.iter().all(|v| v.is_finite())) {
            return Err(MetaError::NonFinite { what: "gradient", step });
        }
        if let Some((draws, _)) = &support_aug {
            let mut g = out.grad_x.transpose();
            draws.adjoint(self.train.shape(), g.as_mut_slice());
            out.grad_x.copy_from(&g.transpose());
        }
        if let Some(mask) = &self.state.frozen {
            mask.apply_to_gradient(out.grad_x);
        }
        let (grad_x, grad_y, grad_t) = (out.grad_x.as_slice(), out.grad_y.as_slice(), out.grad_log_temp);
        // Labels first (checked, unchanged on failure), then images: either
        // both updates are applied or neither.
        let adam = AdamParams {
            lr: p.adam.lr * p.lr_schedule.factor(step, p.steps),
            ..p.adam
        };
        let st = &mut self.state;
        // The temperature first, on copies: applied only if the rest is.
        let (mut adam_t, mut log_temp) = (st.adam_t.clone(), [st.log_temp]);
        if p.loss == Loss::Platt && !adam_t.try_update(&adam, step, &mut log_temp, &[grad_t]) {
            return Err(MetaError::NonFinite {
                what: "temperature update",
                step,
            });
        }
        if p.learn_labels {
            let mut trial = st.adam_y.clone();
            let mut y = st.y_s.clone();
            if !trial.try_update(&adam, step, y.as_mut_slice(), grad_y) {
                return Err(MetaError::NonFinite {
                    what: "label update",
                    step,
                });
            }
            if !st.adam_x.try_update(&adam, step, st.x_s.as_mut_slice(), grad_x) {
                return Err(MetaError::NonFinite {
                    what: "support update",
                    step,
                });
            }
            (st.y_s, st.adam_y) = (y, trial);
        } else if !st.adam_x.try_update(&adam, step, st.x_s.as_mut_slice(), grad_x) {
            return Err(MetaError::NonFinite {
                what: "support update",
                step,
            });
        }
        (self.state.adam_t, self.state.log_temp) = (adam_t, log_temp[0]);
        self.state.rng = rng;
        self.state.step += 1;
        Ok(StepInfo {
            step,
            stats,
            kernel: which,
        })
    }

    /// KRR accuracy and loss of the current support set on a test set, with
    /// the evaluation kernel (`eval_kernel`, else the first of the list), predicting in blocks of `block` rows
    /// (`test_labels`: one class id per test point).
    ///
    /// # Errors
    /// [`MetaError::Label`] for a class id outside the training set's
    /// classes; kernel/KRR failures (shapes, non-finite points, `block` 0).
    pub fn evaluate(&self, x_test: PointsView<'_>, test_labels: &[usize], block: usize) -> Result<Eval> {
        evaluate_support_on(
            &*self.ranks,
            &self.eval_kernel,
            points(&self.state.x_s),
            &self.state.y_s,
            self.params.params().reg,
            x_test,
            test_labels,
            block,
        )
    }

    /// The kernel used for evaluation (`eval_kernel`, else the first of
    /// the list).
    pub fn eval_kernel(&self) -> &dyn Kernel {
        &self.eval_kernel
    }
}
