//! The RBF kernel's map: `K = exp(−γ‖x − x'‖²/d) = exp(−γ(n + n' − 2s))`.

use crate::fc::PartialsMut;

/// In place over column pieces: `s ← exp(−γ·max(n + n' − 2s, 0))` (the
/// squared distance is clamped at 0 against rounding).
pub(crate) fn rbf_values(gamma: f64, cols: &mut [&mut [f64]], na: &[f64], nb: &[f64]) {
    for (col, &nbj) in cols.iter_mut().zip(nb) {
        for (v, a) in col.iter_mut().zip(na) {
            *v = (-gamma * (a + nbj - 2.0 * *v).max(0.0)).exp();
        }
    }
}

/// `K` and its partials over whole columns: `∂K/∂s = 2γK`,
/// `∂K/∂n = ∂K/∂n' = −γK`.
pub(crate) fn rbf_partials(gamma: f64, s: &[f64], na: &[f64], nb: &[f64], out: PartialsMut<'_>) {
    let n1 = na.len();
    for i in 0..s.len() {
        let k = (-gamma * (na[i % n1] + nb[i / n1] - 2.0 * s[i]).max(0.0)).exp();
        out.k[i] = k;
        out.ks[i] = 2.0 * gamma * k;
        out.ka[i] = -gamma * k;
        out.kb[i] = -gamma * k;
    }
}
