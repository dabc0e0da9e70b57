//! Optimisers: SGD with momentum, Adam.

use rayon::prelude::*;

use crate::mlp::PAR_CHUNK;
use crate::params::Optimizer;
use kip_core::Real;

/// Adam's first-moment decay β₁.
pub const ADAM_BETA1: f64 = 0.9;
/// Adam's second-moment decay β₂.
pub const ADAM_BETA2: f64 = 0.999;
/// Adam's ε.
pub const ADAM_EPS: f64 = 1e-8;

/// Per-parameter optimiser state (momentum / Adam moments) of a model
/// whose trainable parameters are a fixed list of flat tensors (an
/// [`Mlp`](crate::Mlp)'s `W₀, b₀, W₁, …`; a ConvNet's body, head weights
/// and head biases).
#[derive(Debug, Clone)]
pub(crate) struct OptimState<T: Real> {
    kind: Optimizer,
    m: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
    t: i32,
}

impl<T: Real> OptimState<T> {
    /// Zero state for tensors of lengths `sizes`.
    pub(crate) fn new(kind: Optimizer, sizes: &[usize]) -> Self {
        let zeros = || sizes.iter().map(|&s| vec![T::ZERO; s]).collect::<Vec<_>>();
        let v = match kind {
            Optimizer::Adam => zeros(),
            Optimizer::Sgd { .. } => Vec::new(),
        };
        Self {
            kind,
            m: zeros(),
            v,
            t: 0,
        }
    }

    /// One update of the tensors `params` with gradients `grads` (both in
    /// the order of the sizes given to [`OptimState::new`]) at learning
    /// rate `lr`.
    pub(crate) fn update<'p, 'g>(
        &mut self,
        params: impl Iterator<Item = &'p mut [T]>,
        grads: impl Iterator<Item = &'g [T]>,
        lr: f64,
    ) where
        T: 'p + 'g,
    {
        self.t = self.t.saturating_add(1);
        match self.kind {
            Optimizer::Sgd { momentum } => {
                let (mu, lr) = (T::of_f64(momentum), T::of_f64(lr));
                for ((p, g), m) in params.zip(grads).zip(&mut self.m) {
                    let f = |((pc, gc), mc): ((&mut [T], &[T]), &mut [T])| {
                        for ((p, &g), m) in pc.iter_mut().zip(gc).zip(mc.iter_mut()) {
                            *m = mu * *m + g;
                            *p -= lr * *m;
                        }
                    };
                    if p.len() > PAR_CHUNK {
                        p.par_chunks_mut(PAR_CHUNK)
                            .zip(g.par_chunks(PAR_CHUNK))
                            .zip(m.par_chunks_mut(PAR_CHUNK))
                            .for_each(f);
                    } else {
                        f(((p, g), m));
                    }
                }
            }
            Optimizer::Adam => {
                let b1 = T::of_f64(ADAM_BETA1);
                let b2 = T::of_f64(ADAM_BETA2);
                let (c1, c2) = (T::ONE - b1, T::ONE - b2);
                let step = T::of_f64(lr / (1.0 - ADAM_BETA1.powi(self.t)));
                let vscale = T::of_f64(1.0 / (1.0 - ADAM_BETA2.powi(self.t)));
                let eps = T::of_f64(ADAM_EPS);
                let tensors = params.zip(grads).zip(self.m.iter_mut().zip(&mut self.v));
                for ((p, g), (m, v)) in tensors {
                    type Chunk<'a, T> = ((&'a mut [T], &'a [T]), (&'a mut [T], &'a mut [T]));
                    let f = |((pc, gc), (mc, vc)): Chunk<'_, T>| {
                        for (((p, &g), m), v) in pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc) {
                            *m = b1 * *m + c1 * g;
                            *v = b2 * *v + c2 * g * g;
                            *p -= step * *m / ((vscale * *v).sqrt() + eps);
                        }
                    };
                    if p.len() > PAR_CHUNK {
                        p.par_chunks_mut(PAR_CHUNK)
                            .zip(g.par_chunks(PAR_CHUNK))
                            .zip(m.par_chunks_mut(PAR_CHUNK).zip(v.par_chunks_mut(PAR_CHUNK)))
                            .for_each(f);
                    } else {
                        f(((p, g), (m, v)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backprop::Grads;
    use crate::mlp::Mlp;
    use crate::params::MlpParams;

    fn one_layer() -> (Mlp<f64>, Grads<f64>) {
        let p = MlpParams {
            depth: 1,
            width: 2,
            ..Default::default()
        }
        .check()
        .unwrap();
        let m = Mlp::<f64>::init(2, 1, &p, 0);
        let mut g = Grads::zeros_like(&m);
        g.w.iter_mut().for_each(|w| w.fill(0.5));
        g.b.iter_mut().for_each(|b| b.fill(-0.25));
        (m, g)
    }

    #[test]
    fn sgd_momentum_accumulates() {
        let (mut m, g) = one_layer();
        let w0 = m.layers[0].w[(0, 0)];
        let mut s = OptimState::new(Optimizer::Sgd { momentum: 0.9 }, &m.tensor_sizes());
        s.update(m.tensors_mut(), g.tensors(), 0.1);
        s.update(m.tensors_mut(), g.tensors(), 0.1);
        // v1 = 0.5, v2 = 0.95: total step 0.1·1.45
        assert!((m.layers[0].w[(0, 0)] - (w0 - 0.145)).abs() < 1e-12);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let (mut m, g) = one_layer();
        let (w0, b0) = (m.layers[1].w[(0, 1)], m.layers[1].b[0]);
        let mut s = OptimState::new(Optimizer::Adam, &m.tensor_sizes());
        s.update(m.tensors_mut(), g.tensors(), 0.01);
        assert!((m.layers[1].w[(0, 1)] - (w0 - 0.01)).abs() < 1e-9);
        assert!((m.layers[1].b[0] - (b0 + 0.01)).abs() < 1e-9);
    }
}
