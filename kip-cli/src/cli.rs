//! Command-line definitions (clap). Flags convert into the libraries'
//! parameter structs, which do the range checks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Dataset distillation by kernel ridge regression: Kernel Inducing Points
/// (KIP) and Label Solve, after Nguyen, Chen & Lee (ICLR 2021).
#[derive(Debug, Parser)]
#[command(name = "kip", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, global = true, value_parser = clap::value_parser!(usize))]
    pub threads: Option<usize>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Learn a support set with KIP (default: the embedded digits set).
    Distill(DistillArgs),
    /// Solve for the best support labels in closed form (Label Solve).
    LabelSolve(LabelSolveArgs),
    /// KRR test accuracy of a saved support set, under any kernel.
    Eval(EvalArgs),
    /// Train finite-width networks on a support set and on natural images.
    Transfer(TransferArgs),
    /// Write a run's support set for other tools (--format dc-bench: DC-BENCH / DD-Ranking).
    Export(ExportArgs),
    /// Summarise a dataset or a run directory.
    Inspect(InspectArgs),
    /// Compute a kernel matrix of points in .npy/.npz files (any kernel spec).
    Gram(GramArgs),
    /// Run one results row of the README (`--list` shows them all).
    Reproduce(ReproduceArgs),
}

/// `kip reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// The row (e.g. mnist-fc-100); see --list.
    pub row: Option<String>,
    /// List the rows (only ROW when given): the paper's figure, ours, the
    /// time and the command.
    #[arg(long)]
    pub list: bool,
    /// With --list: as the README's markdown table.
    #[arg(long, requires = "list")]
    pub markdown: bool,
    /// Folder with the dataset's files, or its parent [default: $KIP_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run directory (default: `runs/reproduce-<row>-<time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed (the measured figures are seed 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bar or messages but the final comparison.
    #[arg(long)]
    pub quiet: bool,
}

/// Where the data comes from and how it is prepared.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Dataset: digits (embedded), mnist, fashion-mnist, cifar10, npz:PATH.
    #[arg(long, default_value = "digits")]
    pub dataset: String,
    /// Folder with the dataset's files, or its parent [default: $KIP_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Preprocessing fitted on the training set: standard, zca, zca:STRENGTH, none.
    #[arg(long, default_value = "standard")]
    pub preprocess: String,
    /// Use the last N training images as the test set (never sampled as
    /// targets). For CIFAR-10, 10000 is exactly data_batch_5.
    #[arg(long, default_value_t = 0)]
    pub holdout: usize,
    /// Set the last N remaining training images aside as a validation set
    /// (never targets; val_acc/val_loss logged beside the test figures):
    /// choose recipes on it, report on the test set.
    #[arg(long, default_value_t = 0)]
    pub val: usize,
}

/// `kip distill`.
#[derive(Debug, Args)]
pub struct DistillArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Kernel spec, or a comma-separated list to draw one per step
    /// (e.g. fc1-ntk, fc3-ntk, fc2-nngp:w_std=1.4,b_std=0.1, rbf:gamma=1,
    /// convvec3-ntk, convnet3-ntk, conv-ntk:layers=CRCRGD; see docs/cli.md).
    #[arg(long, default_value = "fc1-ntk")]
    pub kernel: String,
    /// Support images (class-balanced).
    #[arg(long, default_value_t = 10)]
    pub support: usize,
    /// Target images drawn each step [default: 5000, or the largest
    /// class-balanced batch the training set allows when smaller].
    #[arg(long)]
    pub target_batch: Option<usize>,
    /// Adam steps in all, including steps done before a --resume [default:
    /// 300; with --resume, the run's own].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Adam learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.01)]
    pub lr: f64,
    /// Learning-rate schedule over --steps: constant, cosine (decay to 0)
    /// or cosine:M (decay to M·lr). A resumed run keeps the trajectory only
    /// with the same --steps.
    #[arg(long, default_value = "constant")]
    pub lr_schedule: String,
    /// Arithmetic of the step's two big products (X_t X_sᵀ and the
    /// gradient's Pᵀ X_t): f64, or f32 (about twice as fast; the kernel
    /// recursion, solve, Adam and the saved support set stay f64). With
    /// f32, convolutional kernels run their pair passes in f32 too (as
    /// their spec's precision=f32: about twice as fast). Evaluation uses
    /// --eval-kernel's own spec (f64 unless it says precision=f32).
    #[arg(long, default_value = "f64")]
    pub precision: String,
    /// Adam bias-correction index of the first step: 1 as the authors'
    /// notebook, 0 for textbook Adam.
    #[arg(long, default_value_t = 1)]
    pub adam_first_step: u64,
    /// Also learn the support labels.
    #[arg(long)]
    pub learn_labels: bool,
    /// Ridge relative to tr(K_ss)/n_support.
    #[arg(long, allow_negative_numbers = true, default_value_t = kip_krr::DEFAULT_REG)]
    pub reg: f64,
    /// Seed of the initial sample, target batches and kernel draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Support initialisation: real (class-balanced sample) or noise.
    #[arg(long, default_value = "real")]
    pub init: String,
    /// Standard deviation of noise initialisation (model space).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub init_std: f64,
    /// Fraction of support pixels replaced by noise and frozen, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub corrupt: f64,
    /// Augment each step's target batch: none, flip, shift:K, or both
    /// (flip,shift:2): random horizontal flips and translations by up to K
    /// pixels (zero fill), drawn from the run's seed.
    #[arg(long, default_value = "none")]
    pub augment: String,
    /// Augment the support images inside each step, as --augment (drawn
    /// afresh every step; the gradient flows back through the flips and
    /// shifts): the set is learned for a learner that augments it, as the
    /// standard protocol's networks do (docs/transfer.md).
    #[arg(long, default_value = "none")]
    pub augment_support: String,
    /// Row shards of each target batch, their loss terms summed in order
    /// (default: 1, or the number of MPI ranks). The shard count fixes a
    /// run's arithmetic: any number of processes reproduces it bit for bit.
    #[arg(long)]
    pub target_shards: Option<usize>,
    /// The loss: mse (the paper's) or platt (RFAD's cross-entropy of the
    /// predictions scaled by a learned temperature).
    #[arg(long, default_value = "mse")]
    pub loss: String,
    /// Kernel of every evaluation (test, --val) when not the training
    /// kernel: e.g. a high-fidelity random-feature kernel
    /// (rf-convnet3:channels=256,models=16) or an exact one for a run
    /// trained with a cheap random-feature kernel.
    #[arg(long)]
    pub eval_kernel: Option<String>,
    /// Evaluate test accuracy every N steps (0: only at the start and end).
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Write a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Test rows per kernel block during evaluation.
    #[arg(long, default_value_t = 2000)]
    pub eval_block: usize,
    /// Keep, beside the latest state, the support set with the best
    /// validation accuracy of the evaluations (every --eval-every steps) in
    /// RUN/best (kip eval and kip transfer read it as a run); the summary
    /// reports its step and test accuracy. Needs --val.
    #[arg(long, value_parser = ["val"])]
    pub keep_best: Option<String>,
    /// Run directory (default: `runs/<dataset>-<support>-<time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoint (its
    /// config.json supplies every setting but --steps, --data-dir and the
    /// output flags; a flag that would set anything else is refused).
    #[arg(long, conflicts_with_all = [
        "dataset", "preprocess", "holdout", "val", "kernel", "support", "target_batch", "lr",
        "lr_schedule", "precision", "adam_first_step", "learn_labels", "reg", "seed", "init",
        "init_std", "corrupt", "augment", "augment_support", "target_shards", "loss", "eval_kernel", "eval_every",
        "checkpoint_every", "eval_block", "keep_best", "out",
    ])]
    pub resume: Option<PathBuf>,
    /// No progress bar or messages, only errors.
    #[arg(long)]
    pub quiet: bool,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

/// `kip label-solve`.
#[derive(Debug, Args)]
pub struct LabelSolveArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Solve labels for this run's support images instead of a fresh sample.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Kernel spec (FC, RBF, linear or convolutional: see docs/cli.md).
    #[arg(long, default_value = "fc1-ntk")]
    pub kernel: String,
    /// Support images of a fresh class-balanced sample.
    #[arg(long, default_value_t = 100)]
    pub support: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ridge relative to tr(K_ss)/n_support.
    #[arg(long, allow_negative_numbers = true, default_value_t = kip_krr::DEFAULT_REG)]
    pub reg: f64,
    /// Target rows per kernel block (all training images are the targets).
    #[arg(long, default_value_t = 5000)]
    pub block: usize,
    /// Output directory (default: `runs/label-solve-<dataset>-<support>-<time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `kip eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory (holds support.npz and config.json).
    pub run: PathBuf,
    /// Kernel spec [default: the run's first kernel].
    #[arg(long)]
    pub kernel: Option<String>,
    /// Folder with the dataset's files, or its parent [default: the run's, then $KIP_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Ridge relative to tr(K_ss)/n_support [default: the run's].
    #[arg(long, allow_negative_numbers = true)]
    pub reg: Option<f64>,
    /// Test rows per kernel block.
    #[arg(long, default_value_t = 2000)]
    pub block: usize,
    /// Test set: the last N training images, or 0 for the dataset's own
    /// test set [default: the run's]. The preprocessing is refitted on the
    /// training images left, so a hold-out other than the run's shifts it
    /// slightly.
    #[arg(long)]
    pub holdout: Option<usize>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `kip transfer`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Run directory (holds support.npz and config.json).
    pub run: PathBuf,
    /// Folder with the dataset's files, or its parent [default: the run's, then $KIP_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Evaluation protocol. kip: the networks of --arch trained on the
    /// support labels (learned ones included; MSE, centred by default).
    /// dc: the dataset-distillation field's standard protocol
    /// (DatasetCondensation's evaluate_synset, as DC-BENCH runs it):
    /// ConvNet-3 of width 128 with instance norm, hard labels, SGD, DSA
    /// augmentation, --epochs 1000, mean over --runs 5 (docs/transfer.md).
    #[arg(long, default_value = "kip")]
    pub protocol: String,
    /// kip: architecture, mlp (fully connected: --depth hidden layers of
    /// --width ReLU units) or convnet (the follow-up paper's ConvNet: Conv
    /// 3x3, ReLU, --depth x [Conv, ReLU, AvgPool 2x2], Flatten, Dense, with
    /// --width channels; NTK parameterisation; needs image data).
    #[arg(long)]
    pub arch: Option<String>,
    /// mlp: hidden layers [default: 1]. convnet: [Conv, ReLU, AvgPool]
    /// blocks [default: 3]; each halves the image, so at most log2 of its
    /// smaller side (3 for 8x8 digits, 5 for 32x32). dc: [Conv, Norm, ReLU,
    /// AvgPool] blocks [default: 3].
    #[arg(long)]
    pub depth: Option<usize>,
    /// mlp: hidden units [default: 1024]. convnet and dc: channels per Conv
    /// [default: 128].
    #[arg(long)]
    pub width: Option<usize>,
    /// kip: parameterisation, ntk or standard (mlp only; the convnet is
    /// ntk) [default: ntk].
    #[arg(long)]
    pub param: Option<String>,
    /// kip: loss, mse (against the support labels) or xent [default: mse].
    #[arg(long)]
    pub loss: Option<String>,
    /// kip: optimiser, sgd (momentum 0.9) or adam [default: sgd].
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate [default: kip: the trainer's documented default; dc: 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// kip: learning-rate schedule over --steps: constant, cosine (decay to
    /// 0 at the last step) or cosine:M (decay to M·lr), as `kip distill`'s
    /// [default: cosine].
    #[arg(long)]
    pub lr_schedule: Option<String>,
    /// kip: training steps [default: 1000].
    #[arg(long)]
    pub steps: Option<usize>,
    /// dc: training epochs (the protocol trains epochs 0..=E, the rate ×0.1
    /// after epoch E/2+1) [default: 1000].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: kip: 100, capped at the support size; dc: 256].
    #[arg(long)]
    pub batch: Option<usize>,
    /// kip: train the centred network f(x; θ) − f(x; θ₀) (true or false):
    /// its output is zero at initialisation, so MSE training converges to
    /// the NTK regression that KIP optimises instead of that plus the random
    /// initial function, which swamps small training sets (see
    /// kip_nn::MlpParams) [default: true].
    #[arg(long, action = clap::ArgAction::Set)]
    pub center: Option<bool>,
    /// kip: seeds to average over [default: 3].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// dc: networks to average over [default: 5, as DC-BENCH].
    #[arg(long)]
    pub runs: Option<usize>,
    /// dc: DSA augmentation of every training batch (true or false)
    /// [default: true].
    #[arg(long, action = clap::ArgAction::Set)]
    pub dsa: Option<bool>,
    /// dc: base seed of the networks and of the natural sample [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// dc: also score a natural class-balanced sample of the same size
    /// (true or false) [default: true].
    #[arg(long, action = clap::ArgAction::Set)]
    pub natural: Option<bool>,
    /// dc: score on the test split (test) or on the run's validation split
    /// (val: for choosing recipes; the run must have been made with --val).
    #[arg(long, default_value = "test")]
    pub eval_on: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `kip export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run directory (holds support.npz and config.json).
    pub run: PathBuf,
    /// Output format: dc-bench (an .npz with `images` NHWC float32 in model
    /// space, one-hot `labels`, `class_ids`, and the preprocessing).
    #[arg(long)]
    pub format: String,
    /// Output file.
    pub out: PathBuf,
    /// Folder with the dataset's files, or its parent (standard
    /// preprocessing refits its channel statistics) [default: the run's,
    /// then $KIP_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `kip inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A run directory; without it, the dataset given by --dataset.
    pub run: Option<PathBuf>,
    /// Dataset to summarise: digits, mnist, fashion-mnist, cifar10, npz:PATH.
    #[arg(long, default_value = "digits")]
    pub dataset: String,
    /// Folder with the dataset's files, or its parent [default: $KIP_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `kip gram`.
#[derive(Debug, Args)]
pub struct GramArgs {
    /// Kernel spec: fc1-ntk, fc3-nngp, rbf, linear, convvec3-ntk,
    /// convnet3-nngp, conv-ntk:layers=CRCRGD, ... (see `docs/cli.md`).
    #[arg(long)]
    pub kernel: String,
    /// Points: a .npy file or a .npz archive, shaped [n, d], [n, h, w] or
    /// [n, h, w, c] (channels last), float32 or float64.
    pub a: PathBuf,
    /// Second point set, shaped as the first [default: the first: the
    /// symmetric Gram K(a, a)].
    pub b: Option<PathBuf>,
    /// Output .npy: the n_a × n_b matrix, float64.
    #[arg(long)]
    pub out: PathBuf,
    /// Array to read from .npz inputs [default: x, or the only array].
    #[arg(long)]
    pub key: Option<String>,
    /// Image shape HxWxC of flat [n, d] points (convolutional kernels
    /// need one; image-shaped arrays carry theirs).
    #[arg(long)]
    pub image_shape: Option<String>,
    /// Compute and write the matrix this many rows at a time, so that a
    /// matrix larger than memory goes to the file in blocks (a symmetric
    /// Gram is then computed as row blocks `K(a[rows], a)`: equal to the
    /// one-piece result to rounding, not bit for bit) [default: all rows
    /// at once].
    #[arg(long, value_name = "ROWS")]
    pub block: Option<usize>,
    /// No summary line.
    #[arg(long)]
    pub quiet: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}
