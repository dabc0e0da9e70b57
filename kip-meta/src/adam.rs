//! Adam (Kingma & Ba 2015) over flat parameter vectors.

use serde::{Deserialize, Serialize};

/// Adam hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β1.
    pub b1: f64,
    /// Second-moment decay β2.
    pub b2: f64,
    /// ε added to √v̂.
    pub eps: f64,
    /// Step index of the first update in the bias correction
    /// `1 − β^(i+1)`: 0 is textbook Adam; 1 is what the authors' notebook
    /// (and the reference peer) pass on their first step.
    pub first_step_index: u64,
}

impl Default for AdamParams {
    fn default() -> Self {
        Self {
            lr: 0.01,
            b1: 0.9,
            b2: 0.999,
            eps: 1e-8,
            first_step_index: 1,
        }
    }
}

/// Moments of one parameter vector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdamState {
    /// First moment.
    pub m: Vec<f64>,
    /// Second moment.
    pub v: Vec<f64>,
}

impl AdamState {
    /// Zero moments for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One update at `step` (0-based count of updates done so far):
    /// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
    /// `p ← p − lr · m̂ / (√v̂ + ε)`, `m̂ = m/(1−β1^(i+1))`, `v̂ = v/(1−β2^(i+1))`,
    /// `i = step + first_step_index` (as `jax.example_libraries.optimizers.adam`).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn update(&mut self, p: &AdamParams, step: usize, params: &mut [f64], grad: &[f64]) {
        assert_eq!(params.len(), grad.len());
        assert_eq!(self.m.len(), grad.len());
        let (c1, c2) = corrections(p, step);
        update_all(p, c1, c2, params, grad, &mut self.m, &mut self.v);
    }

    /// [`AdamState::update`] only if every updated value (parameters and
    /// moments) is finite; otherwise changes nothing and returns `false`.
    /// Two vectorised passes (check, then update), no allocation.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn try_update(&mut self, p: &AdamParams, step: usize, params: &mut [f64], grad: &[f64]) -> bool {
        assert_eq!(params.len(), grad.len());
        assert_eq!(self.m.len(), grad.len());
        let (c1, c2) = corrections(p, step);
        let ok = all_finite(p, c1, c2, params, grad, &self.m, &self.v);
        if ok {
            self.update(p, step, params, grad);
        }
        ok
    }
}

/// Bias corrections `1 − β^(i+1)` at `i = step + first_step_index`.
fn corrections(p: &AdamParams, step: usize) -> (f64, f64) {
    let i = (step as u64 + p.first_step_index) as f64;
    (1.0 - p.b1.powf(i + 1.0), 1.0 - p.b2.powf(i + 1.0))
}

/// One element: `(x, m, v)` after the update.
#[inline(always)]
fn adam_elem(p: &AdamParams, c1: f64, c2: f64, x: f64, g: f64, m: f64, v: f64) -> (f64, f64, f64) {
    let m = (1.0 - p.b1) * g + p.b1 * m;
    let v = (1.0 - p.b2) * g * g + p.b2 * v;
    (x - p.lr * (m / c1) / ((v / c2).sqrt() + p.eps), m, v)
}

/// Whether every updated value would be finite. Branch-free (no early
/// exit), so it vectorises.
#[inline(always)]
fn all_finite_impl(p: &AdamParams, c1: f64, c2: f64, x: &[f64], g: &[f64], m: &[f64], v: &[f64]) -> bool {
    let mut ok = true;
    for (((&x, &g), &m), &v) in x.iter().zip(g).zip(m).zip(v) {
        let (x, m, v) = adam_elem(p, c1, c2, x, g, m, v);
        ok &= x.is_finite() & m.is_finite() & v.is_finite();
    }
    ok
}

#[inline(always)]
fn update_all_impl(p: &AdamParams, c1: f64, c2: f64, x: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
    for (((x, &g), m), v) in x.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        (*x, *m, *v) = adam_elem(p, c1, c2, *x, g, *m, *v);
    }
}

kip_core::multiversion! {
    fn all_finite(p: &AdamParams, c1: f64, c2: f64, x: &[f64], g: &[f64], m: &[f64], v: &[f64]) -> bool => all_finite_impl
}

kip_core::multiversion! {
    fn update_all(p: &AdamParams, c1: f64, c2: f64, x: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) => update_all_impl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_textbook_step_moves_by_lr_times_sign() {
        let p = AdamParams {
            first_step_index: 0,
            ..AdamParams::default()
        };
        let mut s = AdamState::new(3);
        let mut x = vec![1.0, 2.0, 3.0];
        s.update(&p, 0, &mut x, &[0.5, -2.0, 0.0]);
        assert!((x[0] - (1.0 - 0.01)).abs() < 1e-9);
        assert!((x[1] - (2.0 + 0.01)).abs() < 1e-9);
        assert_eq!(x[2], 3.0);
    }
}
