//! [`AnyKernel`]: the kernel a [`KernelSpec`] names, dispatching to the FC,
//! RBF and linear maps.

use crate::error::Result;
use crate::fc::{fc_partials, fc_values, fc_vjp, FcParams, PartialsMut};
use crate::kernel::Kernel;
use crate::linear::linear_partials;
use crate::rbf::{rbf_partials, rbf_values};
use crate::spec::KernelSpec;
use crate::vjp::vjp_via_partials;

/// The kernel a [`KernelSpec`] names: an enum, cheap to clone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnyKernel {
    spec: KernelSpec,
}

impl AnyKernel {
    /// Build from a spec (call [`KernelSpec::validate`] first for user input;
    /// parsed specs are already valid).
    pub fn from_spec(spec: KernelSpec) -> Self {
        Self { spec }
    }
}

impl Kernel for AnyKernel {
    fn spec(&self) -> KernelSpec {
        self.spec
    }

    fn map_values(&self, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_values(p, cols, na, nb),
            KernelSpec::Rbf { gamma } => rbf_values(*gamma, cols, na, nb),
            KernelSpec::Linear => {}
        }
    }

    fn map_partials(&self, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>) {
        match &self.spec {
            KernelSpec::Fc(p) => fc_partials(p, s, na, nb, out),
            KernelSpec::Rbf { gamma } => rbf_partials(*gamma, s, na, nb, out),
            KernelSpec::Linear => linear_partials(s, out),
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
        }
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
