//! The linear kernel's map: `K = ⟨x, x'⟩/d = s` (the values pass is the
//! identity).

use crate::fc::PartialsMut;

/// `K = s`, `∂K/∂s = 1`, `∂K/∂n = ∂K/∂n' = 0`.
pub(crate) fn linear_partials(s: &[f64], out: PartialsMut<'_>) {
    out.k.copy_from_slice(s);
    out.ks.fill(1.0);
    out.ka.fill(0.0);
    out.kb.fill(0.0);
}
