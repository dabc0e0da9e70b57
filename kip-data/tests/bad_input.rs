//! Fabricated bad files: each must give an error naming the file and the
//! problem, never a panic or a silently short dataset.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_msg, gz, idx_images, idx_labels};
use kip_data::{
    load_cifar10_dir, load_cifar_batch, load_digits_csv, load_idx, load_mnist_dir, load_npz, DataError, NpzLayout,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn names() -> Vec<String> {
    kip_data::CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
}

fn cifar_record(label: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(7u8, 3072));
    r
}

#[test]
fn truncated_idx_images() {
    let dir = tempfile::tempdir().unwrap();
    // Header claims 3 images of 2x2 (12 bytes) but only 10 follow; gzip too.
    let img = write(dir.path(), "imgs.gz", &gz(&idx_images(3, 2, 2, &[1; 10])));
    let lab = write(dir.path(), "labs", &idx_labels(3, &[0, 1, 2]));
    let e = load_idx(&img, &lab).unwrap_err();
    assert!(matches!(e, DataError::Format { offset: Some(16), .. }));
    assert_msg(&e, &["imgs.gz", "12 pixel bytes", "10 bytes", "truncated"]);
}

#[test]
fn wrong_idx_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = idx_images(1, 1, 1, &[0]);
    bytes[3] = 1; // 0x00000801 is the label magic
    let img = write(dir.path(), "imgs", &bytes);
    let lab = write(dir.path(), "labs", &idx_labels(1, &[0]));
    let e = load_idx(&img, &lab).unwrap_err();
    assert_msg(&e, &["imgs", "magic", "0x00000803", "0x00000801"]);
    // Labels file given an image magic.
    let e = load_idx(&img, &write(dir.path(), "labs2", &idx_images(1, 1, 1, &[0]))).unwrap_err();
    assert_msg(&e, &["labs2", "0x00000801", "0x00000803"]);
}

#[test]
fn idx_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "imgs", &idx_images(3, 1, 2, &[0; 6]));
    let lab = write(dir.path(), "labs", &idx_labels(2, &[0, 1]));
    let e = load_idx(&img, &lab).unwrap_err();
    assert_msg(&e, &["labs", "label count 2", "image count 3", "imgs"]);
}

#[test]
fn idx_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "imgs", &idx_images(3, 1, 1, &[0; 3]));
    let lab = write(dir.path(), "labs", &idx_labels(3, &[0, 10, 2]));
    let e = load_idx(&img, &lab).unwrap_err();
    assert!(matches!(e, DataError::Format { offset: Some(9), .. }), "{e:?}");
    assert_msg(&e, &["labs", "label 10", "item 1", "10 classes"]);
}

#[test]
fn cifar_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = cifar_record(3);
    bytes.extend(cifar_record(11));
    let p = write(dir.path(), "data_batch_1.bin", &bytes);
    let e = load_cifar_batch(&p, &names()).unwrap_err();
    assert!(matches!(e, DataError::Format { offset: Some(3073), .. }), "{e:?}");
    assert_msg(&e, &["data_batch_1.bin", "label byte 11", "record 1", "offset 3073"]);
}

#[test]
fn cifar_length_not_multiple_of_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = cifar_record(1);
    bytes.extend(&cifar_record(2)[..100]);
    let p = write(dir.path(), "data_batch_2.bin.gz", &gz(&bytes));
    let e = load_cifar_batch(&p, &names()).unwrap_err();
    assert!(matches!(e, DataError::Format { offset: Some(3073), .. }), "{e:?}");
    assert_msg(
        &e,
        &[
            "data_batch_2.bin.gz",
            "3173",
            "multiple of the 3073-byte record",
            "100 bytes",
        ],
    );
}

#[test]
fn corrupt_gzip_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = gz(&idx_images(50, 10, 10, &[9; 5000]));
    let mid = g.len() / 2;
    for b in &mut g[12..mid] {
        *b ^= 0x5a;
    }
    let img = write(dir.path(), "train-images-idx3-ubyte.gz", &g);
    let lab = write(dir.path(), "labs", &idx_labels(50, &[0; 50]));
    let e = load_idx(&img, &lab).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
    assert_msg(&e, &["train-images-idx3-ubyte.gz", "gzip"]);
    // Truncated gzip (stream cut short) is an error too, not a short dataset.
    let g = gz(&idx_images(50, 10, 10, &[9; 5000]));
    let img = write(dir.path(), "cut.gz", &g[..g.len() - 20]);
    let e = load_idx(&img, &lab).unwrap_err();
    assert_msg(&e, &["cut.gz"]);
}

#[test]
fn empty_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "imgs", &idx_images(0, 28, 28, &[]));
    let lab = write(dir.path(), "labs", &idx_labels(0, &[]));
    let e = load_idx(&img, &lab).unwrap_err();
    assert_msg(&e, &["count is 0", "empty"]);
    let p = write(dir.path(), "data_batch_3.bin", &[]);
    let e = load_cifar_batch(&p, &names()).unwrap_err();
    assert_msg(&e, &["data_batch_3.bin", "0 records", "empty"]);
    let p = write(dir.path(), "empty.csv", b"");
    let e = load_digits_csv(&p).unwrap_err();
    assert_msg(&e, &["empty.csv", "empty"]);
}

#[test]
fn huge_header_count_errors_fast() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "imgs", &idx_images(u32::MAX, 65535, 65535, &[1, 2, 3]));
    let lab = write(dir.path(), "labs", &idx_labels(u32::MAX, &[1, 2, 3]));
    let t = std::time::Instant::now();
    let e = load_idx(&img, &lab).unwrap_err();
    assert!(t.elapsed().as_secs_f64() < 0.5);
    assert_msg(&e, &["claims 4294967295", "truncated"]);
    // Huge shape in an npz header: refused before reading data.
    let p = dir.path().join("huge.npz");
    common::write_npz(
        &p,
        &[("x", common::npy_bytes("<f8", &[1 << 40, 1 << 20], false, &[0; 64]))],
    );
    let t = std::time::Instant::now();
    let e = load_npz(&p, NpzLayout::Nhwc).unwrap_err();
    assert!(t.elapsed().as_secs_f64() < 0.5);
    assert_msg(&e, &["huge.npz", "`x`", "needs more bytes"]);
}

#[test]
fn npz_unsupported_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("complex.npz");
    common::write_npz(
        &p,
        &[
            ("x", common::npy_bytes("<c16", &[1, 1], false, &[0; 16])),
            ("y", common::npy_bytes("<i8", &[1], false, &[0; 8])),
        ],
    );
    let e = load_npz(&p, NpzLayout::Nhwc).unwrap_err();
    assert_msg(&e, &["complex.npz", "array `x`", "unsupported dtype", "c16"]);
    let p = dir.path().join("bool.npz");
    common::write_npz(
        &p,
        &[
            ("x", common::npy_bytes("<f4", &[1, 1], false, &[0; 4])),
            ("y", common::npy_bytes("|b1", &[1], false, &[1])),
        ],
    );
    let e = load_npz(&p, NpzLayout::Nhwc).unwrap_err();
    assert_msg(&e, &["bool.npz", "array `y`", "unsupported dtype", "b1"]);
}

#[test]
fn npz_unsupported_rank() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rank5.npz");
    common::write_npz(
        &p,
        &[
            ("x", common::npy_bytes("|u1", &[1, 1, 1, 1, 2], false, &[0, 1])),
            ("y", common::npy_bytes("<i8", &[1], false, &[0; 8])),
        ],
    );
    let e = load_npz(&p, NpzLayout::Nhwc).unwrap_err();
    assert_msg(&e, &["rank5.npz", "array `x`", "unsupported rank 5"]);
}

#[test]
fn npz_missing_x() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nox.npz");
    common::write_npz(&p, &[("y", common::npy_bytes("<i8", &[1], false, &[0; 8]))]);
    let e = load_npz(&p, NpzLayout::Nhwc).unwrap_err();
    assert_msg(&e, &["nox.npz", "`x`", "missing"]);
    // Not a zip at all.
    let p = write(dir.path(), "junk.npz", b"not a zip file");
    let e = load_npz(&p, NpzLayout::Nhwc).unwrap_err();
    assert_msg(&e, &["junk.npz", "npz"]);
}

#[test]
fn directory_without_expected_files() {
    let dir = tempfile::tempdir().unwrap();
    // Only one of the four MNIST files.
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &gz(&idx_images(1, 1, 1, &[0])),
    );
    let e = load_mnist_dir(dir.path()).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }));
    assert_msg(
        &e,
        &[
            &dir.path().display().to_string(),
            "train-images-idx3-ubyte[.gz]",
            "train-labels-idx1-ubyte[.gz]",
            "t10k-images-idx3-ubyte[.gz]",
            "t10k-labels-idx1-ubyte[.gz]",
        ],
    );
    let e = load_cifar10_dir(dir.path()).unwrap_err();
    assert_msg(
        &e,
        &[
            "cifar10",
            "data_batch_1.bin[.gz]",
            "data_batch_5.bin[.gz]",
            "test_batch.bin[.gz]",
        ],
    );
    let e = kip_data::resolve("mnist", Some(&dir.path().join("nowhere"))).unwrap_err();
    assert_msg(&e, &["nowhere/mnist", "nowhere", "t10k-images-idx3-ubyte[.gz]"]);
}

#[test]
fn digits_csv_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
    let mut bad = good.clone();
    bad[9] = "x7".to_string();
    let text = format!("{},3\n{},4\n", good.join(","), bad.join(","));
    let p = write(dir.path(), "digits.csv", text.as_bytes());
    let e = load_digits_csv(&p).unwrap_err();
    assert!(matches!(e, DataError::Csv { row: 2, column: 10, .. }), "{e:?}");
    assert_msg(&e, &["digits.csv", "row 2", "column 10", "x7"]);
    let text = format!("{},12\n", good.join(","));
    let e = load_digits_csv(&write(dir.path(), "lab.csv.gz", &gz(text.as_bytes()))).unwrap_err();
    assert_msg(&e, &["lab.csv.gz", "row 1", "column 65", "label"]);
    let text = format!("{}\n", good[..60].join(","));
    let e = load_digits_csv(&write(dir.path(), "short.csv", text.as_bytes())).unwrap_err();
    assert_msg(&e, &["short.csv", "60 fields"]);
    // A good file loads.
    let ds = load_digits_csv(&write(
        dir.path(),
        "ok.csv",
        format!("{},3\n", good.join(",")).as_bytes(),
    ))
    .unwrap();
    assert_eq!(ds.labels(), &[3]);
}

#[test]
fn unreadable_file_names_path() {
    let e = load_idx(Path::new("/nonexistent/imgs"), Path::new("/nonexistent/labs")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
    assert_msg(&e, &["/nonexistent/"]);
}

#[test]
fn partial_cifar_folder_loads_with_note() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=5 {
        write(
            dir.path(),
            &format!("data_batch_{i}.bin.gz"),
            &gz(&cifar_record(i as u8)),
        );
    }
    let mut t = cifar_record(9);
    t.extend(cifar_record(0));
    write(dir.path(), "test_batch_first2.bin", &t);
    write(dir.path(), "batches.meta.txt", b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n");
    let s = load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(s.train.len(), 5);
    assert_eq!(s.train.labels(), &[1, 2, 3, 4, 5]);
    assert_eq!(s.test.len(), 2);
    assert_eq!(s.train.class_names()[9], "j");
    assert!(s.notes[0].contains("2 records") && s.notes[0].contains("test_batch_first2.bin"));
}

/// Found by the npz fuzz target: a zip entry that declares a ~4 GB
/// uncompressed size and an npy header that fits it made the reader allocate
/// 3.6 GB. The declared size is now capped by the file length times the
/// largest deflate ratio.
#[test]
fn npz_entry_claiming_gigabytes_is_an_error_not_an_allocation() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/npz_huge_zip_size.npz"));
    for layout in [NpzLayout::Nhwc, NpzLayout::Nchw] {
        let e = load_npz(path, layout).unwrap_err().to_string();
        assert!(e.contains("npz_huge_zip_size.npz"), "{e}");
    }
    assert!(kip_data::SupportSet::read_npz(path).is_err());
}

/// Found by the npz fuzz target: an npy version-2 header declaring a 3.6 GB
/// header length made the npy reader allocate it before any check.
#[test]
fn npz_header_claiming_gigabytes_is_an_error_not_an_allocation() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/npz_huge_header.npz"));
    let e = load_npz(path, NpzLayout::Nhwc).unwrap_err().to_string();
    assert!(e.contains("npz_huge_header.npz") && e.contains("header claims"), "{e}");
}

/// Found by the npz fuzz target: one huge integer label made the loader
/// allocate a class name for every id up to it (15 GB).
#[test]
fn npz_label_implying_too_many_classes_is_an_error() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/npz_huge_label.npz"));
    let e = load_npz(path, NpzLayout::Nhwc).unwrap_err().to_string();
    assert!(e.contains("npz_huge_label.npz"), "{e}");
}
