//! PNG contact sheets of (support) images: a row of images per class.

use std::path::Path;

use crate::dataset::ImageShape;
use crate::error::{DataError, Result};
use crate::io::write_file_atomic;

/// Smallest displayed image side in pixels; smaller images are upscaled by
/// the integer factor `ceil(32 / max(h, w))`.
pub const MIN_DISPLAY_SIDE: usize = 32;

/// Gap colour between cells (mid grey).
const GAP: u8 = 128;

/// Pixels between classes that share a line of the sheet.
const BAND_GAP: usize = 3;

/// Largest grid written (pixels), to refuse absurd requests.
const MAX_GRID_PIXELS: usize = 1 << 28;

/// How image values become 0..255 in a contact sheet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PngScale {
    /// Pixel values: clipped to `[0, max]` and mapped linearly
    /// (`round(255 · v / max)`).
    Pixels {
        /// The white point.
        max: f64,
    },
    /// Each image on its own scale, the way distilled ZCA-space images are
    /// shown in the field: `[μ − 2.5σ, μ + 2.5σ]` of the image's values
    /// (all channels) mapped linearly to 0..255, clipped (a constant image
    /// is mid grey).
    PerImage,
}

/// Spread of [`PngScale::PerImage`], in standard deviations each side.
const PER_IMAGE_CLIP: f64 = 2.5;

/// Writes a PNG contact sheet of `n` images, a row per class: class `k`'s
/// images sit left to right in their order in `pixels`. When the rows are
/// short (few images per class: 10 support images of 10 classes would be a
/// single column), several classes share a line of the sheet, side by side
/// in class order, so that the sheet stays about square: with at most `m`
/// images in a class, `max(1, round(√(C/m)))` classes per line. Cells are
/// framed by 1-pixel grey gaps; classes on one line are 3 pixels apart.
/// Grayscale for `c = 1`, RGB for `c = 3`. Values are mapped to 0..255 by
/// `scale` ([`PngScale`]); images are upscaled by an integer factor so
/// that their longer side is at least 32 pixels. Atomic write.
///
pub fn write_png_grid(
    path: &Path,
    pixels: &[f64],
    shape: ImageShape,
    labels: &[usize],
    n_classes: usize,
    scale: PngScale,
) -> Result<()> {
    let d = shape.dim();
    let n = labels.len();
    if n == 0 || d == 0 || pixels.len() != n * d {
        return Err(DataError::invalid(format!(
            "write_png_grid: {} values for {n} images of shape {shape}",
            pixels.len()
        )));
    }
    if shape.c != 1 && shape.c != 3 {
        return Err(DataError::invalid(format!(
            "write_png_grid: {} channels (need 1 or 3)",
            shape.c
        )));
    }
    if let PngScale::Pixels { max } = scale {
        if !(max.is_finite() && max > 0.0) {
            return Err(DataError::invalid(format!(
                "write_png_grid: white point {max} must be positive"
            )));
        }
    }
    if let Some(l) = labels.iter().find(|&&l| l >= n_classes) {
        return Err(DataError::invalid(format!(
            "write_png_grid: label {l} out of range for {n_classes} classes"
        )));
    }
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        rows[l].push(i);
    }
    let per_class = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let bands = ((n_classes as f64 / per_class as f64).sqrt().round() as usize).clamp(1, n_classes.max(1));
    let lines = n_classes.div_ceil(bands).max(1);
    let s = MIN_DISPLAY_SIDE.div_ceil(shape.h.max(shape.w)).max(1);
    let (ch, cw) = (shape.h * s, shape.w * s);
    let band_w = per_class * (cw + 1) + 1;
    let width = bands * band_w + (bands - 1) * BAND_GAP;
    let height = lines * (ch + 1) + 1;
    if width.saturating_mul(height) > MAX_GRID_PIXELS || width > u32::MAX as usize || height > u32::MAX as usize {
        return Err(DataError::invalid(format!(
            "write_png_grid: grid of {width}x{height} pixels is too large"
        )));
    }
    let c = shape.c;
    let mut img = vec![GAP; width * height * c];
    // The space between bands is black, so the bands read as groups.
    for line in 0..height {
        for b in 1..bands {
            let x0 = b * (band_w + BAND_GAP) - BAND_GAP;
            img[(line * width + x0) * c..(line * width + x0 + BAND_GAP) * c].fill(0);
        }
    }
    let range = |src: &[f64]| -> (f64, f64) {
        match scale {
            PngScale::Pixels { max } => (0.0, max),
            PngScale::PerImage => {
                let finite = || src.iter().copied().filter(|v| v.is_finite());
                let n = finite().count().max(1) as f64;
                let mean = finite().sum::<f64>() / n;
                let sd = (finite().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                if sd > 0.0 && sd.is_finite() {
                    (mean - PER_IMAGE_CLIP * sd, mean + PER_IMAGE_CLIP * sd)
                } else {
                    (mean - 1.0, mean + 1.0)
                }
            }
        }
    };
    for (class, members) in rows.iter().enumerate() {
        let (line, band) = (class / bands, class % bands);
        for (col, &i) in members.iter().enumerate() {
            let src = &pixels[i * d..(i + 1) * d];
            let (lo, hi) = range(src);
            let to_u8 = |v: f64| -> u8 {
                let v = if v.is_nan() { lo } else { v.clamp(lo, hi) };
                (255.0 * (v - lo) / (hi - lo)).round() as u8
            };
            let (y0, x0) = (1 + line * (ch + 1), band * (band_w + BAND_GAP) + 1 + col * (cw + 1));
            for y in 0..ch {
                for x in 0..cw {
                    let sp = ((y / s) * shape.w + x / s) * c;
                    let dp = ((y0 + y) * width + x0 + x) * c;
                    for k in 0..c {
                        img[dp + k] = to_u8(src[sp + k]);
                    }
                }
            }
        }
    }
    let pe = |e: png::EncodingError| DataError::io(path, std::io::Error::other(e.to_string()));
    let mut bytes = Vec::with_capacity(img.len() / 2 + 1024);
    {
        let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
        enc.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(pe)?;
        wr.write_image_data(&img).map_err(pe)?;
        wr.finish().map_err(pe)?;
    }
    write_file_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let size = |p: &Path| {
            let reader = png::Decoder::new(std::fs::File::open(p).unwrap()).read_info().unwrap();
            (reader.info().width, reader.info().height)
        };
        let shape = ImageShape::new(8, 8, 1);
        let px: Vec<f64> = (0..3 * 64).map(|i| (i % 17) as f64).collect();
        // Two classes of up to two images: a row each (2 cells of 32 px + 3 gaps).
        write_png_grid(&p, &px, shape, &[0, 1, 1], 2, PngScale::Pixels { max: 16.0 }).unwrap();
        assert_eq!(size(&p), (67, 67));
        assert!(write_png_grid(
            &p,
            &px,
            ImageShape::new(8, 8, 2),
            &[0],
            2,
            PngScale::Pixels { max: 16.0 }
        )
        .is_err());
        // One image in each of 10 classes: 3 classes per line, 4 lines (not one column).
        let px: Vec<f64> = (0..10 * 64).map(|i| (i % 17) as f64).collect();
        let labels: Vec<usize> = (0..10).collect();
        write_png_grid(&p, &px, shape, &labels, 10, PngScale::Pixels { max: 16.0 }).unwrap();
        assert_eq!(size(&p), (3 * 34 + 2 * 3, 4 * 33 + 1));
        // Ten images in each of 10 classes: a row per class.
        let px: Vec<f64> = (0..100 * 64).map(|i| (i % 17) as f64).collect();
        let labels: Vec<usize> = (0..100).map(|i| i / 10).collect();
        write_png_grid(&p, &px, shape, &labels, 10, PngScale::Pixels { max: 16.0 }).unwrap();
        assert_eq!(size(&p), (10 * 33 + 1, 10 * 33 + 1));
    }

    /// The grey levels of a written sheet.
    fn decoded(p: &Path) -> Vec<u8> {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        buf
    }

    /// ZCA-space images (values around 0, a few units wide) are a black
    /// sheet on the pixel scale but show their structure per image.
    #[test]
    fn zca_images_are_visible_per_image() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let shape = ImageShape::new(8, 8, 3);
        let px: Vec<f64> = (0..4 * 192)
            .map(|i| ((i * 37 % 101) as f64 / 101.0 - 0.5) * 14.0)
            .collect();
        let labels = [0, 0, 1, 1];
        write_png_grid(&p, &px, shape, &labels, 2, PngScale::Pixels { max: 255.0 }).unwrap();
        let flat = decoded(&p);
        let lit = flat.iter().filter(|&&v| v != GAP && v > 16).count();
        assert_eq!(lit, 0, "pixel scale: nearly black");
        write_png_grid(&p, &px, shape, &labels, 2, PngScale::PerImage).unwrap();
        let flat = decoded(&p);
        let bright = flat.iter().filter(|&&v| v > 160).count();
        let dark = flat.iter().filter(|&&v| v < 96).count();
        assert!(
            bright > flat.len() / 10 && dark > flat.len() / 10,
            "per image: {bright} bright, {dark} dark"
        );
        // A constant image is mid grey, not a division by zero.
        write_png_grid(&p, &[3.0; 192], shape, &[0], 1, PngScale::PerImage).unwrap();
        assert!(decoded(&p).contains(&128));
    }
}
