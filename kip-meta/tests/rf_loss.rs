//! The KIP loss with a random-feature kernel: the feature path (features
//! once per pass, one backward pass for the support) gives the generic
//! path's loss and gradients (Grams and VJPs through the `Kernel` trait),
//! with one or several target shards, and its gradient matches central
//! differences of the loss.

use kip_kernels::{points, AnyKernel, Kernel, KernelSpec, PointsView};
use kip_meta::{kip_loss, kip_loss_grad, kip_loss_grad_sharded, KipWorkspace, Shards, SingleProcess};
use nalgebra::DMatrix;

/// The kernel through the generic `Kernel` methods only (no feature path).
#[derive(Debug)]
struct Generic(AnyKernel);

impl Kernel for Generic {
    fn spec(&self) -> KernelSpec {
        self.0.spec()
    }
    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> kip_kernels::Result<()> {
        self.0.gram_into(a, b, out)
    }
    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> kip_kernels::Result<()> {
        self.0.gram_sym_into(a, out)
    }
    fn gram_diag(&self, a: PointsView<'_>) -> kip_kernels::Result<Vec<f64>> {
        self.0.gram_diag(a)
    }
    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> kip_kernels::Result<()> {
        self.0.vjp_into(a, b, g, da, db)
    }
    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> kip_kernels::Result<()> {
        self.0.vjp_sym_into(a, g, da)
    }
}

fn values(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    DMatrix::from_fn(n, d, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}

fn labels(n: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_fn(n, c, |i, j| if i % c == j { 0.9 } else { -0.1 })
}

fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).amax() / b.amax()
}

#[test]
fn feature_path_equals_the_generic_path() {
    let kernel = "rf-convnet1:channels=8,models=3,seed=2"
        .parse::<KernelSpec>()
        .unwrap()
        .build()
        .for_images([8, 8, 2]);
    let (x_s, x_t) = (values(6, 128, 1), values(17, 128, 2));
    let (y_s, y_t) = (labels(6, 3), labels(17, 3));
    let mut ws = KipWorkspace::default();
    let fast = kip_loss_grad(&kernel, points(&x_s), &y_s, points(&x_t), &y_t, 1e-4, &mut ws).unwrap();
    let (loss, gx, gy) = (fast.stats.loss, fast.grad_x.clone(), fast.grad_y.clone());
    let mut ws2 = KipWorkspace::default();
    let slow = kip_loss_grad(
        &Generic(kernel.clone()),
        points(&x_s),
        &y_s,
        points(&x_t),
        &y_t,
        1e-4,
        &mut ws2,
    )
    .unwrap();
    // The networks take f32 cotangents: the two paths round them differently.
    assert!((loss - slow.stats.loss).abs() <= 1e-12 * loss);
    assert!(rel(&gx, slow.grad_x) < 2e-6, "grad_x {}", rel(&gx, slow.grad_x));
    assert!(rel(&gy, slow.grad_y) < 1e-9, "grad_y {}", rel(&gy, slow.grad_y));
    let mut ws3 = KipWorkspace::default();
    let shards = Shards {
        count: 4,
        ranks: &SingleProcess,
    };
    let sharded =
        kip_loss_grad_sharded(&kernel, points(&x_s), &y_s, points(&x_t), &y_t, 1e-4, &mut ws3, shards).unwrap();
    assert!((loss - sharded.stats.loss).abs() <= 1e-12 * loss);
    assert!(rel(&gx, sharded.grad_x) < 1e-12);
}

#[test]
fn feature_path_gradient_matches_central_differences() {
    let kernel = "rf-conv:layers=CRPCRGD,channels=6,models=2"
        .parse::<KernelSpec>()
        .unwrap()
        .build()
        .for_images([6, 6, 1]);
    let (x_s, x_t) = (values(4, 36, 3), values(11, 36, 4));
    let (y_s, y_t) = (labels(4, 2), labels(11, 2));
    let mut ws = KipWorkspace::default();
    let out = kip_loss_grad(&kernel, points(&x_s), &y_s, points(&x_t), &y_t, 1e-1, &mut ws).unwrap();
    let (gx, gy) = (out.grad_x.clone(), out.grad_y.clone());
    let loss = |xs: &DMatrix<f64>, ys: &DMatrix<f64>| {
        let mut ws = KipWorkspace::default();
        kip_loss(&kernel, points(xs), ys, points(&x_t), &y_t, 1e-1, &mut ws)
            .unwrap()
            .loss
    };
    for t in 0..3 {
        let v = values(4, 36, 10 + t);
        let an = gx.component_mul(&v).sum();
        // f32 networks: the closest of three steps (see kip-kernels' tests/rf.rs).
        let fd = [1e-3, 3e-4, 1e-4]
            .iter()
            .map(|&e| (loss(&(&x_s + e * &v), &y_s) - loss(&(&x_s - e * &v), &y_s)) / (2.0 * e))
            .min_by(|a, b| (a - an).abs().total_cmp(&(b - an).abs()))
            .unwrap();
        // The loss goes through a solve of f32-feature Grams: 2 % of the
        // directional derivative, or of a tenth of its Cauchy-Schwarz bound.
        let scale = an.abs().max(0.1 * gx.norm() * v.norm());
        assert!((fd - an).abs() <= 2e-2 * scale, "x direction {t}: {fd} vs {an}");
        let w = values(4, 2, 20 + t);
        let an = gy.component_mul(&w).sum();
        let e = 1e-5;
        let fd = (loss(&x_s, &(&y_s + e * &w)) - loss(&x_s, &(&y_s - e * &w))) / (2.0 * e);
        assert!(
            (fd - an).abs() <= 1e-6 * an.abs().max(1e-3),
            "y direction {t}: {fd} vs {an}"
        );
    }
}

#[test]
fn platt_objective_gradients_match_central_differences() {
    use kip_meta::Objective;
    // An f64 kernel, so that the check is tight.
    let kernel = KernelSpec::fc_ntk(1).build();
    let (x_s, x_t) = (values(5, 7, 5), values(13, 7, 6));
    let y_t = DMatrix::from_fn(13, 3, |i, j| if i % 3 == j { 2.0 / 3.0 } else { -1.0 / 3.0 });
    let y_s = DMatrix::from_fn(5, 3, |i, j| if (i + 1) % 3 == j { 2.0 / 3.0 } else { -1.0 / 3.0 });
    let theta = 0.3;
    let one = Shards::one();
    let eval = |xs: &DMatrix<f64>, ys: &DMatrix<f64>, t: f64| {
        let mut ws = KipWorkspace::default();
        let o = Objective::Platt { log_temp: t };
        let out = kip_meta::kip_loss_grad_objective(&kernel, points(xs), ys, points(&x_t), &y_t, 1e-3, o, &mut ws, one)
            .unwrap();
        (
            out.stats.loss,
            out.grad_x.clone(),
            out.grad_y.clone(),
            out.grad_log_temp,
        )
    };
    let (loss, gx, gy, gt) = eval(&x_s, &y_s, theta);
    assert!(loss > 0.0 && loss.is_finite());
    let e = 1e-6;
    let fd_t = (eval(&x_s, &y_s, theta + e).0 - eval(&x_s, &y_s, theta - e).0) / (2.0 * e);
    assert!((fd_t - gt).abs() <= 1e-6 * gt.abs().max(1e-3), "theta: {fd_t} vs {gt}");
    for t in 0..3 {
        let v = values(5, 7, 30 + t);
        let fd = (eval(&(&x_s + e * &v), &y_s, theta).0 - eval(&(&x_s - e * &v), &y_s, theta).0) / (2.0 * e);
        let an = gx.component_mul(&v).sum();
        assert!(
            (fd - an).abs() <= 1e-6 * an.abs().max(1e-3),
            "x direction {t}: {fd} vs {an}"
        );
        let w = values(5, 3, 40 + t);
        let fd = (eval(&x_s, &(&y_s + e * &w), theta).0 - eval(&x_s, &(&y_s - e * &w), theta).0) / (2.0 * e);
        let an = gy.component_mul(&w).sum();
        assert!(
            (fd - an).abs() <= 1e-6 * an.abs().max(1e-3),
            "y direction {t}: {fd} vs {an}"
        );
    }
}
