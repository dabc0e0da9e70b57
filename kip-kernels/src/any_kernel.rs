//! [`AnyKernel`]: the kernel a [`KernelSpec`] names, dispatching to the
//! inner-product kernels (FC, RBF, linear: [`DotSpecKernel`]) and the
//! convolutional ones ([`ConvKernel`]).

use nalgebra::DMatrix;

use crate::conv::{ConvKernel, ImageShape};
use crate::error::Result;
use crate::fc::{fc_partials, fc_values, fc_vjp, FcParams, PartialsMut};
use crate::kernel::{DotKernel, FeatureKernel, Kernel};
use crate::linear::linear_partials;
use crate::points::PointsView;
use crate::rbf::{rbf_partials, rbf_values};
use crate::rf::RfKernel;
use crate::spec::KernelSpec;
use crate::vjp::vjp_via_partials;

/// An inner-product kernel named by a spec: FC, RBF or linear.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DotSpecKernel {
    spec: KernelSpec,
}

impl DotKernel for DotSpecKernel {
    fn spec(&self) -> KernelSpec {
        self.spec
    }

    fn map_values(&self, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_values(p, cols, na, nb),
            KernelSpec::Rbf { gamma } => rbf_values(*gamma, cols, na, nb),
            KernelSpec::Linear => {}
            KernelSpec::Conv(_) | KernelSpec::Rf(_) => unreachable!("a DotSpecKernel never holds a conv spec"),
        }
    }

    fn map_partials(&self, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_partials(p, s, na, nb, out),
            KernelSpec::Rbf { gamma } => rbf_partials(*gamma, s, na, nb, out),
            KernelSpec::Linear => linear_partials(s, out),
            KernelSpec::Conv(_) | KernelSpec::Rf(_) => unreachable!("a DotSpecKernel never holds a conv spec"),
        }
    }

    fn map_vjp(&self, cols: &mut [&mut [f64]], g: &[&[f64]], na: &[f64], nb: &[f64], ra: &mut [f64], rb: &mut [f64]) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_vjp(p, cols, g, na, nb, ra, rb),
            _ => vjp_via_partials(self, cols, g, na, nb, ra, rb),
        }
    }

    fn diag(&self, n: f64) -> (f64, f64) {
        match &self.spec {
            KernelSpec::Fc(p) => p.diag(n),
            KernelSpec::Rbf { .. } => (1.0, 0.0),
            KernelSpec::Linear => (n, 1.0),
            KernelSpec::Conv(_) | KernelSpec::Rf(_) => unreachable!("a DotSpecKernel never holds a conv spec"),
        }
    }
}

/// The kernel a [`KernelSpec`] names: cheap to clone (random-feature
/// networks are shared). Convolutional kernels also need the image shape
/// of the points ([`AnyKernel::for_images`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AnyKernel {
    inner: Inner,
}

#[derive(Clone, Debug, PartialEq)]
enum Inner {
    Dot(DotSpecKernel),
    Conv(ConvKernel),
    Rf(RfKernel),
}

impl AnyKernel {
    /// Build from a spec (call [`KernelSpec::validate`] first for user input;
    /// parsed specs are already valid).
    pub fn from_spec(spec: KernelSpec) -> Self {
        let inner = match spec {
            KernelSpec::Conv(arch) => Inner::Conv(ConvKernel::new(arch, None)),
            KernelSpec::Rf(rf) => Inner::Rf(RfKernel::new(rf, None)),
            _ => Inner::Dot(DotSpecKernel { spec }),
        };
        Self { inner }
    }

    /// The same kernel reading its points as images of `shape` (`h × w ×
    /// c`, channels fastest). Convolutional kernels need it; the others
    /// ignore it.
    #[must_use]
    pub fn for_images(&self, shape: impl Into<ImageShape>) -> Self {
        match &self.inner {
            Inner::Conv(k) => Self {
                inner: Inner::Conv(ConvKernel::new(*k.arch(), Some(shape.into()))),
            },
            Inner::Rf(k) => Self {
                inner: Inner::Rf(RfKernel::new(k.rf_spec(), Some(shape.into()))),
            },
            Inner::Dot(_) => self.clone(),
        }
    }

    /// A random-feature kernel with its networks drawn from `seed` (what
    /// KIP does every step); `None` for the other kernels.
    pub fn redrawn(&self, seed: u64) -> Option<Self> {
        match &self.inner {
            Inner::Rf(k) => Some(Self {
                inner: Inner::Rf(k.redrawn(seed)),
            }),
            _ => None,
        }
    }

    /// Whether this kernel reads its points as images (and so needs
    /// [`AnyKernel::for_images`]).
    pub fn needs_image_shape(&self) -> bool {
        matches!(self.inner, Inner::Conv(_) | Inner::Rf(_))
    }

    /// The bytes a call on `n1 × n2` points of `d` values each allocates
    /// beyond its inputs: the `n1 × n2` float64 matrix; with `grads`, the
    /// `n1 × d` and `n2 × d` gradients and one more `n1 × n2` matrix; and
    /// the kernel's working set (inner-product kernels: an `n1 × n2`
    /// matrix of partials; random features: both sets' feature rows).
    /// `None` when the count overflows.
    pub fn memory_need(&self, n1: usize, n2: usize, d: usize, grads: bool) -> Option<u64> {
        use kip_core::{bytes_of, sum_bytes};
        let pair = bytes_of(&[n1, n2], 8);
        let work = match &self.inner {
            Inner::Dot(_) => pair,
            Inner::Conv(_) => Some(0),
            Inner::Rf(k) => bytes_of(&[n1.checked_add(n2)?, k.n_features()], 8),
        };
        let grad = if grads {
            sum_bytes(&[bytes_of(&[n1.checked_add(n2)?, d], 8), pair])
        } else {
            Some(0)
        };
        sum_bytes(&[pair, work, grad])
    }

    /// Refuses a call whose [`AnyKernel::memory_need`] exceeds the memory
    /// this process can get (kip's memory rule, [`kip_core::check_memory`]).
    ///
    /// # Errors
    /// [`crate::KernelError::Memory`] naming the kernel and the sizes.
    pub fn check_memory(&self, n1: usize, n2: usize, d: usize, grads: bool) -> Result<()> {
        kip_core::check_memory(self.memory_need(n1, n2, d, grads), || {
            format!(
                "kernel {} on {n1} x {n2} points of {d} values{}",
                self.spec(),
                if grads { " (values and gradients)" } else { "" }
            )
        })?;
        Ok(())
    }

    fn kernel(&self) -> &dyn Kernel {
        match &self.inner {
            Inner::Dot(k) => k,
            Inner::Conv(k) => k,
            Inner::Rf(k) => k,
        }
    }
}

impl Kernel for AnyKernel {
    fn spec(&self) -> KernelSpec {
        self.kernel().spec()
    }

    fn gram_into(&self, a: PointsView<'_>, b: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        if out.shape() != (a.nrows(), b.nrows()) {
            self.check_memory(a.nrows(), b.nrows(), a.ncols(), false)?;
        }
        self.kernel().gram_into(a, b, out)
    }

    fn gram_sym_into(&self, a: PointsView<'_>, out: &mut DMatrix<f64>) -> Result<()> {
        if out.shape() != (a.nrows(), a.nrows()) {
            self.check_memory(a.nrows(), a.nrows(), a.ncols(), false)?;
        }
        self.kernel().gram_sym_into(a, out)
    }

    fn gram_diag(&self, a: PointsView<'_>) -> Result<Vec<f64>> {
        self.kernel().gram_diag(a)
    }

    fn vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        da: Option<&mut DMatrix<f64>>,
        db: Option<&mut DMatrix<f64>>,
    ) -> Result<()> {
        let fresh = |m: &Option<&mut DMatrix<f64>>, n: usize| m.as_ref().is_some_and(|m| m.shape() != (n, a.ncols()));
        if fresh(&da, a.nrows()) || fresh(&db, b.nrows()) {
            self.check_memory(a.nrows(), b.nrows(), a.ncols(), true)?;
        }
        self.kernel().vjp_into(a, b, g, da, db)
    }

    fn vjp_sym_into(&self, a: PointsView<'_>, g: &DMatrix<f64>, da: &mut DMatrix<f64>) -> Result<()> {
        if da.shape() != (a.nrows(), a.ncols()) {
            self.check_memory(a.nrows(), a.nrows(), a.ncols(), true)?;
        }
        self.kernel().vjp_sym_into(a, g, da)
    }

    fn gram_vjp_into(
        &self,
        a: PointsView<'_>,
        b: PointsView<'_>,
        g: &DMatrix<f64>,
        out: &mut DMatrix<f64>,
        da: &mut DMatrix<f64>,
    ) -> Result<()> {
        if out.shape() != (a.nrows(), b.nrows()) || da.shape() != (a.nrows(), a.ncols()) {
            self.check_memory(a.nrows(), b.nrows(), a.ncols(), true)?;
        }
        self.kernel().gram_vjp_into(a, b, g, out, da)
    }

    fn as_dot(&self) -> Option<&dyn DotKernel> {
        match &self.inner {
            Inner::Dot(k) => Some(k),
            Inner::Conv(_) | Inner::Rf(_) => None,
        }
    }

    fn as_features(&self) -> Option<&dyn FeatureKernel> {
        self.kernel().as_features()
    }
}

/// Parse a spec string straight into a kernel.
///
/// # Errors
/// As [`KernelSpec::from_str`](std::str::FromStr).
pub fn kernel_from_str(s: &str) -> Result<AnyKernel> {
    Ok(s.parse::<KernelSpec>()?.build())
}

impl From<FcParams> for AnyKernel {
    fn from(p: FcParams) -> Self {
        Self::from_spec(KernelSpec::Fc(p))
    }
}
