//! Infinite-width kernels of convolutional networks: Conv-Vec (`L × [Conv,
//! ReLU]`, Flatten, Dense) and the pooled ConvNet of the KIP follow-up
//! (Nguyen, Novak, Xiao, Lee 2021), or any stack of the layers in
//! [`ConvLayer`], NNGP and NTK, with neural-tangents' layer conventions
//! and exact vector-Jacobian products with respect to both inputs.
//!
//! Each image pair runs through the stack as a covariance map that keeps
//! only the displacements between positions its readout can see (module
//! `maps`): the spatial diagonal (`h·w` numbers) where the stack never
//! pools and reads out with Flatten (Conv-Vec), `2r + 1` more in front of
//! each pooling (the ConvNet at 32 × 32: 15 × 15 displacements, a sixth
//! of the `(h·w)²` covariance), all of it for GlobalAvgPool; one pair at
//! a time per thread (bounded memory: a few maps per thread, never all
//! pairs at once). Each image's own pass (its variances at every
//! activation) runs once per image and block, not per pair. The backward
//! pass of a pair goes to one side (the rows); the other side's gradient
//! is the same pass on the transposed problem. The variances' cotangents
//! are summed per image and carried to its pixels by one backward pass
//! through the image's own stack.

mod act;
mod act_map;
mod arch;
mod blur;
mod maps;
mod pair;
mod real;

use std::ops::{Deref, DerefMut, Range};
use std::sync::Mutex;

use kip_core::AVec;
use nalgebra::DMatrix;
use rayon::prelude::*;

pub(crate) use crate::spec::{DEFAULT_B_STD, DEFAULT_W_STD};
pub use arch::{ConvArch, ConvLayer};
pub use kip_core::ImageShape;

use crate::error::Result;
use crate::kernel::Kernel;
use crate::norms::{check_g, norms_into, same_dim};
use crate::points::PointsView;
use crate::spec::KernelSpec;
use pair::{ImageCache, Passes, Plan, Workspace};

/// Images per block: the per-image caches of one block of rows and one of
/// columns are held at a time.
const BLOCK: usize = 256;

/// Columns per parallel task of the Gram.
const TASK_COLS: usize = 16;

/// A convolutional kernel: a [`ConvArch`] and the image shape its points
/// are read as (`None` until known: every evaluation then fails with
/// [`crate::KernelError::Image`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvKernel {
    arch: ConvArch,
    shape: Option<ImageShape>,
}

impl ConvKernel {
    /// The kernel of `arch` on images of `shape`.
    pub fn new(arch: ConvArch, shape: Option<ImageShape>) -> Self {
        Self { arch, shape }
    }

    /// The stack.
    pub fn arch(&self) -> &ConvArch {
        &self.arch
    }

    /// The image shape, if set.
    pub fn image_shape(&self) -> Option<ImageShape> {
        self.shape
    }

    /// Check the points' dimension and lay out the stack.
    fn plan(&self, d: usize) -> Result<Plan> {
        let shape = arch::check_fit(&self.arch, self.shape, d)?;
        Ok(Plan::new(&self.arch, shape))
    }

    /// Check one point set (non-empty, finite) and plan for its dimension.
    fn checked(&self, what: &'static str, a: &PointsView<'_>) -> Result<Plan> {
        let mut scratch = Vec::new();
        norms_into(what, a, &mut scratch)?;
        self.plan(a.ncols())
    }

    /// Check two point sets (as [`ConvKernel::checked`], the same
    /// dimension) and, when given, a cotangent of their pairs.
    fn checked_pair(&self, a: &PointsView<'_>, b: &PointsView<'_>, g: Option<&DMatrix<f64>>) -> Result<Plan> {
        let plan = self.checked("a", a)?;
        let mut scratch = Vec::new();
        norms_into("b", b, &mut scratch)?;
        same_dim(a.ncols(), b)?;
        if let Some(g) = g {
            check_g(g, a.nrows(), b.nrows())?;
        }
        Ok(plan)
    }
}

/// Scratch shared by the tasks of one call: a task leases a workspace and
/// returns it when done, so the maps (megabytes each for pooled stacks)
/// are allocated about once per thread and call, not once per task.
struct Pool<T>(Mutex<Vec<Workspace<T>>>);

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T: Passes> Pool<T> {
    fn lease(&self) -> Lease<'_, T> {
        let ws = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        Lease {
            pool: self,
            ws: Some(ws),
        }
    }
}

/// A workspace on loan from a [`Pool`], returned on drop.
struct Lease<'p, T> {
    pool: &'p Pool<T>,
    ws: Option<Workspace<T>>,
}

impl<T> Deref for Lease<'_, T> {
    type Target = Workspace<T>;
    fn deref(&self) -> &Workspace<T> {
        self.ws.as_ref().expect("leased until dropped")
    }
}

impl<T> DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut Workspace<T> {
        self.ws.as_mut().expect("leased until dropped")
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            self.pool.0.lock().unwrap_or_else(|e| e.into_inner()).push(ws);
        }
    }
}

/// The caches of rows `rows` of `x`, in parallel.
fn caches<T: Passes>(plan: &Plan, pool: &Pool<T>, x: &PointsView<'_>, rows: Range<usize>) -> Vec<ImageCache<T>> {
    rows.into_par_iter()
        .map_init(
            || pool.lease(),
            |ws, i| ImageCache::new(plan, x.row(i).iter().copied(), ws),
        )
        .collect()
}

/// Blocks of `BLOCK` indices.
fn blocks(n: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n.div_ceil(BLOCK)).map(move |b| b * BLOCK..((b + 1) * BLOCK).min(n))
}

/// `out[i, j] = K(a_i, b_j)` for the rows `ri` of `a` and columns `cj` of
/// `b` (`lower`: only `j ≤ i`, by global index).
fn gram_block<T: Passes>(
    plan: &Plan,
    pool: &Pool<T>,
    ra: (&[ImageCache<T>], usize),
    cb: (&[ImageCache<T>], usize),
    lower: bool,
    out: &mut DMatrix<f64>,
) {
    let (rc, r0) = ra;
    let (cc, c0) = cb;
    let col_tasks = cc.len().div_ceil(TASK_COLS);
    let vals: Vec<(usize, usize, Vec<f64>)> = (0..rc.len() * col_tasks)
        .into_par_iter()
        .map_init(
            || pool.lease(),
            |ws, task| {
                let (k, t) = (task / col_tasks, task % col_tasks);
                let cols = t * TASK_COLS..((t + 1) * TASK_COLS).min(cc.len());
                let i = r0 + k;
                let v = cols
                    .clone()
                    .take_while(|&jj| !lower || c0 + jj <= i)
                    .map(|jj| T::forward(plan, &rc[k], &cc[jj], ws))
                    .collect();
                (i, c0 + cols.start, v)
            },
        )
        .collect();
    for (i, j0, v) in vals {
        for (jj, x) in v.into_iter().enumerate() {
            out[(i, j0 + jj)] = x;
        }
    }
}

/// The gradient with respect to the rows `x` of `Σ_ij g(i, j)·K(x_i, y_j)`
/// into `out` (`n_x × d`), and with `values` the kernel matrix itself
/// (`n_x × n_y`, from the same forward passes).
fn rows_grad<T: Passes>(
    plan: &Plan,
    x: &PointsView<'_>,
    y: &PointsView<'_>,
    g: impl Fn(usize, usize) -> f64 + Sync,
    out: &mut DMatrix<f64>,
    mut values: Option<&mut DMatrix<f64>>,
) {
    let pool = Pool::<T>::default();
    let (n, d, ny) = (x.nrows(), x.ncols(), y.nrows());
    if out.shape() != (n, d) {
        *out = DMatrix::zeros(n, d);
    }
    if let Some(v) = values.as_deref_mut() {
        if v.shape() != (n, ny) {
            *v = DMatrix::zeros(n, ny);
        }
    }
    let record = values.is_some();
    for rows in blocks(n) {
        let rc = caches(plan, &pool, x, rows.clone());
        let mut acc: Vec<RowAcc<T>> = (0..rows.len())
            .map(|_| RowAcc {
                dx: AVec::zeros(plan.image_len()),
                var: plan.var_accumulators(),
                k: if record { vec![0.0; ny] } else { Vec::new() },
            })
            .collect();
        for cols in blocks(ny) {
            let cc = caches(plan, &pool, y, cols.clone());
            acc.par_iter_mut().enumerate().for_each_init(
                || pool.lease(),
                |ws, (k, row)| {
                    for (jj, b) in cc.iter().enumerate() {
                        let gij = g(rows.start + k, cols.start + jj);
                        if gij != 0.0 || record {
                            let v = T::value_grad(plan, &rc[k], b, ws, gij, &mut row.dx, &mut row.var);
                            if record {
                                row.k[cols.start + jj] = v;
                            }
                        }
                    }
                },
            );
        }
        acc.par_iter_mut().enumerate().for_each_init(
            || pool.lease(),
            |ws, (k, row)| T::self_backward(plan, &rc[k], ws, &row.var, &mut row.dx),
        );
        for (k, row) in acc.iter().enumerate() {
            ImageCache::unplanar(plan, &row.dx, |col, v| out[(rows.start + k, col)] = v);
            if let Some(vals) = values.as_deref_mut() {
                for (j, &v) in row.k.iter().enumerate() {
                    vals[(rows.start + k, j)] = v;
                }
            }
        }
    }
}

/// What the backward passes of one row image accumulate: its gradient
/// (planar), its variances' cotangents, and (when recorded) its kernel
/// values.
struct RowAcc<T> {
    dx: AVec<T>,
    var: Vec<AVec<T>>,
    k: Vec<f64>,
}

/// `out = K(a, b)` (see [`Kernel::gram_into`]).
fn gram<T: Passes>(plan: &Plan, a: &PointsView<'_>, b: &PointsView<'_>, out: &mut DMatrix<f64>) {
    let pool = Pool::<T>::default();
    let (n1, n2) = (a.nrows(), b.nrows());
    if out.shape() != (n1, n2) {
        *out = DMatrix::zeros(n1, n2);
    }
    for rows in blocks(n1) {
        let rc = caches(plan, &pool, a, rows.clone());
        for cols in blocks(n2) {
            let cc = caches(plan, &pool, b, cols.clone());
            gram_block(plan, &pool, (&rc, rows.start), (&cc, cols.start), false, out);
        }
    }
}

/// `out = K(a, a)` from its lower triangle.
fn gram_sym<T: Passes>(plan: &Plan, a: &PointsView<'_>, out: &mut DMatrix<f64>) {
    let pool = Pool::<T>::default();
    let n = a.nrows();
    if out.shape() != (n, n) {
        *out = DMatrix::zeros(n, n);
    }
    for rows in blocks(n) {
        let rc = caches(plan, &pool, a, rows.clone());
        for cols in blocks(rows.end) {
            // The diagonal block pairs the row block with itself.
            let other;
            let cc: &[ImageCache<T>] = if cols == rows {
                &rc
            } else {
                other = caches(plan, &pool, a, cols.clone());
                &other
            };
            gram_block(plan, &pool, (&rc, rows.start), (cc, cols.start), true, out);
        }
    }
    for j in 0..n {
        for i in j + 1..n {
            out[(j, i)] = out[(i, j)];
        }
    }
}

/// `K(a_i, a_i)` for every row.
fn gram_diag<T: Passes>(plan: &Plan, a: &PointsView<'_>) -> Vec<f64> {
    let pool = Pool::<T>::default();
    let mut out = Vec::with_capacity(a.nrows());
    for rows in blocks(a.nrows()) {
        let rc = caches(plan, &pool, a, rows);
        out.par_extend(
            rc.par_iter()
                .map_init(|| pool.lease(), |ws, x| T::forward(plan, x, x, ws)),
        );
    }
    out
}

/// Run `$f::<f32>` or `$f::<f64>` as the kernel's arithmetic says.
macro_rules! in_precision {
    ($k:expr, $f:ident($($arg:expr),* $(,)?)) => {
        if $k.arch.f32 {
            $f::<f32>($($arg),*)
        } else {
            $f::<f64>($($arg),*)
        }
    };
}

impl Kernel for ConvKernel {
    fn spec(&self) -> KernelSpec {
        KernelSpec::Conv(self.arch)
    }

    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        let plan = self.checked_pair(&a, &b, None)?;
        in_precision!(self, gram(&plan, &a, &b, out));
        Ok(())
    }

    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        let plan = self.checked("a", &a)?;
        in_precision!(self, gram_sym(&plan, &a, out));
        Ok(())
    }

    fn gram_diag(&self, a: PointsView<'_>) -> Result<Vec<f64>> {
        let plan = self.checked("a", &a)?;
        Ok(in_precision!(self, gram_diag(&plan, &a)))
    }

    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> Result<()> {
        let plan = self.checked_pair(&a, &b, Some(g))?;
        if let Some(da) = da {
            in_precision!(self, rows_grad(&plan, &a, &b, |i, j| g[(i, j)], da, None));
        }
        if let Some(db) = db {
            in_precision!(self, rows_grad(&plan, &b, &a, |i, j| g[(j, i)], db, None));
        }
        Ok(())
    }

    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> Result<()> {
        let plan = self.checked("a", &a)?;
        check_g(g, a.nrows(), a.nrows())?;
        // K(x, y) = K(y, x): the pair (i, j) reaches x_i through both
        // orderings, and the diagonal K(x, x) twice through one.
        in_precision!(self, rows_grad(&plan, &a, &a, |i, j| g[(i, j)] + g[(j, i)], da, None));
        Ok(())
    }

    fn gram_vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        out: &mut DMatrix<f64>,
        da: &mut DMatrix<f64>,
    ) -> Result<()> {
        let plan = self.checked_pair(&a, &b, Some(g))?;
        in_precision!(self, rows_grad(&plan, &a, &b, |i, j| g[(i, j)], da, Some(out)));
        Ok(())
    }
}
