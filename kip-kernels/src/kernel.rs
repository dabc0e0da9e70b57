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

use kip_core::{gemm, zeroed_matrix, MatMut, MatRef};
use nalgebra::DMatrix;

use crate::error::Result;
use crate::fc::PartialsMut;
use crate::linearization::Linearization;
use crate::norms::{check_g, checked_b_for_tiles, checked_norms, checked_pair};
use crate::points::{points, AnyPoints, PointsView};
use crate::spec::KernelSpec;
use crate::tiles::{inner_products, map_columns, tile_rows, tiled_gram};
use crate::vjp::{vjp_blocks, vjp_tiles, vjp_via_partials, write_side, VJP_BLOCK_ROWS};

/// A kernel with analytic gradients: what the solvers and KIP take.
///
/// Implemented by every inner-product kernel ([`DotKernel`], through a
/// blanket implementation) and by the convolutional kernels; the kernels a
/// [`KernelSpec`] names come as [`crate::AnyKernel`]. Inputs are `n × d`
/// point sets ([`PointsView`]: any strides); image kernels read each row
/// as an `h × w × c` image (channels fastest).
pub trait Kernel: Send + Sync + fmt::Debug {
    /// The spec that names this kernel.
    fn spec(&self) -> KernelSpec;

    /// `K(a, b)` into `out` (resized if its shape differs; no allocation
    /// when it already has the right shape).
    ///
    /// # Errors
    /// Empty inputs, different dimensions, non-finite entries, points that
    /// do not fit the kernel (an image kernel's shape). After an error
    /// `out` holds unspecified values.
    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()>;

    /// `K(a, a)` into `out`: exactly symmetric.
    ///
    /// # Errors
    /// As [`Kernel::gram_into`].
    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()>;

    /// The diagonal `K(a_i, a_i)` alone.
    ///
    /// # Errors
    /// As [`Kernel::gram_into`].
    fn gram_diag(&self, a: PointsView<'_>) -> Result<Vec<f64>>;

    /// Vector-Jacobian product of `K(a, b)` with `g = dL/dK` into
    /// caller-owned buffers; pass `None` for a side that is not needed.
    ///
    /// # Errors
    /// As [`Kernel::gram_into`], and `g` not `n1 × n2` or non-finite.
    /// After an error `da` and `db` hold unspecified values.
    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> Result<()>;

    /// Vector-Jacobian product of `K(a, a)` (as [`Kernel::gram_sym_into`])
    /// with `g = dL/dK` (any `n × n` matrix, not necessarily symmetric).
    ///
    /// # Errors
    /// As [`Kernel::vjp_into`].
    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> Result<()>;

    /// `K(a, b)` into `out` and the vector-Jacobian product with respect to
    /// `a` of `g = dL/dK` into `da`, for a cotangent known before the
    /// values (e.g. a fixed weighting). Kernels with a fused pass
    /// (the convolutional ones: each pair forward and backward once)
    /// override the default, which is [`Kernel::gram_into`] then
    /// [`Kernel::vjp_into`].
    ///
    /// # Errors
    /// As [`Kernel::vjp_into`].
    fn gram_vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        out: &mut DMatrix<f64>,
        da: &mut DMatrix<f64>,
    ) -> Result<()> {
        self.gram_into(a, b, out)?;
        self.vjp_into(a, b, g, Some(da), None)
    }

    /// This kernel as an inner-product kernel, if it is one (what
    /// [`Linearization`] needs); `None` for image kernels.
    fn as_dot(&self) -> Option<&dyn DotKernel> {
        None
    }

    /// This kernel as an explicit feature map, if it is one
    /// (random-feature kernels): KIP then computes each point's features
    /// once per step instead of per kernel call.
    fn as_features(&self) -> Option<&dyn FeatureKernel> {
        None
    }

    /// `K(a, b)`, an `n1 × n2` matrix.
    ///
    /// # Errors
    /// As [`Kernel::gram_into`].
    fn gram(&self, a: &DMatrix<f64>, b: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut out = DMatrix::zeros(0, 0);
        self.gram_into(points(a), points(b), &mut out)?;
        Ok(out)
    }

    /// `K(a, a)`: exactly symmetric.
    ///
    /// # Errors
    /// As [`Kernel::gram_into`].
    fn gram_sym(&self, a: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut out = DMatrix::zeros(0, 0);
        self.gram_sym_into(points(a), &mut out)?;
        Ok(out)
    }

    /// Vector-Jacobian product of `K(a, b)` with `g = dL/dK`: `(dL/da, dL/db)`.
    ///
    /// # Errors
    /// As [`Kernel::vjp_into`].
    fn vjp(&self, a: &DMatrix<f64>, b: &DMatrix<f64>, g: &DMatrix<f64>) -> Result<(DMatrix<f64>, DMatrix<f64>)> {
        let (mut da, mut db) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
        self.vjp_into(points(a), points(b), g, Some(&mut da), Some(&mut db))?;
        Ok((da, db))
    }

    /// Vector-Jacobian product of `K(a, a)` with `g = dL/dK`.
    ///
    /// # Errors
    /// As [`Kernel::vjp_into`].
    fn vjp_sym(&self, a: &DMatrix<f64>, g: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut da = DMatrix::zeros(0, 0);
        self.vjp_sym_into(points(a), g, &mut da)?;
        Ok(da)
    }
}

/// An inner-product kernel with analytic gradients.
///
/// Implementors supply the scalar map `f(s, n, n')` (values and partials over
/// a column) and its diagonal `f(n, n, n)`; the provided methods do the rest.
/// Inputs are `n × d` point sets ([`PointsView`]: any strides, so column-major
/// nalgebra matrices and row-major buffers both work without copies).
pub trait DotKernel: Send + Sync + fmt::Debug {
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

    /// The backward map of [`Kernel::vjp`](crate::Kernel::vjp) over a block given as its column
    /// pieces (`cols[j]` and `g[j]` hold the `na.len()` rows of column `j`):
    /// `cols` holds the inner products `s` on entry and `P = g ∘ ∂f/∂s` on
    /// return, `ra[i] ← Σ_j g_ij ∂f/∂n` and `rb[j] ← Σ_i g_ij ∂f/∂n'`.
    ///
    /// The default evaluates [`DotKernel::map_partials`] column by column into
    /// scratch; a kernel may override it with a pass that never stores the
    /// partials. Either way the sums must come in an order that depends on
    /// the block alone (never on the threads).
    fn map_vjp(&self, cols: &mut [&mut [f64]], g: &[&[f64]], na: &[f64], nb: &[f64], ra: &mut [f64], rb: &mut [f64]) {
        vjp_via_partials(self, cols, g, na, nb, ra, rb);
    }

    /// `K(x, x) = f(n, n, n)` and its total derivative `d/dn`, `n = ‖x‖²/d`.
    fn diag(&self, n: f64) -> (f64, f64);
}

impl<T: DotKernel> Kernel for T {
    fn spec(&self) -> KernelSpec {
        DotKernel::spec(self)
    }

    fn as_dot(&self) -> Option<&dyn DotKernel> {
        Some(self)
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

    /// [`Kernel::vjp`] into caller-owned buffers; pass `None` for a side that
    /// is not needed (it saves a GEMM).
    ///
    /// Without keeping the partials. The backward map
    /// ([`DotKernel::map_vjp`]: `P = g ∘ ∂f/∂s` in place of the inner
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
                    let out = MatMut::from(da);
                    gemm(inv_d, MatRef::from(&p), MatRef::from(b), 1.0, out);
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
                        gemm(inv_d, MatRef::from(&p), MatRef::from(b), 1.0, out)
                    });
                }
                rb
            }
        };
        if let Some(db) = db {
            write_side(db, &b, &rb, |out| {
                gemm(inv_d, MatRef::from(&p).t(), MatRef::from(a), 1.0, out)
            });
        }
        Ok(())
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

/// A kernel given by explicit features: `K(x, x') = s·⟨φ(x), φ(x')⟩ + o`
/// with `(s, o)` = [`FeatureKernel::readout`].
pub trait FeatureKernel: Send + Sync + fmt::Debug {
    /// Number of features `F` per point.
    fn n_features(&self) -> usize;

    /// The readout `(s, o)`.
    fn readout(&self) -> (f64, f64);

    /// `φ` of every point into `out` (`n × F`, row-major; replaced).
    ///
    /// # Errors
    /// Points that do not fit the kernel (shape, non-finite values, empty).
    fn features_into(&self, x: AnyPoints<'_>, out: &mut Vec<f64>) -> Result<()>;

    /// `dx = (∂φ/∂x)ᵀ dphi` for the points `x` and a cotangent `dphi` of
    /// their features (`n × F`, row-major), into `dx` (`n × d`).
    ///
    /// # Errors
    /// As [`FeatureKernel::features_into`]; a `dphi` of the wrong length or
    /// with non-finite values.
    fn features_vjp_into(&self, x: PointsView<'_>, dphi: &[f64], dx: &mut DMatrix<f64>) -> Result<()>;
}
