//! Finite 3×3 convolution and 2×2 pooling primitives on row-major batches
//! of images (`h·w·c` values each, channels fastest): the im2col patches
//! of a 3×3 SAME convolution and their adjoint, AvgPool 2×2 stride 2 VALID
//! and its adjoint. The random-feature kernels' finite ConvNet
//! (kip-kernels) and the trained networks (kip-nn) share them.

use crate::{gemm_seq, ImageShape, MatMut, MatRef};

/// For each position `r0 .. r0 + m` (counted over the chunk's images, the
/// `k`-th of the tile) and each tap `t` of its 3×3 SAME window: `f(k, t,
/// q)` with `q` the offset of the tapped pixel's channels in the image
/// buffer, or `None` outside the image.
fn for_each_tap(s: ImageShape, r0: usize, m: usize, mut f: impl FnMut(usize, usize, Option<usize>)) {
    let (h, w, c) = (s.h, s.w, s.c);
    let hw = h * w;
    for (k, p) in (r0..r0 + m).enumerate() {
        let (img, pos) = (p / hw, p % hw);
        let (y, xx) = (pos / w, pos % w);
        for ky in 0..3 {
            for kx in 0..3 {
                let (sy, sx) = ((y + ky).wrapping_sub(1), (xx + kx).wrapping_sub(1));
                let q = (sy < h && sx < w).then(|| (img * hw + sy * w + sx) * c);
                f(k, ky * 3 + kx, q);
            }
        }
    }
}

/// The 3×3 SAME patches of positions `r0 .. r0 + m` into `patches` (`m ×
/// 9·c`, taps then channels; zeros outside the image).
fn im2col(s: ImageShape, x: &[f32], r0: usize, m: usize, patches: &mut [f32]) {
    let c = s.c;
    for_each_tap(s, r0, m, |k, t, q| {
        let dst = &mut patches[(k * 9 + t) * c..(k * 9 + t + 1) * c];
        match q {
            Some(q) => dst.copy_from_slice(&x[q..q + c]),
            None => dst.fill(0.0),
        }
    });
}

/// The adjoint of [`im2col`]: add the patch cotangents of positions
/// `r0 .. r0 + m` into the input's cotangent `dx`.
fn col2im(s: ImageShape, dp: &[f32], r0: usize, m: usize, dx: &mut [f32]) {
    let c = s.c;
    for_each_tap(s, r0, m, |k, t, q| {
        if let Some(q) = q {
            let src = &dp[(k * 9 + t) * c..(k * 9 + t + 1) * c];
            for (d, &v) in dx[q..q + c].iter_mut().zip(src) {
                *d += v;
            }
        }
    });
}

/// AvgPool 2×2 stride 2 VALID of `b` images of shape `s`.
pub fn pool_forward(s: ImageShape, x: &[f32], b: usize) -> Vec<f32> {
    let (h2, w2, c) = (s.h / 2, s.w / 2, s.c);
    let mut out = vec![0.0; b * h2 * w2 * c];
    for img in 0..b {
        let xi = &x[img * s.dim()..(img + 1) * s.dim()];
        for y in 0..h2 {
            for xx in 0..w2 {
                let o = &mut out[((img * h2 + y) * w2 + xx) * c..][..c];
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let q = ((2 * y + dy) * s.w + 2 * xx + dx) * c;
                    for (v, &a) in o.iter_mut().zip(&xi[q..q + c]) {
                        *v += a;
                    }
                }
                o.iter_mut().for_each(|v| *v *= 0.25);
            }
        }
    }
    out
}

/// The adjoint of [`pool_forward`]: each input position gets a quarter of
/// its window's cotangent (dropped rows and columns get zero).
pub fn pool_backward(s: ImageShape, g: &[f32], b: usize) -> Vec<f32> {
    let (h2, w2, c) = (s.h / 2, s.w / 2, s.c);
    let mut dx = vec![0.0; b * s.dim()];
    for img in 0..b {
        let di = &mut dx[img * s.dim()..(img + 1) * s.dim()];
        for y in 0..h2 {
            for xx in 0..w2 {
                let gi = &g[((img * h2 + y) * w2 + xx) * c..][..c];
                for (dy, dxx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let q = ((2 * y + dy) * s.w + 2 * xx + dxx) * c;
                    for (d, &v) in di[q..q + c].iter_mut().zip(gi) {
                        *d = 0.25 * v;
                    }
                }
            }
        }
    }
    dx
}

/// Positions per im2col tile (a tile of patches stays in L2).
const TILE_ROWS: usize = 256;
/// Input channels below which a Conv's input cotangent is scattered from
/// the patch cotangents rather than computed as a transposed convolution.
const SCATTER_BELOW: usize = 16;

/// A 3×3 SAME convolution of `b` images of shape `si` (`x`: `b·si.dim()`)
/// with weights `w` (`9·c_in × c_out` row-major, taps then input
/// channels): `out = alpha · conv(x, w)` (`b·h·w·c_out`, overwritten; no
/// bias). `patches` is scratch. Sequential (callers parallelise over
/// images).
///
/// # Panics
/// If the buffers do not have those lengths.
pub fn conv3x3_forward(
    si: ImageShape,
    x: &[f32],
    b: usize,
    w: &[f32],
    alpha: f32,
    out: &mut [f32],
    patches: &mut Vec<f32>,
) {
    let k = 9 * si.c;
    let co = w.len() / k;
    let rows = b * si.h * si.w;
    let w = MatRef::row_major(w, k, co);
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let m = TILE_ROWS.min(rows - r0);
        patches.resize(m * k, 0.0);
        im2col(si, x, r0, m, patches);
        let tile = &mut out[r0 * co..(r0 + m) * co];
        gemm_seq(
            alpha,
            MatRef::row_major(patches, m, k),
            w,
            0.0,
            MatMut::row_major(tile, m, co),
        );
    }
}

/// The cotangent of [`conv3x3_forward`]'s input from its output's (`g`,
/// `b·h·w·c_out`): the transposed convolution, as the forward's im2col
/// GEMM on `g` with the taps flipped and the channel roles swapped
/// (`dx[q] = Σ_tap g[q − off(tap)]·W[tap]ᵀ`, zero outside the image), so
/// that no scatter is needed. With few input channels (the pixels: `c_in`
/// = 3) that GEMM would be 3 columns wide; then the patch cotangents `g·Wᵀ`
/// (`9·c_in` columns) are formed and scattered back instead (`col2im`).
///
/// # Panics
/// If the buffers do not have those lengths.
pub fn conv3x3_input_grad(
    si: ImageShape,
    w: &[f32],
    alpha: f32,
    g: &[f32],
    b: usize,
    patches: &mut Vec<f32>,
) -> Vec<f32> {
    let ci = si.c;
    let co = w.len() / (9 * ci);
    let rows = b * si.h * si.w;
    let mut dx = vec![0.0; b * si.dim()];
    if ci < SCATTER_BELOW {
        let k = 9 * ci;
        let w = MatRef::row_major(w, k, co);
        for r0 in (0..rows).step_by(TILE_ROWS) {
            let m = TILE_ROWS.min(rows - r0);
            patches.resize(m * k, 0.0);
            let gt = MatRef::row_major(&g[r0 * co..(r0 + m) * co], m, co);
            gemm_seq(alpha, gt, w.t(), 0.0, MatMut::row_major(patches, m, k));
            col2im(si, patches, r0, m, &mut dx);
        }
        return dx;
    }
    let k = 9 * co;
    let mut flipped = vec![0.0; k * ci];
    for tap in 0..9 {
        for o in 0..co {
            for i in 0..ci {
                flipped[(tap * co + o) * ci + i] = w[((8 - tap) * ci + i) * co + o];
            }
        }
    }
    let gs = ImageShape::new(si.h, si.w, co);
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let m = TILE_ROWS.min(rows - r0);
        patches.resize(m * k, 0.0);
        im2col(gs, g, r0, m, patches);
        let tile = MatMut::row_major(&mut dx[r0 * ci..(r0 + m) * ci], m, ci);
        gemm_seq(
            alpha,
            MatRef::row_major(patches, m, k),
            MatRef::row_major(&flipped, k, ci),
            0.0,
            tile,
        );
    }
    dx
}

/// Accumulate [`conv3x3_forward`]'s weight gradient from its input `x` and
/// its output's cotangent `g`: `dw += alpha · patches(x)ᵀ · g`
/// (`9·c_in × c_out` row-major).
///
/// # Panics
/// If the buffers do not have those lengths.
pub fn conv3x3_weight_grad(
    si: ImageShape,
    x: &[f32],
    g: &[f32],
    b: usize,
    alpha: f32,
    dw: &mut [f32],
    patches: &mut Vec<f32>,
) {
    let k = 9 * si.c;
    let co = dw.len() / k;
    let rows = b * si.h * si.w;
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let m = TILE_ROWS.min(rows - r0);
        patches.resize(m * k, 0.0);
        im2col(si, x, r0, m, patches);
        let gt = &g[r0 * co..(r0 + m) * co];
        gemm_seq(
            alpha,
            MatRef::row_major(patches, m, k).t(),
            MatRef::row_major(gt, m, co),
            1.0,
            MatMut::row_major(&mut *dw, k, co),
        );
    }
}
