//! DSA, differentiable Siamese augmentation (Zhao & Bilen, ICML 2021,
//! "Dataset Condensation with Differentiable Siamese Augmentation"), as the
//! dataset-distillation field's standard evaluation applies it: the
//! authors' `DiffAugment` with `ParamDiffAug()` defaults, mode `'S'`
//! (one family per batch, drawn uniformly) and strategy
//! `color_crop_cutout_flip_scale_rotate`, with per-image draws (the
//! evaluation path calls it without a seed, so `Siamese` is off).
//!
//! The draws are not torch's bits (our generator is the caller's, e.g.
//! ChaCha8), but each draw has the authors' distribution and the same
//! order: for each family, one draw per image for its first parameter,
//! then one per image for the next. The draws are taken sequentially
//! before the images are transformed in parallel (one rayon task per
//! image), so the result does not depend on the thread count.
//!
//! Images are row-major HWC (`(y · w + x) · c + channel`); the authors'
//! tensors are NCHW, so their `size(2)` is our `h` (rows) and `size(3)` our
//! `w` (columns).

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::ImageShape;

/// The six DSA families in the authors' strategy order
/// `"color_crop_cutout_flip_scale_rotate"` ([`DsaFamily::ALL`]; index `k`
/// is what [`Dsa::apply_batch`] draws as `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DsaFamily {
    /// Brightness, then saturation, then contrast (`rand_brightness`,
    /// `rand_saturation`, `rand_contrast`).
    Color,
    /// Translation by whole pixels with zero fill (`rand_crop`).
    Crop,
    /// A zeroed square (`rand_cutout`).
    Cutout,
    /// Horizontal mirror (`rand_flip`).
    Flip,
    /// Axis scaling by bilinear resampling (`rand_scale`).
    Scale,
    /// Rotation about the centre by bilinear resampling (`rand_rotate`).
    Rotate,
}

impl DsaFamily {
    /// All six, in the authors' strategy order.
    pub const ALL: [DsaFamily; 6] = [
        DsaFamily::Color,
        DsaFamily::Crop,
        DsaFamily::Cutout,
        DsaFamily::Flip,
        DsaFamily::Scale,
        DsaFamily::Rotate,
    ];

    /// The authors' name: `color`, `crop`, `cutout`, `flip`, `scale` or
    /// `rotate`.
    pub fn name(self) -> &'static str {
        match self {
            DsaFamily::Color => "color",
            DsaFamily::Crop => "crop",
            DsaFamily::Cutout => "cutout",
            DsaFamily::Flip => "flip",
            DsaFamily::Scale => "scale",
            DsaFamily::Rotate => "rotate",
        }
    }
}

/// DSA parameters; [`Default`] gives the authors' `ParamDiffAug()` values.
///
/// | name | default | meaning | range |
/// |---|---|---|---|
/// | `prob_flip` | 0.5 | flip an image when its `r < prob_flip` | any (≤ 0 never, ≥ 1 always) |
/// | `ratio_scale` | 1.2 | `sx, sy ~ U[1/ratio, ratio)` | > 0 |
/// | `ratio_rotate` | 15.0 | angle `~ U[−ratio, ratio)` degrees | finite |
/// | `ratio_crop_pad` | 0.125 | largest shift `⌊H · ratio + ½⌋` rows, `⌊W · ratio + ½⌋` columns | ≥ 0 |
/// | `ratio_cutout` | 0.5 | square side `⌊H · ratio + ½⌋` rows, `⌊W · ratio + ½⌋` columns | ≥ 0 |
/// | `brightness` | 1.0 | `x + (r − ½) · brightness` | finite |
/// | `saturation` | 2.0 | `(x − m_pixel) · r · saturation + m_pixel` | finite |
/// | `contrast` | 0.5 | `(x − m_image) · (r + contrast) + m_image` | finite |
///
/// Every `r` above is `U[0, 1)`, one per image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dsa {
    /// Probability of a horizontal flip.
    pub prob_flip: f32,
    /// Largest axis scale factor (the smallest is its inverse).
    pub ratio_scale: f32,
    /// Largest rotation, in degrees, either way.
    pub ratio_rotate: f32,
    /// Largest translation as a fraction of the side.
    pub ratio_crop_pad: f32,
    /// Cutout side as a fraction of the image side.
    pub ratio_cutout: f32,
    /// Brightness range: the offset is `U[−½, ½) · brightness`.
    pub brightness: f32,
    /// Saturation range: the factor is `U[0, 1) · saturation`.
    pub saturation: f32,
    /// Contrast offset: the factor is `U[0, 1) + contrast`.
    pub contrast: f32,
}

impl Default for Dsa {
    fn default() -> Self {
        Dsa {
            prob_flip: 0.5,
            ratio_scale: 1.2,
            ratio_rotate: 15.0,
            ratio_crop_pad: 0.125,
            ratio_cutout: 0.5,
            brightness: 1.0,
            saturation: 2.0,
            contrast: 0.5,
        }
    }
}

/// Per-image draws of the colour family: `(brightness offset
/// (r − ½)·brightness, saturation factor r·saturation, contrast factor
/// r + contrast)`.
type ColorDraw = (f32, f32, f32);

impl Dsa {
    /// Mode `'S'` of the authors' `DiffAugment`: draw one family uniformly
    /// from the six (`rng.random_range(0..6)` indexing [`DsaFamily::ALL`]),
    /// then [`Dsa::apply_family`] it to the whole batch with per-image
    /// draws. Returns the family used.
    ///
    /// # Shapes
    /// `images`: `n · shape.dim()` values, `n` HWC images.
    ///
    /// # Panics
    /// As [`Dsa::apply_family`].
    pub fn apply_batch(&self, shape: ImageShape, images: &mut [f32], rng: &mut impl Rng) -> DsaFamily {
        let family = DsaFamily::ALL[rng.random_range(0..DsaFamily::ALL.len())];
        self.apply_family(family, shape, images, rng);
        family
    }

    /// Apply one family to each of the `n` images in place, with per-image
    /// draws from `rng` (all images' draws of one parameter, then the next):
    ///
    /// * [`DsaFamily::Color`]: brightness `x + (r₁ − ½)·brightness`; then
    ///   saturation `(x − m) · (r₂·saturation) + m`, `m` the pixel's mean over
    ///   channels; then contrast `(x − m) · (r₃ + contrast) + m`, `m` the
    ///   image's mean over all values (accumulated in f64). All `r₁` are
    ///   drawn, then all `r₂`, then all `r₃`.
    /// * [`DsaFamily::Crop`]: `s_y = ⌊H·ratio_crop_pad + ½⌋` (4 for 32),
    ///   likewise `s_x`; `t_y` uniform in `−s_y..=s_y` for every image, then
    ///   `t_x` in `−s_x..=s_x`; `out[i][j] = x[i + t_y][j + t_x]`, 0 outside.
    /// * [`DsaFamily::Cutout`]: side `k_y = ⌊H·ratio_cutout + ½⌋` (16 for
    ///   32), likewise `k_x`; `o_y` uniform in `0..H + 1 − k_y mod 2` for
    ///   every image, then `o_x` likewise; zero rows
    ///   `max(0, o_y − ⌊k_y/2⌋) .. min(H, o_y − ⌊k_y/2⌋ + k_y)` × the same
    ///   columns, all channels.
    /// * [`DsaFamily::Flip`]: mirror the columns when `r < prob_flip`.
    /// * [`DsaFamily::Scale`]: `s = r·(ratio − 1/ratio) + 1/ratio`, all `s_x`
    ///   then all `s_y`; affine resampling with `θ = [[s_x, 0, 0], [0, s_y, 0]]`.
    /// * [`DsaFamily::Rotate`]: `φ = (r − ½)·2·ratio_rotate/180·π`; affine
    ///   resampling with `θ = [[cos φ, −sin φ, 0], [sin φ, cos φ, 0]]`
    ///   (positive `φ` turns the picture anticlockwise).
    ///
    /// Affine resampling is torch's `affine_grid` + `grid_sample` with its
    /// defaults (`align_corners = False`, bilinear, zero padding): output
    /// pixel `(i, j)` has `x_n = (2j + 1)/W − 1`, `y_n = (2i + 1)/H − 1`,
    /// `g = θ · (x_n, y_n, 1)`, source column `((g_x + 1)·W − 1)/2` and row
    /// `((g_y + 1)·H − 1)/2`, bilinear in the four neighbours, a neighbour
    /// outside the image contributing 0. Coordinates and weights are
    /// computed in f32 with torch's CPU rounding steps (base grid from
    /// `linspace`, source `(g + 1)·(size/2) − ½`); results agree with torch
    /// 2.15 to about one ulp.
    ///
    /// # Shapes
    /// `images`: `n · shape.dim()` values, `n` HWC images.
    ///
    /// # Panics
    /// If `shape.dim()` is 0 or does not divide `images.len()`, or a
    /// parameter is outside the range in the [`Dsa`] table.
    pub fn apply_family(&self, family: DsaFamily, shape: ImageShape, images: &mut [f32], rng: &mut impl Rng) {
        self.assert_valid();
        let d = shape.dim();
        assert!(
            d > 0 && images.len() % d == 0,
            "images of {shape}: {} values",
            images.len()
        );
        let n = images.len() / d;
        let uniform = |rng: &mut _| uniforms(n, rng);
        match family {
            DsaFamily::Color => {
                let (b, s, c) = (uniform(rng), uniform(rng), uniform(rng));
                let draws: Vec<ColorDraw> = (0..n)
                    .map(|k| {
                        (
                            (b[k] - 0.5) * self.brightness,
                            s[k] * self.saturation,
                            c[k] + self.contrast,
                        )
                    })
                    .collect();
                par_images(d, images, &draws, |img, &(b, s, c), _| color(shape, img, b, s, c));
            }
            DsaFamily::Crop => {
                let draws = self.crop_draws(shape, n, rng);
                par_images(d, images, &draws, |img, &(ty, tx), scratch| {
                    crop(shape, img, ty, tx, scratch)
                });
            }
            DsaFamily::Cutout => {
                let (ky, kx) = self.cutout_size(shape);
                let draws = self.cutout_draws(shape, n, rng);
                par_images(d, images, &draws, |img, &(oy, ox), _| {
                    cutout(shape, img, oy, ox, ky, kx)
                });
            }
            DsaFamily::Flip => {
                let draws: Vec<bool> = uniform(rng).into_iter().map(|r| r < self.prob_flip).collect();
                par_images(d, images, &draws, |img, &f, _| {
                    if f {
                        flip(shape, img)
                    }
                });
            }
            DsaFamily::Scale => {
                let (sx, sy) = (uniform(rng), uniform(rng));
                let draws: Vec<[f32; 6]> = (0..n)
                    .map(|k| scale_theta(self.scale_factor(sx[k]), self.scale_factor(sy[k])))
                    .collect();
                par_images(d, images, &draws, |img, theta, scratch| {
                    affine(shape, img, theta, scratch)
                });
            }
            DsaFamily::Rotate => {
                let draws: Vec<[f32; 6]> = uniform(rng).into_iter().map(|r| rotate_theta(self.angle(r))).collect();
                par_images(d, images, &draws, |img, theta, scratch| {
                    affine(shape, img, theta, scratch)
                });
            }
        }
    }

    fn assert_valid(&self) {
        let all = [
            self.prob_flip,
            self.ratio_scale,
            self.ratio_rotate,
            self.ratio_crop_pad,
            self.ratio_cutout,
            self.brightness,
            self.saturation,
            self.contrast,
        ];
        assert!(
            all.iter().all(|v| v.is_finite()),
            "DSA parameters must be finite: {self:?}"
        );
        assert!(
            self.ratio_scale > 0.0,
            "DSA ratio_scale must be > 0: {}",
            self.ratio_scale
        );
        assert!(
            self.ratio_crop_pad >= 0.0,
            "DSA ratio_crop_pad must be >= 0: {}",
            self.ratio_crop_pad
        );
        assert!(
            self.ratio_cutout >= 0.0,
            "DSA ratio_cutout must be >= 0: {}",
            self.ratio_cutout
        );
    }

    /// `(s_y, s_x)`: the authors' `int(size * ratio + 0.5)` (Python float,
    /// i.e. f64) for rows and columns.
    fn crop_shift(&self, shape: ImageShape) -> (isize, isize) {
        (
            round_half(shape.h, self.ratio_crop_pad) as isize,
            round_half(shape.w, self.ratio_crop_pad) as isize,
        )
    }

    /// `(k_y, k_x)`: cutout side in rows and columns.
    fn cutout_size(&self, shape: ImageShape) -> (usize, usize) {
        (
            round_half(shape.h, self.ratio_cutout),
            round_half(shape.w, self.ratio_cutout),
        )
    }

    /// `(t_y, t_x)` per image: all row shifts, then all column shifts.
    fn crop_draws(&self, shape: ImageShape, n: usize, rng: &mut impl Rng) -> Vec<(isize, isize)> {
        let (sy, sx) = self.crop_shift(shape);
        let (sy, sx) = (sy as i64, sx as i64);
        let ty: Vec<i64> = (0..n).map(|_| rng.random_range(-sy..=sy)).collect();
        ty.into_iter()
            .map(|ty| (ty as isize, rng.random_range(-sx..=sx) as isize))
            .collect()
    }

    /// `(o_y, o_x)` per image: all row offsets in `0..H + 1 − k_y mod 2`,
    /// then all column offsets.
    fn cutout_draws(&self, shape: ImageShape, n: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
        let (ky, kx) = self.cutout_size(shape);
        let (ey, ex) = (shape.h + 1 - ky % 2, shape.w + 1 - kx % 2);
        let oy: Vec<usize> = (0..n).map(|_| rng.random_range(0..ey)).collect();
        oy.into_iter().map(|oy| (oy, rng.random_range(0..ex))).collect()
    }

    /// `r·(ratio − 1/ratio) + 1/ratio` with the two constants rounded to
    /// f32 from f64, as torch multiplies an f32 tensor by a Python float.
    fn scale_factor(&self, r: f32) -> f32 {
        let ratio = f64::from(self.ratio_scale);
        r * (ratio - 1.0 / ratio) as f32 + (1.0 / ratio) as f32
    }

    /// `(r − ½)·2·ratio_rotate/180·π` radians, in f32, left to right.
    fn angle(&self, r: f32) -> f32 {
        (r - 0.5) * 2.0 * self.ratio_rotate / 180.0 * std::f32::consts::PI
    }
}

/// `n` draws `r ~ U[0, 1)`.
fn uniforms(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>()).collect()
}

/// `int(size * ratio + 0.5)` for a non-negative ratio.
fn round_half(size: usize, ratio: f32) -> usize {
    (size as f64 * f64::from(ratio) + 0.5).floor() as usize
}

/// Transform each image with its draw, one rayon task per image and one
/// reusable scratch buffer per task chain.
fn par_images<D: Sync>(d: usize, images: &mut [f32], draws: &[D], f: impl Fn(&mut [f32], &D, &mut Vec<f32>) + Sync) {
    images
        .par_chunks_mut(d)
        .zip(draws.par_iter())
        .for_each_init(Vec::new, |scratch, (img, draw)| f(img, draw, scratch));
}

/// Brightness offset `b`, saturation factor `s`, contrast factor `k`, in
/// that order, on one image.
fn color(shape: ImageShape, img: &mut [f32], b: f32, s: f32, k: f32) {
    img.iter_mut().for_each(|v| *v += b);
    saturation(shape, img, s);
    contrast(img, k);
}

/// `(x − m) · s + m` with `m` each pixel's mean over its channels.
fn saturation(shape: ImageShape, img: &mut [f32], s: f32) {
    for px in img.chunks_exact_mut(shape.c) {
        let m = (px.iter().map(|&v| f64::from(v)).sum::<f64>() / shape.c as f64) as f32;
        px.iter_mut().for_each(|v| *v = (*v - m) * s + m);
    }
}

/// `(x − m) · k + m` with `m` the image's mean over all its values.
fn contrast(img: &mut [f32], k: f32) {
    let m = (img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64) as f32;
    img.iter_mut().for_each(|v| *v = (*v - m) * k + m);
}

/// `out[i][j] = x[i + ty][j + tx]`, 0 where that is outside the image.
fn crop(shape: ImageShape, img: &mut [f32], ty: isize, tx: isize, scratch: &mut Vec<f32>) {
    if ty == 0 && tx == 0 {
        return;
    }
    let ImageShape { h, w, c } = shape;
    scratch.clear();
    scratch.extend_from_slice(img);
    for i in 0..h {
        for j in 0..w {
            let out = &mut img[(i * w + j) * c..(i * w + j + 1) * c];
            let (si, sj) = (i as isize + ty, j as isize + tx);
            if si < 0 || si >= h as isize || sj < 0 || sj >= w as isize {
                out.fill(0.0);
            } else {
                let src = (si as usize * w + sj as usize) * c;
                out.copy_from_slice(&scratch[src..src + c]);
            }
        }
    }
}

/// Zero rows `max(0, oy − ky/2) .. min(h, oy − ky/2 + ky)` × columns
/// likewise (all channels). The authors clamp each index of the
/// `ky × kx` square into the image; as the square always meets the image
/// for their offsets, the clamped set is exactly this intersection.
fn cutout(shape: ImageShape, img: &mut [f32], oy: usize, ox: usize, ky: usize, kx: usize) {
    let ImageShape { h, w, c } = shape;
    let span = |o: usize, k: usize, n: usize| {
        let lo = o as isize - (k / 2) as isize;
        (lo.max(0) as usize, (lo + k as isize).clamp(0, n as isize) as usize)
    };
    let (r0, r1) = span(oy, ky, h);
    let (c0, c1) = span(ox, kx, w);
    for i in r0..r1 {
        img[(i * w + c0) * c..(i * w + c1.max(c0)) * c].fill(0.0);
    }
}

/// Mirror the columns (the authors' `flip(3)`).
fn flip(shape: ImageShape, img: &mut [f32]) {
    let ImageShape { w, c, .. } = shape;
    for row in img.chunks_exact_mut(w * c) {
        for j in 0..w / 2 {
            for k in 0..c {
                row.swap(j * c + k, (w - 1 - j) * c + k);
            }
        }
    }
}

/// `θ = [[sx, 0, 0], [0, sy, 0]]`, row-major.
fn scale_theta(sx: f32, sy: f32) -> [f32; 6] {
    [sx, 0.0, 0.0, 0.0, sy, 0.0]
}

/// `θ = [[cos φ, sin(−φ), 0], [sin φ, cos φ, 0]]`, row-major.
fn rotate_theta(phi: f32) -> [f32; 6] {
    [phi.cos(), (-phi).sin(), 0.0, phi.sin(), phi.cos(), 0.0]
}

/// torch's `grid_sample(x, affine_grid(θ, x.shape))` with
/// `align_corners = False`, bilinear, zero padding, on one image, in f32.
fn affine(shape: ImageShape, img: &mut [f32], theta: &[f32; 6], scratch: &mut Vec<f32>) {
    let ImageShape { h, w, c } = shape;
    let (sw, sh) = (w as f32 / 2.0, h as f32 / 2.0);
    scratch.clear();
    scratch.extend_from_slice(img);
    let src = |y: f32, x: f32| -> Option<&[f32]> {
        (y >= 0.0 && y < h as f32 && x >= 0.0 && x < w as f32).then(|| {
            let o = (y as usize * w + x as usize) * c;
            &scratch[o..o + c]
        })
    };
    for i in 0..h {
        let yn = base_coord(i, h);
        for j in 0..w {
            let xn = base_coord(j, w);
            let gx = theta[0] * xn + theta[1] * yn + theta[2];
            let gy = theta[3] * xn + theta[4] * yn + theta[5];
            // grid_sample's unnormalize: ((g + 1)·size − 1)/2 as torch's
            // CPU kernel rounds it.
            let ix = (gx + 1.0) * sw - 0.5;
            let iy = (gy + 1.0) * sh - 0.5;
            let (x0, y0) = (ix.floor(), iy.floor());
            let (fx, fy) = (ix - x0, iy - y0);
            let (ex, ey) = (1.0 - fx, 1.0 - fy);
            // torch's weights and summation order: nw, ne, sw, se.
            let taps = [
                (y0, x0, ey * ex),
                (y0, x0 + 1.0, ey * fx),
                (y0 + 1.0, x0, fy * ex),
                (y0 + 1.0, x0 + 1.0, fy * fx),
            ];
            let out = &mut img[(i * w + j) * c..(i * w + j + 1) * c];
            out.fill(0.0);
            for (y, x, wt) in taps {
                if let Some(p) = src(y, x) {
                    out.iter_mut().zip(p).for_each(|(o, &v)| *o += v * wt);
                }
            }
        }
    }
}

/// `affine_grid`'s base coordinate `(2k + 1)/n − 1` of index `k` of `n`,
/// rounded as torch computes it: `linspace(−1, 1, n) · (n − 1) / n` in f32
/// (linspace counting from −1 up to the middle and from 1 down after it).
fn base_coord(k: usize, n: usize) -> f32 {
    if n == 1 {
        return 0.0;
    }
    let step = 2.0 / (n - 1) as f32;
    let lin = if k < n / 2 {
        -1.0 + step * k as f32
    } else {
        1.0 - step * (n - 1 - k) as f32
    };
    lin * (n - 1) as f32 / n as f32
}

#[cfg(test)]
mod tests;
