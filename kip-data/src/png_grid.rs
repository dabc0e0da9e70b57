//! PNG contact sheets of (support) images, one row per class.

use std::io::Write;
use std::path::Path;

use crate::dataset::ImageShape;
use crate::error::{DataError, Result};
use crate::io::write_atomic;

/// Smallest displayed image side in pixels; smaller images are upscaled by
/// the integer factor `ceil(32 / max(h, w))`.
pub const MIN_DISPLAY_SIDE: usize = 32;

/// Gap colour between cells (mid grey).
const GAP: u8 = 128;

/// Largest grid written (pixels), to refuse absurd requests.
const MAX_GRID_PIXELS: usize = 1 << 28;

/// Writes a PNG grid of `n` images: row `k` holds the images with label `k`
/// left to right in their order in `pixels`; cells are separated (and
/// framed) by 1-pixel grey gaps. Grayscale for `c = 1`, RGB for `c = 3`.
/// Values are clipped to `[0, scale_max]` and mapped linearly to 0..255
/// (`round(255 · v / scale_max)`); images are upscaled by an integer factor
/// so that their longer side is at least 32 pixels. Atomic write.
///
/// # Errors
/// [`DataError::Invalid`] when `pixels.len() != labels.len() · d`, `n = 0`,
/// `c ∉ {1, 3}`, a label `>= n_classes`, `scale_max` not positive and finite,
/// or the grid would be enormous; [`DataError::Io`] on write failure.
pub fn write_png_grid(
    path: &Path,
    pixels: &[f64],
    shape: ImageShape,
    labels: &[usize],
    n_classes: usize,
    scale_max: f64,
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
    if !(scale_max.is_finite() && scale_max > 0.0) {
        return Err(DataError::invalid(format!(
            "write_png_grid: scale_max {scale_max} must be positive"
        )));
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
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let s = MIN_DISPLAY_SIDE.div_ceil(shape.h.max(shape.w)).max(1);
    let (ch, cw) = (shape.h * s, shape.w * s);
    let width = cols * (cw + 1) + 1;
    let height = n_classes * (ch + 1) + 1;
    if width.saturating_mul(height) > MAX_GRID_PIXELS || width > u32::MAX as usize || height > u32::MAX as usize {
        return Err(DataError::invalid(format!(
            "write_png_grid: grid of {width}x{height} pixels is too large"
        )));
    }
    let c = shape.c;
    let mut img = vec![GAP; width * height * c];
    let to_u8 = |v: f64| -> u8 {
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, scale_max) };
        (255.0 * v / scale_max).round() as u8
    };
    for (r, members) in rows.iter().enumerate() {
        for (col, &i) in members.iter().enumerate() {
            let src = &pixels[i * d..(i + 1) * d];
            let (y0, x0) = (1 + r * (ch + 1), 1 + col * (cw + 1));
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
    write_atomic(path, |mut w| {
        let io = |e: std::io::Error| DataError::io(path, e);
        w.write_all(&bytes).map_err(io)?;
        w.flush().map_err(io)?;
        w.into_inner().map_err(|e| DataError::io(path, e.into_error()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let shape = ImageShape::new(8, 8, 1);
        let px: Vec<f64> = (0..3 * 64).map(|i| (i % 17) as f64).collect();
        write_png_grid(&p, &px, shape, &[0, 1, 1], 2, 16.0).unwrap();
        let dec = png::Decoder::new(std::fs::File::open(&p).unwrap());
        let reader = dec.read_info().unwrap();
        let info = reader.info();
        // 2 columns of 32 px + 3 gaps; 2 rows of 32 px + 3 gaps.
        assert_eq!((info.width, info.height), (67, 67));
        assert!(write_png_grid(&p, &px, ImageShape::new(8, 8, 2), &[0], 2, 16.0).is_err());
    }
}
