//! `kip gram`: kernel matrices of points in `.npy`/`.npz` files — against
//! the neural-tangents golden values (through numpy), and every bad input
//! with its message.

mod common;

use std::path::Path;

use common::*;

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// The `.npy` float64 matrix `kip gram` wrote, read back by hand.
fn read_matrix(path: &Path) -> (usize, usize, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'descr': '<f8'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data: Vec<f64> = bytes[10 + hlen..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), shape[0] * shape[1]);
    (shape[0], shape[1], data)
}

#[test]
fn gram_of_images_is_symmetric_and_matches_the_cross_form() {
    let t = tempdir();
    let (a, b) = (p(t.path(), "a.npy"), p(t.path(), "b.npy"));
    write_npy(&a, "<f8", &[3, 6, 5, 2], &values(3 * 60, 1));
    write_npy(&b, "<f4", &[2, 6, 5, 2], &values(2 * 60, 2));
    let out = join(t.path(), "k.npy");
    let s = kip_ok(
        t.path(),
        &["gram", "--kernel", "convnet1-ntk", "a.npy", "--out", &out, "--json"],
    );
    assert!(s.contains("\"rows\":3") && s.contains("\"cols\":3"), "{s}");
    let (n1, n2, k) = read_matrix(Path::new(&out));
    assert_eq!((n1, n2), (3, 3));
    for i in 0..3 {
        for j in 0..3 {
            assert_eq!(k[i * 3 + j], k[j * 3 + i]);
        }
    }
    // The cross form on (a, a) agrees with the symmetric one.
    let out2 = join(t.path(), "k2.npy");
    kip_ok(
        t.path(),
        &[
            "gram",
            "--kernel",
            "convnet1-ntk",
            "a.npy",
            "a.npy",
            "--out",
            &out2,
            "--quiet",
        ],
    );
    let (_, _, k2) = read_matrix(Path::new(&out2));
    for (x, y) in k.iter().zip(&k2) {
        assert!((x - y).abs() <= 1e-12 * x.abs(), "{x} vs {y}");
    }
    // float32 second set, FC kernel on the flattened images.
    let out3 = join(t.path(), "k3.npy");
    kip_ok(
        t.path(),
        &[
            "gram", "--kernel", "fc2-nngp", "a.npy", "b.npy", "--out", &out3, "--quiet",
        ],
    );
    let (r3, c3, _) = read_matrix(Path::new(&out3));
    assert_eq!((r3, c3), (3, 2));
    // Flat points with --image-shape give the same as the image array.
    let flat = p(t.path(), "flat.npy");
    write_npy(&flat, "<f8", &[3, 60], &values(3 * 60, 1));
    let out4 = join(t.path(), "k4.npy");
    kip_ok(
        t.path(),
        &[
            "gram",
            "--kernel",
            "convnet1-ntk",
            "flat.npy",
            "--image-shape",
            "6x5x2",
            "--out",
            &out4,
            "--quiet",
        ],
    );
    assert_eq!(read_matrix(Path::new(&out4)).2, k);
}

#[test]
fn gram_matches_neural_tangents_through_numpy() {
    if !numpy("kip gram against the golden conv kernels") {
        return;
    }
    let t = tempdir();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../kip-kernels/tests/data/conv_kernels.json"
    );
    python(
        t.path(),
        &format!(
            "import json, numpy as np\n\
             g = json.load(open('{golden}'))\n\
             inp = g['inputs']['rand_8x8x3_4_3']\n\
             np.save('x1.npy', np.array(inp['x1'], dtype=np.float64))\n\
             np.savez('x2.npz', x=np.array(inp['x2'], dtype=np.float64), y=np.arange(3))\n"
        ),
    );
    for (spec, arch) in [
        ("convvec2-ntk", "convvec_depth2"),
        ("convnet1-nngp", "convnet_depth1_flatten"),
        ("conv-ntk:layers=CRCRGD", "conv_gap"),
    ] {
        let key = if spec.ends_with("nngp") { "nngp" } else { "ntk" };
        kip_ok(
            t.path(),
            &[
                "gram", "--kernel", spec, "x1.npy", "x2.npz", "--out", "k12.npy", "--quiet",
            ],
        );
        kip_ok(
            t.path(),
            &["gram", "--kernel", spec, "x1.npy", "--out", "k11.npy", "--quiet"],
        );
        python(
            t.path(),
            &format!(
                "import json, numpy as np\n\
                 g = json.load(open('{golden}'))\n\
                 e = [e for e in g['kernels'] if e['input'] == 'rand_8x8x3_4_3' and e['arch']['name'] == '{arch}'][0]\n\
                 for f, k, tol in (('k12.npy', '{key}_12', 1e-10), ('k11.npy', '{key}_11', 1e-7)):\n\
                 \x20   got, want = np.load(f), np.array(e[k])\n\
                 \x20   assert got.dtype == np.float64 and got.shape == want.shape, (got.dtype, got.shape)\n\
                 \x20   err = np.max(np.abs(got - want) / np.abs(want))\n\
                 \x20   assert err < tol, ('{spec}', k, err)\n"
            ),
        );
    }
}

#[test]
fn gram_bad_inputs_name_the_file_and_the_problem() {
    let t = tempdir();
    let d = t.path();
    write_npy(&p(d, "img.npy"), "<f8", &[2, 4, 4, 1], &values(32, 3));
    write_npy(&p(d, "img3.npy"), "<f8", &[2, 4, 4, 3], &values(96, 3));
    write_npy(&p(d, "flat.npy"), "<f8", &[2, 16], &values(32, 3));
    write_npy(&p(d, "ints.npy"), "<i8", &[2, 16], &values(32, 3));
    write_npy(&p(d, "vec.npy"), "<f8", &[16], &values(16, 3));
    let mut nan = values(32, 3);
    nan[7] = f64::NAN;
    write_npy(&p(d, "nan.npy"), "<f8", &[2, 16], &nan);
    std::fs::write(p(d, "junk.npy"), b"not an npy file at all").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "gram",
                "--kernel",
                "convvec2-ntk",
                "img.npy",
                "img3.npy",
                "--out",
                "k.npy",
            ],
            "same point shape",
        ),
        (
            &["gram", "--kernel", "convvec2-ntk", "flat.npy", "--out", "k.npy"],
            "--image-shape",
        ),
        (
            &[
                "gram",
                "--kernel",
                "convvec2-ntk",
                "flat.npy",
                "--image-shape",
                "4x4",
                "--out",
                "k.npy",
            ],
            "HxWxC",
        ),
        (
            &[
                "gram",
                "--kernel",
                "convvec2-ntk",
                "flat.npy",
                "--image-shape",
                "4x4x2",
                "--out",
                "k.npy",
            ],
            "4x4x2 has 32 values but the points have 16",
        ),
        (
            &["gram", "--kernel", "convnet3-ntk", "img.npy", "--out", "k.npy"],
            "too small to pool",
        ),
        (
            &["gram", "--kernel", "fc1-ntk", "ints.npy", "--out", "k.npy"],
            "float32 or float64",
        ),
        (
            &["gram", "--kernel", "fc1-ntk", "vec.npy", "--out", "k.npy"],
            "expected [n, d] points",
        ),
        (
            &["gram", "--kernel", "fc1-ntk", "nan.npy", "--out", "k.npy"],
            "non-finite value at point 0, entry 7",
        ),
        (
            &["gram", "--kernel", "fc1-ntk", "junk.npy", "--out", "k.npy"],
            "junk.npy",
        ),
        (
            &["gram", "--kernel", "fc1-ntk", "missing.npy", "--out", "k.npy"],
            "missing.npy",
        ),
        (
            &["gram", "--kernel", "convvec9-ntq", "img.npy", "--out", "k.npy"],
            "--kernel convvec9-ntq",
        ),
        (
            &["gram", "--kernel", "fc1-ntk", "img.npy", "--key", "x", "--out", "k.npy"],
            ".npz archives only",
        ),
    ];
    for (args, needle) in cases {
        let r = kip(d, args);
        assert_ne!(r.code, Some(0), "{args:?} succeeded");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(!p(d, "k.npy").exists(), "{args:?} left an output file");
    }
}

/// `--out` never replaces what is not a file of ours: a FIFO is refused
/// (and stays a FIFO), a symbolic link has its target written and stays a
/// link.
#[test]
fn gram_out_refuses_special_files_and_follows_links() {
    use std::os::unix::fs::FileTypeExt;
    let t = tempdir();
    let x = t.path().join("x.npy");
    write_npy(&x, "<f8", &[3, 4], &values(12, 3));
    let x = x.to_string_lossy().into_owned();
    let fifo = t.path().join("pipe.npy");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let r = kip(
        t.path(),
        &["gram", "--kernel", "fc1-ntk", &x, "--out", &fifo.to_string_lossy()],
    );
    assert_ne!(r.code, Some(0), "a FIFO as --out: {}", r.stderr);
    assert!(
        r.first_line().contains("pipe.npy") && r.first_line().contains("not a regular file"),
        "{}",
        r.stderr
    );
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let real = t.path().join("real.npy");
    std::fs::write(&real, b"old").unwrap();
    let link = t.path().join("link.npy");
    std::os::unix::fs::symlink("real.npy", &link).unwrap();
    kip_ok(
        t.path(),
        &["gram", "--kernel", "fc1-ntk", &x, "--out", &link.to_string_lossy()],
    );
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let (n, m, _) = read_matrix(&real);
    assert_eq!((n, m), (3, 3));
}

/// An unwritable `--out` is found before the inputs are read (so before
/// any kernel is computed), not after.
#[test]
fn gram_checks_out_before_any_work() {
    let t = tempdir();
    let out = t.path().join("no-such-folder").join("k.npy");
    let r = kip(
        t.path(),
        &[
            "gram",
            "--kernel",
            "fc1-ntk",
            "absent.npy",
            "--out",
            &out.to_string_lossy(),
        ],
    );
    assert_ne!(r.code, Some(0));
    assert!(
        r.first_line().contains("k.npy"),
        "the error is about --out: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

/// Exit codes as docs/cli.md states them: 2 when the input as given cannot
/// be used (a missing file, an array of the wrong dtype or shape), 1 for
/// a damaged file; a huge spec is echoed shortened, once.
#[test]
fn gram_exit_codes_follow_the_documented_rule() {
    let t = tempdir();
    let d = t.path();
    write_npy(&d.join("int.npy"), "<i8", &[3, 2], &[1.0; 6]);
    write_npy(&d.join("ok.npy"), "<f8", &[3, 2], &values(6, 3));
    std::fs::write(d.join("broken.npy"), b"\x93NUMPY\x01\x00garbage").unwrap();
    for (input, code) in [("absent.npy", 2), ("int.npy", 2), ("broken.npy", 1)] {
        let r = kip(d, &["gram", "--kernel", "fc1-ntk", input, "--out", "k.npy"]);
        assert_eq!(r.code, Some(code), "{input}: {}", r.stderr);
        assert!(r.first_line().contains(input), "{}", r.stderr);
    }
    let spec = format!("fc1-ntk:{}", "w_std=1,".repeat(15_000));
    let r = kip(d, &["gram", "--kernel", &spec, "ok.npy", "--out", "k.npy"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.len() < 2_000,
        "the spec is shortened: {} bytes of stderr",
        r.stderr.len()
    );
    assert!(r.first_line().contains("(120008 characters)"), "{}", r.first_line());
}
