//! What `kip distill` shows while it runs: notes, a progress bar (hidden
//! with --quiet or when stderr is not a terminal), and Ctrl-C (SIGINT) or
//! SIGTERM, which stop the run after a checkpoint; and a pair counter for
//! long kernel evaluations (`kip eval`, `kip label-solve` with
//! convolutional kernels).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use kip_kernels::{Kernel, KernelSpec, PointsView, Result as KResult};
use kip_meta::{MetricsLine, Observer, RunStart, Start};
use nalgebra::DMatrix;

use crate::error::{CliError, Result};

/// The observer of a `kip distill` run.
pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
    dir: PathBuf,
    /// The dataset's name and what the run does, for the start message.
    dataset: String,
    detail: String,
    last_acc: f64,
    /// The stopping signal's number once one arrived (0 before).
    interrupted: Arc<AtomicUsize>,
}

impl Progress {
    /// An observer for the run in `dir` on `dataset`; `detail` (support
    /// size, batch, kernel) goes into the start message. Installs the
    /// SIGINT and SIGTERM handlers (schedulers stop jobs with SIGTERM: it
    /// is treated as Ctrl-C).
    ///
    /// # Errors
    /// If a handler cannot be installed.
    pub fn new(dir: PathBuf, dataset: String, detail: String, quiet: bool) -> Result<Self> {
        let interrupted = Arc::new(AtomicUsize::new(0));
        for (sig, name) in [
            (signal_hook::consts::SIGINT, "SIGINT"),
            (signal_hook::consts::SIGTERM, "SIGTERM"),
        ] {
            let number = usize::try_from(sig).expect("signal numbers are positive");
            signal_hook::flag::register_usize(sig, Arc::clone(&interrupted), number)
                .map_err(|e| CliError::Usage(format!("cannot install the {name} handler: {e}")))?;
        }
        Ok(Self {
            bar: ProgressBar::hidden(),
            quiet,
            dir,
            dataset,
            detail,
            last_acc: f64::NAN,
            interrupted,
        })
    }

    /// A message on stderr (not with --quiet).
    pub fn say(&self, s: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("{s}"));
        }
    }

    /// Leaves the bar where it is (after a stop or a failure).
    pub fn abandon(&self) {
        self.bar.abandon();
    }

    /// Clears the bar (after a finished run).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// The signal (SIGINT or SIGTERM) that asked the run to stop, if one
    /// arrived.
    pub fn signal(&self) -> Option<i32> {
        match self.interrupted.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    fn stop_requested(&self) -> ControlFlow<()> {
        if self.signal().is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Observer for Progress {
    fn started(&mut self, s: &RunStart<'_>) -> ControlFlow<()> {
        for n in s.notes {
            self.say(&format!("note: {n}"));
        }
        match s.start {
            Start::New => {}
            Start::Resumed { step } => self.say(&format!("resuming {} at step {step}", self.dir.display())),
            Start::Restarted => self.say(&format!(
                "no checkpoint in {} yet: starting at step 0",
                self.dir.display()
            )),
        }
        self.say(&format!(
            "{}: {} train / {} test images, {}",
            self.dataset, s.train_size, s.test_size, self.detail
        ));
        self.say(&format!("test accuracy at step {}: {:.4}", s.step, s.eval.accuracy));
        self.last_acc = s.eval.accuracy;
        if !self.quiet {
            self.bar = ProgressBar::new(s.steps as u64);
            self.bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .expect("a valid template"),
            );
            self.bar.set_position(s.step as u64);
        }
        self.stop_requested()
    }

    fn step(&mut self, line: &MetricsLine) -> ControlFlow<()> {
        if let Some(acc) = line.test_acc {
            self.last_acc = acc;
        }
        if line.test_acc.is_some() || line.step % 10 == 0 {
            self.bar.set_message(format!(
                "loss {:.4e} test acc {:.4}",
                line.loss.unwrap_or(f64::NAN),
                self.last_acc
            ));
        }
        self.bar.inc(1);
        self.stop_requested()
    }
}

/// A kernel that counts the pairs it evaluates on a progress bar: long
/// evaluations with convolutional kernels (milliseconds per pair) show how
/// far they are. Every call is forwarded unchanged.
#[derive(Debug)]
pub struct CountedKernel<'k> {
    inner: &'k dyn Kernel,
    bar: ProgressBar,
}

impl<'k> CountedKernel<'k> {
    /// Count `inner`'s pairs against `total` (drawn on stderr when it is a
    /// terminal, unless `quiet`).
    pub fn new(inner: &'k dyn Kernel, total: u64, what: &str, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} pairs, {elapsed} (eta {eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Self { inner, bar }
    }

    /// Clear the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Kernel for CountedKernel<'_> {
    fn spec(&self) -> KernelSpec {
        self.inner.spec()
    }

    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> KResult<()> {
        self.inner.gram_into(a, b, out)?;
        self.bar.inc((a.nrows() * b.nrows()) as u64);
        Ok(())
    }

    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> KResult<()> {
        self.inner.gram_sym_into(a, out)?;
        let n = a.nrows() as u64;
        self.bar.inc(n * (n + 1) / 2);
        Ok(())
    }

    fn gram_diag(&self, a: PointsView<'_>) -> KResult<Vec<f64>> {
        self.inner.gram_diag(a)
    }

    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> KResult<()> {
        self.inner.vjp_into(a, b, g, da, db)
    }

    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> KResult<()> {
        self.inner.vjp_sym_into(a, g, da)
    }

    fn as_dot(&self) -> Option<&dyn kip_kernels::DotKernel> {
        self.inner.as_dot()
    }
}
