//! Target augmentation: random horizontal flips and small translations of
//! a batch of images (the authors' notebook augments its target batches).
//!
//! Each image draws, in order, whether it is flipped (when `flip` is on)
//! and its shift `(dy, dx)`, each uniform in `−shift..=shift`; the image is
//! flipped first, then translated, and pixels shifted in from outside are
//! 0 (the mean of standardised data). The draws come from the caller's
//! generator, so a run that checkpoints its generator resumes bitwise.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::ImageShape;

/// Which augmentations a batch gets (none by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Flip each image horizontally with probability ½.
    pub flip: bool,
    /// Largest translation in pixels along each axis (0: none).
    pub shift: usize,
}

/// What one image gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Draw {
    flip: bool,
    dy: isize,
    dx: isize,
}

impl Draw {
    fn is_identity(&self) -> bool {
        !self.flip && self.dy == 0 && self.dx == 0
    }
}

impl Augment {
    /// Whether it changes nothing.
    pub fn is_none(&self) -> bool {
        !self.flip && self.shift == 0
    }

    /// Augment the `n` row-major images of `shape` in `images` (`n · d`
    /// values) in place, drawing from `rng` (nothing is drawn when
    /// [`Augment::is_none`]).
    ///
    /// # Panics
    /// If `images.len()` is not a multiple of `shape.dim()`.
    pub fn apply<T: Copy + Default + Send + Sync>(&self, shape: ImageShape, images: &mut [T], rng: &mut impl Rng) {
        if self.is_none() {
            return;
        }
        let d = shape.dim();
        assert_eq!(images.len() % d, 0, "images of {shape}");
        let draws = self.draw(images.len() / d, rng);
        draws.apply(shape, images);
    }

    /// Draw what each of `n` images gets (nothing is drawn when
    /// [`Augment::is_none`]), to apply to images with [`Draws::apply`] and
    /// to gradients with [`Draws::adjoint`].
    pub fn draw(&self, n: usize, rng: &mut impl Rng) -> Draws {
        if self.is_none() {
            return Draws(vec![Draw::default(); n]);
        }
        let s = self.shift as i64;
        Draws(
            (0..n)
                .map(|_| Draw {
                    flip: self.flip && rng.random_bool(0.5),
                    dy: if s > 0 { rng.random_range(-s..=s) as isize } else { 0 },
                    dx: if s > 0 { rng.random_range(-s..=s) as isize } else { 0 },
                })
                .collect(),
        )
    }
}

/// The flips and translations drawn for a batch of images, one per image.
/// Each is linear in the image, so a gradient with respect to the
/// augmented images maps back to one with respect to the originals through
/// the adjoint ([`Draws::adjoint`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draws(Vec<Draw>);

impl Draws {
    /// Augment the row-major images of `shape` in `images` in place.
    ///
    /// # Panics
    /// If `images` does not hold one image of `shape` per draw.
    pub fn apply<T: Copy + Default + Send + Sync>(&self, shape: ImageShape, images: &mut [T]) {
        self.each(shape, images, transform);
    }

    /// The adjoint, in place: `grads` holds the gradient of a function of
    /// the augmented images (one row-major image of `shape` per draw) and
    /// becomes its gradient with respect to the images before augmentation.
    /// Pixels moved out of the frame get 0, as they did not count.
    ///
    /// # Panics
    /// If `grads` does not hold one image of `shape` per draw.
    pub fn adjoint<T: Copy + Default + Send + Sync>(&self, shape: ImageShape, grads: &mut [T]) {
        self.each(shape, grads, transform_adjoint);
    }

    fn each<T: Copy + Default + Send + Sync>(
        &self,
        shape: ImageShape,
        images: &mut [T],
        f: fn(ImageShape, &mut [T], Draw, &mut Vec<T>),
    ) {
        let d = shape.dim();
        assert_eq!(images.len(), self.0.len() * d, "{} images of {shape}", self.0.len());
        images
            .par_chunks_mut(d)
            .zip(self.0.par_iter())
            .for_each_init(Vec::new, |scratch, (img, draw)| f(shape, img, *draw, scratch));
    }
}

/// Where output pixel `(y, x)` of `draw` reads its input: `None` when it
/// comes from outside the frame (zero fill).
fn source(shape: ImageShape, draw: Draw, y: usize, x: usize) -> Option<usize> {
    let (sy, sx) = (y as isize - draw.dy, x as isize - draw.dx);
    if sy < 0 || sy >= shape.h as isize || sx < 0 || sx >= shape.w as isize {
        return None;
    }
    let sx = if draw.flip {
        shape.w - 1 - sx as usize
    } else {
        sx as usize
    };
    Some((sy as usize * shape.w + sx) * shape.c)
}

/// Flip then translate one image in place.
fn transform<T: Copy + Default>(shape: ImageShape, img: &mut [T], draw: Draw, scratch: &mut Vec<T>) {
    if draw.is_identity() {
        return;
    }
    let ImageShape { h, w, c } = shape;
    scratch.clear();
    scratch.extend_from_slice(img);
    for y in 0..h {
        for x in 0..w {
            let out = &mut img[(y * w + x) * c..(y * w + x + 1) * c];
            match source(shape, draw, y, x) {
                Some(src) => out.copy_from_slice(&scratch[src..src + c]),
                None => out.fill(T::default()),
            }
        }
    }
}

/// The adjoint of [`transform`] in place: each output pixel's gradient goes
/// back to the one input pixel it was read from (the map is one-to-one, so
/// nothing adds up); input pixels no output read get 0.
fn transform_adjoint<T: Copy + Default>(shape: ImageShape, grad: &mut [T], draw: Draw, scratch: &mut Vec<T>) {
    if draw.is_identity() {
        return;
    }
    let ImageShape { h, w, c } = shape;
    scratch.clear();
    scratch.extend_from_slice(grad);
    grad.fill(T::default());
    for y in 0..h {
        for x in 0..w {
            if let Some(src) = source(shape, draw, y, x) {
                let out = (y * w + x) * c;
                grad[src..src + c].copy_from_slice(&scratch[out..out + c]);
            }
        }
    }
}

/// An augmentation string that [`Augment::from_str`] does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}`: expected none, or a comma list of flip and shift:K (K >= 1 pixels), e.g. flip,shift:2")]
pub struct ParseAugmentError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for Augment {
    type Err = ParseAugmentError;

    /// `none`, or a comma list of `flip` and `shift:K`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAugmentError { input: s.to_string() };
        let mut a = Augment::default();
        if s.trim() == "none" {
            return Ok(a);
        }
        for part in s.split(',').map(str::trim) {
            match part.split_once(':') {
                None if part == "flip" && !a.flip => a.flip = true,
                Some(("shift", k)) if a.shift == 0 => {
                    a.shift = k.parse().ok().filter(|&k: &usize| k >= 1).ok_or_else(err)?;
                }
                _ => return Err(err()),
            }
        }
        Ok(a)
    }
}

impl fmt::Display for Augment {
    /// The form [`Augment::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.flip, self.shift) {
            (false, 0) => f.write_str("none"),
            (true, 0) => f.write_str("flip"),
            (false, k) => write!(f, "shift:{k}"),
            (true, k) => write!(f, "flip,shift:{k}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 3×4 image with 2 channels: pixel (y, x) channel k = 100y + 10x + k + 1.
    fn image() -> (ImageShape, Vec<f32>) {
        let shape = ImageShape::new(3, 4, 2);
        let v = (0..3)
            .flat_map(|y| (0..4).flat_map(move |x| (0..2).map(move |k| (100 * y + 10 * x + k + 1) as f32)))
            .collect();
        (shape, v)
    }

    fn at(shape: ImageShape, img: &[f32], y: usize, x: usize) -> [f32; 2] {
        let i = (y * shape.w + x) * shape.c;
        [img[i], img[i + 1]]
    }

    /// The image after one flip/translation.
    fn moved(orig: &[f32], shape: ImageShape, flip: bool, dy: isize, dx: isize) -> Vec<f32> {
        let mut img = orig.to_vec();
        transform(shape, &mut img, Draw { flip, dy, dx }, &mut Vec::new());
        img
    }

    #[test]
    fn flip_and_shift_move_known_pixels() {
        let (shape, orig) = image();
        let img = moved(&orig, shape, true, 0, 0);
        assert_eq!(at(shape, &img, 1, 0), at(shape, &orig, 1, 3));
        assert_eq!(at(shape, &img, 2, 3), at(shape, &orig, 2, 0));
        // out(y, x) = in(y − 1, x + 1); row 0 and column 3 come from outside.
        let img = moved(&orig, shape, false, 1, -1);
        assert_eq!(at(shape, &img, 1, 0), at(shape, &orig, 0, 1));
        assert_eq!(at(shape, &img, 2, 2), at(shape, &orig, 1, 3));
        assert_eq!(at(shape, &img, 0, 2), [0.0, 0.0]);
        assert_eq!(at(shape, &img, 1, 3), [0.0, 0.0]);
        // Flip, then translate.
        let img = moved(&orig, shape, true, 0, 1);
        assert_eq!(at(shape, &img, 0, 1), at(shape, &orig, 0, 3));
        assert_eq!(at(shape, &img, 0, 0), [0.0, 0.0]);
    }

    #[test]
    fn batches_are_seeded_and_nothing_is_drawn_when_off() {
        let (shape, one) = image();
        let batch: Vec<f32> = (0..8).flat_map(|_| one.clone()).collect();
        let aug: Augment = "flip,shift:1".parse().unwrap();
        let run = |seed| {
            let mut b = batch.clone();
            aug.apply(shape, &mut b, &mut ChaCha8Rng::seed_from_u64(seed));
            b
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        assert_ne!(run(3), batch, "8 images, some moved");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut b = batch.clone();
        Augment::default().apply(shape, &mut b, &mut rng);
        assert_eq!(b, batch);
        assert_eq!(rng, ChaCha8Rng::seed_from_u64(1), "no draw when off");
    }

    #[test]
    fn parses_and_prints() {
        for (s, a) in [
            ("none", Augment::default()),
            ("flip", Augment { flip: true, shift: 0 }),
            ("shift:2", Augment { flip: false, shift: 2 }),
            ("flip,shift:3", Augment { flip: true, shift: 3 }),
        ] {
            assert_eq!(s.parse::<Augment>().unwrap(), a);
            assert_eq!(a.to_string(), s);
        }
        assert_eq!(
            "shift:2, flip".parse::<Augment>().unwrap(),
            Augment { flip: true, shift: 2 }
        );
        for bad in [
            "",
            "flop",
            "shift",
            "shift:0",
            "shift:-1",
            "flip,flip",
            "shift:1,shift:2",
            "rotate:3",
        ] {
            let e = bad.parse::<Augment>().unwrap_err().to_string();
            assert!(e.contains("expected none"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_adjoint_satisfies_the_inner_product_identity() {
        // <A x, g> = <x, Aᵀ g> for every draw of a batch, exactly (the
        // map only moves and zeroes values, so the sums hold the same terms).
        use rand::Rng;
        let shape = ImageShape::new(5, 6, 3);
        let aug: Augment = "flip,shift:2".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 16;
        let x: Vec<f64> = (0..n * shape.dim()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let g: Vec<f64> = (0..n * shape.dim()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let draws = aug.draw(n, &mut rng);
        let (mut ax, mut atg) = (x.clone(), g.clone());
        draws.apply(shape, &mut ax);
        draws.adjoint(shape, &mut atg);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
        assert!((dot(&ax, &g) - dot(&x, &atg)).abs() < 1e-12);
        assert_ne!(ax, x, "some images moved");
        // Per image too.
        let d = shape.dim();
        for i in 0..n {
            let r = i * d..(i + 1) * d;
            assert!((dot(&ax[r.clone()], &g[r.clone()]) - dot(&x[r.clone()], &atg[r])).abs() < 1e-12);
        }
        // Applying draw() then Draws::apply is what apply() does.
        let mut a = x.clone();
        aug.apply(shape, &mut a, &mut ChaCha8Rng::seed_from_u64(9));
        let mut b = x.clone();
        aug.draw(n, &mut ChaCha8Rng::seed_from_u64(9)).apply(shape, &mut b);
        assert_eq!(a, b);
    }
}
