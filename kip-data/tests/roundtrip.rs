//! Round trips: support-set npz, npz loading layouts, preprocessing inverses,
//! ZCA whitening properties.

mod common;
#[path = "support/test_env.rs"]
mod test_env;

use kip_data::{
    digits, layer_norm_rows, load_npz, load_npz_split, one_hot, Dataset, ImageShape, NpzLayout, Preprocess, SupportSet,
};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_dataset(n: usize, shape: ImageShape, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = shape.dim();
    // Correlated pixels (smoothed noise) so that whitening has work to do.
    let mut px = Vec::with_capacity(n * d);
    for _ in 0..n {
        let base: f32 = rng.random_range(0.0..100.0);
        let mut prev = 0.0f32;
        for _ in 0..d {
            prev = 0.6 * prev + rng.random_range(0.0f32..50.0);
            px.push(base + prev);
        }
    }
    let labels = (0..n).map(|i| i % 3).collect();
    Dataset::new(shape, px, labels, vec!["a".into(), "b".into(), "c".into()]).unwrap()
}

fn rows_f64(ds: &Dataset) -> Vec<f64> {
    ds.pixels().iter().map(|&v| v as f64).collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Covariance XᵀX/n of a row-major n × d buffer.
fn cov(x: &[f64], n: usize, d: usize) -> DMatrix<f64> {
    let m = DMatrix::from_row_slice(n, d, x);
    m.transpose() * &m / n as f64
}

fn support(n: usize, shape: ImageShape, c: usize, seed: u64) -> SupportSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = shape.dim();
    let labels: Vec<usize> = (0..n).map(|i| i % c).collect();
    SupportSet {
        shape,
        x_model: DMatrix::from_fn(n, d, |_, _| rng.random::<f64>() * 3.0 - 1.5),
        x_pixels: DMatrix::from_fn(n, d, |_, _| (rng.random::<f64>() * 255.0).round()),
        y: one_hot(&labels, c, true) + DMatrix::from_fn(n, c, |_, _| rng.random::<f64>() * 1e-3),
        labels,
        class_names: (0..c).map(|k| format!("class {k}")).collect(),
    }
}

#[test]
fn support_npz_roundtrip_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("support.npz");
    let s = support(7, ImageShape::new(4, 3, 3), 5, 1);
    s.write_npz(&p).unwrap();
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let r = SupportSet::read_npz(&p).unwrap();
    assert_eq!(r.shape, s.shape);
    assert_eq!(r.x_model, s.x_model);
    assert_eq!(r.y, s.y);
    assert_eq!(r.labels, s.labels);
    assert_eq!(r.class_names, s.class_names);
    assert_eq!(r.x_pixels, s.x_pixels); // integral values are exact in f32
                                        // The same file loads as a dataset (x float32 + y argmax).
    let ds = load_npz(&p, NpzLayout::Nhwc).unwrap();
    assert_eq!(ds.len(), 7);
    assert_eq!(ds.labels(), &s.labels[..]);
    assert_eq!(ds.class_names()[4], "class 4");
}

#[test]
fn support_write_is_atomic_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("support.npz");
    std::fs::write(&p, b"previous").unwrap();
    let mut s = support(3, ImageShape::new(2, 2, 1), 2, 2);
    s.labels.push(0); // inconsistent
    assert!(s.write_npz(&p).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), b"previous");
    // Unwritable folder: error names the path, nothing is created.
    let bad = dir.path().join("no/such/dir/support.npz");
    let s = support(3, ImageShape::new(2, 2, 1), 2, 2);
    let e = s.write_npz(&bad).unwrap_err();
    common::assert_msg(&e, &["no/such/dir"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn numpy_opens_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("support.npz");
    let s = support(6, ImageShape::new(5, 4, 1), 3, 3);
    s.write_npz(&p).unwrap();
    let script = format!(
        "import numpy\n\
         d = numpy.load({path:?})\n\
         assert d['x'].dtype == numpy.float32 and d['x'].shape == (6, 5, 4, 1), d['x'].shape\n\
         assert d['x_model'].dtype == numpy.float64 and d['x_model'].shape == (6, 5, 4, 1)\n\
         assert d['y'].shape == (6, 3) and d['y'].dtype == numpy.float64\n\
         assert d['labels'].dtype == numpy.int64 and list(d['labels']) == [0, 1, 2, 0, 1, 2]\n\
         assert abs(float(d['x_model'][1, 2, 3, 0]) - {v}) < 1e-15\n\
         assert bytes(d['class_names_utf8']).decode().split('\\n') == ['class 0', 'class 1', 'class 2']\n\
         print('numpy ok')\n",
        path = p.to_str().unwrap(),
        v = s.x_model[(1, 2 * 4 + 3)]
    );
    if !test_env::numpy("numpy_opens_the_export") {
        return;
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "numpy rejected the export: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("numpy ok"));
}

#[test]
fn npz_layouts_and_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    // [n, c, h, w] = [2, 3, 1, 2] float32; pixel (0,0) of image 0 is (0, 2, 4).
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let p = dir.path().join("nchw.npz");
    common::write_npz(
        &p,
        &[
            (
                "x",
                common::npy_bytes("<f4", &[2, 3, 1, 2], false, &common::f32_bytes(&x)),
            ),
            ("y", common::npy_bytes("<i8", &[2], false, &common::i64_bytes(&[1, 0]))),
            (
                "x_test",
                common::npy_bytes("<f4", &[1, 3, 1, 2], false, &common::f32_bytes(&x[..6])),
            ),
            ("y_test", common::npy_bytes("|u1", &[1], false, &[2])),
        ],
    );
    let s = load_npz_split(&p, NpzLayout::Nchw).unwrap();
    assert_eq!(s.train.shape(), ImageShape::new(1, 2, 3));
    assert_eq!(s.train.image(0), &[0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    assert_eq!(s.test.labels(), &[2]);
    assert_eq!(s.train.n_classes(), 3);
    // [n, d] uint8 with d = 4 (square 2x2), one-hot float64 labels (argmax).
    let p = dir.path().join("flat.npz");
    let y: Vec<u8> = [0.0f64, 1.0, 1.0, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    common::write_npz(
        &p,
        &[
            ("x", common::npy_bytes("|u1", &[2, 4], false, &[1, 2, 3, 4, 5, 6, 7, 8])),
            ("y", common::npy_bytes("<f8", &[2, 2], false, &y)),
        ],
    );
    let ds = load_npz(&p, NpzLayout::Nhwc).unwrap();
    assert_eq!(ds.shape(), ImageShape::new(2, 2, 1));
    assert_eq!(ds.labels(), &[1, 0]);
    // Fortran order [2, 3] (d = 3 is not square: a 1 x 3 strip).
    let p = dir.path().join("fortran.npz");
    common::write_npz(
        &p,
        &[
            (
                "x",
                common::npy_bytes("<f4", &[2, 3], true, &common::f32_bytes(&[1., 4., 2., 5., 3., 6.])),
            ),
            ("y", common::npy_bytes("<i4", &[2], false, &[0, 0, 0, 0, 1, 0, 0, 0])),
        ],
    );
    let ds = load_npz(&p, NpzLayout::Nhwc).unwrap();
    assert_eq!(ds.shape(), ImageShape::new(1, 3, 1));
    assert_eq!(ds.pixels(), &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(ds.labels(), &[0, 1]);
}

#[test]
fn standardise_then_invert_is_identity() {
    let ds = random_dataset(50, ImageShape::new(3, 4, 3), 5);
    let t = Preprocess::Standard.fit(&ds).unwrap();
    let orig = rows_f64(&ds);
    let mut x = orig.clone();
    t.apply_rows(&mut x, 50);
    // Per-channel zero mean, unit variance on the training data.
    for c in 0..3 {
        let v: Vec<f64> = x.iter().skip(c).step_by(3).copied().collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64;
        assert!(m.abs() < 1e-10 && (var - 1.0).abs() < 1e-10, "channel {c}: {m} {var}");
    }
    t.invert_rows(&mut x, 50);
    assert!(max_abs_diff(&x, &orig) < 1e-9);
    // Dataset-level apply agrees with the row function (to f32 precision).
    let applied = t.apply(&ds);
    let mut y = orig.clone();
    t.apply_rows(&mut y, 50);
    assert!(applied
        .pixels()
        .iter()
        .zip(&y)
        .all(|(&a, &b)| (a as f64 - b).abs() < 1e-5));
    assert!(!t.is_identity());
    assert!(Preprocess::None.fit(&ds).unwrap().is_identity());
}

#[test]
fn zca_then_invert_returns_layer_normed_input() {
    for strength in [0.1, 0.0] {
        // n < d here for strength 0.1 (rank deficient) and n > d for 0.
        let n = if strength > 0.0 { 30 } else { 200 };
        let ds = random_dataset(n, ImageShape::new(6, 6, 1), 9);
        let t = Preprocess::Zca { strength }.fit(&ds).unwrap();
        let mut orig = rows_f64(&ds);
        layer_norm_rows(&mut orig, 36);
        let mut x = orig.clone();
        t.apply_rows(&mut x, n);
        t.invert_rows(&mut x, n);
        let err = max_abs_diff(&x, &orig);
        assert!(err < 1e-9, "strength {strength}: round trip error {err}");
        // And model space → pixels → model space is the identity too.
        let mut z = x.clone();
        t.apply_rows(&mut z, n);
        let mut w = z.clone();
        t.invert_rows(&mut w, n);
        t.apply_rows(&mut w, n);
        assert!(max_abs_diff(&w, &z) < 1e-9);
    }
}

#[test]
fn zca_strength_zero_whitens_to_identity_on_the_data_span() {
    // n > d. Layer-normed images all have zero mean, so the constant image
    // direction has zero variance: the whitened covariance is the identity on
    // the data's span, i.e. the projector I - 11ᵀ/d (see Preprocess::fit).
    let (n, shape) = (400, ImageShape::new(5, 5, 1));
    let d = shape.dim();
    let ds = random_dataset(n, shape, 11);
    let t = Preprocess::Zca { strength: 0.0 }.fit(&ds).unwrap();
    assert_eq!(t.zca_ridge(), Some(0.0));
    let mut x = rows_f64(&ds);
    t.apply_rows(&mut x, n);
    let c = cov(&x, n, d);
    let p = DMatrix::<f64>::identity(d, d) - DMatrix::from_element(d, d, 1.0 / d as f64);
    let err = (&c - &p).abs().max();
    assert!(
        err < 1e-6,
        "whitened covariance differs from the identity on the span by {err}"
    );
    let ev = SymmetricEigen::new(c).eigenvalues;
    assert_eq!(ev.iter().filter(|&&l| (l - 1.0).abs() < 1e-6).count(), d - 1);
}

#[test]
fn zca_default_ridge_eigenvalues_in_unit_interval() {
    for (n, seed) in [(300, 1), (20, 2)] {
        let ds = random_dataset(n, ImageShape::new(4, 4, 2), seed);
        let t: Preprocess = "zca".parse().unwrap();
        let t = t.fit(&ds).unwrap();
        assert!(t.zca_ridge().unwrap() > 0.0);
        let mut x = rows_f64(&ds);
        t.apply_rows(&mut x, n);
        let ev = SymmetricEigen::new(cov(&x, n, 32)).eigenvalues;
        for &l in ev.iter() {
            assert!(l > -1e-12 && l <= 1.0 + 1e-9, "eigenvalue {l} outside [0, 1]");
        }
        // Non-null directions of the training covariance are strictly inside (0, 1).
        let pos: Vec<f64> = ev.iter().copied().filter(|&l| l > 1e-9).collect();
        assert!(!pos.is_empty() && pos.iter().all(|&l| l < 1.0));
    }
}

#[test]
fn zca_on_digits_runs() {
    let s = digits();
    let t = Preprocess::Zca { strength: 0.1 }.fit(&s.train).unwrap();
    let te = t.apply(&s.test);
    assert_eq!(te.len(), s.test.len());
    assert!(te.pixels().iter().all(|v| v.is_finite()));
}
