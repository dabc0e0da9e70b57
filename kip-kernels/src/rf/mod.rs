//! Random-feature ConvNet kernels ([`RfKernel`]): the inner products of the
//! readout features of `M` randomly initialised finite ConvNets ([`ConvNet`]),
//! `K(x, x') = W_std²·⟨Φ(x), Φ(x')⟩/F + b_std²` with `Φ` the `M` feature
//! vectors concatenated (`F` values in all): the Dense readout's NNGP
//! applied analytically, as RFAD (Loo et al., NeurIPS 2022). As `C·M`
//! grows the kernel tends to the exact NNGP of the same stack
//! ([`crate::ConvKernel`], e.g. `convnet3-nngp` for `rf-convnet3`).
//!
//! Cost: `O(n)` network passes for `n` points (plus one GEMM of the
//! features), instead of the exact kernel's `O(n₁·n₂)` pair computations.
//! The networks are drawn from the spec's seed ([`RfSpec::seed`]); KIP draws
//! new ones every step ([`RfKernel::redrawn`]).

mod net;

use std::sync::Arc;

use kip_core::{gemm, ImageShape, MatMut, MatRef};
use nalgebra::DMatrix;

pub use net::{ConvNet, NetLayer, NetReadout, CHUNK_IMAGES};

use crate::conv::ConvArch;
use crate::error::{KernelError, Result};
use crate::kernel::{FeatureKernel, Kernel};
use crate::norms::{check_g, same_dim};
use crate::points::{AnyPoints, PointsView};
use crate::spec::KernelSpec;

/// Default channels per Conv of a random-feature network.
pub const DEFAULT_CHANNELS: usize = 64;
/// Default number of networks.
pub const DEFAULT_MODELS: usize = 4;

/// A random-feature ConvNet kernel by its parameters: the stack (its
/// `kind` is unused: the readout is always the NNGP), the channels per
/// Conv, the number of networks and the seed they are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RfSpec {
    /// The layers, `W_std`, `b_std`.
    pub arch: ConvArch,
    /// Channels per Conv (`C`).
    pub channels: usize,
    /// Networks (`M`).
    pub models: usize,
    /// Seed of the networks' weights.
    pub seed: u64,
}

/// SplitMix64: a well-mixed 64-bit value from `x` (seeds of the networks
/// and of each KIP step's draw).
pub fn mix_seed(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random-feature kernel of an [`RfSpec`] on images of one shape
/// (cheap to clone: the networks are shared).
#[derive(Clone, Debug)]
pub struct RfKernel {
    spec: RfSpec,
    shape: Option<ImageShape>,
    /// The networks, or why they cannot be built (a stack that does not
    /// fit the shape, or networks larger than the memory available).
    nets: Arc<Result<Vec<ConvNet>>>,
}

impl PartialEq for RfKernel {
    fn eq(&self, other: &Self) -> bool {
        // The networks are a function of the spec and the shape.
        self.spec == other.spec && self.shape == other.shape
    }
}

impl RfKernel {
    /// The kernel; its networks exist once an image shape is given. With
    /// no shape, or a stack that does not fit it (an image pooled below
    /// 2×2), every call fails with [`KernelError::Image`], as for the exact
    /// conv kernels.
    pub fn new(spec: RfSpec, shape: Option<ImageShape>) -> Self {
        let nets = shape.map(|shape| {
            let (body, readout) = ConvNet::layers_of(spec.arch.layers())?;
            let (params, _) = ConvNet::size_of(&body, readout, shape, spec.channels)?;
            let bytes = params.and_then(|p| p.checked_mul(4)?.checked_mul(spec.models as u64));
            kip_core::check_memory(bytes, || {
                format!(
                    "kernel {}: {} networks of {} parameters (float32) on {shape} images",
                    KernelSpec::Rf(spec),
                    spec.models,
                    params.map_or("more than 2^64".into(), |p| p.to_string())
                )
            })?;
            (0..spec.models)
                .map(|m| {
                    let seed = mix_seed(spec.seed ^ mix_seed(m as u64));
                    let (w_std, b_std) = (spec.arch.w_std, spec.arch.b_std);
                    ConvNet::random(&body, readout, shape, spec.channels, w_std, b_std, seed)
                })
                .collect::<Result<Vec<_>>>()
        });
        let nets = match nets {
            None => Ok(Vec::new()),
            Some(Ok(n)) => Ok(n),
            Some(Err(KernelError::Image { reason, .. })) => Err(image_err_rf(&spec, reason)),
            Some(Err(e)) => Err(e),
        };
        Self {
            spec,
            shape,
            nets: Arc::new(nets),
        }
    }

    /// The same kernel with networks drawn from another seed.
    #[must_use]
    pub fn redrawn(&self, seed: u64) -> Self {
        Self::new(RfSpec { seed, ..self.spec }, self.shape)
    }

    /// The parameters.
    pub fn rf_spec(&self) -> RfSpec {
        self.spec
    }

    /// The networks (none before an image shape is given or when the
    /// stack does not fit it).
    pub fn nets(&self) -> &[ConvNet] {
        self.nets.as_deref().unwrap_or(&[])
    }

    /// The points as row-major `f32` images, checked: they fit the image
    /// shape, are finite and stay finite in `f32`.
    fn images_f32(&self, what: &'static str, x: AnyPoints<'_>) -> Result<Vec<f32>> {
        let shape = self.checked_shape(x.ncols())?;
        let (n, d) = (x.nrows(), x.ncols());
        if n == 0 {
            return Err(KernelError::Empty { what, rows: n, cols: d });
        }
        let mut out = Vec::with_capacity(n * d);
        match x {
            AnyPoints::F64(p) => {
                for i in 0..n {
                    out.extend((0..d).map(|j| p[(i, j)] as f32));
                }
            }
            AnyPoints::F32(p) => out.extend_from_slice(p.data()),
        }
        if let Some(idx) = out.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite {
                what,
                row: idx / d,
                col: idx % d,
            });
        }
        debug_assert_eq!(shape.dim(), d);
        Ok(out)
    }

    fn checked_shape(&self, d: usize) -> Result<ImageShape> {
        let shape = self.shape.ok_or_else(|| {
            image_err_rf(
                &self.spec,
                format!("needs the image shape (h x w x c) of its {d}-dimensional points; this data has none (a flat dataset?)"),
            )
        })?;
        let Some(dim) = shape.checked_dim() else {
            return Err(image_err_rf(
                &self.spec,
                format!("image shape {shape}: h·w·c overflows"),
            ));
        };
        if dim != d {
            return Err(image_err_rf(
                &self.spec,
                format!("image shape {shape} has {dim} values but the points have {d}"),
            ));
        }
        if let Err(e) = &*self.nets {
            return Err(e.clone());
        }
        Ok(shape)
    }

    /// Features (`n × F`, row-major) of checked `f32` images.
    fn features_of(&self, x: &[f32], n: usize) -> Vec<f64> {
        let f_total = self.n_features();
        let mut out = vec![0.0; n * f_total];
        let mut buf = Vec::new();
        let mut off = 0;
        for net in self.nets() {
            let f = net.n_features();
            buf.resize(n * f, 0.0);
            net.features(x, n, &mut buf);
            for (row, src) in out.chunks_exact_mut(f_total).zip(buf.chunks_exact(f)) {
                for (o, &v) in row[off..off + f].iter_mut().zip(src) {
                    *o = f64::from(v);
                }
            }
            off += f;
        }
        out
    }

    /// `dx = (∂Φ/∂x)ᵀ dphi` of checked `f32` images into `dx` (`n × d`).
    fn features_vjp_of(&self, x: &[f32], n: usize, dphi: &[f64], dx: &mut DMatrix<f64>) {
        let (f_total, d) = (self.n_features(), x.len() / n.max(1));
        if dx.shape() != (n, d) {
            *dx = DMatrix::zeros(n, d);
        }
        dx.fill(0.0);
        let (mut g, mut gx) = (Vec::new(), vec![0.0f32; n * d]);
        let mut off = 0;
        for net in self.nets() {
            let f = net.n_features();
            g.clear();
            for row in dphi.chunks_exact(f_total) {
                g.extend(row[off..off + f].iter().map(|&v| v as f32));
            }
            net.features_vjp(x, n, &g, &mut gx);
            for i in 0..n {
                for j in 0..d {
                    dx[(i, j)] += f64::from(gx[i * d + j]);
                }
            }
            off += f;
        }
    }

    /// `out = s·Φa Φbᵀ + o` (an `n1 × n2` matrix).
    fn gram_of(&self, fa: &[f64], n1: usize, fb: &[f64], n2: usize, out: &mut DMatrix<f64>) {
        let f = self.n_features();
        let (s, o) = self.readout();
        if out.shape() != (n1, n2) {
            *out = DMatrix::zeros(n1, n2);
        }
        out.fill(o);
        gemm(
            s,
            MatRef::row_major(fa, n1, f),
            MatRef::row_major(fb, n2, f).t(),
            1.0,
            MatMut::from(&mut *out),
        );
    }

    /// `s · g Φ` as a row-major `n1 × F` cotangent of the features.
    fn feature_cotangent(&self, g: MatRef<'_, f64>, phi: &[f64], n2: usize) -> Vec<f64> {
        let f = self.n_features();
        let mut out = vec![0.0; g.rows() * f];
        gemm(
            self.readout().0,
            g,
            MatRef::row_major(phi, n2, f),
            0.0,
            MatMut::row_major(&mut out, g.rows(), f),
        );
        out
    }
}

/// The error for points or stacks that do not fit an RF kernel.
fn image_err_rf(spec: &RfSpec, reason: String) -> KernelError {
    KernelError::Image {
        kernel: KernelSpec::Rf(*spec).to_string(),
        reason,
    }
}

impl FeatureKernel for RfKernel {
    fn n_features(&self) -> usize {
        self.nets().iter().map(ConvNet::n_features).sum()
    }

    fn readout(&self) -> (f64, f64) {
        let a = &self.spec.arch;
        (a.w_std * a.w_std / self.n_features().max(1) as f64, a.b_std * a.b_std)
    }

    fn features_into(&self, x: AnyPoints<'_>, out: &mut Vec<f64>) -> Result<()> {
        let n = x.nrows();
        let x32 = self.images_f32("x", x)?;
        *out = self.features_of(&x32, n);
        Ok(())
    }

    fn features_vjp_into(&self, x: PointsView<'_>, dphi: &[f64], dx: &mut DMatrix<f64>) -> Result<()> {
        let n = x.nrows();
        let x32 = self.images_f32("x", x.into())?;
        if dphi.len() != n * self.n_features() {
            return Err(KernelError::Shape {
                what: "dphi",
                expected: format!("{n} x {} (a row of features per point)", self.n_features()),
                got: format!("{} values", dphi.len()),
            });
        }
        if let Some(idx) = dphi.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite {
                what: "dphi",
                row: idx / self.n_features(),
                col: idx % self.n_features(),
            });
        }
        self.features_vjp_of(&x32, n, dphi, dx);
        Ok(())
    }
}

impl Kernel for RfKernel {
    fn spec(&self) -> KernelSpec {
        KernelSpec::Rf(self.spec)
    }

    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        same_dim(a.ncols(), &b)?;
        let (xa, xb) = (self.images_f32("a", a.into())?, self.images_f32("b", b.into())?);
        let (fa, fb) = (self.features_of(&xa, a.nrows()), self.features_of(&xb, b.nrows()));
        self.gram_of(&fa, a.nrows(), &fb, b.nrows(), out);
        Ok(())
    }

    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        let n = a.nrows();
        let fa = self.features_of(&self.images_f32("a", a.into())?, n);
        self.gram_of(&fa, n, &fa, n, out);
        // Exactly symmetric: the lower triangle mirrored.
        for j in 0..n {
            for i in 0..j {
                out[(i, j)] = out[(j, i)];
            }
        }
        Ok(())
    }

    fn gram_diag(&self, a: PointsView<'_>) -> Result<Vec<f64>> {
        let n = a.nrows();
        let fa = self.features_of(&self.images_f32("a", a.into())?, n);
        let (s, o) = self.readout();
        Ok(fa
            .chunks_exact(self.n_features())
            .map(|r| s * r.iter().map(|v| v * v).sum::<f64>() + o)
            .collect())
    }

    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> Result<()> {
        same_dim(a.ncols(), &b)?;
        let (n1, n2) = (a.nrows(), b.nrows());
        let (xa, xb) = (self.images_f32("a", a.into())?, self.images_f32("b", b.into())?);
        check_g(g, n1, n2)?;
        if let Some(da) = da {
            let fb = self.features_of(&xb, n2);
            let dphi = self.feature_cotangent(MatRef::from(g), &fb, n2);
            self.features_vjp_of(&xa, n1, &dphi, da);
        }
        if let Some(db) = db {
            let fa = self.features_of(&xa, n1);
            let dphi = self.feature_cotangent(MatRef::from(g).t(), &fa, n1);
            self.features_vjp_of(&xb, n2, &dphi, db);
        }
        Ok(())
    }

    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> Result<()> {
        let n = a.nrows();
        let xa = self.images_f32("a", a.into())?;
        check_g(g, n, n)?;
        let fa = self.features_of(&xa, n);
        let gs = g + g.transpose();
        let dphi = self.feature_cotangent(MatRef::from(&gs), &fa, n);
        self.features_vjp_of(&xa, n, &dphi, da);
        Ok(())
    }

    fn as_features(&self) -> Option<&dyn FeatureKernel> {
        Some(self)
    }
}
