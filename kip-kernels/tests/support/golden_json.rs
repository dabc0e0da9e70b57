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
