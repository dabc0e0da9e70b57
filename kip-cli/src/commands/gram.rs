//! `kip gram`: a kernel matrix of points read from `.npy`/`.npz` files, for
//! users who want kernels without KIP (or to check them against another
//! library).

use std::time::Instant;

use kip_data::{read_points, ImageShape, PointArray};
use kip_kernels::{points_row_major, Kernel, KernelSpec};
use nalgebra::DMatrix;
use serde_json::json;

use crate::cli::GramArgs;
use crate::error::{CliError, Result};

/// `HxWxC` (e.g. `32x32x3`), naming the flag on error.
fn parse_shape(s: &str) -> Result<ImageShape> {
    s.parse()
        .map_err(|e| CliError::flag(&format!("--image-shape {}", kip_core::ellipsize(s, 80)), e))
}

fn view(x: &PointArray) -> kip_kernels::PointsView<'_> {
    points_row_major(&x.data, x.len(), x.dim())
}

pub fn run(a: GramArgs) -> Result<i32> {
    let spec = a
        .kernel
        .parse::<KernelSpec>()
        .map_err(|e| CliError::flag(&format!("--kernel {}", kip_core::ellipsize(&a.kernel, 80)), e))?;
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
                kip_core::ellipsize(&a.kernel, 80),
                a.a.display(),
                &xa.shape
            ))
        })?;
        kernel = kernel.for_images(shape);
    }
    let (n1, d) = (xa.len(), xa.dim());
    let n2 = xb.as_ref().map_or(n1, PointArray::len);
    let block = match a.block {
        Some(0) => return Err(CliError::flag("--block 0", "expected at least 1 row")),
        Some(rows) => rows.min(n1.max(1)),
        None => n1,
    };
    // The memory rule: the kernel's need for one block of rows, plus that
    // block converted to row-major for the file.
    let need = kernel.memory_need(block, n2, d, false);
    let need = kip_core::sum_bytes(&[need, kip_core::bytes_of(&[block, n2], 8)]);
    kip_core::check_memory(need, || {
        let what = format!(
            "kip gram {}: the {n1} x {n2} {} kernel matrix",
            a.a.display(),
            kip_core::ellipsize(&a.kernel, 80)
        );
        if a.block.is_some() {
            format!("{what}, {block} rows at a time (--block {block}),")
        } else {
            format!(
                "{what} (the file takes {}; give --block ROWS to compute and write it in blocks of rows)",
                kip_core::format_bytes(kip_core::bytes_of(&[n1, n2], 8).unwrap_or(u64::MAX))
            )
        }
    })
    .map_err(|e| CliError::Memory(e.to_string()))?;
    let t0 = Instant::now();
    let mut k = DMatrix::zeros(0, 0);
    let mut failed = None;
    let written = kip_data::write_npy_f64_blocks(&a.out, n1, n2, block, |r0, r1, buf| {
        let rows = points_row_major(&xa.data[r0 * d..r1 * d], r1 - r0, d);
        let done = match &xb {
            Some(xb) => kernel.gram_into(rows, view(xb), &mut k),
            None if block == n1 => kernel.gram_sym_into(rows, &mut k),
            None => kernel.gram_into(rows, view(&xa), &mut k),
        };
        if let Err(e) = done {
            failed = Some(e);
            return Err(kip_data::DataError::invalid("the kernel failed".to_string()));
        }
        buf.extend(
            (0..r1 - r0)
                .flat_map(|i| (0..n2).map(move |j| (i, j)))
                .map(|(i, j)| k[(i, j)]),
        );
        if block < n1 && !a.quiet && !a.json {
            // Progress of long blocked work: rows done, time so far.
            eprint!(
                "\r{}: rows {r1}/{n1} ({:.0} s)",
                a.out.display(),
                t0.elapsed().as_secs_f64()
            );
            if r1 == n1 {
                eprintln!();
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    written?;
    let secs = t0.elapsed().as_secs_f64();
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
