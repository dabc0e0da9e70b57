//! The run driver: a KIP run in a run directory, with its evaluation and
//! checkpoint cadence, metrics log, resume and recovery.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kip_data::{Dataset, Prepared, SupportSet, Transform};
use kip_kernels::points;
use kip_krr::Eval;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::best::{self, Best};
use crate::checkpoint;
use crate::collective::{agree_on_failure, single_process, Collective, Ranks};
use crate::config::{RunConfig, RunRecord};
use crate::error::{MetaError, Result};
use crate::run_dir::{MetricsLine, RunDir, CHECKPOINT, CONFIG, SUMMARY};
use crate::step::{Kip, KipState};

/// How a [`Runner`] came to its first step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A new run.
    New,
    /// A run resumed from its checkpoint at this step.
    Resumed {
        /// Steps done before.
        step: usize,
    },
    /// A run that had written its configuration but no checkpoint: started
    /// again from step 0 (same seed, so the same run).
    Restarted,
}

/// What [`Observer::started`] learns before the first step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunStart<'a> {
    /// How the run started.
    pub start: Start,
    /// Steps done so far.
    pub step: usize,
    /// Steps the run will have done at the end.
    pub steps: usize,
    /// Training images (targets are drawn from these).
    pub train_size: usize,
    /// Test images.
    pub test_size: usize,
    /// Test accuracy and loss of the support set as it is now.
    pub eval: Eval,
    /// What the data loader and the run want the user to know.
    pub notes: &'a [String],
}

/// Watches a run: progress output, and the way to stop it (Ctrl-C).
///
/// Returning [`ControlFlow::Break`] stops the run after a checkpoint of
/// the state at that moment; [`Runner::run`] then returns
/// [`RunOutcome::Stopped`]. `()` is the observer that watches nothing.
pub trait Observer {
    /// Before the first step.
    fn started(&mut self, _start: &RunStart<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// After each step, with the line it logged.
    fn step(&mut self, _line: &MetricsLine) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl Observer for () {}

/// `summary.json`: how a finished run went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run directory.
    pub run: PathBuf,
    /// Dataset name.
    pub dataset: String,
    /// Steps done.
    pub steps: usize,
    /// Support images.
    pub support: usize,
    /// Kernel specs.
    pub kernels: Vec<String>,
    /// Test accuracy of the initial support set (the metrics log's step 0).
    pub init_test_acc: f64,
    /// Test accuracy of the final support set.
    pub final_test_acc: f64,
    /// Test loss of the final support set.
    pub final_test_loss: Option<f64>,
    /// Validation accuracy of the final support set (runs with `val`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_val_acc: Option<f64>,
    /// Test images.
    pub test_size: usize,
    /// Seconds this session of the run took.
    pub elapsed_s: f64,
    /// The support set with the best validation accuracy (runs with
    /// [`RunConfig::keep_best`]; kept in `best/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Best>,
}

/// How [`Runner::run`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// All steps done; `summary.json` written.
    Finished(RunSummary),
    /// The observer stopped the run; a checkpoint holds the state at `step`.
    Stopped {
        /// Steps done.
        step: usize,
    },
}

/// Options of [`Runner::resume`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resume {
    /// The run's new total step count (default: the configured one). With a
    /// decaying learning rate the trajectory is that of a run of the new
    /// length from here on.
    pub steps: Option<usize>,
    /// Where the data is now, if it moved (default: the configured folder).
    pub data_dir: Option<PathBuf>,
}

/// A KIP run in a run directory: [`Runner::create`] or [`Runner::resume`],
/// then [`Runner::run`].
///
/// The runner owns the cadence: the test set is evaluated at the start
/// (the first metrics line, step 0), every `eval_every` steps and at the
/// end; a checkpoint (with `support.npz` and `support.png`) is written
/// every `checkpoint_every` steps, at the end, when the observer stops the
/// run, and before reporting a failed step (which leaves the state as it
/// was). A resumed run continues the identical trajectory (bitwise) and
/// logs each step once.
#[derive(Debug)]
pub struct Runner {
    dir: RunDir,
    config: RunConfig,
    kip: Kip,
    data: RunData,
    start: Start,
    /// Step of the last metrics line on disk (a resumed run).
    logged: Option<usize>,
    /// The best set on validation so far ([`RunConfig::keep_best`]).
    best: Option<Best>,
    t0: Instant,
}

/// What a runner keeps of its prepared data besides the training set,
/// which its [`Kip`] owns.
#[derive(Debug)]
struct RunData {
    test: Dataset,
    x_test: DMatrix<f64>,
    /// The validation images and their matrix, if the run sets some aside.
    val: Option<(Dataset, DMatrix<f64>)>,
    transform: Transform,
    display: kip_data::PngScale,
    notes: Vec<String>,
}

impl RunData {
    /// The training set and the rest.
    fn split(p: Prepared) -> (Dataset, RunData) {
        let display = p.display();
        let rest = RunData {
            x_test: p.test.to_matrix(),
            test: p.test,
            val: p.val.map(|v| {
                let m = v.to_matrix();
                (v, m)
            }),
            display,
            transform: p.transform,
            notes: p.notes,
        };
        (p.train, rest)
    }
}

impl Runner {
    /// A new run in `dir` (created; it must not hold a run), on the data
    /// `config.data` names.
    ///
    /// # Errors
    /// Invalid parameters (checked before anything is read or written);
    /// data errors; sizes the data cannot serve; [`MetaError::RunDir`] if
    /// `dir` holds a run.
    pub fn create(dir: impl AsRef<Path>, config: RunConfig) -> Result<Self> {
        config.kip.clone().check()?;
        config.check_cadence()?;
        RunDir::ensure_new(dir.as_ref())?;
        let data = config.data.load()?;
        Self::create_with(dir, config, data)
    }

    /// [`Runner::create`] on data already loaded, which must be what
    /// `config.data` loads (a resumed run reloads it from there).
    ///
    /// # Errors
    /// As [`Runner::create`]. Nothing is written unless the run can start.
    pub fn create_with(dir: impl AsRef<Path>, config: RunConfig, data: Prepared) -> Result<Self> {
        Self::create_on(single_process(), dir, config, data)
    }

    /// [`Runner::create_with`] for one of several processes sharing the run
    /// (every rank calls it with the same arguments and data; see
    /// [`crate::collective`]): rank 0 alone writes the run directory.
    ///
    /// # Errors
    /// As [`Runner::create`]; [`MetaError::Rank`] when another rank failed.
    pub fn create_on(ranks: Ranks, dir: impl AsRef<Path>, mut config: RunConfig, data: Prepared) -> Result<Self> {
        let t0 = Instant::now();
        let valid = config.kip.clone().check()?;
        config.check_cadence()?;
        // Every rank looks before rank 0 writes (the exchange is a barrier).
        let fresh = RunDir::ensure_new(dir.as_ref());
        agree(&*ranks, fresh)?;
        (config.train_size, config.test_size, config.image_shape) = data_sizes(&data);
        config.version = env!("CARGO_PKG_VERSION").to_string();
        let (train, data) = RunData::split(data);
        // Build first: it checks the settings against the data, and a
        // rejected run must not leave a configuration behind.
        let kip = Kip::new(valid, train)?.on_ranks(ranks.clone());
        let dir = on_root(&*ranks, || {
            let dir = RunDir::create(dir.as_ref())?;
            dir.write_json(CONFIG, &RunRecord::Distill(config.clone()))
        })
        .map(|_| RunDir::at(dir.as_ref()))?;
        Ok(Self {
            dir,
            config,
            kip,
            data,
            start: Start::New,
            logged: None,
            best: None,
            t0,
        })
    }

    /// Continue the run in `dir` from its checkpoint, with the settings of
    /// its `config.json` (a run without a checkpoint yet starts again from
    /// step 0). The metrics log is cut back to the checkpoint's step.
    ///
    /// # Errors
    /// [`MetaError::RunDir`] (not a KIP run, data that no longer matches
    /// the recorded sizes); [`MetaError::Checkpoint`]; data errors.
    pub fn resume(dir: impl AsRef<Path>, options: Resume) -> Result<Self> {
        Self::resume_on(single_process(), dir, options, None)
    }

    /// [`Runner::resume`] on data already loaded (a run created by
    /// [`Runner::create_with`] on images handed over in memory): `data`
    /// must be what the run was created on; its sizes are checked against
    /// the recorded ones.
    ///
    /// # Errors
    /// As [`Runner::resume`], without the loader errors.
    pub fn resume_with(dir: impl AsRef<Path>, options: Resume, data: Prepared) -> Result<Self> {
        Self::resume_on(single_process(), dir, options, Some(data))
    }

    /// [`Runner::resume`] (`data: None`) or [`Runner::resume_with`] for one
    /// of several processes sharing the run: every rank reads the run
    /// directory (a shared filesystem), rank 0 alone writes it. The number
    /// of ranks may differ from the run's earlier sessions.
    ///
    /// # Errors
    /// As [`Runner::resume`]; [`MetaError::Rank`] when another rank failed.
    pub fn resume_on(ranks: Ranks, dir: impl AsRef<Path>, options: Resume, data: Option<Prepared>) -> Result<Self> {
        let t0 = Instant::now();
        if best::is_snapshot(dir.as_ref()) {
            return Err(MetaError::run_dir(
                dir.as_ref(),
                format!(
                    "the best-on-validation set of a run ({}), not a run: resume the folder above it",
                    best::BEST
                ),
            ));
        }
        let dir = RunDir::open(dir.as_ref())?;
        let RunRecord::Distill(mut config) = dir.read_config()? else {
            return Err(MetaError::run_dir(
                dir.file(CONFIG),
                "not a KIP run (made by another command)",
            ));
        };
        if let Some(steps) = options.steps {
            config.kip.steps = steps;
        }
        if options.data_dir.is_some() {
            config.data.data_dir = options.data_dir;
        }
        let valid = config.kip.clone().check()?;
        config.check_cadence()?;
        let data = match data {
            Some(d) => d,
            None => config.data.load()?,
        };
        check_recorded_sizes(&dir, &config, &data)?;
        let (train, data) = RunData::split(data);
        let ckpt = dir.file(CHECKPOINT);
        let (kip, start, logged) = if ckpt.is_file() {
            let (state, meta) = checkpoint::load(&ckpt)?;
            if meta.kernels != config.kip.kernels {
                return Err(MetaError::Checkpoint {
                    path: ckpt,
                    reason: format!(
                        "kernels {:?} differ from the run's configuration {:?}",
                        meta.kernels, config.kip.kernels
                    ),
                });
            }
            let id = checkpoint::run_identity(&config);
            if meta.run_id.as_ref().is_some_and(|m| *m != id) {
                return Err(MetaError::Checkpoint {
                    path: ckpt,
                    reason: format!(
                        "written by another run (identity {}; this run's config.json gives {id}): a checkpoint copied from another run does not resume this one",
                        meta.run_id.unwrap_or_default()
                    ),
                });
            }
            let step = state.step;
            // The state fits the data before anything on disk changes.
            let kip = Kip::from_state(valid, train, state)?;
            (kip, Start::Resumed { step }, Some(step))
        } else if dir.file(SUMMARY).is_file() {
            // A finished run whose checkpoint is gone: restarting would
            // recompute it all (hours, perhaps) and rewrite its files.
            return Err(MetaError::run_dir(
                dir.file(CHECKPOINT),
                format!(
                    "missing, and the run finished ({} is there): resuming would recompute it from step 0; to do that, delete {} first",
                    SUMMARY,
                    dir.file(SUMMARY).display()
                ),
            ));
        } else {
            (Kip::new(valid, train)?, Start::Restarted, None)
        };
        let kip = kip.on_ranks(ranks.clone());
        // Every rank has read what it needs before rank 0 writes.
        let logged = on_root(&*ranks, || {
            let logged = dir.truncate_metrics(logged)?;
            dir.write_json(CONFIG, &RunRecord::Distill(config.clone()))?;
            Ok(logged)
        })?
        .flatten();
        let best = if config.keep_best { best::load(&dir) } else { None };
        Ok(Self {
            dir,
            config,
            kip,
            data,
            start,
            logged,
            best,
            t0,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// The configuration (as written to `config.json`).
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The KIP state machine (its state, parameters, training set).
    pub fn kip(&self) -> &Kip {
        &self.kip
    }

    /// How the run started.
    pub fn start(&self) -> Start {
        self.start
    }

    /// Test accuracy and loss of the current support set.
    ///
    /// # Errors
    /// Kernel/KRR failures.
    pub fn evaluate(&self) -> Result<Eval> {
        self.kip.evaluate(
            points(&self.data.x_test),
            self.data.test.labels(),
            self.config.eval_block,
        )
    }

    /// Validation accuracy and loss of the current support set, if the
    /// run has a validation set.
    ///
    /// # Errors
    /// Kernel/KRR failures.
    pub fn evaluate_val(&self) -> Result<Option<Eval>> {
        self.data
            .val
            .as_ref()
            .map(|(v, x)| self.kip.evaluate(points(x), v.labels(), self.config.eval_block))
            .transpose()
    }

    /// The current support set, for export.
    ///
    /// # Errors
    /// [`MetaError::Data`] if its shapes do not fit the data (they always
    /// do for a state the runner made).
    pub fn support_set(&self) -> Result<SupportSet> {
        self.support_set_of(self.kip.state())
    }

    fn support_set_of(&self, st: &KipState) -> Result<SupportSet> {
        Ok(SupportSet::from_model(
            &st.x_s,
            &st.y_s,
            &st.labels,
            &self.data.transform,
            self.kip.train().class_names(),
        )?)
    }

    /// Writes the checkpoint, `support.npz` and `support.png` of the
    /// current state.
    ///
    /// # Errors
    /// Write failures.
    pub fn save(&self) -> Result<()> {
        self.save_state(self.kip.state())
    }

    /// Writes the checkpoint, `support.npz` and `support.png` of `state`.
    fn save_state(&self, state: &KipState) -> Result<()> {
        on_root(&**self.kip.ranks(), || {
            let id = checkpoint::run_identity(&self.config);
            checkpoint::save(&self.dir.file(CHECKPOINT), state, &self.config.kip.kernels, Some(&id))?;
            self.dir.write_support(&self.support_set_of(state)?, self.data.display)
        })
        .map(|_| ())
    }

    /// Whether any rank's observer asked to stop (every rank stops at the
    /// same step).
    fn stop_agreed(&self, flow: ControlFlow<()>) -> bool {
        self.kip.ranks().first_flagged(flow.is_break()).is_some()
    }

    /// Run to `kip.steps` steps (see the type's docs for the cadence).
    ///
    /// # Errors
    /// [`MetaError::StepFailed`] for a failed step (its state before the
    /// step saved first); evaluation and write failures.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<RunOutcome> {
        let steps = self.config.kip.steps;
        let mut first_line = self.empty_line(0);
        let (first_eval, first_val) = self.evaluate_into(&mut first_line)?;
        first_line.elapsed_s = self.t0.elapsed().as_secs_f64();
        if self.logged.is_none() && self.kip.state().step == 0 {
            // The natural baseline: the first line of every run.
            self.log(first_line.clone())?;
        }
        if self.kip.state().step == 0 {
            // The initial set is a candidate, as every evaluated one (a
            // resumed run's first evaluation is not: a straight run never
            // made it).
            self.keep_if_best(first_eval, first_val)?;
        }
        let start = RunStart {
            start: self.start,
            step: self.kip.state().step,
            steps,
            train_size: self.kip.train().len(),
            test_size: self.data.test.len(),
            eval: first_eval,
            notes: &self.data.notes,
        };
        if self.stop_agreed(observer.started(&start)) {
            return self.stop();
        }
        let (mut last_eval, mut last_val) = (first_eval, first_val);
        let mut stepped = false;
        // The states before the last two steps: when a step's forward pass
        // fails, the state it started from is not usable (finite values
        // whose kernel overflows), but the one before it was (its step
        // succeeded from it). Buffers are reused: a copy per step.
        let (mut older, mut newer): (Option<KipState>, Option<KipState>) = (None, None);
        while self.kip.state().step < steps {
            std::mem::swap(&mut older, &mut newer);
            match &mut newer {
                Some(s) => s.clone_from(self.kip.state()),
                None => newer = Some(self.kip.state().clone()),
            }
            let info = match self.kip.step() {
                Ok(info) => info,
                Err(e) => {
                    // A rejected update leaves a usable state as it was;
                    // any other failure condemns the state the step
                    // started from: keep the one before it (on the first
                    // step of this process there is none: the state it
                    // started from was loaded or drawn, keep it).
                    let rejected_update = matches!(&e, MetaError::NonFinite { what, .. } if what.ends_with(" update"));
                    let good = match &older {
                        Some(prev) if !rejected_update => prev,
                        _ => self.kip.state(),
                    };
                    self.save_state(good)?;
                    return Err(MetaError::StepFailed {
                        step: good.step,
                        dir: self.dir.path().to_path_buf(),
                        source: Box::new(e),
                    });
                }
            };
            stepped = true;
            let done = self.kip.state().step;
            let mut line = MetricsLine {
                loss: Some(info.stats.loss),
                target_acc: Some(info.stats.target_acc),
                jitter: (info.stats.jitter > 0.0).then_some(info.stats.jitter),
                ..self.empty_line(done)
            };
            if is_due(self.config.eval_every, done) || done == steps {
                (last_eval, last_val) = self.evaluate_into(&mut line)?;
                self.keep_if_best(last_eval, last_val)?;
            }
            self.log(line.clone())?;
            if is_due(self.config.checkpoint_every, done) && done < steps {
                self.save()?;
            }
            if self.stop_agreed(observer.step(&line)) {
                return self.stop();
            }
        }
        self.save()?;
        let step = self.kip.state().step;
        if !stepped && self.logged != Some(step) {
            // Nothing left to do (resumed at the end) and the log does not
            // reach this step: log the final evaluation.
            let mut line = self.empty_line(step);
            fill(&mut line, last_eval, last_val);
            self.log(line)?;
        }
        let ranks = self.kip.ranks().clone();
        let init_test_acc = on_root(&*ranks, || self.dir.read_metrics())?
            .unwrap_or_default()
            .first()
            .filter(|l| l.step == 0)
            .and_then(|l| l.test_acc)
            .unwrap_or(first_eval.accuracy);
        let summary = RunSummary {
            run: self.dir.path().to_path_buf(),
            dataset: self.config.data.dataset.clone(),
            steps: step,
            support: self.config.kip.n_support,
            kernels: self.config.kip.kernels.clone(),
            init_test_acc,
            final_test_acc: last_eval.accuracy,
            final_test_loss: last_eval.loss,
            final_val_acc: last_val.map(|v| v.accuracy),
            test_size: self.data.test.len(),
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            best: self.best,
        };
        on_root(&*ranks, || self.dir.write_json(SUMMARY, &summary))?;
        Ok(RunOutcome::Finished(summary))
    }

    /// Save and report a stop at the current step.
    fn stop(&self) -> Result<RunOutcome> {
        self.save()?;
        Ok(RunOutcome::Stopped {
            step: self.kip.state().step,
        })
    }

    fn empty_line(&self, step: usize) -> MetricsLine {
        MetricsLine {
            step,
            loss: None,
            target_acc: None,
            jitter: None,
            test_acc: None,
            test_loss: None,
            val_acc: None,
            val_loss: None,
            elapsed_s: self.t0.elapsed().as_secs_f64(),
        }
    }

    /// Evaluate on the test set (and the validation set, if any) into
    /// `line`.
    fn evaluate_into(&self, line: &mut MetricsLine) -> Result<(Eval, Option<Eval>)> {
        let (test, val) = (self.evaluate()?, self.evaluate_val()?);
        fill(line, test, val);
        Ok((test, val))
    }

    /// With [`RunConfig::keep_best`]: the current set becomes the best if
    /// its validation accuracy beats the best so far (written to `best/`).
    fn keep_if_best(&mut self, test: Eval, val: Option<Eval>) -> Result<()> {
        if !self.config.keep_best || !best::improves(self.best.as_ref(), val) {
            return Ok(());
        }
        let found = Best {
            step: self.kip.state().step,
            val_acc: val.map_or(f64::NAN, |v| v.accuracy),
            test_acc: test.accuracy,
            test_loss: test.loss,
        };
        on_root(&**self.kip.ranks(), || {
            let support = self.support_set_of(self.kip.state())?;
            best::save(&self.dir, &self.config, &support, self.data.display, found)
        })?;
        self.best = Some(found);
        Ok(())
    }

    fn log(&mut self, line: MetricsLine) -> Result<()> {
        on_root(&**self.kip.ranks(), || self.dir.append_metrics(&line))?;
        self.logged = Some(line.step);
        Ok(())
    }
}

/// The evaluation figures of a metrics line.
fn fill(line: &mut MetricsLine, test: Eval, val: Option<Eval>) {
    line.test_acc = Some(test.accuracy);
    line.test_loss = test.loss;
    line.val_acc = val.map(|v| v.accuracy);
    line.val_loss = val.and_then(|v| v.loss);
}

/// `f` on rank 0 (its value there, `None` elsewhere); a failure is
/// reported on every rank, so no rank waits for one that gave up.
fn on_root<T>(ranks: &dyn Collective, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let out = if ranks.is_root() { f().map(Some) } else { Ok(None) };
    agree(ranks, out)
}

/// `local` if every rank succeeded; else this rank's own error, or
/// [`MetaError::Rank`] naming the (lowest) rank that failed.
fn agree<T>(ranks: &dyn Collective, local: Result<T>) -> Result<T> {
    if ranks.size() == 1 {
        return local;
    }
    let message = local.as_ref().err().map(ToString::to_string);
    match agree_on_failure(ranks, message.as_deref()) {
        None => local,
        Some((rank, message)) => Err(local.err().unwrap_or(MetaError::Rank { rank, message })),
    }
}

/// Whether a period-`every` event falls on step `done` (never for 0).
fn is_due(every: usize, done: usize) -> bool {
    every > 0 && done % every == 0
}

/// `(train images, test images, [h, w, c])`: what a run records of its
/// data at creation and checks on resume.
fn data_sizes(data: &Prepared) -> (usize, usize, [usize; 3]) {
    let s = data.train.shape();
    (data.train.len(), data.test.len(), [s.h, s.w, s.c])
}

/// A resumed run's data must have the sizes recorded at its creation.
fn check_recorded_sizes(dir: &RunDir, config: &RunConfig, data: &Prepared) -> Result<()> {
    let now = data_sizes(data);
    let then = (config.train_size, config.test_size, config.image_shape);
    if then.0 != 0 && now != then {
        return Err(MetaError::run_dir(
            dir.file(CONFIG),
            format!(
                "the data no longer matches the run: {} train / {} test images of shape {:?} recorded, {} / {} of {:?} loaded",
                then.0, then.1, then.2, now.0, now.1, now.2
            ),
        ));
    }
    Ok(())
}
