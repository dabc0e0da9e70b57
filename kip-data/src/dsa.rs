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
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `h × w × 1` image with pixel `(r, c) = w·r + c + offset`.
    fn ramp(h: usize, w: usize, offset: f32) -> (ImageShape, Vec<f32>) {
        (
            ImageShape::new(h, w, 1),
            (0..h * w).map(|k| k as f32 + offset).collect(),
        )
    }

    fn affine_of(shape: ImageShape, img: &[f32], theta: [f32; 6]) -> Vec<f32> {
        let mut out = img.to_vec();
        affine(shape, &mut out, &theta, &mut Vec::new());
        out
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    #[test]
    fn defaults_are_param_diff_aug() {
        let d = Dsa::default();
        assert_eq!(
            [
                d.prob_flip,
                d.ratio_scale,
                d.ratio_rotate,
                d.ratio_crop_pad,
                d.ratio_cutout
            ],
            [0.5, 1.2, 15.0, 0.125, 0.5]
        );
        assert_eq!([d.brightness, d.saturation, d.contrast], [1.0, 2.0, 0.5]);
        let names: Vec<_> = DsaFamily::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.join("_"), "color_crop_cutout_flip_scale_rotate");
    }

    #[test]
    fn flip_prob_one_mirrors_columns_prob_zero_is_identity() {
        // 2×3×2: pixel (r, c) channel k = 10r + 2c + k.
        let shape = ImageShape::new(2, 3, 2);
        let x = vec![0., 1., 2., 3., 4., 5., 10., 11., 12., 13., 14., 15.];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut y = [x.clone(), x.clone()].concat();
        let always = Dsa {
            prob_flip: 1.0,
            ..Dsa::default()
        };
        always.apply_family(DsaFamily::Flip, shape, &mut y, &mut rng);
        let mirrored = vec![4., 5., 2., 3., 0., 1., 14., 15., 12., 13., 10., 11.];
        assert_eq!(y, [mirrored.clone(), mirrored].concat());
        let mut z = x.clone();
        Dsa {
            prob_flip: 0.0,
            ..Dsa::default()
        }
        .apply_family(DsaFamily::Flip, shape, &mut z, &mut rng);
        assert_eq!(z, x);
    }

    #[test]
    fn crop_with_forced_shift_moves_and_zero_fills() {
        let (shape, x) = ramp(3, 3, 1.0); // [[1,2,3],[4,5,6],[7,8,9]]
        let mut y = x.clone();
        crop(shape, &mut y, 1, -1, &mut Vec::new());
        assert_eq!(y, vec![0., 4., 5., 0., 7., 8., 0., 0., 0.]);
        let mut y = x.clone();
        crop(shape, &mut y, -2, 2, &mut Vec::new()); // out[2][0] = x[0][2]
        assert_eq!(y, vec![0., 0., 0., 0., 0., 0., 3., 0., 0.]);
        // Channels move together.
        let shape = ImageShape::new(1, 2, 2);
        let mut y = vec![1., 2., 3., 4.];
        crop(shape, &mut y, 0, 1, &mut Vec::new());
        assert_eq!(y, vec![3., 4., 0., 0.]);
    }

    #[test]
    fn crop_draws_span_minus_four_to_four_on_32() {
        let shape = ImageShape::new(32, 16, 1);
        assert_eq!(Dsa::default().crop_shift(shape), (4, 2));
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let draws = Dsa::default().crop_draws(shape, 2000, &mut rng);
        let (ymin, ymax) = draws.iter().fold((0, 0), |(a, b), &(ty, _)| (a.min(ty), b.max(ty)));
        let (xmin, xmax) = draws.iter().fold((0, 0), |(a, b), &(_, tx)| (a.min(tx), b.max(tx)));
        assert_eq!((ymin, ymax, xmin, xmax), (-4, 4, -2, 2));
    }

    /// The authors' cutout, literally: clamp every index of the square.
    fn peer_cutout(h: usize, w: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Vec<f32> {
        let mut mask = vec![1.0; h * w];
        for a in 0..ky {
            for b in 0..kx {
                let y = (a as isize + oy as isize - (ky / 2) as isize).clamp(0, h as isize - 1) as usize;
                let x = (b as isize + ox as isize - (kx / 2) as isize).clamp(0, w as isize - 1) as usize;
                mask[y * w + x] = 0.0;
            }
        }
        mask
    }

    #[test]
    fn cutout_zeroes_expected_square_on_8x8() {
        let shape = ImageShape::new(8, 8, 1);
        assert_eq!(Dsa::default().cutout_size(shape), (4, 4));
        let zeros = |oy, ox| {
            let mut y = vec![1.0; 64];
            cutout(shape, &mut y, oy, ox, 4, 4);
            (0..64)
                .filter(|&k| y[k] == 0.0)
                .map(|k| (k / 8, k % 8))
                .collect::<Vec<_>>()
        };
        let square = |r: std::ops::Range<usize>, c: std::ops::Range<usize>| {
            r.flat_map(|i| c.clone().map(move |j| (i, j))).collect::<Vec<_>>()
        };
        assert_eq!(zeros(0, 0), square(0..2, 0..2));
        assert_eq!(zeros(8, 8), square(6..8, 6..8));
        assert_eq!(zeros(3, 5), square(1..5, 3..7));
        assert_eq!(zeros(8, 0), square(6..8, 0..2));
        // Every offset the authors can draw, for even and odd sides, matches
        // their clamped scatter; channels are all zeroed.
        let shape = ImageShape::new(8, 6, 2);
        for (ky, kx) in [(4, 3), (3, 4), (1, 1), (5, 2), (8, 6), (0, 0)] {
            for oy in 0..8 + 1 - ky % 2 {
                for ox in 0..6 + 1 - kx % 2 {
                    let mut y = vec![1.0; 96];
                    cutout(shape, &mut y, oy, ox, ky, kx);
                    let mask: Vec<f32> = peer_cutout(8, 6, oy, ox, ky, kx)
                        .into_iter()
                        .flat_map(|m| [m, m])
                        .collect();
                    assert_eq!(y, mask, "k=({ky},{kx}) o=({oy},{ox})");
                }
            }
        }
    }

    #[test]
    fn cutout_draws_span_zero_to_h_for_even_side() {
        let shape = ImageShape::new(32, 5, 1); // sides 16 (even) and 3 (odd)
        assert_eq!(Dsa::default().cutout_size(shape), (16, 3));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws = Dsa::default().cutout_draws(shape, 3000, &mut rng);
        assert_eq!(draws.iter().map(|d| d.0).max(), Some(32));
        assert_eq!(draws.iter().map(|d| d.0).min(), Some(0));
        assert_eq!(draws.iter().map(|d| d.1).max(), Some(4));
    }

    #[test]
    fn unit_scale_and_zero_rotation_are_identity() {
        let shape = ImageShape::new(5, 7, 3);
        let x = pseudo_random(shape.dim(), 4);
        for theta in [scale_theta(1.0, 1.0), rotate_theta(0.0)] {
            let y = affine_of(shape, &x, theta);
            assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 1e-6), "{theta:?}");
        }
        let dsa = Dsa {
            ratio_scale: 1.0,
            ratio_rotate: 0.0,
            ..Dsa::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut y = [x.clone(), x.clone()].concat();
        dsa.apply_family(DsaFamily::Scale, shape, &mut y, &mut rng);
        dsa.apply_family(DsaFamily::Rotate, shape, &mut y, &mut rng);
        assert!(y.iter().zip(x.iter().cycle()).all(|(a, b)| (a - b).abs() <= 1e-6));
    }

    #[test]
    fn rotate_90_is_exact_anticlockwise_rotation() {
        // The authors' matrix at φ = 90° is [[0, −1, 0], [1, 0, 0]]:
        // out[i][j] = x[j][3 − i], i.e. numpy's rot90 (anticlockwise).
        let (shape, x) = ramp(4, 4, 0.0);
        let expected = vec![3., 7., 11., 15., 2., 6., 10., 14., 1., 5., 9., 13., 0., 4., 8., 12.];
        assert_eq!(affine_of(shape, &x, [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]), expected);
        // Through the f32 angle (cos(π/2) ≈ −4e-8): equal to 1e-5.
        let y = affine_of(shape, &x, rotate_theta(std::f32::consts::FRAC_PI_2));
        assert!(y.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5), "{y:?}");
        // ratio_rotate 180 with r = 0.75 is +90°.
        let dsa = Dsa {
            ratio_rotate: 180.0,
            ..Dsa::default()
        };
        assert!((dsa.angle(0.75) - std::f32::consts::FRAC_PI_2).abs() < 1e-6);
    }

    #[test]
    fn scale_samples_hand_computed_bilinear_values() {
        let (shape, x) = ramp(4, 4, 0.0); // x[r][c] = 4r + c
                                          // s = ½ (zoom in ×2): source coordinates 0.75, 1.25, 1.75, 2.25 on
                                          // both axes; a linear image gives 4·iy + ix exactly.
        let y = affine_of(shape, &x, scale_theta(0.5, 0.5));
        assert_eq!(y[0], 3.75); // (0, 0): 4·0.75 + 0.75
        assert_eq!(y[4 + 2], 6.75); // (1, 2): 4·1.25 + 1.75
        assert_eq!(y[15], 11.25); // (3, 3): 4·2.25 + 2.25
                                  // s = 2 (zoom out): sources −1.5, 0.5, 2.5, 4.5; zero outside.
        let y = affine_of(shape, &x, scale_theta(2.0, 2.0));
        assert_eq!(y[5], 2.5); // mean of x[0..2][0..2] = (0+1+4+5)/4
        assert_eq!(y[10], 12.5); // (10+11+14+15)/4
        assert_eq!(y[0], 0.0);
        assert_eq!(y[15], 0.0);
        // s_x = 1.25, s_y = 1: column sources −0.375 and 3.375, half the
        // bilinear taps outside: 0.625·x[1][0] and 0.625·x[1][3].
        let (shape, x) = ramp(4, 4, 1.0);
        let y = affine_of(shape, &x, scale_theta(1.25, 1.0));
        assert_eq!(y[4], 0.625 * 5.0);
        assert_eq!(y[7], 0.625 * 8.0);
        // The draw maps r ∈ [0, 1) onto [1/1.2, 1.2).
        let dsa = Dsa::default();
        assert!((dsa.scale_factor(0.0) - 1.0 / 1.2).abs() < 1e-6);
        assert!((dsa.scale_factor(1.0) - 1.2).abs() < 1e-6);
    }

    #[test]
    fn affine_matches_torch_grid_sample() {
        // Expected values from torch 2.15.0 (CPU): F.grid_sample(x,
        // F.affine_grid(theta, x.shape, align_corners=False),
        // align_corners=False) on a 1×2×4×5 tensor, permuted to HWC.
        let shape = ImageShape::new(4, 5, 2);
        let x: Vec<f32> = (0..shape.dim()).map(|k| k as f32 * 0.25 - 2.0).collect();
        #[rustfmt::skip]
        let scale: [f32; 40] = [
            -1.15, -0.95, -0.9875003, -0.7375003, -0.43750024, -0.18750024, 0.112499826, 0.36249983,
            0.44999963, 0.64999956, 0.55, 0.74999994, 1.1375, 1.3875, 1.6875001, 1.9375,
            2.2375002, 2.4875002, 2.1499994, 2.3499992, 2.2499995, 2.4499996, 3.2624998, 3.5124998,
            3.8125, 4.0625, 4.3624997, 4.6124997, 3.8499985, 4.0499988, 3.9499993, 4.149999,
            5.3875003, 5.6375003, 5.9375, 6.1875, 6.4875, 6.7375007, 5.549998, 5.749998,
        ];
        // φ = 0.3 rad; torch's f32 cos and sin.
        #[rustfmt::skip]
        let rotate: [f32; 40] = [
            -0.9971755, -0.8486348, -0.9972082, -0.7895634, -0.5554617, -0.3054617, 0.51324725, 0.76324725,
            0.72232485, 0.85613143, -0.48923796, -0.23923798, 0.57947075, 0.82947075, 1.6481795, 1.8981794,
            2.7168882, 2.9668882, 3.381414, 3.607571, 1.5940334, 1.8201901, 2.7831116, 3.0331116,
            3.8518207, 4.101821, 4.9205294, 5.1705294, 5.989238, 6.239238, 2.2214205, 2.355227,
            4.9867525, 5.236753, 6.055462, 6.305462, 5.565393, 5.773038, 4.265072, 4.4136124,
        ];
        let (c, s) = (0.9553365, 0.29552022);
        assert!((rotate_theta(0.3)[0] - c).abs() < 1e-6 && (rotate_theta(0.3)[3] - s).abs() < 1e-6);
        for (theta, expected) in [(scale_theta(1.1, 0.85), scale), ([c, -s, 0.0, s, c, 0.0], rotate)] {
            let y = affine_of(shape, &x, theta);
            let err = y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-6, "{theta:?}: max error {err}");
        }
    }

    #[test]
    fn color_ops_give_hand_computed_values() {
        let shape = ImageShape::new(1, 2, 3);
        let x = vec![1., 2., 6., 0., 0., 3.];
        // Brightness −¼ with identity saturation (1) and contrast (1).
        let mut y = x.clone();
        color(shape, &mut y, -0.25, 1.0, 1.0);
        assert_eq!(y, vec![0.75, 1.75, 5.75, -0.25, -0.25, 2.75]);
        // Saturation ½ around the pixel means 3 and 1.
        let mut y = x.clone();
        saturation(shape, &mut y, 0.5);
        assert_eq!(y, vec![2., 2.5, 4.5, 0.5, 0.5, 2.]);
        // Contrast 1.5 around the image mean 2.
        let mut y = x.clone();
        contrast(&mut y, 1.5);
        assert_eq!(y, vec![0.5, 2., 8., -1., -1., 3.5]);
        // All three in order: +1 → means 4 and 2; saturation 0 → grey
        // [4,4,4,2,2,2]; contrast 2 around 3 → [5,5,5,1,1,1].
        let mut y = x.clone();
        color(shape, &mut y, 1.0, 0.0, 2.0);
        assert_eq!(y, vec![5., 5., 5., 1., 1., 1.]);
        // r·saturation = 1 and r + contrast = 1 are identities.
        let shape = ImageShape::new(2, 4, 3);
        let x = pseudo_random(shape.dim(), 6);
        let mut y = x.clone();
        saturation(shape, &mut y, 1.0);
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 1e-6));
        let mut y = x.clone();
        contrast(&mut y, 1.0);
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 1e-6));
    }

    #[test]
    fn color_draws_are_brightness_then_saturation_then_contrast() {
        let shape = ImageShape::new(2, 2, 3);
        let x = pseudo_random(3 * shape.dim(), 7);
        let dsa = Dsa::default();
        let mut y = x.clone();
        dsa.apply_family(DsaFamily::Color, shape, &mut y, &mut ChaCha8Rng::seed_from_u64(8));
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let r: Vec<f32> = (0..9).map(|_| rng.random()).collect();
        let mut z = x.clone();
        for (k, img) in z.chunks_exact_mut(shape.dim()).enumerate() {
            color(shape, img, (r[k] - 0.5) * 1.0, r[3 + k] * 2.0, r[6 + k] + 0.5);
        }
        assert_eq!(y, z);
        assert_ne!(y, x);
    }

    fn batch_run(seed: u64, x: &[f32], shape: ImageShape) -> (DsaFamily, Vec<f32>) {
        let mut y = x.to_vec();
        let f = Dsa::default().apply_batch(shape, &mut y, &mut ChaCha8Rng::seed_from_u64(seed));
        (f, y)
    }

    #[test]
    fn apply_batch_uses_all_six_families_and_is_reproducible() {
        let shape = ImageShape::new(8, 8, 3);
        let x = pseudo_random(5 * shape.dim(), 9);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let (f, y) = batch_run(seed, &x, shape);
            seen.insert(f);
            let (g, z) = batch_run(seed, &x, shape);
            assert_eq!(f, g);
            assert!(y.iter().zip(&z).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
    }

    #[test]
    fn apply_batch_is_independent_of_thread_count() {
        let shape = ImageShape::new(6, 5, 3);
        let x = pseudo_random(7 * shape.dim(), 10);
        let run = |k: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(k).build().unwrap();
            pool.install(|| (0..60).map(|seed| batch_run(seed, &x, shape)).collect::<Vec<_>>())
        };
        let (one, two) = (run(1), run(2));
        for ((f, y), (g, z)) in one.iter().zip(&two) {
            assert_eq!(f, g);
            assert!(y.iter().zip(z).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        assert!(one.iter().any(|(_, y)| y != &x));
    }
}
