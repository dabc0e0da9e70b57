//! [`ConvArch`]: a stack of convolutional-network layers whose
//! infinite-width kernel [`super::ConvKernel`] computes, its names
//! (`convvec3-ntk`, `convnet3-nngp`, `conv-ntk:layers=CRCRPFD`) and its
//! checks.

use std::fmt;

use kip_core::ImageShape;

use crate::error::{KernelError, Result};
use crate::fc::FcKind;

/// Most layers (tokens) in one stack.
pub const MAX_LAYERS: usize = 64;

/// One layer of a convolutional stack, with its token in the layer-string
/// form (neural-tangents' conventions: `conventions` of the golden file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvLayer {
    /// `C`: Conv 3×3, stride 1, SAME (zero) padding, `W_std`, `b_std`.
    Conv,
    /// `R`: ReLU.
    Relu,
    /// `E`: Erf (`stax.Erf()`).
    Erf,
    /// `P`: AvgPool 2×2, stride 2, VALID (an odd trailing row or column is
    /// dropped, as neural-tangents does).
    Pool,
    /// `F`: Flatten readout (the mean of the spatial diagonal).
    Flatten,
    /// `G`: GlobalAvgPool readout (the mean over all position pairs).
    GlobalAvgPool,
    /// `D`: the Dense readout, last.
    Dense,
}

impl ConvLayer {
    /// The layer's token.
    pub fn token(self) -> char {
        match self {
            ConvLayer::Conv => 'C',
            ConvLayer::Relu => 'R',
            ConvLayer::Erf => 'E',
            ConvLayer::Pool => 'P',
            ConvLayer::Flatten => 'F',
            ConvLayer::GlobalAvgPool => 'G',
            ConvLayer::Dense => 'D',
        }
    }

    fn from_token(c: char) -> Option<Self> {
        Some(match c {
            'C' => ConvLayer::Conv,
            'R' => ConvLayer::Relu,
            'E' => ConvLayer::Erf,
            'P' => ConvLayer::Pool,
            'F' => ConvLayer::Flatten,
            'G' => ConvLayer::GlobalAvgPool,
            'D' => ConvLayer::Dense,
            _ => return None,
        })
    }

    /// An activation (`R` or `E`).
    pub fn is_activation(self) -> bool {
        matches!(self, ConvLayer::Relu | ConvLayer::Erf)
    }
}

/// A convolutional stack and its kernel parameters: the layers (the
/// body, then a readout `F` or `G`, then `D`), NNGP or NTK, `W_std` and
/// `b_std` of every Conv and of the Dense readout. `Copy` (the layers sit
/// in a fixed array), so it rides inside [`crate::KernelSpec`].
#[derive(Clone, Copy, PartialEq)]
pub struct ConvArch {
    layers: [ConvLayer; MAX_LAYERS],
    len: usize,
    /// NNGP or NTK.
    pub kind: FcKind,
    /// Weight standard deviation.
    pub w_std: f64,
    /// Bias standard deviation.
    pub b_std: f64,
    /// Run the pair passes in single precision (spec parameter
    /// `precision=f32`; kernel values and gradients still come back as
    /// f64): about twice as fast, values to about 1e-6 relative (more
    /// near collinear entries). `false`: float64, exact to the reference.
    pub f32: bool,
}

impl fmt::Debug for ConvArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConvArch")
            .field("layers", &self.tokens())
            .field("kind", &self.kind)
            .field("w_std", &self.w_std)
            .field("b_std", &self.b_std)
            .field("f32", &self.f32)
            .finish()
    }
}

impl ConvArch {
    /// A stack from its token string (`"CRCRPFD"`).
    ///
    /// # Errors
    /// [`KernelError::Param`]-like reasons in a [`KernelError::Image`]-free
    /// message: unknown tokens, a missing or misplaced readout, too many
    /// layers (the reason is returned as text for the spec parser).
    pub fn from_tokens(tokens: &str, kind: FcKind, w_std: f64, b_std: f64) -> std::result::Result<Self, String> {
        let mut layers = [ConvLayer::Dense; MAX_LAYERS];
        let mut len = 0;
        for c in tokens.chars() {
            let layer = ConvLayer::from_token(c)
                .ok_or_else(|| format!("unknown layer token `{c}` (tokens: C conv, R relu, E erf, P avgpool, F flatten, G global avgpool, D dense)"))?;
            if len == MAX_LAYERS {
                return Err(format!("more than {MAX_LAYERS} layers"));
            }
            layers[len] = layer;
            len += 1;
        }
        let arch = Self {
            layers,
            len,
            kind,
            w_std,
            b_std,
            f32: false,
        };
        arch.check_order()?;
        Ok(arch)
    }

    /// `L × [Conv, ReLU]`, Flatten, Dense: the Conv-Vec stack.
    pub fn convvec(depth: usize, kind: FcKind) -> Self {
        let body = "CR".repeat(depth);
        Self::from_tokens(&format!("{body}FD"), kind, super::DEFAULT_W_STD, super::DEFAULT_B_STD)
            .expect("a valid Conv-Vec stack")
    }

    /// Conv, ReLU, `L × [Conv, ReLU, AvgPool]`, Flatten, Dense: the
    /// follow-up paper's ConvNet.
    pub fn convnet(depth: usize, kind: FcKind) -> Self {
        let body = "CRP".repeat(depth);
        Self::from_tokens(&format!("CR{body}FD"), kind, super::DEFAULT_W_STD, super::DEFAULT_B_STD)
            .expect("a valid ConvNet stack")
    }

    /// The layers in order.
    pub fn layers(&self) -> &[ConvLayer] {
        &self.layers[..self.len]
    }

    /// The token string.
    pub fn tokens(&self) -> String {
        self.layers().iter().map(|l| l.token()).collect()
    }

    /// The body: every layer before the readout.
    pub(crate) fn body(&self) -> &[ConvLayer] {
        &self.layers[..self.len - 2]
    }

    /// The readout layer (`F` or `G`).
    pub(crate) fn readout(&self) -> ConvLayer {
        self.layers[self.len - 2]
    }

    fn check_order(&self) -> std::result::Result<(), String> {
        let l = self.layers();
        if l.len() < 2
            || l[l.len() - 1] != ConvLayer::Dense
            || !matches!(l[l.len() - 2], ConvLayer::Flatten | ConvLayer::GlobalAvgPool)
        {
            return Err("the layers must end with a readout: F (flatten) or G (global avgpool), then D (dense)".into());
        }
        if let Some(bad) = self
            .body()
            .iter()
            .find(|x| matches!(x, ConvLayer::Flatten | ConvLayer::GlobalAvgPool | ConvLayer::Dense))
        {
            return Err(format!(
                "layer `{}` may only appear in the readout (…FD or …GD at the end)",
                bad.token()
            ));
        }
        Ok(())
    }

    /// The named form this stack has, if any: `("convvec", L)` or
    /// `("convnet", L)` with the default `W_std`, `b_std` left to the
    /// caller.
    pub(crate) fn named(&self) -> Option<(&'static str, usize)> {
        let t = self.tokens();
        let body = t.strip_suffix("FD")?;
        if !body.is_empty() && body.len() % 2 == 0 && body.as_bytes().chunks(2).all(|c| c == b"CR") {
            return Some(("convvec", body.len() / 2));
        }
        let rest = body.strip_prefix("CR")?;
        if rest.len() % 3 == 0 && rest.as_bytes().chunks(3).all(|c| c == b"CRP") {
            return Some(("convnet", rest.len() / 3));
        }
        None
    }

    /// The spatial size after each layer of the body for an `h × w`
    /// input, checked: every pooling needs at least 2 × 2.
    ///
    /// # Errors
    /// The reason, for [`KernelError::Image`].
    pub(crate) fn check_size(&self, h: usize, w: usize) -> std::result::Result<(usize, usize), String> {
        let (mut h1, mut w1) = (h, w);
        for (i, l) in self.body().iter().enumerate() {
            if *l == ConvLayer::Pool {
                if h1 < 2 || w1 < 2 {
                    return Err(format!(
                        "layer {} (AvgPool 2x2) gets a {h1}x{w1} map from a {h}x{w} image: too small to pool",
                        i + 1
                    ));
                }
                (h1, w1) = (h1 / 2, w1 / 2);
            }
        }
        Ok((h1, w1))
    }
}

/// The error for points that do not fit.
pub(crate) fn image_err(arch: &ConvArch, reason: String) -> KernelError {
    KernelError::Image {
        kernel: crate::KernelSpec::Conv(*arch).to_string(),
        reason,
    }
}

/// Check that `d`-dimensional points fit `shape` and the stack.
pub(crate) fn check_fit(arch: &ConvArch, shape: Option<ImageShape>, d: usize) -> Result<ImageShape> {
    let shape = shape.ok_or_else(|| {
        image_err(
            arch,
            format!(
                "needs the image shape (h x w x c) of its {d}-dimensional points; this data has none (a flat dataset?)"
            ),
        )
    })?;
    if shape.h == 0 || shape.w == 0 || shape.c == 0 {
        return Err(image_err(arch, format!("image shape {shape} has an empty dimension")));
    }
    let Some(dim) = shape.checked_dim() else {
        return Err(image_err(arch, format!("image shape {shape}: h·w·c overflows")));
    };
    if dim != d {
        return Err(image_err(
            arch,
            format!("image shape {shape} has {dim} values but the points have {d}"),
        ));
    }
    arch.check_size(shape.h, shape.w).map_err(|r| image_err(arch, r))?;
    Ok(shape)
}
