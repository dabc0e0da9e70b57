//! `kip gram`: a kernel matrix of points read from `.npy`/`.npz` files, for
//! users who want kernels without KIP (or to check them against another
//! library).

use std::time::Instant;

use kip_data::{read_points, write_npy_f64, ImageShape, PointArray};
use kip_kernels::{points_row_major, Kernel, KernelSpec};
use nalgebra::DMatrix;
use serde_json::json;

use crate::cli::GramArgs;
use crate::error::{CliError, Result};

/// `HxWxC` (e.g. `32x32x3`).
fn parse_shape(s: &str) -> Result<ImageShape> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            CliError::flag(
                &format!("--image-shape {s}"),
                "expected HxWxC with positive integers, e.g. 32x32x3",
            )
        })?;
    match dims[..] {
        [h, w, c] if h > 0 && w > 0 && c > 0 => {
            let shape = ImageShape::new(h, w, c);
            // A product that wraps could match the points' length.
            shape.checked_dim().map(|_| shape).ok_or_else(|| {
                CliError::flag(
                    &format!("--image-shape {s}"),
                    format!("h·w·c overflows (more than {} values per image)", usize::MAX),
                )
            })
        }
        _ => Err(CliError::flag(
            &format!("--image-shape {s}"),
            "expected HxWxC with positive integers, e.g. 32x32x3",
        )),
    }
}

fn view(x: &PointArray) -> kip_kernels::PointsView<'_> {
    points_row_major(&x.data, x.len(), x.dim())
}

pub fn run(a: GramArgs) -> Result<i32> {
    let spec = a
        .kernel
        .parse::<KernelSpec>()
        .map_err(|e| CliError::flag(&format!("--kernel {}", a.kernel), e))?;
    let shape_flag = a.image_shape.as_deref().map(parse_shape).transpose()?;
    // An unwritable --out is found now, not after the kernel is computed.
    kip_data::check_writable(&a.out)?;
    let read = |p: &std::path::Path| read_points(p, a.key.as_deref());
    let xa = read(&a.a)?;
    let xb = a.b.as_deref().map(read).transpose()?;
    if let Some(xb) = &xb {
        if xb.shape[1..] != xa.shape[1..] {
            return Err(CliError::Usage(format!(
                "{} holds points of shape {:?} but {} holds {:?}: both sets need the same point shape",
                a.a.display(),
                &xa.shape[1..],
                a.b.as_ref().expect("b given").display(),
                &xb.shape[1..]
            )));
        }
    }
    let mut kernel = spec.build();
    if kernel.needs_image_shape() {
        let shape = shape_flag.or(xa.image_shape()).ok_or_else(|| {
            CliError::Usage(format!(
                "--kernel {}: {} holds flat points of shape {:?}; give --image-shape HxWxC (or save the images as [n, h, w, c])",
                a.kernel,
                a.a.display(),
                &xa.shape
            ))
        })?;
        kernel = kernel.for_images(shape);
    }
    let t0 = Instant::now();
    let mut k = DMatrix::zeros(0, 0);
    match &xb {
        Some(xb) => kernel.gram_into(view(&xa), view(xb), &mut k)?,
        None => kernel.gram_sym_into(view(&xa), &mut k)?,
    }
    let secs = t0.elapsed().as_secs_f64();
    let (n1, n2) = k.shape();
    let row_major: Vec<f64> = (0..n1)
        .flat_map(|i| (0..n2).map(move |j| (i, j)))
        .map(|(i, j)| k[(i, j)])
        .collect();
    write_npy_f64(&a.out, n1, n2, &row_major)?;
    let spec = kernel.spec().to_string();
    if a.json {
        println!(
            "{}",
            json!({ "out": a.out, "kernel": spec, "rows": n1, "cols": n2, "seconds": secs,
                    "ms_per_pair": secs * 1e3 / (n1 * n2) as f64 })
        );
    } else if !a.quiet {
        eprintln!(
            "{}: {n1} x {n2} {spec} kernel (float64) in {secs:.2} s ({:.4} ms per pair)",
            a.out.display(),
            secs * 1e3 / (n1 * n2) as f64
        );
    }
    Ok(0)
}
