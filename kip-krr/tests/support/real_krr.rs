//! The KRR setup on a real dataset shared by `tests/real_data.rs` (MNIST) and
//! `examples/label_solve_cifar.rs` (CIFAR-10): a seeded class-balanced
//! support set with centred one-hot labels, and a test set scored by
//! [`kip_krr::evaluate`]. Both include this file with a `#[path]` module (a
//! file in a subfolder of `tests/` is not a test target of its own).

use kip_data::{one_hot, Dataset};
use kip_kernels::{points, Kernel};
use kip_krr::{evaluate, Eval, Ridge};
use nalgebra::DMatrix;
use rand::SeedableRng;

/// `n` class-balanced points of `pool` (ChaCha8 seeded with `seed`) as a
/// matrix, and their centred one-hot labels over `pool`'s classes.
pub fn balanced_support(pool: &Dataset, n: usize, seed: u64) -> kip_data::Result<(DMatrix<f64>, DMatrix<f64>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let s = pool.sample_balanced(n, &mut rng)?;
    Ok((s.x, one_hot(&s.labels, pool.n_classes(), true)))
}

/// A test set as KRR scores it: its points as a matrix and its centred
/// one-hot labels.
pub struct TestSet<'a> {
    data: &'a Dataset,
    x: DMatrix<f64>,
    y: DMatrix<f64>,
}

impl<'a> TestSet<'a> {
    /// `data` with labels one-hot over `n_classes` (those of the training
    /// pool).
    pub fn new(data: &'a Dataset, n_classes: usize) -> Self {
        Self {
            data,
            x: data.to_matrix(),
            y: one_hot(data.labels(), n_classes, true),
        }
    }

    /// Accuracy and loss of KRR on the support `(x_s, y_s)`, `block` test
    /// points at a time.
    pub fn evaluate(
        &self,
        kernel: &dyn Kernel,
        x_s: &DMatrix<f64>,
        y_s: &DMatrix<f64>,
        ridge: Ridge,
        block: usize,
    ) -> kip_krr::Result<Eval> {
        evaluate(
            kernel,
            points(x_s),
            y_s,
            ridge,
            points(&self.x),
            self.data.labels(),
            Some(&self.y),
            block,
        )
    }
}
