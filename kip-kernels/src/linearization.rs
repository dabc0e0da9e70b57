//! [`Linearization`]: a Gram matrix with its partial derivatives, kept for
//! the vector-Jacobian products of the KIP step.

use kip_core::{gemm, zeroed_matrix, MatMut, MatRef, Scalar};
use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::fc::PartialsMut;
use crate::kernel::{DotKernel, Kernel};
use crate::norms::{check_g, norms_f32_into, norms_into, same_dim, supplied_norms};
use crate::points::{AnyPoints, NormedPoints, PointsF32, PointsView};
use crate::tiles::{col_group, inner_products};
use crate::vjp::{add_scaled_f32, fill_p, lowrank_pass, write_side};

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
    /// The `d × n2` product `aᵀP/d` of [`Linearization::write_db`].
    gt: Vec<f64>,
}

/// `out[j + k·n] += t[k + j·d]`: the column-major `d × n` matrix `t` added
/// transposed into the column-major `n × d` matrix `out`, in tiles that
/// stay in L1.
fn add_transposed(out: &mut [f64], t: &[f64], n: usize, d: usize) {
    const TILE: usize = 32;
    for k0 in (0..d).step_by(TILE) {
        for j0 in (0..n).step_by(TILE) {
            for k in k0..(k0 + TILE).min(d) {
                let col = &mut out[k * n..(k + 1) * n];
                for j in j0..(j0 + TILE).min(n) {
                    col[j] += t[k + j * d];
                }
            }
        }
    }
}

/// The inner-product form of `kernel`, or the error that says it has none.
fn dot_kernel<K: Kernel + ?Sized>(kernel: &K) -> Result<&dyn DotKernel> {
    kernel.as_dot().ok_or_else(|| KernelError::NotInnerProduct {
        what: "Linearization",
        kernel: kernel.spec().to_string(),
    })
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
    /// `a` may carry its norms ([`NormedPoints`], from [`row_norms`](crate::row_norms)): then
    /// they are taken as given (checked for length and finiteness only)
    /// instead of computed in a pass over `a`.
    ///
    /// # Errors
    /// As [`Kernel::gram`]; [`KernelError::NotInnerProduct`] for image
    /// kernels; with `f32` points also `b` entries beyond the
    /// `f32` range; supplied norms of the wrong length or not finite.
    pub fn compute<'a, K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        a: impl Into<NormedPoints<'a>>,
        b: PointsView<'_>,
    ) -> Result<()> {
        let kernel = dot_kernel(kernel)?;
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
            1.0 / d as f32,
            a.mat(),
            MatRef::row_major(&self.b32, n2, d).t(),
            0.0,
            MatMut::col_major(&mut self.p32, n1, n2),
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
    /// As [`Linearization::compute`].
    pub fn compute_sym<K: Kernel + ?Sized>(&mut self, kernel: &K, a: PointsView<'_>) -> Result<()> {
        let kernel = dot_kernel(kernel)?;
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
    fn fill_partials<K: DotKernel + ?Sized>(&mut self, kernel: &K, from_f32: bool) {
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
                    <f32 as Scalar>::slice_as_f64(&s32[b * w..b * w + len], s);
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
                    1.0,
                    MatRef::col_major(&self.p32, n1, n2).t(),
                    a.mat(),
                    0.0,
                    MatMut::col_major(&mut self.out32, n2, d),
                );
                let inv_d = 1.0 / d as f64;
                let out32 = &self.out32;
                write_side(db, &b, &self.r, |out| {
                    add_scaled_f32(out, inv_d, out32);
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
        let kernel = dot_kernel(kernel)?;
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
            gemm(inv_d, MatRef::from(&self.p), MatRef::from(*b), 1.0, out)
        });
    }

    /// `db ← diag(2r/d)·b + Pᵀ·a/d` from the `P` and `r` of a side-b pass.
    ///
    /// For row-major `a` (a KIP step's whole target batch) the product runs
    /// as `(Pᵀa)ᵀ = aᵀP` into a `d × n2` scratch, added transposed: in that
    /// orientation the `gemm` crate reads `a` as it is instead of packing
    /// it, about 10 % of a KIP step at (100 support, 5000 targets, 784).
    fn write_db(&mut self, db: &mut DMatrix<f64>, a: &PointsView<'_>, b: &PointsView<'_>) {
        let (n2, d) = (b.nrows(), a.ncols());
        if a.strides().1 != 1 || d == 1 {
            // Not row-major: the direct orientation reads it as well.
            let inv_d = 1.0 / d as f64;
            return write_side(db, b, &self.r, |out| {
                gemm(inv_d, MatRef::from(&self.p).t(), MatRef::from(*a), 1.0, out)
            });
        }
        self.gt.resize(d * n2, 0.0);
        gemm(
            1.0 / d as f64,
            MatRef::from(*a).t(),
            MatRef::from(&self.p),
            0.0,
            MatMut::col_major(&mut self.gt, d, n2),
        );
        let gt = &self.gt;
        write_side(db, b, &self.r, |out| {
            let out = out
                .into_col_major_slice()
                .expect("write_side passes a column-major matrix");
            add_transposed(out, gt, n2, d);
        });
    }
}

/// The points `x` rounded to `f32`, row-major, into `out`; an entry beyond
/// the `f32` range is an error naming it.
fn round_rows_f32(what: &'static str, x: &PointsView<'_>, out: &mut Vec<f32>) -> Result<()> {
    let (n, d) = x.shape();
    out.clear();
    out.resize(n * d, 0.0);
    let xr = MatRef::from(*x);
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
