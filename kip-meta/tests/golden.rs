//! The `kip` cases of the neural-tangents golden file: loss, gradients with
//! respect to support images and labels, one Adam step (both step-index
//! conventions) and a 5-step Adam trajectory.

#[path = "../../kip-kernels/tests/support/golden_json.rs"]
mod golden_json;

use golden_json::{case_kernel, golden, mat};
use kip_kernels::{points, PointsF32};
use kip_meta::{kip_loss, kip_loss_grad, AdamParams, AdamState, KipWorkspace};
use nalgebra::DMatrix;
use serde_json::Value;

fn rel(got: &DMatrix<f64>, want: &DMatrix<f64>) -> f64 {
    (got - want).abs().max() / want.abs().max()
}

struct Case {
    name: String,
    kernel: kip_kernels::AnyKernel,
    reg: f64,
    x_s: DMatrix<f64>,
    y_s: DMatrix<f64>,
    x_t: DMatrix<f64>,
    y_t: DMatrix<f64>,
    v: Value,
}

/// The cases the file holds; every one is checked.
const CASE_NAMES: [&str; 5] = [
    "kip_fc_relu_depth1_W1.41421_b0.1_ntk_reg1e-06",
    "kip_fc_relu_depth1_W1.41421_b0.1_nngp_reg1e-06",
    "kip_fc_relu_depth1_W1.41421_b0.1_ntk_reg0.01",
    "kip_fc_relu_depth2_W1.41421_b0.1_ntk_reg1e-06",
    "kip_fc_relu_depth1_W1_b0_ntk_reg1e-06",
];

/// Every `kip` case of the golden file, checked to be the five above: a
/// test that silently read none (or a file that lost a case) cannot pass.
fn cases() -> Vec<Case> {
    let cases: Vec<Case> = golden()["kip"]
        .as_array()
        .expect("the golden file has a `kip` array")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            kernel: case_kernel(c),
            reg: c["reg"].as_f64().unwrap(),
            x_s: mat(&c["x_support"]),
            y_s: mat(&c["y_support"]),
            x_t: mat(&c["x_target"]),
            y_t: mat(&c["y_target"]),
            v: c.clone(),
        })
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CASE_NAMES, "the golden file's kip cases");
    cases
}

/// Loss and gradients into `ws`; returns the loss.
fn loss_grad(
    c: &Case,
    x_s: &DMatrix<f64>,
    y_s: &DMatrix<f64>,
    ws: &mut KipWorkspace,
) -> (f64, DMatrix<f64>, DMatrix<f64>) {
    let out = kip_loss_grad(&c.kernel, points(x_s), y_s, points(&c.x_t), &c.y_t, c.reg, ws).unwrap();
    (out.stats.loss, out.grad_x.clone(), out.grad_y.clone())
}

#[test]
fn loss_and_gradients_match_the_reference() {
    for c in cases() {
        let mut ws = KipWorkspace::default();
        let (loss, grad_x, grad_y) = loss_grad(&c, &c.x_s, &c.y_s, &mut ws);
        let forward_only = kip_loss(
            &c.kernel,
            points(&c.x_s),
            &c.y_s,
            points(&c.x_t),
            &c.y_t,
            c.reg,
            &mut ws,
        )
        .unwrap()
        .loss;
        assert_eq!(
            forward_only.to_bits(),
            loss.to_bits(),
            "{}: kip_loss vs kip_loss_grad",
            c.name
        );
        let want = c.v["loss"].as_f64().unwrap();
        let exact = c.v["check_vs_independent_numpy"]["loss_numpy_exact_diagonal"]
            .as_f64()
            .unwrap();
        // The reference's NTK diagonal carries ~1e-8 relative noise, which
        // moves its loss by up to 4e-9 from the exact-diagonal value; ours
        // has the exact diagonal, so compare with that at 1e-9 and with the
        // neural-tangents value at its own documented noise.
        let noise = c.v["check_vs_independent_numpy"]["loss_rel_diff"].as_f64().unwrap();
        assert!(
            (loss - exact).abs() / exact <= 1e-9,
            "{}: loss {loss} vs exact {exact}",
            c.name
        );
        assert!(
            (loss - want).abs() / want <= 1e-9 + 2.0 * noise,
            "{}: loss {loss} vs nt {want}",
            c.name
        );
        let gx = rel(&grad_x, &mat(&c.v["grad_x_support"]));
        let gy = rel(&grad_y, &mat(&c.v["grad_y_support"]));
        println!(
            "{}: loss rel {:.1e} (exact diag), grad_x rel {gx:.1e}, grad_y rel {gy:.1e}",
            c.name,
            (loss - exact).abs() / exact
        );
        assert!(gx <= 1e-7, "{}: grad_x rel {gx}", c.name);
        assert!(gy <= 1e-7, "{}: grad_y rel {gy}", c.name);
    }
}

#[test]
fn adam_first_step_matches_both_conventions() {
    for c in cases() {
        let step = &c.v["adam_first_step"];
        for r in step["results"].as_array().unwrap() {
            let idx = r["step_index"].as_u64().unwrap();
            let p = AdamParams {
                lr: step["lr"].as_f64().unwrap(),
                first_step_index: idx,
                ..AdamParams::default()
            };
            let mut ws = KipWorkspace::default();
            let (_, gx, gy) = loss_grad(&c, &c.x_s, &c.y_s, &mut ws);
            let (mut x, mut y) = (c.x_s.clone(), c.y_s.clone());
            AdamState::new(x.len()).update(&p, 0, x.as_mut_slice(), gx.as_slice());
            AdamState::new(y.len()).update(&p, 0, y.as_mut_slice(), gy.as_slice());
            let ex = rel(&x, &mat(&r["x_support"]));
            let ey = rel(&y, &mat(&r["y_support"]));
            assert!(
                ex <= 1e-7 && ey <= 1e-7,
                "{} step_index {idx}: x {ex:e} y {ey:e}",
                c.name
            );
        }
    }
}

/// The file's 5-step Adam trajectory (textbook step index) under the loss
/// and gradient `f`: the losses before each step and after the last, and
/// the final support images and labels.
fn adam_trajectory(
    c: &Case,
    f: impl Fn(&DMatrix<f64>, &DMatrix<f64>, &mut KipWorkspace) -> (f64, DMatrix<f64>, DMatrix<f64>),
) -> (Vec<f64>, DMatrix<f64>, DMatrix<f64>) {
    let t = &c.v["adam_trajectory"];
    let p = AdamParams {
        lr: t["lr"].as_f64().unwrap(),
        first_step_index: 0,
        ..AdamParams::default()
    };
    let (mut x, mut y) = (c.x_s.clone(), c.y_s.clone());
    let (mut ax, mut ay) = (AdamState::new(x.len()), AdamState::new(y.len()));
    let mut ws = KipWorkspace::default();
    let mut losses = Vec::new();
    for k in 0..t["loss_before_each_step"].as_array().unwrap().len() {
        let (loss, gx, gy) = f(&x, &y, &mut ws);
        losses.push(loss);
        ax.update(&p, k, x.as_mut_slice(), gx.as_slice());
        ay.update(&p, k, y.as_mut_slice(), gy.as_slice());
    }
    losses.push(f(&x, &y, &mut ws).0);
    (losses, x, y)
}

/// The file's trajectory losses: before each step, then after the last.
fn trajectory_losses(t: &Value) -> Vec<f64> {
    let mut want: Vec<f64> = t["loss_before_each_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    want.push(t["loss_after_last_step"].as_f64().unwrap());
    want
}

#[test]
fn five_step_adam_trajectory_matches() {
    for c in cases() {
        let t = &c.v["adam_trajectory"];
        let (losses, x, y) = adam_trajectory(&c, |x, y, ws| loss_grad(&c, x, y, ws));
        for (k, (loss, want)) in losses.iter().zip(&trajectory_losses(t)).enumerate() {
            assert!(
                (loss - want).abs() / want <= 1e-7,
                "{} loss {k} (the last is after the final step): {loss} vs {want}",
                c.name
            );
        }
        let ex = rel(&x, &mat(&t["x_support_final"]));
        let ey = rel(&y, &mat(&t["y_support_final"]));
        assert!(ex <= 1e-7 && ey <= 1e-7, "{}: trajectory x {ex:e} y {ey:e}", c.name);
    }
}

/// The f32-GEMM step (`--precision f32`): target images rounded to f32, the
/// two big products in single precision. Against the reference at an f32
/// tolerance: loss 1e-6, gradients and the 5-step Adam trajectory 1e-5
/// relative (single precision carries ~6e-8 per rounding; the kernel solve
/// amplifies it by the conditioning of these tiny support sets).
#[test]
fn f32_step_matches_the_reference_at_single_precision() {
    for c in cases() {
        let (n_t, d) = c.x_t.shape();
        let x_t32: Vec<f32> = (0..n_t)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| c.x_t[(i, j)] as f32)
            .collect();
        let x_t = PointsF32::new(&x_t32, n_t, d);
        let mut ws = KipWorkspace::default();
        let run = |x: &DMatrix<f64>, y: &DMatrix<f64>, ws: &mut KipWorkspace| {
            let out = kip_loss_grad(&c.kernel, points(x), y, x_t, &c.y_t, c.reg, ws).unwrap();
            (out.stats.loss, out.grad_x.clone(), out.grad_y.clone())
        };
        let (loss, grad_x, grad_y) = run(&c.x_s, &c.y_s, &mut ws);
        let exact = c.v["check_vs_independent_numpy"]["loss_numpy_exact_diagonal"]
            .as_f64()
            .unwrap();
        let el = (loss - exact).abs() / exact;
        let gx = rel(&grad_x, &mat(&c.v["grad_x_support"]));
        let gy = rel(&grad_y, &mat(&c.v["grad_y_support"]));
        let t = &c.v["adam_trajectory"];
        let (losses, x, y) = adam_trajectory(&c, run);
        let et = losses
            .iter()
            .zip(&trajectory_losses(t))
            .map(|(l, w)| (l - w).abs() / w)
            .fold(0.0, f64::max);
        let ex = rel(&x, &mat(&t["x_support_final"]));
        let ey = rel(&y, &mat(&t["y_support_final"]));
        println!(
            "{} f32: loss rel {el:.1e}, grad_x {gx:.1e}, grad_y {gy:.1e}, trajectory losses {et:.1e} x {ex:.1e} y {ey:.1e}",
            c.name
        );
        assert!(el <= 1e-6, "{}: f32 loss rel {el}", c.name);
        assert!(gx <= 1e-5 && gy <= 1e-5, "{}: f32 grads {gx} {gy}", c.name);
        assert!(
            et <= 1e-6 && ex <= 1e-5 && ey <= 1e-5,
            "{}: f32 trajectory losses {et}, x {ex}, y {ey}",
            c.name
        );
    }
}
