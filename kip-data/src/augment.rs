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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Draw {
    flip: bool,
    dy: isize,
    dx: isize,
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
        let s = self.shift as i64;
        let draws: Vec<Draw> = (0..images.len() / d)
            .map(|_| Draw {
                flip: self.flip && rng.random_bool(0.5),
                dy: if s > 0 { rng.random_range(-s..=s) as isize } else { 0 },
                dx: if s > 0 { rng.random_range(-s..=s) as isize } else { 0 },
            })
            .collect();
        images
            .par_chunks_mut(d)
            .zip(draws.par_iter())
            .for_each_init(Vec::new, |scratch, (img, draw)| transform(shape, img, *draw, scratch));
    }
}

/// Flip then translate one image in place.
fn transform<T: Copy + Default>(shape: ImageShape, img: &mut [T], draw: Draw, scratch: &mut Vec<T>) {
    if !draw.flip && draw.dy == 0 && draw.dx == 0 {
        return;
    }
    let ImageShape { h, w, c } = shape;
    scratch.clear();
    scratch.extend_from_slice(img);
    for y in 0..h {
        for x in 0..w {
            let out = &mut img[(y * w + x) * c..(y * w + x + 1) * c];
            // Source pixel of the translated image, then of the flip.
            let (sy, sx) = (y as isize - draw.dy, x as isize - draw.dx);
            if sy < 0 || sy >= h as isize || sx < 0 || sx >= w as isize {
                out.fill(T::default());
                continue;
            }
            let sx = if draw.flip { w - 1 - sx as usize } else { sx as usize };
            let src = (sy as usize * w + sx) * c;
            out.copy_from_slice(&scratch[src..src + c]);
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
}
