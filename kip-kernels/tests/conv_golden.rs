//! Every kernel entry of `conv_kernels.json` (neural-tangents 0.6.5,
//! float64: Conv-Vec, pooled ConvNet, GlobalAvgPool stacks on 8×8×3 and
//! 6×6×1 images, the latter with a zero image and an anti-collinear pair)
//! reproduced: relative error ≤ 1e-10 for NNGP and the NTK's cross blocks,
//! ≤ 1e-7 for the NTK's symmetric blocks (the reference's self-angle noise,
//! see the file's `conventions`).

#[path = "support/golden_json.rs"]
mod golden_json;

use golden_json::{conv_golden, images, rel_err};
use kip_kernels::{ConvArch, FcKind, Kernel, KernelSpec};

#[test]
fn all_13_conv_kernel_entries_match_neural_tangents() {
    let g = conv_golden();
    let entries = g["kernels"].as_array().unwrap();
    assert_eq!(entries.len(), 13);
    let (mut worst_sym_ntk, mut worst) = (0.0f64, 0.0f64);
    for e in entries {
        let inp = &g["inputs"][e["input"].as_str().unwrap()];
        let ((x1, shape), (x2, _)) = (images(&inp["x1"]), images(&inp["x2"]));
        let arch = &e["arch"];
        for (kind, key) in [(FcKind::Nngp, "nngp"), (FcKind::Ntk, "ntk")] {
            let a = ConvArch::from_tokens(
                arch["layer_tokens"].as_str().unwrap(),
                kind,
                arch["W_std"].as_f64().unwrap(),
                arch["b_std"].as_f64().unwrap(),
            )
            .unwrap();
            let k = KernelSpec::Conv(a).build().for_images(shape);
            let name = format!("{} {} {key}", e["input"], arch["name"]);
            let k11 = k.gram_sym(&x1).unwrap();
            let k12 = k.gram(&x1, &x2).unwrap();
            let k22 = k.gram_sym(&x2).unwrap();
            let diag = k.gram_diag(kip_kernels::points(&x1)).unwrap();
            for (got, want_key, sym) in [(&k11, "_11", true), (&k12, "_12", false), (&k22, "_22", true)] {
                let want = golden_json::mat(&e[format!("{key}{want_key}")]);
                let (d, o) = rel_err(got, &want, sym);
                let err = d.max(o);
                let tol = if sym && kind == FcKind::Ntk { 1e-7 } else { 1e-10 };
                assert!(err <= tol, "{name}{want_key}: rel err {err:e} > {tol:e}");
                if sym && kind == FcKind::Ntk {
                    worst_sym_ntk = worst_sym_ntk.max(err);
                } else {
                    worst = worst.max(err);
                }
            }
            for (i, v) in diag.iter().enumerate() {
                assert!((v - k11[(i, i)]).abs() <= 1e-13 * v.abs(), "{name}: gram_diag[{i}]");
            }
        }
    }
    eprintln!("worst rel err: NNGP and NTK cross {worst:e}; NTK symmetric blocks {worst_sym_ntk:e}");
}
