//! [`ConvNet`]: a finite convolutional network body (Conv 3×3 SAME, ReLU,
//! AvgPool 2×2, then a Flatten or GlobalAvgPool readout into a feature
//! vector) in `f32`, NTK parameterisation, with its forward pass and the
//! backward pass to the input and to the weights.
//!
//! Layers follow neural-tangents' `stax` (the `conventions` of the conv
//! golden file): a Conv computes `W_std/√(9·c_in) · conv(x, W) + b_std · b`
//! with `W, b ~ N(0, 1)`, zero padding counted in the 9 taps; AvgPool 2×2
//! stride 2 VALID (an odd trailing row or column is dropped). As the width
//! grows, `W_std²·⟨f(x), f(x')⟩/F + b_std²` of the readout features `f`
//! tends to the network's NNGP ([`crate::ConvKernel`] with the same layers).
//!
//! Images are rows of `h·w·c` values, channels fastest (as every kip
//! dataset). Convolutions run as im2col tiles times the weight matrix on
//! the `gemm` crate ([`kip_core::conv3x3_forward`]), one rayon task per chunk
//! of [`CHUNK_IMAGES`] images: the chunking is fixed, so the result does
//! not depend on the thread count.

use kip_core::{conv3x3_forward, conv3x3_input_grad, conv3x3_weight_grad, pool_backward, pool_forward, ImageShape};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::conv::ConvLayer;
use crate::error::{KernelError, Result};

/// Images per rayon task.
pub const CHUNK_IMAGES: usize = 8;

/// One layer of a finite body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetLayer {
    /// Conv 3×3, stride 1, SAME, `channels` outputs.
    Conv,
    /// ReLU.
    Relu,
    /// AvgPool 2×2, stride 2, VALID.
    Pool,
}

/// How the last activation becomes the feature vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetReadout {
    /// All `h·w·c` values.
    Flatten,
    /// The mean over positions of each channel.
    GlobalAvgPool,
}

/// Where one Conv's weights (`9·c_in × c_out`, row-major, taps then input
/// channels) and biases (`c_out`) sit in [`ConvNet::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConvSlot {
    ci: usize,
    co: usize,
    w: usize,
    b: usize,
}

/// A finite ConvNet body with its weights (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNet {
    body: Vec<NetLayer>,
    readout: NetReadout,
    /// `shapes[i]`: the input of body layer `i`; the last: the body's output.
    shapes: Vec<ImageShape>,
    slots: Vec<Option<ConvSlot>>,
    w_std: f32,
    b_std: f32,
    params: Vec<f32>,
}

/// An error about the network's layers or input shape.
fn net_err(reason: String) -> KernelError {
    KernelError::Image {
        kernel: "finite ConvNet".into(),
        reason,
    }
}

/// The image shape after `body` applied to `input` with `channels` per Conv,
/// layer by layer (`input` first).
fn plan(body: &[NetLayer], input: ImageShape, channels: usize) -> Result<Vec<ImageShape>> {
    let mut shapes = vec![input];
    let mut s = input;
    for (i, l) in body.iter().enumerate() {
        s = match l {
            NetLayer::Conv => ImageShape::new(s.h, s.w, channels),
            NetLayer::Relu => s,
            NetLayer::Pool => {
                if s.h < 2 || s.w < 2 {
                    return Err(net_err(format!(
                        "layer {} (AvgPool 2x2) gets a {}x{} image: too small to pool",
                        i + 1,
                        s.h,
                        s.w
                    )));
                }
                ImageShape::new(s.h / 2, s.w / 2, s.c)
            }
        };
        if s.checked_dim().is_none() {
            return Err(net_err(format!("layer {} makes a {s} map: h·w·c overflows", i + 1)));
        }
        shapes.push(s);
    }
    Ok(shapes)
}

impl ConvNet {
    /// The body and readout of a kernel stack (`CRP…F` or `…G`, the Dense
    /// readout `D` dropped: it is applied analytically).
    ///
    /// # Errors
    /// [`KernelError::Image`] for a layer a finite net does not have here
    /// (Erf).
    pub fn layers_of(arch_layers: &[ConvLayer]) -> Result<(Vec<NetLayer>, NetReadout)> {
        let mut body = Vec::new();
        let mut readout = NetReadout::Flatten;
        for l in arch_layers {
            match l {
                ConvLayer::Conv => body.push(NetLayer::Conv),
                ConvLayer::Relu => body.push(NetLayer::Relu),
                ConvLayer::Pool => body.push(NetLayer::Pool),
                ConvLayer::Flatten => readout = NetReadout::Flatten,
                ConvLayer::GlobalAvgPool => readout = NetReadout::GlobalAvgPool,
                ConvLayer::Dense => {}
                ConvLayer::Erf => {
                    return Err(net_err(
                        "random-feature networks support ReLU (R) activations only, not Erf (E)".into(),
                    ))
                }
            }
        }
        Ok((body, readout))
    }

    /// A network with every weight and bias drawn `N(0, 1)` from `seed`
    /// (ChaCha8, layer by layer: weights, then biases).
    ///
    /// # Errors
    /// [`KernelError::Image`] when a pooling layer gets an image smaller
    /// than 2×2; [`KernelError::Param`] for `channels` 0 or non-finite or
    /// negative standard deviations.
    pub fn random(
        body: &[NetLayer],
        readout: NetReadout,
        input: ImageShape,
        channels: usize,
        w_std: f64,
        b_std: f64,
        seed: u64,
    ) -> Result<Self> {
        let mut net = Self::zeros(body, readout, input, channels, w_std, b_std)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for v in &mut net.params {
            *v = StandardNormal.sample(&mut rng);
        }
        Ok(net)
    }

    /// A network with all parameters zero (to be filled through
    /// [`ConvNet::params_mut`]).
    ///
    /// # Errors
    /// As [`ConvNet::random`].
    pub fn zeros(
        body: &[NetLayer],
        readout: NetReadout,
        input: ImageShape,
        channels: usize,
        w_std: f64,
        b_std: f64,
    ) -> Result<Self> {
        if channels == 0 {
            return Err(KernelError::Param {
                name: "channels",
                value: 0.0,
                expected: "at least 1",
            });
        }
        match input.checked_dim() {
            None => return Err(net_err(format!("image shape {input}: h·w·c overflows"))),
            Some(0) => return Err(net_err(format!("an empty image shape {input}"))),
            Some(_) => {}
        }
        crate::spec::check_stds(w_std, b_std)?;
        let shapes = plan(body, input, channels)?;
        let len = Self::param_count_of(body, &shapes, channels)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                net_err(format!(
                    "{channels} channels on {input} images: the parameter count overflows"
                ))
            })?;
        let mut slots = Vec::with_capacity(body.len());
        let mut off = 0;
        for (i, l) in body.iter().enumerate() {
            slots.push(if *l == NetLayer::Conv {
                let (ci, co) = (shapes[i].c, channels);
                let slot = ConvSlot {
                    ci,
                    co,
                    w: off,
                    b: off + 9 * ci * co,
                };
                off += 9 * ci * co + co;
                Some(slot)
            } else {
                None
            });
        }
        Ok(Self {
            body: body.to_vec(),
            readout,
            shapes,
            slots,
            w_std: w_std as f32,
            b_std: b_std as f32,
            params: vec![0.0; len],
        })
    }

    /// How many parameters (weights and biases) a network of `body` with
    /// `channels` per Conv has on `input` images, and how many features it
    /// gives each image, without building it; `None` when a count
    /// overflows. What [`crate::RfKernel`] checks against the memory
    /// available before drawing its networks.
    ///
    /// # Errors
    /// As [`ConvNet::random`] for a stack that does not fit `input`.
    pub fn size_of(
        body: &[NetLayer],
        readout: NetReadout,
        input: ImageShape,
        channels: usize,
    ) -> Result<(Option<u64>, Option<u64>)> {
        let shapes = plan(body, input, channels)?;
        let out = shapes[shapes.len() - 1];
        let features = match readout {
            NetReadout::Flatten => out.checked_dim().map(|d| d as u64),
            NetReadout::GlobalAvgPool => Some(out.c as u64),
        };
        Ok((Self::param_count_of(body, &shapes, channels), features))
    }

    fn param_count_of(body: &[NetLayer], shapes: &[ImageShape], channels: usize) -> Option<u64> {
        body.iter().enumerate().try_fold(0u64, |acc, (i, l)| {
            if *l != NetLayer::Conv {
                return Some(acc);
            }
            let (ci, co) = (shapes[i].c as u64, channels as u64);
            acc.checked_add(ci.checked_mul(co)?.checked_mul(9)?.checked_add(co)?)
        })
    }

    /// The input image shape.
    pub fn input_shape(&self) -> ImageShape {
        self.shapes[0]
    }

    /// Values per image in the input.
    pub fn input_dim(&self) -> usize {
        self.shapes[0].dim()
    }

    /// Length of the feature vector of one image.
    pub fn n_features(&self) -> usize {
        let out = self.shapes[self.shapes.len() - 1];
        match self.readout {
            NetReadout::Flatten => out.dim(),
            NetReadout::GlobalAvgPool => out.c,
        }
    }

    /// All weights and biases, layer by layer (each Conv: its `9·c_in ×
    /// c_out` weights row-major, then its `c_out` biases).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The parameters, mutable (an optimiser's step).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Features of `n` images (`x`: `n × input_dim`, row-major) into `out`
    /// (`n × n_features`, row-major).
    ///
    /// # Panics
    /// If the buffers do not have those lengths.
    pub fn features(&self, x: &[f32], n: usize, out: &mut [f32]) {
        let (d, f) = (self.input_dim(), self.n_features());
        assert_eq!(x.len(), n * d, "ConvNet::features: input length");
        assert_eq!(out.len(), n * f, "ConvNet::features: output length");
        out.par_chunks_mut(CHUNK_IMAGES * f)
            .zip(x.par_chunks(CHUNK_IMAGES * d))
            .for_each(|(out, x)| {
                let b = x.len() / d;
                let acts = self.forward_chunk(x, b, false);
                self.read_out(acts.last().expect("an output"), b, out);
            });
    }

    /// The VJP of the features with respect to the input: `dx = (∂f/∂x)ᵀ
    /// dphi` for `n` images (`dphi`: `n × n_features`; `dx`: `n ×
    /// input_dim`, overwritten). The forward pass is recomputed.
    ///
    /// # Panics
    /// If the buffers do not have those lengths.
    pub fn features_vjp(&self, x: &[f32], n: usize, dphi: &[f32], dx: &mut [f32]) {
        let (d, f) = (self.input_dim(), self.n_features());
        assert_eq!(x.len(), n * d, "ConvNet::features_vjp: input length");
        assert_eq!(dphi.len(), n * f, "ConvNet::features_vjp: cotangent length");
        assert_eq!(dx.len(), n * d, "ConvNet::features_vjp: output length");
        dx.par_chunks_mut(CHUNK_IMAGES * d)
            .zip(x.par_chunks(CHUNK_IMAGES * d).zip(dphi.par_chunks(CHUNK_IMAGES * f)))
            .for_each(|(dx, (x, dphi))| {
                let b = x.len() / d;
                let acts = self.forward_chunk(x, b, true);
                self.backward_chunk(&acts, b, dphi, Some(dx), None);
            });
    }

    /// Features of `n` images (into `out`, as [`ConvNet::features`]) and
    /// the gradient of `Σ ⟨dphi(f), f⟩` with respect to the parameters,
    /// where `dphi` maps the features to their cotangent (a loss head): the
    /// parameter gradient is summed over the images into `grad` (length of
    /// [`ConvNet::params`], overwritten). Chunks are reduced in order, so
    /// the sum does not depend on the thread count.
    ///
    /// # Panics
    /// If the buffers do not have those lengths.
    pub fn params_vjp(&self, x: &[f32], n: usize, dphi: &[f32], grad: &mut [f32]) {
        let (d, f) = (self.input_dim(), self.n_features());
        assert_eq!(x.len(), n * d, "ConvNet::params_vjp: input length");
        assert_eq!(dphi.len(), n * f, "ConvNet::params_vjp: cotangent length");
        assert_eq!(grad.len(), self.params.len(), "ConvNet::params_vjp: gradient length");
        let parts: Vec<Vec<f32>> = x
            .par_chunks(CHUNK_IMAGES * d)
            .zip(dphi.par_chunks(CHUNK_IMAGES * f))
            .map(|(x, dphi)| {
                let b = x.len() / d;
                let acts = self.forward_chunk(x, b, true);
                let mut g = vec![0.0; self.params.len()];
                self.backward_chunk(&acts, b, dphi, None, Some(&mut g));
                g
            })
            .collect();
        grad.fill(0.0);
        for p in &parts {
            for (g, v) in grad.iter_mut().zip(p) {
                *g += v;
            }
        }
    }

    /// Forward through the body for `b` images: every layer's input and the
    /// output when `keep` (the tape), else the output alone.
    fn forward_chunk(&self, x: &[f32], b: usize, keep: bool) -> Vec<Vec<f32>> {
        let mut acts: Vec<Vec<f32>> = vec![x.to_vec()];
        let mut patches = Vec::new();
        for (i, layer) in self.body.iter().enumerate() {
            let (si, so) = (self.shapes[i], self.shapes[i + 1]);
            let out = if *layer == NetLayer::Relu && !keep {
                // No tape: in place.
                let mut a = acts.pop().expect("an input");
                a.iter_mut().for_each(|v| *v = v.max(0.0));
                a
            } else {
                let input = acts.last().expect("an input");
                match layer {
                    NetLayer::Conv => {
                        let slot = self.slots[i].expect("a conv slot");
                        let mut out = vec![0.0; b * so.dim()];
                        self.conv_forward(slot, si, input, b, &mut out, &mut patches);
                        out
                    }
                    NetLayer::Relu => input.iter().map(|&v| v.max(0.0)).collect(),
                    NetLayer::Pool => pool_forward(si, input, b),
                }
            };
            if !keep {
                acts.clear();
            }
            acts.push(out);
        }
        acts
    }

    /// Backward through the body from the features' cotangent, into the
    /// input's (`dx`) and/or the parameters' (`dparams`, accumulated).
    fn backward_chunk(
        &self,
        acts: &[Vec<f32>],
        b: usize,
        dphi: &[f32],
        dx: Option<&mut [f32]>,
        mut dparams: Option<&mut [f32]>,
    ) {
        let last = self.shapes[self.shapes.len() - 1];
        let mut g = match self.readout {
            NetReadout::Flatten => dphi.to_vec(),
            NetReadout::GlobalAvgPool => {
                let (hw, c) = (last.h * last.w, last.c);
                let inv = 1.0 / hw as f32;
                let mut g = vec![0.0; b * last.dim()];
                for img in 0..b {
                    for p in 0..hw {
                        for ch in 0..c {
                            g[img * hw * c + p * c + ch] = dphi[img * c + ch] * inv;
                        }
                    }
                }
                g
            }
        };
        // Below the first Conv nothing has parameters: stop there unless
        // the input's cotangent is wanted.
        let first_conv = self.body.iter().position(|l| *l == NetLayer::Conv);
        let mut patches = Vec::new();
        for i in (0..self.body.len()).rev() {
            let si = self.shapes[i];
            match self.body[i] {
                NetLayer::Relu => {
                    // Branch-free (vectorised): keep the cotangent where the input was positive.
                    for (gv, &a) in g.iter_mut().zip(&acts[i]) {
                        *gv = if a > 0.0 { *gv } else { 0.0 };
                    }
                }
                NetLayer::Pool => g = pool_backward(si, &g, b),
                NetLayer::Conv => {
                    let slot = self.slots[i].expect("a conv slot");
                    if let Some(dparams) = dparams.as_deref_mut() {
                        self.conv_params_grad(slot, si, &acts[i], &g, b, dparams, &mut patches);
                    }
                    if dx.is_none() && first_conv == Some(i) {
                        return;
                    }
                    g = self.conv_input_grad(slot, si, &g, b, &mut patches);
                }
            }
        }
        if let Some(dx) = dx {
            dx.copy_from_slice(&g);
        }
    }

    /// `alpha = W_std/√(9·c_in)`: the NTK parameterisation's scale.
    fn alpha(&self, slot: ConvSlot) -> f32 {
        self.w_std / ((9 * slot.ci) as f32).sqrt()
    }

    /// A Conv's output: `alpha·conv(x, W) + b_std·b`.
    fn conv_forward(
        &self,
        slot: ConvSlot,
        si: ImageShape,
        x: &[f32],
        b: usize,
        out: &mut [f32],
        patches: &mut Vec<f32>,
    ) {
        let co = slot.co;
        let bias = &self.params[slot.b..slot.b + co];
        conv3x3_forward(si, x, b, &self.params[slot.w..slot.b], self.alpha(slot), out, patches);
        for row in out.chunks_exact_mut(co) {
            for (v, &bv) in row.iter_mut().zip(bias) {
                *v += self.b_std * bv;
            }
        }
    }

    /// The cotangent of a Conv's input from its output's (`g`)
    /// ([`conv3x3_input_grad`]).
    fn conv_input_grad(&self, slot: ConvSlot, si: ImageShape, g: &[f32], b: usize, patches: &mut Vec<f32>) -> Vec<f32> {
        conv3x3_input_grad(si, &self.params[slot.w..slot.b], self.alpha(slot), g, b, patches)
    }

    /// Accumulate a Conv's weight and bias gradients from its input `x`
    /// and its output's cotangent `g`.
    #[allow(clippy::too_many_arguments)]
    fn conv_params_grad(
        &self,
        slot: ConvSlot,
        si: ImageShape,
        x: &[f32],
        g: &[f32],
        b: usize,
        dparams: &mut [f32],
        patches: &mut Vec<f32>,
    ) {
        let co = slot.co;
        conv3x3_weight_grad(si, x, g, b, self.alpha(slot), &mut dparams[slot.w..slot.b], patches);
        let db = &mut dparams[slot.b..slot.b + co];
        for row in g[..b * si.h * si.w * co].chunks_exact(co) {
            for (d, &v) in db.iter_mut().zip(row) {
                *d += self.b_std * v;
            }
        }
    }

    /// The feature vectors of `b` images from the body's output.
    fn read_out(&self, act: &[f32], b: usize, out: &mut [f32]) {
        match self.readout {
            NetReadout::Flatten => out.copy_from_slice(act),
            NetReadout::GlobalAvgPool => {
                let last = self.shapes[self.shapes.len() - 1];
                let (hw, c) = (last.h * last.w, last.c);
                let inv = 1.0 / hw as f32;
                for img in 0..b {
                    let o = &mut out[img * c..(img + 1) * c];
                    o.fill(0.0);
                    for p in 0..hw {
                        for (v, &a) in o.iter_mut().zip(&act[(img * hw + p) * c..(img * hw + p + 1) * c]) {
                            *v += a;
                        }
                    }
                    o.iter_mut().for_each(|v| *v *= inv);
                }
            }
        }
    }
}
