//! Row tiles and column blocks: how the Gram and VJP passes split their
//! work over threads without changing a bit of the result.

use kip_core::{gemm, gemm_seq_raw, zeroed_matrix, MatMut, MatRef};
use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::Result;
use crate::norms::{scale_checked, sq_norms_rows};
use crate::points::PointsView;

/// Rows per parallel task of the elementwise passes.
pub(crate) const ROW_BLOCK: usize = 2048;

/// `S = a bᵀ / d` into `out` (resized if needed).
pub(crate) fn inner_products(a: &PointsView<'_>, b: &PointsView<'_>, out: &mut DMatrix<f64>) {
    let (n1, n2) = (a.nrows(), b.nrows());
    if out.shape() != (n1, n2) {
        *out = zeroed_matrix(n1, n2);
    }
    let inv_d = 1.0 / a.ncols() as f64;
    gemm(inv_d, MatRef::from(*a), MatRef::from(*b).t(), 0.0, MatMut::from(out));
}

/// Columns per parallel task so that there are a few tasks per thread.
pub(crate) fn col_group(n2: usize) -> usize {
    (n2 / (8 * rayon::current_num_threads())).clamp(1, 16)
}

/// Run `f(column pieces, row range, column range)` over `m` in parallel:
/// blocks of whole columns when there are enough columns, otherwise pieces
/// of single columns (so tall, narrow matrices still use every thread).
pub(crate) fn map_columns(
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
/// [`TILE_COLS`] columns of `b`, beyond [`TILE_COLS`] columns: every tile
/// packs all of `b` once, so wide products take tall tiles (the tile of `a`
/// leaves the cache either way). The sizes were chosen by measurement
/// (`docs/performance.md`, "Tiles").
pub(crate) const TILE_ROWS: usize = 512;

/// Target rows per tile up to [`TILE_COLS`] columns: a tile of `a` about
/// the size of a core's L2 cache (784 KB at d = 784), which the norm loop
/// and, in the vjp, the diagonal term of `dL/da` read again after the GEMM
/// (`docs/performance.md`, "Tiles").
pub(crate) const NARROW_TILE_ROWS: usize = 128;

/// Columns of `b` per [`TILE_ROWS`] of target tile height.
pub(crate) const TILE_COLS: usize = 256;

/// Fewest rows per tile: below this a single-threaded GEMM per tile loses
/// to one parallel GEMM. Half of [`NARROW_TILE_ROWS`], since the tile
/// count rounds up (1037 rows on two threads: 10 tiles of 104).
pub(crate) const MIN_TILE_ROWS: usize = 64;

/// Most columns for the tiled pass: every tile's GEMM packs all of `b`, so
/// the copies grow with the tile count times `b`'s size.
pub(crate) const MAX_TILE_COLS: usize = 4096;

/// Rows per tile of a tiled `n1 × n2` product ([`NARROW_TILE_ROWS`] up to
/// [`TILE_COLS`] columns, else [`TILE_ROWS`] per [`TILE_COLS`] columns), a
/// multiple of `align`; or `None` where the untiled pass is the better
/// one. Tiles come in a multiple of the thread count and within `align`
/// rows of one another, so every thread gets the same work. (The tiling
/// never changes the result: the GEMM splits rows only.)
pub(crate) fn tile_rows(n1: usize, n2: usize, align: usize) -> Option<usize> {
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
pub(crate) struct SharedMut(pub(crate) *mut f64);

// SAFETY: only used for writes to disjoint elements (see `tiled_gram`).
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub(crate) fn at(self, offset: usize) -> *mut f64 {
        self.0.wrapping_add(offset)
    }
}

/// `out ← a bᵀ / d` in row tiles of `rows` rows, one parallel task per
/// tile: a single-threaded GEMM into the tile's rows of `out`, the checked
/// norms of those rows of `a` into `na` (in [`sq_norms_rows`]'s order, so
/// the values [`norms_into`](crate::norms::norms_into) gives), and `map(first row, column pieces,
/// norms)` over the tile, whose results come back in tile order. The first
/// non-finite row of `a` (by index) is the error. `b` is checked by the
/// caller ([`checked_b_for_tiles`](crate::norms::checked_b_for_tiles)).
pub(crate) fn tiled_gram<R: Send>(
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
    let (xa, xbt) = (MatRef::from(*a), MatRef::from(*b).t());
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
        // Every tile's result, then the first error in tile (= row) order:
        // a parallel collect into `Result` would return whichever failing
        // tile finished first.
        .collect::<Vec<Result<R>>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vjp::VJP_BLOCK_ROWS;

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
