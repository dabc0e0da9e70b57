//! Writing and reading learned support sets (`support.npz`).

use std::path::Path;

use nalgebra::DMatrix;
use npyz::npz::NpzWriter;
use npyz::WriterBuilder;

use crate::dataset::ImageShape;
use crate::error::{DataError, Result};
use crate::io::write_atomic;
use crate::npz::{npz_err, open, read_array, Array, ArrayData};
use crate::preprocess::Transform;

/// A learned support set with everything needed to use or inspect it.
#[derive(Clone, Debug)]
pub struct SupportSet {
    /// Image shape (`d = h · w · c`).
    pub shape: ImageShape,
    /// Support images in model space (after preprocessing), `n × d`.
    pub x_model: DMatrix<f64>,
    /// Support images mapped back to the original pixel scale, `n × d`.
    pub x_pixels: DMatrix<f64>,
    /// Label vectors (possibly learned), `n × C`.
    pub y: DMatrix<f64>,
    /// Class id of each support image (the class it was initialised from).
    pub labels: Vec<usize>,
    /// Class names, index = class id (`C` entries).
    pub class_names: Vec<String>,
}

impl SupportSet {
    /// A support set from its model-space images `x_model` (`n × d`), label
    /// vectors `y` (`n × C`) and class ids, with the images mapped back to
    /// the original pixel scale by inverting `transform`.
    ///
    /// # Errors
    /// [`DataError::Invalid`] if the shapes disagree with each other, with
    /// the transform's image shape or with the `C` class names.
    pub fn from_model(
        x_model: &DMatrix<f64>,
        y: &DMatrix<f64>,
        labels: &[usize],
        transform: &Transform,
        class_names: &[String],
    ) -> Result<SupportSet> {
        let (n, d) = x_model.shape();
        let shape = transform.shape();
        let c = class_names.len();
        if d != shape.dim() || y.shape() != (n, c) || labels.len() != n {
            return Err(DataError::invalid(format!(
                "support set of {n} x {d} images, {:?} labels and {} class ids for images of shape {shape} and {c} classes",
                y.shape(),
                labels.len()
            )));
        }
        let mut rows: Vec<f64> = (0..n * d).map(|k| x_model[(k / d, k % d)]).collect();
        transform.invert_rows(&mut rows, n);
        let s = SupportSet {
            shape,
            x_model: x_model.clone(),
            x_pixels: DMatrix::from_row_slice(n, d, &rows),
            y: y.clone(),
            labels: labels.to_vec(),
            class_names: class_names.to_vec(),
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        let (n, d) = (self.labels.len(), self.shape.dim());
        let c = self.class_names.len();
        let ok = self.x_model.shape() == (n, d)
            && self.x_pixels.shape() == (n, d)
            && self.y.nrows() == n
            && self.y.ncols() == c
            && d > 0
            && c > 0;
        if !ok {
            return Err(DataError::invalid(format!(
                "support set dimensions disagree: {n} labels, shape {} (d = {d}), x_model {:?}, x_pixels {:?}, y {:?}, {c} class names",
                self.shape,
                self.x_model.shape(),
                self.x_pixels.shape(),
                self.y.shape()
            )));
        }
        if let Some(l) = self.labels.iter().find(|&&l| l >= c) {
            return Err(DataError::invalid(format!(
                "support label {l} out of range for {c} classes"
            )));
        }
        if self.class_names.iter().any(|s| s.contains('\n')) {
            return Err(DataError::invalid("class names must not contain newlines"));
        }
        Ok(())
    }

    /// Writes `path` as an `.npz` (deflate-compressed zip) with arrays
    ///
    /// | array | dtype | shape |
    /// |---|---|---|
    /// | `x` | float32 | `[n, h, w, c]`, original pixel scale |
    /// | `x_model` | float64 | `[n, h, w, c]`, model space |
    /// | `y` | float64 | `[n, C]` |
    /// | `labels` | int64 | `[n]` |
    /// | `class_names_utf8` | uint8 | `[bytes]`: names joined by `\n` |
    ///
    /// The write is atomic ([`crate::write_atomic`]): on error no partial
    /// file is left and an existing `path` is untouched. The archive's
    /// timestamps are fixed, so equal support sets give equal files.
    ///
    /// # Errors
    /// [`DataError::Invalid`] if the dimensions disagree; [`DataError::Io`]
    /// if the file cannot be written.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        self.check()?;
        let n = self.labels.len() as u64;
        let s = self.shape;
        let img_shape = [n, s.h as u64, s.w as u64, s.c as u64];
        let names = self.class_names.join("\n").into_bytes();
        write_atomic(path, |w| {
            let io = |e: std::io::Error| DataError::io(path, e);
            let mut npz = NpzWriter::new(w);
            // A fixed timestamp (the zip epoch, 1980-01-01): the same support
            // set gives the same bytes, so runs can be compared with `cmp`.
            let opts = || npyz::zip::write::FileOptions::default().last_modified_time(npyz::zip::DateTime::default());
            {
                let mut a = npz
                    .array::<f32>("x", opts())
                    .map_err(io)?
                    .default_dtype()
                    .shape(&img_shape)
                    .begin_nd()
                    .map_err(io)?;
                a.extend(row_major(&self.x_pixels).map(|v| v as f32)).map_err(io)?;
                a.finish().map_err(io)?;
            }
            {
                let mut a = npz
                    .array::<f64>("x_model", opts())
                    .map_err(io)?
                    .default_dtype()
                    .shape(&img_shape)
                    .begin_nd()
                    .map_err(io)?;
                a.extend(row_major(&self.x_model)).map_err(io)?;
                a.finish().map_err(io)?;
            }
            {
                let shape = [n, self.y.ncols() as u64];
                let mut a = npz
                    .array::<f64>("y", opts())
                    .map_err(io)?
                    .default_dtype()
                    .shape(&shape)
                    .begin_nd()
                    .map_err(io)?;
                a.extend(row_major(&self.y)).map_err(io)?;
                a.finish().map_err(io)?;
            }
            {
                let mut a = npz
                    .array::<i64>("labels", opts())
                    .map_err(io)?
                    .default_dtype()
                    .shape(&[n])
                    .begin_nd()
                    .map_err(io)?;
                a.extend(self.labels.iter().map(|&l| l as i64)).map_err(io)?;
                a.finish().map_err(io)?;
            }
            {
                let mut a = npz
                    .array::<u8>("class_names_utf8", opts())
                    .map_err(io)?
                    .default_dtype()
                    .shape(&[names.len() as u64])
                    .begin_nd()
                    .map_err(io)?;
                a.extend(names.iter().copied()).map_err(io)?;
                a.finish().map_err(io)?;
            }
            npz.zip_writer()
                .finish()
                .map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))?;
            Ok(())
        })
    }

    /// Writes `path` as an `.npz` for the dataset-distillation field's
    /// evaluation tools (DC-BENCH, DD-Ranking), with arrays
    ///
    /// | array | dtype | shape |
    /// |---|---|---|
    /// | `images` | float32 | `[n, h, w, c]`, model space (what the networks train on) |
    /// | `labels` | float32 | `[n, C]`: one-hot of the argmax of each label vector |
    /// | `class_ids` | int64 | `[n]`: that argmax |
    /// | `preprocess_utf8` | uint8 | `[bytes]`: the preprocessing of model space |
    /// | `channel_mean`, `channel_std` | float64 | `[c]`: with `standard` preprocessing |
    ///
    /// `preprocess` names the transform (`standard`, `zca:S`, `none`) and
    /// `transform` supplies its statistics. Atomic, like
    /// [`SupportSet::write_npz`].
    ///
    /// # Errors
    /// As [`SupportSet::write_npz`].
    pub fn write_dc_bench(&self, path: &Path, preprocess: &str, transform: Option<&Transform>) -> Result<()> {
        self.check()?;
        let n = self.labels.len();
        let c = self.y.ncols();
        let s = self.shape;
        let ids: Vec<usize> = (0..n)
            .map(|i| kip_core::argmax(self.y.row(i).iter().copied()))
            .collect();
        let mut one_hot = vec![0.0f32; n * c];
        for (i, &k) in ids.iter().enumerate() {
            one_hot[i * c + k] = 1.0;
        }
        let stats = transform.and_then(|t| t.channel_stats());
        write_atomic(path, |w| {
            let io = |e: std::io::Error| DataError::io(path, e);
            let mut npz = NpzWriter::new(w);
            let opts = || npyz::zip::write::FileOptions::default().last_modified_time(npyz::zip::DateTime::default());
            macro_rules! array {
                ($t:ty, $name:expr, $shape:expr, $values:expr) => {{
                    let mut a = npz
                        .array::<$t>($name, opts())
                        .map_err(io)?
                        .default_dtype()
                        .shape($shape)
                        .begin_nd()
                        .map_err(io)?;
                    a.extend($values).map_err(io)?;
                    a.finish().map_err(io)?;
                }};
            }
            let dims = [n as u64, s.h as u64, s.w as u64, s.c as u64];
            array!(f32, "images", &dims, row_major(&self.x_model).map(|v| v as f32));
            array!(f32, "labels", &[n as u64, c as u64], one_hot.iter().copied());
            array!(i64, "class_ids", &[n as u64], ids.iter().map(|&k| k as i64));
            let pre = preprocess.as_bytes();
            array!(u8, "preprocess_utf8", &[pre.len() as u64], pre.iter().copied());
            if let Some((mean, std)) = stats {
                array!(f64, "channel_mean", &[mean.len() as u64], mean.iter().copied());
                array!(f64, "channel_std", &[std.len() as u64], std.iter().copied());
            }
            npz.zip_writer()
                .finish()
                .map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))?;
            Ok(())
        })
    }

    /// Reads a file written by [`SupportSet::write_npz`]. `x_model`, `y` and
    /// `labels` round-trip exactly; `x_pixels` comes from the float32 `x`.
    /// Without `class_names_utf8`, names are `"0".."C-1"`.
    ///
    /// # Errors
    /// [`DataError::Io`] if unreadable; [`DataError::Npz`] naming the array
    /// when one is missing or has an unexpected shape or dtype.
    pub fn read_npz(path: &Path) -> Result<SupportSet> {
        let mut ar = open(path)?;
        let mut get = |name: &str| -> Result<Array> {
            read_array(&mut ar, path, name)?
                .ok_or_else(|| npz_err(path, Some(name), format!("array `{name}` is missing")))
        };
        let x = get("x")?;
        let xm = get("x_model")?;
        let y = get("y")?;
        let lb = get("labels")?;
        if x.shape.len() != 4 {
            return Err(npz_err(
                path,
                Some("x"),
                format!("expected rank 4 [n,h,w,c], found shape {:?}", x.shape),
            ));
        }
        let (n, shape) = (x.shape[0], ImageShape::new(x.shape[1], x.shape[2], x.shape[3]));
        let d = shape.dim();
        if xm.shape != x.shape {
            return Err(npz_err(
                path,
                Some("x_model"),
                format!("shape {:?} differs from x's {:?}", xm.shape, x.shape),
            ));
        }
        if y.shape.len() != 2 || y.shape[0] != n || y.shape[1] == 0 {
            return Err(npz_err(
                path,
                Some("y"),
                format!("expected [{n}, C], found {:?}", y.shape),
            ));
        }
        let c = y.shape[1];
        let labels: Vec<usize> = match (&lb.data, lb.shape.as_slice()) {
            (ArrayData::I64(v), [m]) if *m == n => {
                if let Some(l) = v.iter().find(|&&l| l < 0 || l as usize >= c) {
                    return Err(npz_err(
                        path,
                        Some("labels"),
                        format!("label {l} out of range for {c} classes"),
                    ));
                }
                v.iter().map(|&l| l as usize).collect()
            }
            _ => {
                return Err(npz_err(
                    path,
                    Some("labels"),
                    format!("expected int [{n}], found shape {:?}", lb.shape),
                ))
            }
        };
        let class_names = match read_array(&mut ar, path, "class_names_utf8")? {
            Some(Array {
                data: ArrayData::U8(b), ..
            }) => {
                let s = String::from_utf8(b).map_err(|_| npz_err(path, Some("class_names_utf8"), "not valid UTF-8"))?;
                let v: Vec<String> = s.split('\n').map(String::from).collect();
                if v.len() != c {
                    return Err(npz_err(
                        path,
                        Some("class_names_utf8"),
                        format!("{} names for {c} label columns", v.len()),
                    ));
                }
                v
            }
            Some(_) => return Err(npz_err(path, Some("class_names_utf8"), "expected a uint8 array")),
            None => (0..c).map(|i| i.to_string()).collect(),
        };
        Ok(SupportSet {
            shape,
            x_pixels: DMatrix::from_row_slice(n, d, &x.data.to_f64()),
            x_model: DMatrix::from_row_slice(n, d, &xm.data.to_f64()),
            y: DMatrix::from_row_slice(n, c, &y.data.to_f64()),
            labels,
            class_names,
        })
    }
}

fn row_major(m: &DMatrix<f64>) -> impl Iterator<Item = f64> + '_ {
    (0..m.nrows()).flat_map(move |i| (0..m.ncols()).map(move |j| m[(i, j)]))
}
