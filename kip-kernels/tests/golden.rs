//! Every kernel entry of `fc_kernels.json` (neural-tangents 0.6.5, float64)
//! reproduced: relative error ≤ 1e-11 everywhere except the NTK diagonal of
//! symmetric blocks (≤ 1e-7: the reference computes the angle of a point
//! with itself from a rounded cosine, see the file's `conventions`).

#[path = "support/golden_json.rs"]
mod golden_json;

use golden_json::{arch_params, golden, mat, rel_err};
use kip_kernels::{FcKind, Kernel, KernelSpec};

#[test]
fn all_56_kernel_entries_match_neural_tangents() {
    let g = golden();
    let inputs = &g["inputs"];
    let entries = g["kernels"].as_array().unwrap();
    assert_eq!(entries.len(), 56);
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for e in entries {
        let inp = &inputs[e["input"].as_str().unwrap()];
        let (x1, x2) = (mat(&inp["x1"]), mat(&inp["x2"]));
        for (kind, key) in [(FcKind::Nngp, "nngp"), (FcKind::Ntk, "ntk")] {
            let k = KernelSpec::Fc(arch_params(&e["arch"], kind)).build();
            let name = format!("{} {} {key}", e["input"], e["arch"]["name"]);
            let k11 = k.gram_sym(&x1).unwrap();
            let k12 = k.gram(&x1, &x2).unwrap();
            let k22 = k.gram_sym(&x2).unwrap();
            // The non-symmetric path on identical inputs must agree too.
            let k11_cross = k.gram(&x1, &x1).unwrap();
            let diag_tol = if kind == FcKind::Ntk { 1e-7 } else { 1e-11 };
            for (got, want_key, sym) in [(&k11, "_11", true), (&k12, "_12", false), (&k22, "_22", true)] {
                let want = mat(&e[format!("{key}{want_key}")]);
                let (d, o) = rel_err(got, &want, sym);
                assert!(d <= diag_tol, "{name}{want_key}: diagonal rel err {d:e}");
                assert!(o <= 1e-11, "{name}{want_key}: off-diagonal rel err {o:e}");
                if kind == FcKind::Ntk {
                    worst.0 = worst.0.max(d);
                } else {
                    worst.1 = worst.1.max(d);
                }
                worst.2 = worst.2.max(o);
            }
            let (d, o) = rel_err(&k11_cross, &mat(&e[format!("{key}_11")]), true);
            assert!(
                d <= diag_tol && o <= 1e-11,
                "{name} cross-path on identical points: {d:e} {o:e}"
            );
        }
    }
    println!(
        "worst relative error: NTK diagonal {:.2e}, NNGP diagonal {:.2e}, off-diagonal {:.2e}",
        worst.0, worst.1, worst.2
    );
}

#[test]
fn linear_spec_is_the_depth0_kernel_without_bias() {
    let g = golden();
    let inp = &g["inputs"]["random_7x5_4x5"];
    let (x1, x2) = (mat(&inp["x1"]), mat(&inp["x2"]));
    let lin = KernelSpec::Linear.build().gram(&x1, &x2).unwrap();
    let fc0 = "fc0-nngp:w_std=1,b_std=0"
        .parse::<KernelSpec>()
        .unwrap()
        .build()
        .gram(&x1, &x2)
        .unwrap();
    assert!((lin - fc0).abs().max() < 1e-15);
}
