//! The vector-Jacobian product engine: the backward map over a fixed grid
//! of blocks (tiled or not), the low-rank pass of the KIP step, and the
//! diagonal terms of both sides.

use kip_core::{dot, zeroed_matrix, MatMut, MatRef, Scalar};
use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::Result;
use crate::fc::PartialsMut;
use crate::kernel::DotKernel;
use crate::points::PointsView;
use crate::tiles::{tiled_gram, SharedMut, ROW_BLOCK};

/// [`DotKernel::map_vjp`] from [`DotKernel::map_partials`], one column at a time
/// (the default, and the non-FC kernels' own).
pub(crate) fn vjp_via_partials<K: DotKernel + ?Sized>(
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
pub(crate) fn fill_p(
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
pub(crate) const VJP_BLOCK_ROWS: usize = 128;

/// Columns of a block of the backward map's grid.
pub(crate) const VJP_BLOCK_COLS: usize = 256;

/// The backward map ([`DotKernel::map_vjp`]) over one row of blocks of the
/// grid (at most [`VJP_BLOCK_ROWS`] rows, all columns, given as column
/// pieces), block by block: returns the row sums of `g ∘ ∂f/∂n` into `ra`
/// (block sums added in block order) and the column sums of `g ∘ ∂f/∂n'`
/// of these rows. The grid is fixed, so the sums come in one order
/// whatever the tiling and the threads.
pub(crate) fn vjp_grid_row<K: DotKernel + ?Sized>(
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
pub(crate) fn fold_in(acc: &mut [f64], part: &[f64], first: bool) {
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
pub(crate) fn fold_rows(n2: usize, rows: impl IntoIterator<Item = Vec<f64>>) -> Vec<f64> {
    let mut rb = vec![0.0; n2];
    for part in rows {
        fold_in(&mut rb, &part, false);
    }
    rb
}

/// Column pieces of `g`: rows `r0..r0 + m` of columns `cols`.
pub(crate) fn g_rows(g: &DMatrix<f64>, r0: usize, m: usize, cols: std::ops::Range<usize>) -> Vec<&[f64]> {
    let n1 = g.nrows();
    cols.map(|j| &g.as_slice()[j * n1 + r0..j * n1 + r0 + m]).collect()
}

/// The coefficients `(2/d)·r_i` of a VJP side's diagonal term.
pub(crate) fn diag_coefs(r: &[f64], d: usize) -> Vec<f64> {
    r.iter().map(|r| 2.0 / d as f64 * r).collect()
}

/// The tiled [`crate::Kernel::vjp_into`] up to its GEMMs: in row tiles (whole rows
/// of the grid), one task each, the inner products and then `P` into `p`,
/// the norms of `a` into `na`, and the diagonal term of `dL/da` into `da`
/// (when asked for); returns the column sums of `g ∘ ∂f/∂n'`. `b` (norms
/// `nb`) and `g` are checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vjp_tiles<K: DotKernel + ?Sized>(
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
    let xa = MatRef::from(*a);
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
pub(crate) fn scaled_rows_into(out: &mut [&mut [f64]], x: &MatRef<'_>, r0: usize, c0: usize, coef: &[f64]) {
    for (c, piece) in (c0..).zip(out.iter_mut()) {
        if let Some(col) = x.col_slice(c) {
            let xc = &col[r0..r0 + coef.len()];
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

/// The untiled backward map: [`DotKernel::map_vjp`] over every block of the
/// grid of `p` in parallel (inner products in, `P` out); returns the row
/// sums of `g ∘ ∂f/∂n` and the column sums of `g ∘ ∂f/∂n'`, added as
/// [`vjp_grid_row`] and [`fold_rows`] add them (the same bits as the tiled
/// pass).
pub(crate) fn vjp_blocks<K: DotKernel + ?Sized>(
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
pub(crate) fn lowrank_pass<T: Scalar>(
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
            let vj: Vec<f64> = (0..rank).map(|c| vs[c * n2 + j]).collect();
            let (mut acc, mut g, mut gk) = (0.0, [0.0f64; 256], [0.0f64; 256]);
            for i0 in (0..n1).step_by(256) {
                let m = 256.min(n1 - i0);
                let rows = o + i0..o + i0 + m;
                let block = LowrankBlock {
                    u: us,
                    n1,
                    i0,
                    v: &vj,
                    ks: &kss[rows.clone()],
                    kb: &kbs[rows],
                };
                acc += lowrank_block(block, &mut g[..m], &mut gk[..m]);
                T::slice_of_f64(&gk[..m], &mut pc[i0..i0 + m]);
            }
            *rj = acc;
        });
}

/// One block of rows of one column of [`lowrank_pass`].
#[derive(Clone, Copy)]
struct LowrankBlock<'a> {
    /// `u`, column-major with `n1` rows.
    u: &'a [f64],
    n1: usize,
    /// First row of the block.
    i0: usize,
    /// The column's row of `v`.
    v: &'a [f64],
    /// The block's `ks` and `kb` entries.
    ks: &'a [f64],
    kb: &'a [f64],
}

/// `g = Σ_c u[i, c]·v_c` over the block's rows, `gk = g ∘ ks`; returns
/// `Σ g·kb` (fixed order).
#[inline(always)]
fn lowrank_block_impl(b: LowrankBlock<'_>, g: &mut [f64], gk: &mut [f64]) -> f64 {
    let m = g.len();
    g.fill(0.0);
    for (c, &vc) in b.v.iter().enumerate() {
        let uc = &b.u[c * b.n1 + b.i0..c * b.n1 + b.i0 + m];
        for (gi, ui) in g.iter_mut().zip(uc) {
            *gi += ui * vc;
        }
    }
    for ((o, gi), k) in gk.iter_mut().zip(g.iter()).zip(b.ks) {
        *o = gi * k;
    }
    dot(g, b.kb)
}

kip_core::multiversion! {
    /// See `lowrank_block_impl` (called inside a parallel closure, which
    /// does not inherit target features: vectorised here).
    fn lowrank_block(b: LowrankBlock<'_>, g: &mut [f64], gk: &mut [f64]) -> f64 => lowrank_block_impl
}

/// `out += s·src` over a column-major matrix and the `f32` values `src` in
/// its order, in parallel blocks.
pub(crate) fn add_scaled_f32(out: MatMut<'_>, s: f64, src: &[f32]) {
    let data = out.into_col_major_slice().expect("a dense column-major matrix");
    assert_eq!(data.len(), src.len(), "add_scaled_f32: lengths");
    data.par_chunks_mut(ROW_BLOCK)
        .zip(src.par_chunks(ROW_BLOCK))
        .for_each(|(o, x)| add_scaled_widened(o, s, x));
}

#[inline(always)]
fn add_scaled_widened_impl(out: &mut [f64], s: f64, src: &[f32]) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o += s * f64::from(v);
    }
}

kip_core::multiversion! {
    /// `out[k] += s·src[k]` (a parallel closure's body, vectorised here).
    fn add_scaled_widened(out: &mut [f64], s: f64, src: &[f32]) => add_scaled_widened_impl
}

/// `out ← diag(2 r/d) x` then `f(out)` accumulates the GEMM part.
pub(crate) fn write_side(out: &mut DMatrix<f64>, x: &PointsView<'_>, r: &[f64], f: impl FnOnce(MatMut<'_>)) {
    let (n, d) = x.shape();
    if out.shape() != (n, d) {
        *out = zeroed_matrix(n, d);
    }
    let coef = diag_coefs(r, d);
    let xr = MatRef::from(*x);
    out.as_mut_slice()
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(c, col)| scaled_rows_into(&mut [col], &xr, 0, c, &coef));
    f(MatMut::from(out));
}
