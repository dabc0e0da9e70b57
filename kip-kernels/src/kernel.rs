//! The [`Kernel`] trait and the engine shared by every kernel of this crate.
//!
//! Every kernel here is an *inner-product kernel*: `K(x, x') = f(s, n, n')`
//! with `s = ⟨x,x'⟩/d`, `n = ‖x‖²/d`, `n' = ‖x'‖²/d`. So a Gram matrix is one
//! GEMM (`S = A Bᵀ/d`) followed by one fused, parallel elementwise pass, and a
//! vector-Jacobian product is that pass (with partial derivatives) followed by
//! GEMMs:
//!
//! ```text
//! dL/da_i = (1/d) Σ_j P_ij b_j + (2/d) (Σ_j g_ij ∂f/∂n) a_i,    P = g ∘ ∂f/∂s
//! dL/db_j = (1/d) Σ_i P_ij a_i + (2/d) (Σ_i g_ij ∂f/∂n') b_j
//! ```

use std::fmt;

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::fc::{fc_partials, fc_values, fc_vjp, FcParams, PartialsMut};
use crate::linalg::{
    dot, gemm, gemm_seq_raw, points, zeroed_matrix, AnyPoints, MatMut, MatRef, NormedPoints, PointsF32, PointsView,
    Scalar,
};
use crate::multiversion;
use crate::spec::KernelSpec;

/// Rows per parallel task of the elementwise passes.
const ROW_BLOCK: usize = 2048;

/// Column groups of the column-major norm pass (fixed: thread-independent
/// summation order).
const NORM_COL_GROUPS: usize = 8;

/// An inner-product kernel with analytic gradients.
///
/// Implementors supply the scalar map `f(s, n, n')` (values and partials over
/// a column) and its diagonal `f(n, n, n)`; the provided methods do the rest.
/// Inputs are `n × d` point sets ([`PointsView`]: any strides, so column-major
/// nalgebra matrices and row-major buffers both work without copies).
pub trait Kernel: Send + Sync + fmt::Debug {
    /// The spec that names this kernel.
    fn spec(&self) -> KernelSpec;

    /// In place over a block given as its column pieces (`cols[j]` holds
    /// the `na.len()` rows of column `j`; `nb.len()` columns):
    /// `cols[j][i] ← f(cols[j][i], na[i], nb[j])`. Blocks let a kernel
    /// compute per-point quantities once per row and column; pieces let the
    /// block be rows of a larger column-major matrix (a tile).
    fn map_values(&self, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]);

    /// Over a block of whole columns (column-major, `na.len()` rows,
    /// `nb.len()` columns): `f` and `∂f/∂s`, `∂f/∂n`, `∂f/∂n'` at
    /// `(s[i,j], na[i], nb[j])`.
    fn map_partials(&self, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>);

    /// The backward map of [`Kernel::vjp`] over a block given as its column
    /// pieces (`cols[j]` and `g[j]` hold the `na.len()` rows of column `j`):
    /// `cols` holds the inner products `s` on entry and `P = g ∘ ∂f/∂s` on
    /// return, `ra[i] ← Σ_j g_ij ∂f/∂n` and `rb[j] ← Σ_i g_ij ∂f/∂n'`.
    ///
    /// The default evaluates [`Kernel::map_partials`] column by column into
    /// scratch; a kernel may override it with a pass that never stores the
    /// partials. Either way the sums must come in an order that depends on
    /// the block alone (never on the threads).
    fn map_vjp(&self, cols: &mut [&mut [f64]], g: &[&[f64]], na: &[f64], nb: &[f64], ra: &mut [f64], rb: &mut [f64]) {
        vjp_via_partials(self, cols, g, na, nb, ra, rb);
    }

    /// `K(x, x) = f(n, n, n)` and its total derivative `d/dn`, `n = ‖x‖²/d`.
    fn diag(&self, n: f64) -> (f64, f64);

    /// `K(a, b)`, an `n1 × n2` matrix.
    ///
    /// # Errors
    /// Empty inputs, different dimensions, non-finite entries.
    fn gram(&self, a: &DMatrix<f64>, b: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut out = DMatrix::zeros(0, 0);
        self.gram_into(points(a), points(b), &mut out)?;
        Ok(out)
    }

    /// `K(a, b)` into `out` (resized if its shape differs; no allocation
    /// when it already has the right shape).
    ///
    /// With enough rows the work runs in row tiles, one per task: a
    /// single-threaded GEMM into the tile's rows of `out`, the norms of
    /// those rows of `a` (just read by the GEMM, so from cache), and the
    /// kernel map over the tile (so `a` is read from memory once, not twice,
    /// and the map finds the tile in cache). Otherwise one parallel GEMM,
    /// then the map. Both give the same bits.
    ///
    /// # Errors
    /// As [`Kernel::gram`]. After an error `out` holds unspecified values
    /// (a bad row of `a` is found by the tile that holds it, after other
    /// tiles may have been written).
    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        let (mut na, mut nb) = (Vec::new(), Vec::new());
        let Some(rows) = tile_rows(a.nrows(), b.nrows(), 8) else {
            checked_pair(&a, &b, &mut na, &mut nb)?;
            inner_products(&a, &b, out);
            map_columns(out, |cols, rows, cols_range| {
                self.map_values(cols, &na[rows], &nb[cols_range])
            });
            return Ok(());
        };
        checked_b_for_tiles(&a, &b, &mut nb)?;
        tiled_gram(&a, &b, rows, out, &mut na, |_, cols, na| self.map_values(cols, na, &nb))?;
        Ok(())
    }

    /// `K(a, a)`: exactly symmetric, with the diagonal from [`Kernel::diag`]
    /// (the angle of a point with itself is exactly 0).
    ///
    /// # Errors
    /// As [`Kernel::gram`].
    fn gram_sym(&self, a: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut out = DMatrix::zeros(0, 0);
        self.gram_sym_into(points(a), &mut out)?;
        Ok(out)
    }

    /// [`Kernel::gram_sym`] into a caller-owned buffer.
    ///
    /// # Errors
    /// As [`Kernel::gram`].
    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        let na = checked_norms("a", &a)?;
        inner_products(&a, &a, out);
        map_columns(out, |cols, rows, cols_range| {
            self.map_values(cols, &na[rows], &na[cols_range])
        });
        let n = na.len();
        for (j, &nj) in na.iter().enumerate() {
            out[(j, j)] = self.diag(nj).0;
            for i in j + 1..n {
                out[(j, i)] = out[(i, j)];
            }
        }
        Ok(())
    }

    /// The diagonal `K(a_i, a_i)` alone (O(n·d)).
    ///
    /// # Errors
    /// As [`Kernel::gram`].
    fn gram_diag(&self, a: PointsView<'_>) -> Result<Vec<f64>> {
        Ok(checked_norms("a", &a)?.into_iter().map(|n| self.diag(n).0).collect())
    }

    /// Vector-Jacobian product of `K(a, b)` with `g = dL/dK`: `(dL/da, dL/db)`.
    ///
    /// # Errors
    /// As [`Kernel::gram`], and `g` not `n1 × n2` or non-finite.
    fn vjp(&self, a: &DMatrix<f64>, b: &DMatrix<f64>, g: &DMatrix<f64>) -> Result<(DMatrix<f64>, DMatrix<f64>)> {
        let (mut da, mut db) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        self.vjp_into(points(a), points(b), g, Some(&mut da), Some(&mut db))?;
        Ok((da, db))
    }

    /// [`Kernel::vjp`] into caller-owned buffers; pass `None` for a side that
    /// is not needed (it saves a GEMM).
    ///
    /// Without keeping the partials. The backward map
    /// ([`Kernel::map_vjp`]: `P = g ∘ ∂f/∂s` in place of the inner
    /// products, and the sums of `g ∘ ∂f/∂n` and `g ∘ ∂f/∂n'`) runs over a
    /// fixed grid of 128 × 256 blocks, its sums added in grid order, so the
    /// result never depends on the thread count. With enough rows (and
    /// `n2 ≤ 4096`) the work before the GEMMs runs in row tiles, one task
    /// each: a single-threaded GEMM for the tile's inner products, the
    /// norms of its rows of `a`, the backward map, and the diagonal term
    /// `(2/d)·(Σ_j g_ij ∂f/∂n)·a_i` of `dL/da` — one task reads the tile's
    /// rows of `a` three times in a row, where the untiled pass makes three
    /// passes over all of `a` (GEMM, norms, diagonal term). Then one GEMM
    /// per side adds `P b/d` and `Pᵀ a/d`.
    /// Tiled and untiled give the same bits.
    ///
    /// # Errors
    /// As [`Kernel::vjp`]. After an error `da` and `db` hold unspecified
    /// values (as [`Kernel::gram_into`]).
    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        mut da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> Result<()> {
        let (mut na, mut nb) = (Vec::new(), Vec::new());
        let mut p = zeroed_matrix(0, 0);
        let inv_d = 1.0 / a.ncols() as f64;
        let rb = match tile_rows(a.nrows(), b.nrows(), VJP_BLOCK_ROWS) {
            Some(rows) => {
                checked_b_for_tiles(&a, &b, &mut nb)?;
                check_g(g, a.nrows(), b.nrows())?;
                let rb = vjp_tiles(self, &a, &b, rows, g, &nb, &mut p, &mut na, da.as_deref_mut())?;
                if let Some(da) = da {
                    let out = MatMut::from_dmatrix(da);
                    gemm(out, inv_d, MatRef::from_dmatrix(&p), MatRef::from_points(&b), 1.0);
                }
                rb
            }
            None => {
                checked_pair(&a, &b, &mut na, &mut nb)?;
                check_g(g, na.len(), nb.len())?;
                inner_products(&a, &b, &mut p);
                let (ra, rb) = vjp_blocks(self, &mut p, g, &na, &nb);
                if let Some(da) = da {
                    write_side(da, &a, &ra, |out| {
                        gemm(out, inv_d, MatRef::from_dmatrix(&p), MatRef::from_points(&b), 1.0)
                    });
                }
                rb
            }
        };
        if let Some(db) = db {
            write_side(db, &b, &rb, |out| {
                gemm(out, inv_d, MatRef::from_dmatrix(&p).t(), MatRef::from_points(&a), 1.0)
            });
        }
        Ok(())
    }

    /// Vector-Jacobian product of `K(a, a)` (as [`Kernel::gram_sym`]) with
    /// `g = dL/dK` (any `n × n` matrix, not necessarily symmetric).
    ///
    /// # Errors
    /// As [`Kernel::vjp`].
    fn vjp_sym(&self, a: &DMatrix<f64>, g: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut da = DMatrix::zeros(0, 0);
        self.vjp_sym_into(points(a), g, &mut da)?;
        Ok(da)
    }

    /// [`Kernel::vjp_sym`] into a caller-owned buffer.
    ///
    /// # Errors
    /// As [`Kernel::vjp`].
    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> Result<()> {
        let mut lin = Linearization::default();
        lin.compute_sym(self, a)?;
        lin.vjp_sym_into(self, a, g, da)
    }
}

/// A Gram matrix together with its partial derivatives, kept for a later
/// vector-Jacobian product without recomputing the GEMM (the KIP loop's fast
/// path: forward, solve, then backward).
///
/// Buffers are reused across calls of the same shape, so a loop that calls
/// [`Linearization::compute`] and [`Linearization::vjp_into`] every step
/// allocates nothing after the first.
#[derive(Clone, Debug, Default)]
pub struct Linearization {
    k: DMatrix<f64>,
    ks: DMatrix<f64>,
    ka: DMatrix<f64>,
    kb: DMatrix<f64>,
    na: Vec<f64>,
    nb: Vec<f64>,
    sym: bool,
    p: DMatrix<f64>,
    g2: DMatrix<f64>,
    r: Vec<f64>,
    /// Single-precision buffers of the f32 path (`compute` with
    /// [`PointsF32`]): `b` rounded (row-major), the `n1 × n2` product (S,
    /// then P), the `n2 × d` product.
    b32: Vec<f32>,
    p32: Vec<f32>,
    out32: Vec<f32>,
}

impl Linearization {
    /// Evaluate `K(a, b)` and its partials.
    ///
    /// `a` in `f64` ([`PointsView`]) gives the exact path. `a` in `f32`
    /// ([`PointsF32`]) computes the inner products `⟨a_i, b_j⟩` with a
    /// single-precision GEMM (`b` rounded to `f32` for the product); norms,
    /// the kernel recursion and its partials stay `f64`. The inner products
    /// then carry a relative error of about `1e-7·√d` (f32 accumulation):
    /// use it where the caller's tolerance allows (the KIP step's targets).
    ///
    /// `a` may carry its norms ([`NormedPoints`], from [`row_norms`]): then
    /// they are taken as given (checked for length and finiteness only)
    /// instead of computed in a pass over `a`.
    ///
    /// # Errors
    /// As [`Kernel::gram`]; with `f32` points also `b` entries beyond the
    /// `f32` range; supplied norms of the wrong length or not finite.
    pub fn compute<'a, K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        a: impl Into<NormedPoints<'a>>,
        b: PointsView<'_>,
    ) -> Result<()> {
        let a = a.into();
        match a.norms {
            Some(n) => supplied_norms(n, a.points.nrows(), a.points.ncols(), &mut self.na)?,
            None => match a.points {
                AnyPoints::F64(p) => norms_into("a", &p, &mut self.na)?,
                AnyPoints::F32(p) => norms_f32_into("a", &p, &mut self.na)?,
            },
        }
        norms_into("b", &b, &mut self.nb)?;
        match a.points {
            AnyPoints::F64(a) => {
                same_dim(a.ncols(), &b)?;
                inner_products(&a, &b, &mut self.p);
            }
            AnyPoints::F32(a) => self.inner_products_f32(a, b)?,
        }
        self.fill_partials(kernel, matches!(a.points, AnyPoints::F32(_)));
        self.sym = false;
        Ok(())
    }

    /// `S = a bᵀ/d` into `p32` through an f32 GEMM (widened into `p` by
    /// [`Linearization::fill_partials`]).
    fn inner_products_f32(&mut self, a: PointsF32<'_>, b: PointsView<'_>) -> Result<()> {
        let (n1, n2, d) = (a.nrows(), b.nrows(), a.ncols());
        same_dim(d, &b)?;
        round_rows_f32("b", &b, &mut self.b32)?;
        self.p32.resize(n1 * n2, 0.0);
        gemm(
            MatMut::new(&mut self.p32, n1, n2, 1, n1),
            1.0 / d as f32,
            a.mat(),
            MatRef::row_major(&self.b32, n2, d).t(),
            0.0,
        );
        if self.p.shape() != (n1, n2) {
            self.p = zeroed_matrix(n1, n2);
        }
        Ok(())
    }

    /// Evaluate `K(a, a)` (as [`Kernel::gram_sym`]: exactly symmetric, exact
    /// diagonal) and its partials.
    ///
    /// # Errors
    /// As [`Kernel::gram`].
    pub fn compute_sym<K: Kernel + ?Sized>(&mut self, kernel: &K, a: PointsView<'_>) -> Result<()> {
        norms_into("a", &a, &mut self.na)?;
        self.nb.clear();
        self.nb.extend_from_slice(&self.na);
        inner_products(&a, &a, &mut self.p);
        self.fill_partials(kernel, false);
        let n = self.na.len();
        for j in 0..n {
            self.k[(j, j)] = kernel.diag(self.na[j]).0;
            for i in j + 1..n {
                self.k[(j, i)] = self.k[(i, j)];
            }
        }
        self.sym = true;
        Ok(())
    }

    /// Map the inner products held in `p` to `k` and the partials.
    fn fill_partials<K: Kernel + ?Sized>(&mut self, kernel: &K, from_f32: bool) {
        let (n1, n2) = self.p.shape();
        for m in [&mut self.k, &mut self.ks, &mut self.ka, &mut self.kb] {
            if m.shape() != (n1, n2) {
                *m = zeroed_matrix(n1, n2);
            }
        }
        let (na, nb, s32) = (&self.na, &self.nb, &self.p32);
        let w = n1 * col_group(n2);
        self.p
            .as_mut_slice()
            .par_chunks_mut(w)
            .zip(self.k.as_mut_slice().par_chunks_mut(w))
            .zip(self.ks.as_mut_slice().par_chunks_mut(w))
            .zip(self.ka.as_mut_slice().par_chunks_mut(w))
            .zip(self.kb.as_mut_slice().par_chunks_mut(w))
            .enumerate()
            .for_each(|(b, ((((s, k), ks), ka), kb))| {
                if from_f32 {
                    // Widened block by block, so the partials read it from
                    // cache instead of a separate pass over all of S.
                    let len = s.len();
                    for (o, &v) in s.iter_mut().zip(&s32[b * w..b * w + len]) {
                        *o = f64::from(v);
                    }
                }
                let j0 = b * w / n1;
                let cols = j0..j0 + k.len() / n1;
                kernel.map_partials(s, na, &nb[cols], PartialsMut { k, ks, ka, kb });
            });
    }

    /// The Gram matrix of the last `compute`/`compute_sym`.
    pub fn k(&self) -> &DMatrix<f64> {
        &self.k
    }

    /// `(dL/da, dL/db)` for `g = dL/dK`, with the same `a`, `b` as
    /// [`Linearization::compute`]; `None` skips a side (and its GEMM).
    ///
    /// # Errors
    /// `g` of the wrong shape or non-finite.
    ///
    /// # Panics
    /// If `a`/`b` do not have the shapes of the last `compute`.
    pub fn vjp_into(
        &mut self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> Result<()> {
        let (n1, n2) = self.checked_shape(&a, &b, "vjp_into");
        check_g(g, n1, n2)?;
        if let Some(da) = da {
            fill_p(&mut self.p, &mut self.r, g, &self.ks, &self.ka, true);
            self.write_da(da, &a, &b);
        }
        if let Some(db) = db {
            fill_p(&mut self.p, &mut self.r, g, &self.ks, &self.kb, false);
            self.write_db(db, &a, &b);
        }
        Ok(())
    }

    /// `dL/db` for a low-rank upstream gradient `g = u vᵀ` (`u`: `n1 × r`,
    /// `v`: `n2 × r`) without forming `g`: one fused pass builds
    /// `P = (u vᵀ) ∘ ∂f/∂s` and the column sums of `(u vᵀ) ∘ ∂f/∂n'`, then one
    /// GEMM. This is the KIP case, where `dL/dK_ts = R αᵀ` has rank C. With
    /// `f32` points (as given to [`Linearization::compute`]) the GEMM `Pᵀ a`
    /// runs in single precision (P rounded to `f32`); the pass stays `f64`.
    ///
    /// # Errors
    /// `u`/`v` of the wrong shape or non-finite.
    ///
    /// # Panics
    /// If `a`/`b` do not have the shapes of the last `compute`.
    pub fn vjp_b_lowrank_into<'a>(
        &mut self,
        a: impl Into<AnyPoints<'a>>,
        b: PointsView<'_>,
        u: &DMatrix<f64>,
        v: &DMatrix<f64>,
        db: &mut DMatrix<f64>,
    ) -> Result<()> {
        let a = a.into();
        let (n1, n2) = self.checked_lowrank((a.nrows(), b.nrows()), u, v, "vjp_b_lowrank_into")?;
        match a {
            AnyPoints::F64(a) => {
                if self.p.shape() != (n1, n2) {
                    self.p = zeroed_matrix(n1, n2);
                }
                lowrank_pass(self.p.as_mut_slice(), &mut self.r, u, v, &self.ks, &self.kb);
                self.write_db(db, &a, &b);
            }
            AnyPoints::F32(a) => {
                let d = a.ncols();
                self.p32.resize(n1 * n2, 0.0);
                lowrank_pass(&mut self.p32, &mut self.r, u, v, &self.ks, &self.kb);
                self.out32.resize(n2 * d, 0.0);
                gemm(
                    MatMut::new(&mut self.out32, n2, d, 1, n2),
                    1.0,
                    MatRef::new(&self.p32, n1, n2, 1, n1).t(),
                    a.mat(),
                    0.0,
                );
                let inv_d = 1.0 / d as f64;
                let out32 = &self.out32;
                write_side(db, &b, &self.r, |out| {
                    for_each_mut(out, |k, o| *o += inv_d * f64::from(out32[k]));
                });
            }
        }
        Ok(())
    }

    /// `dL/da` for `g = dL/dK(a, a)` after [`Linearization::compute_sym`]:
    ///
    /// ```text
    /// dL/dx_k = Σ_{j≠k} (g_kj + g_jk) [∂f/∂s x_j + 2 ∂f/∂n x_k]/d + g_kk h'(n_k) 2x_k/d
    /// ```
    /// with `h(n) = K(x, x)` (the exact diagonal). `g` need not be symmetric.
    ///
    /// # Errors
    /// `g` of the wrong shape or non-finite.
    ///
    /// # Panics
    /// If the last computation was not `compute_sym` on points of this shape.
    pub fn vjp_sym_into<K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        a: PointsView<'_>,
        g: &DMatrix<f64>,
        da: &mut DMatrix<f64>,
    ) -> Result<()> {
        let n = self.k.nrows();
        assert!(
            self.sym && a.nrows() == n,
            "Linearization::vjp_sym_into needs compute_sym on these points"
        );
        check_g(g, n, n)?;
        if self.g2.shape() != (n, n) {
            self.g2 = zeroed_matrix(n, n);
        }
        for j in 0..n {
            for i in 0..n {
                self.g2[(i, j)] = if i == j { 0.0 } else { g[(i, j)] + g[(j, i)] };
            }
        }
        fill_p(&mut self.p, &mut self.r, &self.g2, &self.ks, &self.ka, true);
        for (k, r) in self.r.iter_mut().enumerate() {
            *r += g[(k, k)] * kernel.diag(self.na[k]).1;
        }
        self.write_da(da, &a, &a);
        Ok(())
    }

    /// `(n1, n2)` of the last `compute`, checked against the point counts
    /// and the low-rank factors `u` (`n1 × r`) and `v` (`n2 × r`).
    ///
    /// # Errors
    /// `u`/`v` of the wrong shape or non-finite.
    ///
    /// # Panics
    /// If the point counts differ from the last `compute`.
    fn checked_lowrank(
        &self,
        points: (usize, usize),
        u: &DMatrix<f64>,
        v: &DMatrix<f64>,
        method: &str,
    ) -> Result<(usize, usize)> {
        let (n1, n2) = self.k.shape();
        assert_eq!(points, (n1, n2), "Linearization::{method}: points changed");
        check_g(u, n1, v.ncols())?;
        check_g(v, n2, u.ncols())?;
        Ok((n1, n2))
    }

    /// `(n1, n2)` of the last `compute`.
    ///
    /// # Panics
    /// If `a`/`b` do not have that many points (the message names `method`).
    fn checked_shape(&self, a: &PointsView<'_>, b: &PointsView<'_>, method: &str) -> (usize, usize) {
        let (n1, n2) = self.k.shape();
        assert_eq!(
            (a.nrows(), b.nrows()),
            (n1, n2),
            "Linearization::{method}: points changed"
        );
        (n1, n2)
    }

    /// `da ← diag(2r/d)·a + P·b/d` from the `P` and `r` of a side-a pass
    /// (`b` = `a` for the symmetric gradient).
    fn write_da(&self, da: &mut DMatrix<f64>, a: &PointsView<'_>, b: &PointsView<'_>) {
        let inv_d = 1.0 / a.ncols() as f64;
        write_side(da, a, &self.r, |out| {
            gemm(out, inv_d, MatRef::from_dmatrix(&self.p), MatRef::from_points(b), 1.0)
        });
    }

    /// `db ← diag(2r/d)·b + Pᵀ·a/d` from the `P` and `r` of a side-b pass.
    fn write_db(&self, db: &mut DMatrix<f64>, a: &PointsView<'_>, b: &PointsView<'_>) {
        let inv_d = 1.0 / a.ncols() as f64;
        write_side(db, b, &self.r, |out| {
            gemm(
                out,
                inv_d,
                MatRef::from_dmatrix(&self.p).t(),
                MatRef::from_points(a),
                1.0,
            )
        });
    }
}

/// [`Kernel::map_vjp`] from [`Kernel::map_partials`], one column at a time
/// (the default, and the non-FC kernels' own).
fn vjp_via_partials<K: Kernel + ?Sized>(
    kernel: &K,
    cols: &mut [&mut [f64]],
    g: &[&[f64]],
    na: &[f64],
    nb: &[f64],
    ra: &mut [f64],
    rb: &mut [f64],
) {
    let m = na.len();
    let mut scratch = vec![0.0; 4 * m];
    let (k, rest) = scratch.split_at_mut(m);
    let (ks, rest) = rest.split_at_mut(m);
    let (ka, kb) = rest.split_at_mut(m);
    ra.fill(0.0);
    for (j, (col, gc)) in cols.iter_mut().zip(g).enumerate() {
        kernel.map_partials(col, na, &nb[j..j + 1], PartialsMut { k, ks, ka, kb });
        rb[j] = dot(gc, kb);
        for i in 0..m {
            ra[i] = gc[i].mul_add(ka[i], ra[i]);
            col[i] = gc[i] * ks[i];
        }
    }
}

/// `P = g ∘ ∂f/∂s`, and `r` = the row sums (side a) or column sums (side b)
/// of `g ∘ kn` (`kn` = `∂f/∂n` or `∂f/∂n'`). Fixed summation order, so the
/// result does not depend on the thread count.
fn fill_p(
    p: &mut DMatrix<f64>,
    r: &mut Vec<f64>,
    g: &DMatrix<f64>,
    ks: &DMatrix<f64>,
    kn: &DMatrix<f64>,
    side_a: bool,
) {
    let (n1, n2) = ks.shape();
    if p.shape() != (n1, n2) {
        *p = zeroed_matrix(n1, n2);
    }
    let (gs, kss, kns) = (g.as_slice(), ks.as_slice(), kn.as_slice());
    p.as_mut_slice().par_chunks_mut(n1).enumerate().for_each(|(j, pc)| {
        let o = j * n1;
        for i in 0..n1 {
            pc[i] = gs[o + i] * kss[o + i];
        }
    });
    r.clear();
    if side_a {
        r.resize(n1, 0.0);
        r.par_chunks_mut(ROW_BLOCK).enumerate().for_each(|(blk, rc)| {
            let i0 = blk * ROW_BLOCK;
            for j in 0..n2 {
                let o = j * n1 + i0;
                for (ii, r) in rc.iter_mut().enumerate() {
                    *r += gs[o + ii] * kns[o + ii];
                }
            }
        });
    } else {
        r.resize(n2, 0.0);
        r.par_iter_mut().enumerate().for_each(|(j, r)| {
            let o = j * n1;
            *r = dot(&gs[o..o + n1], &kns[o..o + n1]);
        });
    }
}

/// Rows of a block of the backward map's grid (see [`vjp_grid_row`]).
const VJP_BLOCK_ROWS: usize = 128;

/// Columns of a block of the backward map's grid.
const VJP_BLOCK_COLS: usize = 256;

/// The backward map ([`Kernel::map_vjp`]) over one row of blocks of the
/// grid (at most [`VJP_BLOCK_ROWS`] rows, all columns, given as column
/// pieces), block by block: returns the row sums of `g ∘ ∂f/∂n` into `ra`
/// (block sums added in block order) and the column sums of `g ∘ ∂f/∂n'`
/// of these rows. The grid is fixed, so the sums come in one order
/// whatever the tiling and the threads.
fn vjp_grid_row<K: Kernel + ?Sized>(
    kernel: &K,
    cols: &mut [&mut [f64]],
    g: &[&[f64]],
    na: &[f64],
    nb: &[f64],
    ra: &mut [f64],
) -> Vec<f64> {
    let mut rb = vec![0.0; nb.len()];
    let mut part = vec![0.0; na.len()];
    let blocks = cols
        .chunks_mut(VJP_BLOCK_COLS)
        .zip(g.chunks(VJP_BLOCK_COLS))
        .zip(nb.chunks(VJP_BLOCK_COLS).zip(rb.chunks_mut(VJP_BLOCK_COLS)));
    for (k, ((cb, gb), (nbb, rbb))) in blocks.enumerate() {
        kernel.map_vjp(cb, gb, na, nbb, &mut part, rbb);
        fold_in(ra, &part, k == 0);
    }
    rb
}

/// `acc ← part` (the first part) or `acc ← acc + part`.
fn fold_in(acc: &mut [f64], part: &[f64], first: bool) {
    if first {
        acc.copy_from_slice(part);
    } else {
        for (a, p) in acc.iter_mut().zip(part) {
            *a += p;
        }
    }
}

/// The column sums of `g ∘ ∂f/∂n'` from the grid's rows of blocks, added
/// in row order.
fn fold_rows(n2: usize, rows: impl IntoIterator<Item = Vec<f64>>) -> Vec<f64> {
    let mut rb = vec![0.0; n2];
    for part in rows {
        fold_in(&mut rb, &part, false);
    }
    rb
}

/// Column pieces of `g`: rows `r0..r0 + m` of columns `cols`.
fn g_rows(g: &DMatrix<f64>, r0: usize, m: usize, cols: std::ops::Range<usize>) -> Vec<&[f64]> {
    let n1 = g.nrows();
    cols.map(|j| &g.as_slice()[j * n1 + r0..j * n1 + r0 + m]).collect()
}

/// The coefficients `(2/d)·r_i` of a VJP side's diagonal term.
fn diag_coefs(r: &[f64], d: usize) -> Vec<f64> {
    r.iter().map(|r| 2.0 / d as f64 * r).collect()
}

/// The tiled [`Kernel::vjp_into`] up to its GEMMs: in row tiles (whole rows
/// of the grid), one task each, the inner products and then `P` into `p`,
/// the norms of `a` into `na`, and the diagonal term of `dL/da` into `da`
/// (when asked for); returns the column sums of `g ∘ ∂f/∂n'`. `b` (norms
/// `nb`) and `g` are checked by the caller.
#[allow(clippy::too_many_arguments)]
fn vjp_tiles<K: Kernel + ?Sized>(
    kernel: &K,
    a: &PointsView<'_>,
    b: &PointsView<'_>,
    rows: usize,
    g: &DMatrix<f64>,
    nb: &[f64],
    p: &mut DMatrix<f64>,
    na: &mut Vec<f64>,
    da: Option<&mut DMatrix<f64>>,
) -> Result<Vec<f64>> {
    let (n1, d) = (a.nrows(), a.ncols());
    let xa = MatRef::from_points(a);
    let da = da.map(|m| {
        if m.shape() != (n1, d) {
            *m = zeroed_matrix(n1, d);
        }
        SharedMut(m.as_mut_slice().as_mut_ptr())
    });
    let tiles = tiled_gram(a, b, rows, p, na, |r0, cols, na| {
        let m = na.len();
        let mut ra = vec![0.0; m];
        let mut rbs = Vec::new();
        for i0 in (0..m).step_by(VJP_BLOCK_ROWS) {
            let h = VJP_BLOCK_ROWS.min(m - i0);
            let mut sub: Vec<&mut [f64]> = cols.iter_mut().map(|c| &mut c[i0..i0 + h]).collect();
            let gsub = g_rows(g, r0 + i0, h, 0..g.ncols());
            rbs.push(vjp_grid_row(
                kernel,
                &mut sub,
                &gsub,
                &na[i0..i0 + h],
                nb,
                &mut ra[i0..i0 + h],
            ));
        }
        if let Some(out) = da {
            let mut da_cols: Vec<&mut [f64]> = (0..d)
                // SAFETY: `da` is `n1 × d` column-major and borrowed mutably
                // for the whole pass; rows r0..r0+m of every column belong to
                // this tile alone, and the pieces of different columns are
                // disjoint.
                .map(|c| unsafe { std::slice::from_raw_parts_mut(out.at(c * n1 + r0), m) })
                .collect();
            // The same task has just read these rows of `a` (GEMM, norms).
            scaled_rows_into(&mut da_cols, &xa, r0, 0, &diag_coefs(&ra, d));
        }
        rbs
    })?;
    Ok(fold_rows(b.nrows(), tiles.into_iter().flatten()))
}

/// `out[c][i] ← coef[i]·x(r0 + i, c0 + c)` over the column pieces `out` of
/// rows `r0..r0 + coef.len()` and columns `c0..` of `x` (the diagonal term
/// of a VJP side).
fn scaled_rows_into(out: &mut [&mut [f64]], x: &MatRef<'_>, r0: usize, c0: usize, coef: &[f64]) {
    for (c, piece) in (c0..).zip(out.iter_mut()) {
        if x.rs == 1 {
            let xc = &x.data[r0 + c * x.cs..r0 + c * x.cs + coef.len()];
            for ((o, &v), &k) in piece.iter_mut().zip(xc).zip(coef) {
                *o = k * v;
            }
        } else {
            for (i, (o, &k)) in piece.iter_mut().zip(coef).enumerate() {
                *o = k * x.at(r0 + i, c);
            }
        }
    }
}

/// The untiled backward map: [`Kernel::map_vjp`] over every block of the
/// grid of `p` in parallel (inner products in, `P` out); returns the row
/// sums of `g ∘ ∂f/∂n` and the column sums of `g ∘ ∂f/∂n'`, added as
/// [`vjp_grid_row`] and [`fold_rows`] add them (the same bits as the tiled
/// pass).
fn vjp_blocks<K: Kernel + ?Sized>(
    kernel: &K,
    p: &mut DMatrix<f64>,
    g: &DMatrix<f64>,
    na: &[f64],
    nb: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (n1, n2) = (na.len(), nb.len());
    let ncb = n2.div_ceil(VJP_BLOCK_COLS);
    let mut blocks: Vec<Vec<&mut [f64]>> = (0..n1.div_ceil(VJP_BLOCK_ROWS) * ncb).map(|_| Vec::new()).collect();
    for (j, col) in p.as_mut_slice().chunks_mut(n1).enumerate() {
        for (ib, piece) in col.chunks_mut(VJP_BLOCK_ROWS).enumerate() {
            blocks[ib * ncb + j / VJP_BLOCK_COLS].push(piece);
        }
    }
    let parts: Vec<(Vec<f64>, Vec<f64>)> = blocks
        .into_par_iter()
        .enumerate()
        .map(|(idx, mut pieces)| {
            let (i0, j0) = ((idx / ncb) * VJP_BLOCK_ROWS, (idx % ncb) * VJP_BLOCK_COLS);
            let (h, w) = (pieces[0].len(), pieces.len());
            let gsub = g_rows(g, i0, h, j0..j0 + w);
            let (mut ra, mut rb) = (vec![0.0; h], vec![0.0; w]);
            kernel.map_vjp(&mut pieces, &gsub, &na[i0..i0 + h], &nb[j0..j0 + w], &mut ra, &mut rb);
            (ra, rb)
        })
        .collect();
    let mut ra = vec![0.0; n1];
    let mut rb_rows = Vec::new();
    for (row, chunk) in parts.chunks(ncb).zip(ra.chunks_mut(VJP_BLOCK_ROWS)) {
        let mut rb = Vec::with_capacity(n2);
        for (k, (ra_part, rb_part)) in row.iter().enumerate() {
            fold_in(chunk, ra_part, k == 0);
            rb.extend_from_slice(rb_part);
        }
        rb_rows.push(rb);
    }
    (ra, fold_rows(n2, rb_rows))
}

/// The fused pass of the rank-`r` VJP (`g = u vᵀ`, `u`: `n1 × r`, `v`:
/// `n2 × r`): `P = g ∘ ks` into `p` (f64, or f32 for the single-precision
/// GEMM) and the column sums of `g ∘ kb` into `r`. Fixed summation order.
fn lowrank_pass<T: Scalar>(
    p: &mut [T],
    r: &mut Vec<f64>,
    u: &DMatrix<f64>,
    v: &DMatrix<f64>,
    ks: &DMatrix<f64>,
    kb: &DMatrix<f64>,
) {
    let (n1, n2) = ks.shape();
    let rank = u.ncols();
    let (us, vs, kss, kbs) = (u.as_slice(), v.as_slice(), ks.as_slice(), kb.as_slice());
    r.clear();
    r.resize(n2, 0.0);
    p.par_chunks_mut(n1)
        .zip(r.par_iter_mut())
        .enumerate()
        .for_each(|(j, (pc, rj))| {
            let o = j * n1;
            let mut acc = 0.0;
            let mut g = [0.0f64; 256];
            for i0 in (0..n1).step_by(256) {
                let m = 256.min(n1 - i0);
                let g = &mut g[..m];
                g.fill(0.0);
                for c in 0..rank {
                    let vc = vs[c * n2 + j];
                    for (gi, ui) in g.iter_mut().zip(&us[c * n1 + i0..c * n1 + i0 + m]) {
                        *gi += ui * vc;
                    }
                }
                for (ii, gi) in g.iter().enumerate() {
                    pc[i0 + ii] = T::from_f64(gi * kss[o + i0 + ii]);
                }
                acc += dot(g, &kbs[o + i0..o + i0 + m]);
            }
            *rj = acc;
        });
}

/// `f(k, &mut out[k])` over a column-major matrix in parallel (`k` is the
/// column-major index).
fn for_each_mut(out: MatMut<'_>, f: impl Fn(usize, &mut f64) + Sync) {
    let data = out.into_slice();
    data.par_chunks_mut(ROW_BLOCK).enumerate().for_each(|(blk, chunk)| {
        for (ii, o) in chunk.iter_mut().enumerate() {
            f(blk * ROW_BLOCK + ii, o);
        }
    });
}

/// The points `x` rounded to `f32`, row-major, into `out`; an entry beyond
/// the `f32` range is an error naming it.
fn round_rows_f32(what: &'static str, x: &PointsView<'_>, out: &mut Vec<f32>) -> Result<()> {
    let (n, d) = x.shape();
    out.clear();
    out.resize(n * d, 0.0);
    let xr = MatRef::from_points(x);
    for i in 0..n {
        for j in 0..d {
            let v = xr.at(i, j) as f32;
            if !v.is_finite() {
                return Err(KernelError::NonFinite { what, row: i, col: j });
            }
            out[i * d + j] = v;
        }
    }
    Ok(())
}

/// `out ← diag(2 r/d) x` then `f(out)` accumulates the GEMM part.
fn write_side(out: &mut DMatrix<f64>, x: &PointsView<'_>, r: &[f64], f: impl FnOnce(MatMut<'_>)) {
    let (n, d) = x.shape();
    if out.shape() != (n, d) {
        *out = zeroed_matrix(n, d);
    }
    let coef = diag_coefs(r, d);
    let xr = MatRef::from_points(x);
    out.as_mut_slice()
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(c, col)| scaled_rows_into(&mut [col], &xr, 0, c, &coef));
    f(MatMut::from_dmatrix(out));
}

/// `S = a bᵀ / d` into `out` (resized if needed).
fn inner_products(a: &PointsView<'_>, b: &PointsView<'_>, out: &mut DMatrix<f64>) {
    let (n1, n2) = (a.nrows(), b.nrows());
    if out.shape() != (n1, n2) {
        *out = zeroed_matrix(n1, n2);
    }
    let inv_d = 1.0 / a.ncols() as f64;
    gemm(
        MatMut::from_dmatrix(out),
        inv_d,
        MatRef::from_points(a),
        MatRef::from_points(b).t(),
        0.0,
    );
}

/// Columns per parallel task so that there are a few tasks per thread.
fn col_group(n2: usize) -> usize {
    (n2 / (8 * rayon::current_num_threads())).clamp(1, 16)
}

/// Run `f(column pieces, row range, column range)` over `m` in parallel:
/// blocks of whole columns when there are enough columns, otherwise pieces
/// of single columns (so tall, narrow matrices still use every thread).
fn map_columns(
    m: &mut DMatrix<f64>,
    f: impl Fn(&mut [&mut [f64]], std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    let (n1, n2) = m.shape();
    if n1 == 0 || n2 == 0 {
        return;
    }
    if n2 >= 2 * rayon::current_num_threads() {
        let g = col_group(n2);
        m.as_mut_slice()
            .par_chunks_mut(n1 * g)
            .enumerate()
            .for_each(|(b, blk)| {
                let j0 = b * g;
                let mut cols: Vec<&mut [f64]> = blk.chunks_mut(n1).collect();
                let w = cols.len();
                f(&mut cols, 0..n1, j0..j0 + w);
            });
    } else {
        m.as_mut_slice().par_chunks_mut(n1).enumerate().for_each(|(j, col)| {
            col.par_chunks_mut(ROW_BLOCK).enumerate().for_each(|(blk, piece)| {
                let i0 = blk * ROW_BLOCK;
                let len = piece.len();
                f(&mut [piece], i0..i0 + len, j..j + 1);
            });
        });
    }
}

/// Target rows per tile of [`tiled_gram`] (the Gram and the vjp) per
/// [`TILE_COLS`] columns of `b`, beyond [`TILE_COLS`] columns: fewer rows
/// pack `b` more often (once per tile), more rows let the tile of `a` fall
/// out of cache before the norm pass reads it. With 1000 columns the tile
/// leaves the cache either way, and `b` is packed fewer times: 4 tiles of
/// 1250 rows beat 10 of 500 by 2–4% (Gram), and 1280-row tiles took
/// 277–281 ms against 303–307 for 512 rows (vjp FC3 5000 × 1000 × 784,
/// ad-hoc timer).
const TILE_ROWS: usize = 512;

/// Target rows per tile up to [`TILE_COLS`] columns: a tile of `a` small
/// enough for a core's 1 MB L2 (784 KB at d = 784), read again by the norm
/// loop and, in the vjp, by the diagonal term of `dL/da` after the GEMM
/// (not all of it is still there: the norms still cost ~7% at 100
/// columns, README). Measured: vjp FC3 at 5000 × 100 × 784, ad-hoc timer:
/// 128, 256 and 512 rows took 31.2, 32.3 and 35.5 ms; Gram FC3, paired
/// bench A/B: 1.22–1.23 against 1.24–1.25 for 512 rows.
const NARROW_TILE_ROWS: usize = 128;

/// Columns of `b` per [`TILE_ROWS`] of target tile height.
const TILE_COLS: usize = 256;

/// Fewest rows per tile: below this a single-threaded GEMM per tile loses
/// to one parallel GEMM. Half of [`NARROW_TILE_ROWS`], since the tile
/// count rounds up (1037 rows on two threads: 10 tiles of 104).
const MIN_TILE_ROWS: usize = 64;

/// Most columns for the tiled pass: every tile's GEMM packs all of `b`, so
/// the copies grow with the tile count times `b`'s size.
const MAX_TILE_COLS: usize = 4096;

/// Rows per tile of a tiled `n1 × n2` product ([`NARROW_TILE_ROWS`] up to
/// [`TILE_COLS`] columns, else [`TILE_ROWS`] per [`TILE_COLS`] columns), a
/// multiple of `align`; or `None` where the untiled pass is the better
/// one. Tiles come in a multiple of the thread count and within `align`
/// rows of one another, so every thread gets the same work. (The tiling
/// never changes the result: the GEMM splits rows only.)
fn tile_rows(n1: usize, n2: usize, align: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    if n1 == 0 {
        return None;
    }
    let target = if n2 <= TILE_COLS {
        NARROW_TILE_ROWS
    } else {
        TILE_ROWS * n2.div_ceil(TILE_COLS)
    };
    let tiles = threads * n1.div_ceil(target * threads);
    let rows = n1.div_ceil(tiles).next_multiple_of(align);
    (threads > 1 && n2 <= MAX_TILE_COLS && rows >= MIN_TILE_ROWS).then_some(rows)
}

/// A pointer that parallel tasks share to write disjoint parts of one
/// buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f64);

// SAFETY: only used for writes to disjoint elements (see `tiled_gram`).
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn at(self, offset: usize) -> *mut f64 {
        self.0.wrapping_add(offset)
    }
}

/// The checks [`checked_pair`] makes, for [`tiled_gram`], which checks
/// the rows of `a` itself: `a` has columns, `b`'s norms into `nb`, the
/// dimensions agree.
fn checked_b_for_tiles(a: &PointsView<'_>, b: &PointsView<'_>, nb: &mut Vec<f64>) -> Result<()> {
    if a.ncols() == 0 {
        return Err(KernelError::Empty {
            what: "a",
            rows: a.nrows(),
            cols: 0,
        });
    }
    norms_into("b", b, nb)?;
    same_dim(a.ncols(), b)
}

/// `out ← a bᵀ / d` in row tiles of `rows` rows, one parallel task per
/// tile: a single-threaded GEMM into the tile's rows of `out`, the checked
/// norms of those rows of `a` into `na` (in [`sq_norms_rows`]'s order, so
/// the values [`norms_into`] gives), and `map(first row, column pieces,
/// norms)` over the tile, whose results come back in tile order. The first
/// non-finite row of `a` (by index) is the error. `b` is checked by the
/// caller ([`checked_b_for_tiles`]).
fn tiled_gram<R: Send>(
    a: &PointsView<'_>,
    b: &PointsView<'_>,
    rows: usize,
    out: &mut DMatrix<f64>,
    na: &mut Vec<f64>,
    map: impl Fn(usize, &mut [&mut [f64]], &[f64]) -> R + Sync,
) -> Result<Vec<R>> {
    let (n1, n2, d) = (a.nrows(), b.nrows(), a.ncols());
    if out.shape() != (n1, n2) {
        *out = zeroed_matrix(n1, n2);
    }
    na.clear();
    na.resize(n1, 0.0);
    let (xa, xbt) = (MatRef::from_points(a), MatRef::from_points(b).t());
    let inv_d = 1.0 / d as f64;
    let base = SharedMut(out.as_mut_slice().as_mut_ptr());
    na.par_chunks_mut(rows)
        .enumerate()
        .map(|(t, na)| {
            let (r0, m) = (t * rows, na.len());
            // SAFETY: `out` is `n1 × n2` column-major and borrowed
            // mutably for the whole pass; tiles own disjoint row ranges,
            // so element (r0+i, j) at offset j·n1 + r0 + i is written by
            // this task alone.
            unsafe { gemm_seq_raw(base.at(r0), 1, n1, inv_d, xa.row_range(r0, m), xbt) };
            // After the GEMM, which has just read these rows of `a`
            // into cache.
            sq_norms_rows(&xa, r0, na);
            scale_checked("a", na, r0, d, |row, j| xa.at(row, j).is_finite())?;
            let mut cols: Vec<&mut [f64]> = (0..n2)
                // SAFETY: as above: rows r0..r0+m of column j belong to
                // this tile, and the pieces of different columns are
                // disjoint.
                .map(|j| unsafe { std::slice::from_raw_parts_mut(base.at(j * n1 + r0), m) })
                .collect();
            Ok(map(r0, &mut cols, na))
        })
        .collect()
}

/// Rows per task of the norm pass.
const NORM_ROWS: usize = 512;

/// `‖x_i‖²/d` for every row into `out`, checking the points on the way: an
/// empty input or a non-finite entry (NaN, ±∞, or squares that overflow) is
/// an error naming the first bad row and column. Parallel over blocks of
/// rows, each in [`sq_norms_rows`]'s fixed summation order.
fn norms_into(what: &'static str, x: &PointsView<'_>, out: &mut Vec<f64>) -> Result<()> {
    let (n, d) = x.shape();
    if n == 0 || d == 0 {
        return Err(KernelError::Empty { what, rows: n, cols: d });
    }
    let xr = MatRef::from_points(x);
    out.clear();
    out.resize(n, 0.0);
    out.par_chunks_mut(NORM_ROWS)
        .enumerate()
        .for_each(|(blk, o)| sq_norms_rows(&xr, blk * NORM_ROWS, o));
    scale_checked(what, out, 0, d, |row, j| xr.at(row, j).is_finite())
}

/// `‖x_i‖²` of rows `r0..r0 + out.len()` of `x` into `out`, in an order that
/// depends on the layout only (never on the blocking or the threads): a dot
/// product per row when rows are contiguous; for column-major points
/// [`col_major_sq_norms`].
fn sq_norms_rows(x: &MatRef<'_>, r0: usize, out: &mut [f64]) {
    let d = x.cols();
    let (data, rs, cs) = (x.data, x.rs, x.cs);
    if cs == 1 {
        for (i, o) in out.iter_mut().enumerate() {
            let row = &data[(r0 + i) * rs..(r0 + i) * rs + d];
            *o = dot(row, row);
        }
    } else if rs == 1 {
        col_major_sq_norms(&data[r0..], cs, d, out);
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..d).map(|j| x.at(r0 + i, j) * x.at(r0 + i, j)).sum();
        }
    }
}

/// Rows per register block of [`col_major_sq_norms`] (four AVX-512
/// vectors).
const NORM_LANES: usize = 32;

#[inline(always)]
fn col_major_sq_norms_impl(data: &[f64], cs: usize, d: usize, out: &mut [f64]) {
    let m = out.len();
    let per = d.div_ceil(NORM_COL_GROUPS);
    out.fill(0.0);
    for c0 in (0..m).step_by(NORM_LANES) {
        let w = NORM_LANES.min(m - c0);
        for k in 0..d.div_ceil(per) {
            let mut acc = [0.0f64; NORM_LANES];
            for j in k * per..((k + 1) * per).min(d) {
                let col = &data[j * cs + c0..j * cs + c0 + w];
                if let Ok(col) = <&[f64; NORM_LANES]>::try_from(col) {
                    for (a, v) in acc.iter_mut().zip(col) {
                        *a += v * v;
                    }
                } else {
                    for (a, v) in acc.iter_mut().zip(col) {
                        *a += v * v;
                    }
                }
            }
            for (o, a) in out[c0..c0 + w].iter_mut().zip(&acc) {
                *o += a;
            }
        }
    }
}

multiversion! {
    /// `‖x_i‖²` of the first `out.len()` rows of column-major points
    /// (`data[i + j·cs]`, `d` columns): the columns in [`NORM_COL_GROUPS`]
    /// fixed groups, each summed in column order, then the groups added in
    /// order. Register blocks of [`NORM_LANES`] rows keep the sums in
    /// registers across a group's columns.
    fn col_major_sq_norms(data: &[f64], cs: usize, d: usize, out: &mut [f64]) => col_major_sq_norms_impl
}

/// `‖x_i‖²/d` (accumulated in f64) of single-precision points, checked as
/// [`norms_into`].
fn norms_f32_into(what: &'static str, x: &PointsF32<'_>, out: &mut Vec<f64>) -> Result<()> {
    let (n, d) = (x.nrows(), x.ncols());
    if n == 0 || d == 0 {
        return Err(KernelError::Empty { what, rows: n, cols: d });
    }
    let data = x.data();
    out.clear();
    out.resize(n, 0.0);
    out.par_iter_mut().enumerate().with_min_len(64).for_each(|(i, o)| {
        let row = &data[i * d..(i + 1) * d];
        *o = dot(row, row);
    });
    scale_checked(what, out, 0, d, |row, j| data[row * d + j].is_finite())
}

/// Divide the squared norms of rows `r0..r0 + out.len()` by `d`; a
/// non-finite one is an error naming the first bad row and (via
/// `finite(row, col)`) its first bad column.
fn scale_checked(
    what: &'static str,
    out: &mut [f64],
    r0: usize,
    d: usize,
    finite: impl Fn(usize, usize) -> bool,
) -> Result<()> {
    let inv_d = 1.0 / d as f64;
    let mut bad = None;
    for (i, o) in out.iter_mut().enumerate() {
        if !o.is_finite() && bad.is_none() {
            bad = Some(r0 + i);
        }
        *o *= inv_d;
    }
    if let Some(row) = bad {
        let col = (0..d).position(|j| !finite(row, j)).unwrap_or(0);
        return Err(KernelError::NonFinite { what, row, col });
    }
    Ok(())
}

/// Checked norms of one point set.
fn checked_norms(what: &'static str, x: &PointsView<'_>) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    norms_into(what, x, &mut v)?;
    Ok(v)
}

/// `‖x_i‖²/d` of every point (f64 accumulation, the values
/// [`Linearization::compute`] computes itself), for [`NormedPoints`].
///
/// # Errors
/// Empty points; a non-finite entry (named by row and column).
pub fn row_norms<'a>(x: impl Into<AnyPoints<'a>>) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    match x.into() {
        AnyPoints::F64(p) => norms_into("points", &p, &mut v)?,
        AnyPoints::F32(p) => norms_f32_into("points", &p, &mut v)?,
    }
    Ok(v)
}

/// Caller-supplied norms of `n` points of dimension `d` into `out`, checked
/// for length and finiteness (and the points for emptiness).
fn supplied_norms(norms: &[f64], n: usize, d: usize, out: &mut Vec<f64>) -> Result<()> {
    if n == 0 || d == 0 {
        return Err(KernelError::Empty {
            what: "a",
            rows: n,
            cols: d,
        });
    }
    if norms.len() != n {
        return Err(KernelError::Shape {
            what: "a norms",
            expected: format!("{n} values (one per point)"),
            got: format!("{} values", norms.len()),
        });
    }
    if let Some(row) = norms.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "a norms",
            row,
            col: 0,
        });
    }
    out.clear();
    out.extend_from_slice(norms);
    Ok(())
}

/// Checked norms of two point sets of the same dimension.
fn checked_pair(a: &PointsView<'_>, b: &PointsView<'_>, na: &mut Vec<f64>, nb: &mut Vec<f64>) -> Result<()> {
    norms_into("a", a, na)?;
    norms_into("b", b, nb)?;
    same_dim(a.ncols(), b)
}

/// `b` has the dimension `d` of `a`.
fn same_dim(d: usize, b: &PointsView<'_>) -> Result<()> {
    if b.ncols() != d {
        return Err(KernelError::Shape {
            what: "b",
            expected: format!("{d} columns (as a)"),
            got: format!("{} columns", b.ncols()),
        });
    }
    Ok(())
}

fn check_g(g: &DMatrix<f64>, n1: usize, n2: usize) -> Result<()> {
    if g.shape() != (n1, n2) {
        return Err(KernelError::Shape {
            what: "g",
            expected: format!("{n1} x {n2}"),
            got: format!("{} x {}", g.nrows(), g.ncols()),
        });
    }
    if let Some(idx) = g.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "g",
            row: idx % n1,
            col: idx / n1,
        });
    }
    Ok(())
}

/// The kernel a [`KernelSpec`] names: an enum, cheap to clone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnyKernel {
    spec: KernelSpec,
}

impl AnyKernel {
    /// Build from a spec (call [`KernelSpec::validate`] first for user input;
    /// parsed specs are already valid).
    pub fn from_spec(spec: KernelSpec) -> Self {
        Self { spec }
    }
}

impl Kernel for AnyKernel {
    fn spec(&self) -> KernelSpec {
        self.spec
    }

    fn map_values(&self, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_values(p, cols, na, nb),
            KernelSpec::Rbf { gamma } => {
                for (col, &nbj) in cols.iter_mut().zip(nb) {
                    for (v, a) in col.iter_mut().zip(na) {
                        *v = (-gamma * (a + nbj - 2.0 * *v).max(0.0)).exp();
                    }
                }
            }
            KernelSpec::Linear => {}
        }
    }

    fn map_partials(&self, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_partials(p, s, na, nb, out),
            KernelSpec::Rbf { gamma } => {
                let n1 = na.len();
                for i in 0..s.len() {
                    // The distance is clamped at 0 against rounding.
                    let k = (-gamma * (na[i % n1] + nb[i / n1] - 2.0 * s[i]).max(0.0)).exp();
                    out.k[i] = k;
                    out.ks[i] = 2.0 * gamma * k;
                    out.ka[i] = -gamma * k;
                    out.kb[i] = -gamma * k;
                }
            }
            KernelSpec::Linear => {
                out.k.copy_from_slice(s);
                out.ks.fill(1.0);
                out.ka.fill(0.0);
                out.kb.fill(0.0);
            }
        }
    }

    fn map_vjp(&self, cols: &mut [&mut [f64]], g: &[&[f64]], na: &[f64], nb: &[f64], ra: &mut [f64], rb: &mut [f64]) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_vjp(p, cols, g, na, nb, ra, rb),
            _ => vjp_via_partials(self, cols, g, na, nb, ra, rb),
        }
    }

    fn diag(&self, n: f64) -> (f64, f64) {
        match &self.spec {
            KernelSpec::Fc(p) => p.diag(n),
            KernelSpec::Rbf { .. } => (1.0, 0.0),
            KernelSpec::Linear => (n, 1.0),
        }
    }
}

/// Parse a spec string straight into a kernel.
///
/// # Errors
/// As [`KernelSpec::from_str`](std::str::FromStr).
pub fn kernel_from_str(s: &str) -> Result<AnyKernel> {
    Ok(s.parse::<KernelSpec>()?.build())
}

impl From<FcParams> for AnyKernel {
    fn from(p: FcParams) -> Self {
        Self::from_spec(KernelSpec::Fc(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the tiling tests in `tests/props.rs` use do take the
    /// tiled paths on 2–5 threads (the tests compare them with one thread,
    /// which never tiles), and the paper's shapes get the documented tiles.
    #[test]
    fn the_tiling_tests_shapes_are_tiled() {
        for threads in 2..=5 {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for (n1, n2) in [(1037, 41), (1200, 7)] {
                    assert!(tile_rows(n1, n2, 8).is_some(), "gram {n1}x{n2}, {threads} threads");
                }
                for (n1, n2) in [(1037, 41), (700, 300)] {
                    assert!(
                        tile_rows(n1, n2, VJP_BLOCK_ROWS).is_some(),
                        "vjp {n1}x{n2}, {threads} threads"
                    );
                }
                assert_eq!(tile_rows(1, 41, 8), None);
            });
        }
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        two.install(|| {
            assert_eq!(tile_rows(5000, 100, 8), Some(128));
            assert_eq!(tile_rows(5000, 1000, 8), Some(1256));
            assert_eq!(tile_rows(5000, 100, VJP_BLOCK_ROWS), Some(128));
            assert_eq!(tile_rows(700, 300, VJP_BLOCK_ROWS), Some(384));
            assert_eq!(tile_rows(5000, 5000, 8), None);
        });
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        one.install(|| assert_eq!(tile_rows(5000, 100, 8), None));
    }
}
