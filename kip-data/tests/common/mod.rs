//! Shared helpers for the integration tests.
#![allow(dead_code)]

/// Minimal NPY v1.0 encoder for fabricating arrays of any dtype.
pub fn npy_bytes(descr: &str, shape: &[usize], fortran: bool, data: &[u8]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_s}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(header.len() as u16).to_le_bytes());
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// Writes an `.npz` (stored zip) holding the given `(array name, npy bytes)`.
pub fn write_npz(path: &std::path::Path, entries: &[(&str, Vec<u8>)]) {
    use std::io::Write;
    let f = std::fs::File::create(path).unwrap();
    let mut z = npyz::zip::ZipWriter::new(f);
    for (name, bytes) in entries {
        z.start_file(format!("{name}.npy"), npyz::zip::write::FileOptions::default())
            .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of i64 values.
pub fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An IDX image file.
pub fn idx_images(n: u32, rows: u32, cols: u32, px: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for x in [n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(px);
    v
}

/// An IDX label file.
pub fn idx_labels(n: u32, labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// Gzip-compresses bytes.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Asserts that `err`'s message contains every needle.
pub fn assert_msg(err: &kip_data::DataError, needles: &[&str]) {
    let s = err.to_string();
    for n in needles {
        assert!(s.contains(n), "error message `{s}` lacks `{n}`");
    }
}
