//! Reading the neural-tangents golden file `kip-kernels/tests/data/fc_kernels.json`
//! (float64), shared by the golden tests of kip-kernels, kip-krr and kip-meta.
//! Each includes this file with
//! `#[path = "../../kip-kernels/tests/support/golden_json.rs"] mod golden_json;`
//! (a file in a subfolder of `tests/` is not a test target of its own).

// Each including test uses only part of this module (kip-kernels reads the
// `kernels` entries, kip-krr and kip-meta the `kip` cases).
#![allow(dead_code)]

use kip_kernels::{Activation, AnyKernel, FcKind, FcParams, KernelSpec};
use nalgebra::DMatrix;
use serde_json::Value;

/// The whole golden file.
pub fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../kip-kernels/tests/data/fc_kernels.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden json")
}

/// A matrix stored as an array of rows.
pub fn mat(v: &Value) -> DMatrix<f64> {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    DMatrix::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j])
}

/// The FC parameters of an `arch` object, as the kernel `kind`. The depth-0
/// archs have no activation (they apply none); it reads as ReLU.
pub fn arch_params(arch: &Value, kind: FcKind) -> FcParams {
    let act = match arch["activation"].as_str() {
        Some("erf") => Activation::Erf,
        Some("relu") | None => Activation::Relu,
        Some(other) => panic!("unknown activation {other}"),
    };
    FcParams {
        depth: arch["depth"].as_u64().unwrap() as usize,
        kind,
        act,
        w_std: arch["W_std"].as_f64().unwrap(),
        b_std: arch["b_std"].as_f64().unwrap(),
    }
}

/// The kernel of a `kip` case: its `arch` as its `kernel` (`"ntk"` or `"nngp"`).
pub fn case_kernel(case: &Value) -> AnyKernel {
    let kind = match case["kernel"].as_str().unwrap() {
        "ntk" => FcKind::Ntk,
        "nngp" => FcKind::Nngp,
        other => panic!("unknown kernel {other}"),
    };
    KernelSpec::Fc(arch_params(&case["arch"], kind)).build()
}

/// The convolutional golden file `kip-kernels/tests/data/conv_kernels.json`.
pub fn conv_golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../kip-kernels/tests/data/conv_kernels.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("conv golden file")).expect("conv golden json")
}

/// NHWC images `x[n][h][w][c]` as rows (channels fastest) and their
/// `[h, w, c]`.
pub fn images(v: &Value) -> (DMatrix<f64>, [usize; 3]) {
    let imgs = v.as_array().unwrap();
    let (h, w) = (imgs[0].as_array().unwrap().len(), imgs[0][0].as_array().unwrap().len());
    let c = imgs[0][0][0].as_array().unwrap().len();
    let rows: Vec<Vec<f64>> = imgs
        .iter()
        .map(|img| {
            img.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter())
                .flat_map(|px| px.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
                .collect()
        })
        .collect();
    (DMatrix::from_fn(rows.len(), h * w * c, |i, j| rows[i][j]), [h, w, c])
}

/// max |got − want| / max(|want|, 1e-3·max|want|), split into diagonal and
/// off-diagonal entries (the diagonal only for a symmetric block).
pub fn rel_err(got: &DMatrix<f64>, want: &DMatrix<f64>, sym: bool) -> (f64, f64) {
    assert_eq!(got.shape(), want.shape());
    let scale = want.abs().max();
    let (mut diag, mut off) = (0.0f64, 0.0f64);
    for i in 0..want.nrows() {
        for j in 0..want.ncols() {
            let e = (got[(i, j)] - want[(i, j)]).abs() / want[(i, j)].abs().max(1e-3 * scale);
            if sym && i == j {
                diag = diag.max(e);
            } else {
                off = off.max(e);
            }
        }
    }
    (diag, off)
}
