//! NumPy `.npz` datasets (read through `npyz`).
//!
//! Arrays: `x` (images), `y` (labels), optionally `x_test`/`y_test` and
//! `class_names_utf8` (UTF-8 bytes, names separated by `\n`, as written by
//! [`crate::SupportSet::write_npz`]).
//!
//! Image array shapes:
//! * rank 4: `[n, h, w, c]` ([`NpzLayout::Nhwc`]) or `[n, c, h, w]`
//!   ([`NpzLayout::Nchw`], converted to HWC);
//! * rank 3: `[n, h, w]`, one channel;
//! * rank 2: `[n, d]`: a square `s × s × 1` image when `d = s²`, otherwise a
//!   `1 × d × 1` strip.
//!
//! Image dtypes: `u8`, `f32`, `f64` (stored as `f32`). Label arrays: any
//! integer dtype `[n]` (ids, must be `>= 0`), an integral-valued float `[n]`,
//! or a `[n, C]` matrix of any supported dtype (one-hot/scores: the argmax of
//! each row is the class; `C` is then the class count). Fortran-ordered arrays
//! are accepted.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use npyz::npz::NpzArchive;
use npyz::{DType, NpyFile, Order, TypeChar};

use crate::dataset::{Dataset, ImageShape, Split};
use crate::error::{DataError, Result};

/// Axis order of rank-4 image arrays in an `.npz`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NpzLayout {
    /// `[n, h, w, c]` (numpy/JAX convention; the default).
    #[default]
    Nhwc,
    /// `[n, c, h, w]` (PyTorch convention).
    Nchw,
}

/// Images (shape, HWC pixels), class ids and the class count they imply.
type Pair = (ImageShape, Vec<f32>, Vec<usize>, usize);

/// A numeric array read from an npz, in C order.
pub(crate) struct Array {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

pub(crate) enum ArrayData {
    U8(Vec<u8>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl ArrayData {
    fn len(&self) -> usize {
        match self {
            ArrayData::U8(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
        }
    }

    fn get_f64(&self, i: usize) -> f64 {
        match self {
            ArrayData::U8(v) => v[i] as f64,
            ArrayData::I64(v) => v[i] as f64,
            ArrayData::F32(v) => v[i] as f64,
            ArrayData::F64(v) => v[i],
        }
    }

    pub(crate) fn to_f64(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get_f64(i)).collect()
    }
}

pub(crate) fn npz_err(path: &Path, array: Option<&str>, what: impl Into<String>) -> DataError {
    DataError::Npz {
        path: path.to_path_buf(),
        array: array.map(String::from),
        what: what.into(),
    }
}

/// Opens an npz archive.
pub(crate) fn open(path: &Path) -> Result<NpzArchive<BufReader<File>>> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    NpzArchive::new(BufReader::new(f))
        .map_err(|e| npz_err(path, None, format!("not a readable npz (zip) archive: {e}")))
}

/// Reorders C-ordered `data` of `shape` so that output axis `k` is input
/// axis `perm[k]`.
fn permute<T: Copy + Default>(data: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let r = shape.len();
    let mut in_strides = vec![1usize; r];
    for k in (0..r.saturating_sub(1)).rev() {
        in_strides[k] = in_strides[k + 1] * shape[k + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut counter = vec![0usize; r];
    let mut src = 0usize;
    for _ in 0..data.len() {
        out.push(data[src]);
        // increment the multi-index (last axis fastest)
        for k in (0..r).rev() {
            counter[k] += 1;
            src += strides[k];
            if counter[k] < out_shape[k] {
                break;
            }
            src -= strides[k] * out_shape[k];
            counter[k] = 0;
        }
    }
    out
}

fn to_c_order<T: Copy + Default>(data: Vec<T>, shape: &[usize], order: Order) -> Vec<T> {
    match order {
        Order::C => data,
        Order::Fortran => {
            // Fortran data = C data of the reversed shape; reverse the axes back.
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let perm: Vec<usize> = (0..shape.len()).rev().collect();
            permute(&data, &rev, &perm)
        }
    }
}

/// Largest expansion of a deflate stream (1032:1), rounded up.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// Largest npy header accepted (numpy itself refuses headers over 10,000
/// bytes by default; version 2/3 headers declare their length in 4 bytes).
const MAX_NPY_HEADER: u64 = 1 << 20;

/// Deepest nesting of brackets a valid npy header of an array kip reads
/// needs (`{'shape': (3, 4), ...}`: 2); deeper headers are refused before
/// the npy parser sees them (the parser backtracks: a header of 44 nested
/// `[` kept it busy for over four minutes before the fuzzer was stopped;
/// found by the `npy_points` fuzz target).
const MAX_NPY_HEADER_NESTING: usize = 4;

/// Why an npy stream's header must not reach the parser, if it must not:
/// a declared header length over `MAX_NPY_HEADER` or the stream's `size`
/// (the parser allocates it first), or brackets nested deeper than
/// [`MAX_NPY_HEADER_NESTING`]. `None` also when the stream is too short or
/// not npy (the npy reader then reports that). Reads the magic
/// (`\x93NUMPY`, major, minor, then u16 (version 1) or u32 length) and the
/// header text.
fn npy_header_problem(r: &mut impl std::io::Read, size: u64, what: &str) -> std::io::Result<Option<String>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(12);
    r.take(12).read_to_end(&mut head)?;
    if head.len() < 10 || !head.starts_with(b"\x93NUMPY") {
        return Ok(None);
    }
    let (len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as u64, 10),
        _ if head.len() == 12 => (u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as u64, 12),
        _ => return Ok(None),
    };
    if len > MAX_NPY_HEADER.min(size) {
        return Ok(Some(format!(
            "npy header claims {len} bytes ({what} holds {size}, limit {MAX_NPY_HEADER})"
        )));
    }
    let mut text = head[start..].to_vec();
    r.take(len.saturating_sub(text.len() as u64)).read_to_end(&mut text)?;
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in text {
        match b {
            b'[' | b'(' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok((deepest > MAX_NPY_HEADER_NESTING).then(|| {
        format!("npy header nests brackets {deepest} deep (limit {MAX_NPY_HEADER_NESTING}): not an array kip reads")
    }))
}

/// Reads array `name`; `Ok(None)` when absent.
pub(crate) fn read_array<R: std::io::Read + std::io::Seek>(
    ar: &mut NpzArchive<R>,
    path: &Path,
    name: &str,
) -> Result<Option<Array>> {
    let entry = npyz::npz::file_name_from_array_name(name);
    let entry_size = match ar.zip_archive().by_name(&entry) {
        Ok(mut f) => {
            // The npy reader allocates the header length it reads before
            // checking anything: refuse an absurd one here.
            let size = f.size();
            let problem = npy_header_problem(&mut f, size, "entry")
                .map_err(|e| npz_err(path, Some(name), format!("cannot read entry {entry}: {e}")))?;
            if let Some(reason) = problem {
                return Err(npz_err(path, Some(name), reason));
            }
            size
        }
        Err(npyz::zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(npz_err(path, Some(name), format!("cannot open entry {entry}: {e}"))),
    };
    let file: NpyFile<_> = match ar.by_name(name) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(npz_err(path, Some(name), format!("bad npy header: {e}"))),
    };
    // The zip entry's declared size is itself untrusted: deflate cannot expand
    // more than ~1032:1, so no array can be larger than that many times the
    // whole file (this bounds the allocation by the file length).
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let entry_size = entry_size.min(file_len.saturating_mul(MAX_DEFLATE_RATIO));
    decode(file, path, name, entry_size).map(Some)
}

/// Decode one npy stream (an npz entry or a `.npy` file) of at most
/// `max_bytes` bytes of data into a C-ordered [`Array`].
fn decode<R: std::io::Read>(file: NpyFile<R>, path: &Path, name: &str, max_bytes: u64) -> Result<Array> {
    let shape: Vec<u64> = file.shape().to_vec();
    let order = file.order();
    let dtype = file.dtype();
    let (tc, size) = match &dtype {
        DType::Plain(ts) => (ts.type_char(), ts.size_field()),
        other => {
            return Err(npz_err(
                path,
                Some(name),
                format!(
                    "unsupported dtype {} (structured/array dtypes are not images or labels)",
                    other.descr()
                ),
            ))
        }
    };
    let supported = matches!(
        (tc, size),
        (TypeChar::Uint, 1 | 2 | 4 | 8) | (TypeChar::Int, 1 | 2 | 4 | 8) | (TypeChar::Float, 4 | 8)
    );
    if !supported {
        return Err(npz_err(
            path,
            Some(name),
            format!(
                "unsupported dtype {} (supported: integer types, float32, float64)",
                dtype.descr()
            ),
        ));
    }
    let elems = shape
        .iter()
        .try_fold(1u64, |a, &s| a.checked_mul(s))
        .and_then(|e| e.checked_mul(size));
    match elems {
        Some(bytes) if bytes <= max_bytes => {}
        _ => {
            return Err(npz_err(
                path,
                Some(name),
                format!(
                    "header shape {shape:?} of {size}-byte elements needs more bytes than the {max_bytes}-byte entry holds (truncated or corrupt)"
                ),
            ))
        }
    }
    let shape_us: Vec<usize> = shape.iter().map(|&s| s as usize).collect();
    let rd = |e: std::io::Error| npz_err(path, Some(name), format!("cannot read data: {e}"));
    let data = match (tc, size) {
        (TypeChar::Uint, 1) => ArrayData::U8(to_c_order(file.into_vec::<u8>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Uint, 2) => ArrayData::I64(conv(file.into_vec::<u16>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Uint, 4) => ArrayData::I64(conv(file.into_vec::<u32>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Uint, _) => {
            let v = file.into_vec::<u64>().map_err(rd)?;
            let v: Vec<i64> = v.into_iter().map(|x| x.min(i64::MAX as u64) as i64).collect();
            ArrayData::I64(to_c_order(v, &shape_us, order))
        }
        (TypeChar::Int, 1) => ArrayData::I64(conv(file.into_vec::<i8>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Int, 2) => ArrayData::I64(conv(file.into_vec::<i16>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Int, 4) => ArrayData::I64(conv(file.into_vec::<i32>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Int, _) => ArrayData::I64(to_c_order(file.into_vec::<i64>().map_err(rd)?, &shape_us, order)),
        (TypeChar::Float, 4) => ArrayData::F32(to_c_order(file.into_vec::<f32>().map_err(rd)?, &shape_us, order)),
        _ => ArrayData::F64(to_c_order(file.into_vec::<f64>().map_err(rd)?, &shape_us, order)),
    };
    if data.len() != shape_us.iter().product::<usize>() {
        return Err(npz_err(path, Some(name), "data shorter than its shape (truncated)"));
    }
    Ok(Array { shape: shape_us, data })
}

/// Reads a bare `.npy` file (`name` labels it in errors).
pub(crate) fn read_npy(path: &Path, name: &str) -> Result<Array> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = f.metadata().map_err(|e| DataError::io(path, e))?.len();
    if let Some(reason) = npy_header_problem(&mut f, size, "file").map_err(|e| DataError::io(path, e))? {
        return Err(npz_err(path, Some(name), reason));
    }
    use std::io::Seek;
    f.rewind().map_err(|e| DataError::io(path, e))?;
    let file =
        NpyFile::new(BufReader::new(f)).map_err(|e| npz_err(path, Some(name), format!("not an npy file: {e}")))?;
    decode(file, path, name, size)
}

/// The names of an npz archive's arrays.
pub(crate) fn array_names<R: std::io::Read + std::io::Seek>(ar: &NpzArchive<R>) -> Vec<String> {
    let mut v: Vec<String> = ar.array_names().map(String::from).collect();
    v.sort();
    v
}

fn conv<T: Into<i64> + Copy + Default>(v: Vec<T>, shape: &[usize], order: Order) -> Vec<i64> {
    to_c_order(v.into_iter().map(Into::into).collect(), shape, order)
}

/// Converts an image array to `(shape, f32 pixels HWC)`.
fn images(path: &Path, name: &str, a: Array, layout: NpzLayout) -> Result<(usize, ImageShape, Vec<f32>)> {
    let s = &a.shape;
    let (n, shape, perm): (usize, ImageShape, Option<[usize; 4]>) = match (s.len(), layout) {
        (4, NpzLayout::Nhwc) => (s[0], ImageShape::new(s[1], s[2], s[3]), None),
        (4, NpzLayout::Nchw) => (s[0], ImageShape::new(s[2], s[3], s[1]), Some([0, 2, 3, 1])),
        (3, _) => (s[0], ImageShape::new(s[1], s[2], 1), None),
        (2, _) => {
            let d = s[1];
            let r = (d as f64).sqrt().round() as usize;
            if r * r == d {
                (s[0], ImageShape::new(r, r, 1), None)
            } else {
                (s[0], ImageShape::new(1, d, 1), None)
            }
        }
        (r, _) => {
            return Err(npz_err(
                path,
                Some(name),
                format!("unsupported rank {r} (shape {s:?}); expected [n,h,w,c], [n,c,h,w], [n,h,w] or [n,d]"),
            ))
        }
    };
    if n == 0 || shape.dim() == 0 {
        return Err(npz_err(path, Some(name), format!("empty image array (shape {s:?})")));
    }
    let mut px: Vec<f32> = match a.data {
        ArrayData::U8(v) => v.iter().map(|&b| b as f32).collect(),
        ArrayData::F32(v) => v,
        ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        ArrayData::I64(_) => {
            return Err(npz_err(
                path,
                Some(name),
                "unsupported image dtype (integer other than uint8); use uint8, float32 or float64",
            ))
        }
    };
    if let Some(p) = px.iter().position(|v| !v.is_finite()) {
        return Err(npz_err(path, Some(name), format!("value {p} is not finite as f32")));
    }
    if let Some(perm) = perm {
        px = permute(&px, s, &perm);
    }
    Ok((n, shape, px))
}

/// Converts a label array to class ids plus the class count it implies.
fn labels(path: &Path, name: &str, a: Array, n: usize) -> Result<(Vec<usize>, usize)> {
    let s = a.shape.clone();
    if s.first() != Some(&n) || s.len() > 2 {
        return Err(npz_err(
            path,
            Some(name),
            format!("shape {s:?} does not match {n} images (expected [{n}] or [{n}, C])"),
        ));
    }
    if s.len() == 2 {
        let c = s[1];
        if c == 0 {
            return Err(npz_err(path, Some(name), "label matrix has 0 columns"));
        }
        let v = a.data.to_f64();
        let mut out = Vec::with_capacity(n);
        for (i, row) in v.chunks(c).enumerate() {
            if row.iter().any(|x| !x.is_finite()) {
                return Err(npz_err(path, Some(name), format!("row {i} holds a non-finite value")));
            }
            let mut best = 0;
            for (j, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = j;
                }
            }
            out.push(best);
        }
        return Ok((out, c));
    }
    let v = a.data.to_f64();
    let mut out = Vec::with_capacity(n);
    for (i, &x) in v.iter().enumerate() {
        if !(x >= 0.0 && x.fract() == 0.0 && x < 1e9) {
            return Err(npz_err(
                path,
                Some(name),
                format!("label {x} of item {i} is not a non-negative integer class id"),
            ));
        }
        out.push(x as usize);
    }
    let c = out.iter().max().map_or(1, |m| m + 1);
    // Class ids name classes that get a name and a target column each: more
    // classes than MAX_CLASSES (or than items, when there are more items) is
    // a corrupt label array, not a dataset (the npz fuzz target found a label
    // of 1.5e9 allocating 15 GB of class names).
    if c > MAX_CLASSES.max(out.len()) {
        return Err(npz_err(
            path,
            Some(name),
            format!(
                "largest label {} implies {c} classes, more than {MAX_CLASSES} and than the {} items",
                c - 1,
                out.len()
            ),
        ));
    }
    Ok((out, c))
}

/// Most classes an integer label array may imply when it has fewer items.
const MAX_CLASSES: usize = 1 << 16;

fn read_class_names<R: std::io::Read + std::io::Seek>(
    ar: &mut NpzArchive<R>,
    path: &Path,
) -> Result<Option<Vec<String>>> {
    let name = "class_names_utf8";
    match read_array(ar, path, name)? {
        Some(Array {
            data: ArrayData::U8(b), ..
        }) => {
            let s = String::from_utf8(b).map_err(|_| npz_err(path, Some(name), "not valid UTF-8"))?;
            Ok(Some(s.split('\n').map(String::from).collect()))
        }
        Some(_) => Err(npz_err(path, Some(name), "expected a uint8 array")),
        None => Ok(None),
    }
}

fn pair<R: std::io::Read + std::io::Seek>(
    ar: &mut NpzArchive<R>,
    path: &Path,
    xn: &str,
    yn: &str,
    layout: NpzLayout,
) -> Result<Option<Pair>> {
    let Some(xa) = read_array(ar, path, xn)? else {
        return Ok(None);
    };
    let (n, shape, px) = images(path, xn, xa, layout)?;
    let ya = read_array(ar, path, yn)?
        .ok_or_else(|| npz_err(path, Some(yn), format!("array `{yn}` is missing (labels for `{xn}`)")))?;
    let (lb, c) = labels(path, yn, ya, n)?;
    Ok(Some((shape, px, lb, c)))
}

fn finish(
    path: &Path,
    names: &Option<Vec<String>>,
    c: usize,
    parts: (ImageShape, Vec<f32>, Vec<usize>),
) -> Result<Dataset> {
    let class_names = match names {
        Some(v) if v.len() >= c => v.clone(),
        Some(v) => {
            return Err(npz_err(
                path,
                Some("class_names_utf8"),
                format!("{} class names for labels needing {c}", v.len()),
            ))
        }
        None => (0..c).map(|i| i.to_string()).collect(),
    };
    Dataset::new(parts.0, parts.1, parts.2, class_names).map_err(|e| npz_err(path, None, e.to_string()))
}

/// Loads arrays `x`/`y` of an `.npz` file as a dataset (see the module docs
/// for accepted shapes and dtypes). Class names: from `class_names_utf8` if
/// present, else `"0".."C-1"` with `C` = one-hot width or max label + 1.
///
/// # Errors
/// [`DataError::Io`] if the file cannot be opened; [`DataError::Npz`] naming
/// the array for: not a zip archive, missing `x` or `y`, unsupported dtype
/// (bool, complex, strings, structured), unsupported rank, shape/size
/// mismatch, negative or non-integral labels, non-finite pixels.
pub fn load_npz(path: &Path, layout: NpzLayout) -> Result<Dataset> {
    let mut ar = open(path)?;
    let names = read_class_names(&mut ar, path)?;
    let (shape, px, lb, c) = pair(&mut ar, path, "x", "y", layout)?
        .ok_or_else(|| npz_err(path, Some("x"), "array `x` (images) is missing"))?;
    finish(path, &names, c, (shape, px, lb))
}

/// Loads an `.npz` as a [`Split`]: `x`/`y` for training and `x_test`/`y_test`
/// for testing. Without `x_test`, the test set is a copy of the training set
/// and a note says so (use a hold-out instead for honest evaluation).
///
/// # Errors
/// As [`load_npz`]; also when the test images' shape differs from `x`.
pub fn load_npz_split(path: &Path, layout: NpzLayout) -> Result<Split> {
    let mut ar = open(path)?;
    let names = read_class_names(&mut ar, path)?;
    let (shape, px, lb, c) = pair(&mut ar, path, "x", "y", layout)?
        .ok_or_else(|| npz_err(path, Some("x"), "array `x` (images) is missing"))?;
    match pair(&mut ar, path, "x_test", "y_test", layout)? {
        Some((ts, tpx, tlb, tc)) => {
            if ts != shape {
                return Err(npz_err(
                    path,
                    Some("x_test"),
                    format!("image shape {ts} differs from x's {shape}"),
                ));
            }
            let c = c.max(tc);
            let train = finish(path, &names, c, (shape, px, lb))?;
            let test = finish(path, &names, c, (ts, tpx, tlb))?;
            Ok(Split {
                train,
                test,
                notes: Vec::new(),
            })
        }
        None => {
            let train = finish(path, &names, c, (shape, px, lb))?;
            Ok(Split {
                test: train.clone(),
                train,
                notes: vec![format!(
                    "{} has no x_test/y_test: the test set is a copy of the training set",
                    path.display()
                )],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_nchw() {
        // shape [1, 2, 1, 2] (n, c, h, w): c0 = [1, 2], c1 = [3, 4]
        let v = permute(&[1, 2, 3, 4], &[1, 2, 1, 2], &[0, 2, 3, 1]);
        assert_eq!(v, vec![1, 3, 2, 4]);
        let f = to_c_order(vec![1, 4, 2, 5, 3, 6], &[2, 3], Order::Fortran);
        assert_eq!(f, vec![1, 2, 3, 4, 5, 6]);
    }

    /// The fuzzer's finding, as a file and as an npz entry: a header with
    /// 44 nested `[` is refused at once instead of hanging the parser.
    #[test]
    fn deeply_nested_npy_headers_are_refused_before_parsing() {
        let mut header = format!(
            "{{'descr':{}8', 'fortran_order': False, 'shape': (2, 2), }}",
            "[".repeat(44)
        );
        let total = (10 + header.len() + 1).next_multiple_of(64);
        header.push_str(&" ".repeat(total - 11 - header.len()));
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 32]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deep.npy");
        std::fs::write(&p, &bytes).unwrap();
        let Err(e) = read_npy(&p, "npy") else {
            panic!("a 44-deep header was accepted")
        };
        let e = e.to_string();
        assert!(e.contains("nests brackets 46 deep"), "{e}");
        // A valid header passes the check.
        let ok = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
        let mut r = &ok[..];
        assert_eq!(npy_header_problem(&mut r, 1000, "file").unwrap(), None);
    }
}
