//! `KernelSpec`: kernel names such as `fc1-ntk`, `fc2-nngp:w_std=1.4,b_std=0.1`,
//! `fc1-ntk:act=erf`, `rbf:gamma=0.5`, `linear`, and the convolutional
//! `convvec3-ntk`, `convnet3-nngp`, `conv-ntk:layers=CRCRPFD`.

use std::fmt;
use std::str::FromStr;

use crate::conv::ConvArch;
use crate::error::{KernelError, Result};
use crate::fc::{Activation, FcKind, FcParams};
use crate::rf::{RfSpec, DEFAULT_CHANNELS, DEFAULT_MODELS};

/// The accepted forms, quoted in every parse error.
pub const ACCEPTED: &str = "fcL-ntk or fcL-nngp (L = 0..=64 hidden layers) with optional \
:act=relu|erf,w_std=X,b_std=X (defaults relu, sqrt(2), 0.1); rbf[:gamma=X] (default 1); linear; \
convvecL-ntk|nngp (L = 1..=31: L x [Conv, Relu], Flatten, Dense); convnetL-ntk|nngp (L = 0..=20: Conv, Relu, \
L x [Conv, Relu, AvgPool], Flatten, Dense); conv-ntk|nngp:layers=TOKENS (C conv 3x3, R relu, E erf, P avgpool 2x2, \
then F flatten or G global avgpool, then D dense; e.g. CRCRPFD); conv kernels take w_std=X,b_std=X and precision=f32 too; \
random features of finite networks: rf-convnetL, rf-convvecL, rf-conv:layers=TOKENS (ReLU only) with \
channels=C,models=M,seed=S (defaults 64, 4, 0) and w_std, b_std";

/// Default weight standard deviation of FC kernels (√2, the reference's).
pub const DEFAULT_W_STD: f64 = std::f64::consts::SQRT_2;
/// Default bias standard deviation of FC kernels.
pub const DEFAULT_B_STD: f64 = 0.1;
/// Default RBF bandwidth `γ` in `exp(−γ‖x−x'‖²/d)`.
pub const DEFAULT_GAMMA: f64 = 1.0;
/// Largest accepted FC depth.
pub const MAX_DEPTH: usize = 64;

/// A kernel, by name and parameters. `spec.to_string().parse() == spec`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelSpec {
    /// Fully connected network kernel (see [`crate::FcParams`]).
    Fc(FcParams),
    /// `exp(−γ‖x−x'‖²/d)`.
    Rbf {
        /// Bandwidth γ > 0.
        gamma: f64,
    },
    /// `⟨x, x'⟩/d`.
    Linear,
    /// Convolutional network kernel on images (see [`crate::ConvKernel`]).
    Conv(ConvArch),
    /// Random features of finite ConvNets (see [`crate::RfKernel`]).
    Rf(RfSpec),
}

impl KernelSpec {
    /// The reference's default: FC1 NTK, ReLU, W_std = √2, b_std = 0.1.
    pub fn fc_ntk(depth: usize) -> Self {
        Self::Fc(FcParams {
            depth,
            kind: FcKind::Ntk,
            act: Activation::Relu,
            w_std: DEFAULT_W_STD,
            b_std: DEFAULT_B_STD,
        })
    }

    /// Check parameter ranges.
    ///
    /// # Errors
    /// [`KernelError::Param`] naming the parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            KernelSpec::Fc(p) => {
                check_stds(p.w_std, p.b_std)?;
                if p.depth > MAX_DEPTH {
                    return Err(KernelError::Param {
                        name: "depth",
                        value: p.depth as f64,
                        expected: "0..=64",
                    });
                }
            }
            KernelSpec::Rbf { gamma } => {
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(KernelError::Param {
                        name: "gamma",
                        value: gamma,
                        expected: "a finite number > 0",
                    });
                }
            }
            KernelSpec::Linear => {}
            KernelSpec::Conv(a) => check_stds(a.w_std, a.b_std)?,
            KernelSpec::Rf(r) => {
                check_stds(r.arch.w_std, r.arch.b_std)?;
                for (name, v) in [("channels", r.channels), ("models", r.models)] {
                    if !(1..=4096).contains(&v) {
                        return Err(KernelError::Param {
                            name,
                            value: v as f64,
                            expected: "an integer in 1..=4096",
                        });
                    }
                }
                if r.arch.layers().contains(&crate::ConvLayer::Erf) {
                    return Err(KernelError::Param {
                        name: "layers",
                        value: f64::NAN,
                        expected: "ReLU activations only (no E) in random-feature networks",
                    });
                }
            }
        }
        Ok(())
    }

    /// The same kernel with its pair passes in single precision where it
    /// has that option (convolutional kernels: `precision=f32`); every
    /// other spec unchanged (the FC kernels' single precision is a
    /// property of KIP's step, random features are f32 already).
    pub fn in_single_precision(self) -> Self {
        match self {
            KernelSpec::Conv(mut a) => {
                a.f32 = true;
                KernelSpec::Conv(a)
            }
            other => other,
        }
    }

    /// Build the kernel this spec names.
    pub fn build(&self) -> crate::AnyKernel {
        crate::AnyKernel::from_spec(*self)
    }

    /// Parse a comma-separated list of specs (`fc1-ntk,fc2-ntk`); commas
    /// inside a spec's parameter list are kept with that spec.
    ///
    /// # Errors
    /// As [`KernelSpec::from_str`], for the first bad entry; an empty list.
    pub fn parse_list(s: &str) -> Result<Vec<KernelSpec>> {
        let mut out: Vec<String> = Vec::new();
        for piece in s.split(',') {
            let is_param = piece.contains('=') && !piece.contains(':');
            match out.last_mut() {
                Some(last) if is_param => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => out.push(piece.to_string()),
            }
        }
        let specs = out.iter().map(|p| p.parse()).collect::<Result<Vec<_>>>()?;
        if specs.is_empty() {
            return Err(spec_err(s, "empty kernel list".into()));
        }
        Ok(specs)
    }
}

/// `W_std > 0` and `b_std ≥ 0`, both finite.
pub(crate) fn check_stds(w_std: f64, b_std: f64) -> Result<()> {
    if !(w_std.is_finite() && w_std > 0.0) {
        return Err(KernelError::Param {
            name: "w_std",
            value: w_std,
            expected: "a finite number > 0",
        });
    }
    if !(b_std.is_finite() && b_std >= 0.0) {
        return Err(KernelError::Param {
            name: "b_std",
            value: b_std,
            expected: "a finite number >= 0",
        });
    }
    Ok(())
}

fn spec_err(input: &str, reason: String) -> KernelError {
    KernelError::Spec {
        input: kip_core::ellipsize(input, 80),
        reason: kip_core::ellipsize(&reason, 240),
        accepted: ACCEPTED,
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn did_you_mean(name: &str) -> String {
    let known = [
        "fc1-ntk",
        "fc1-nngp",
        "fc2-ntk",
        "fc3-ntk",
        "rbf",
        "linear",
        "convvec3-ntk",
        "convnet3-ntk",
        "conv-ntk",
    ];
    let best = known.iter().min_by_key(|k| levenshtein(name, k)).expect("non-empty");
    if levenshtein(name, best) <= 3 {
        format!("unknown kernel `{name}` (did you mean `{best}`?)")
    } else {
        format!("unknown kernel `{name}`")
    }
}

/// `ntk` or `nngp`.
fn parse_kind(input: &str, kind: &str) -> Result<FcKind> {
    match kind {
        "ntk" => Ok(FcKind::Ntk),
        "nngp" => Ok(FcKind::Nngp),
        _ => Err(spec_err(input, format!("kernel kind `{kind}` (expected ntk or nngp)"))),
    }
}

/// The convolutional forms, or `None` for a name that is not one.
fn parse_conv(input: &str, name: &str, kv: &[(&str, &str)]) -> Result<Option<KernelSpec>> {
    let (family, depth, kind) = if let Some(kind) = name.strip_prefix("conv-") {
        ("conv", 0, kind)
    } else if let Some((family, rest)) = ["convvec", "convnet"]
        .iter()
        .find_map(|f| name.strip_prefix(f).map(|r| (*f, r)))
    {
        let (depth, kind) = rest
            .split_once('-')
            .ok_or_else(|| spec_err(input, format!("`{name}`: expected {family}L-ntk or {family}L-nngp")))?;
        let depth: usize = depth
            .parse()
            .map_err(|_| spec_err(input, format!("depth `{depth}` is not a non-negative integer")))?;
        (family, depth, kind)
    } else {
        return Ok(None);
    };
    let kind = parse_kind(input, kind)?;
    let (mut w_std, mut b_std, mut layers, mut f32) = (DEFAULT_W_STD, DEFAULT_B_STD, None, false);
    for &(k, v) in kv {
        match k {
            "w_std" => w_std = parse_f64(input, k, v)?,
            "b_std" => b_std = parse_f64(input, k, v)?,
            "layers" if family == "conv" => layers = Some(v),
            "precision" => {
                f32 = match v {
                    "f32" => true,
                    "f64" => false,
                    _ => return Err(spec_err(input, format!("precision=`{v}` (expected f32 or f64)"))),
                }
            }
            _ => {
                let known = if family == "conv" {
                    "layers, w_std, b_std, precision"
                } else {
                    "w_std, b_std, precision"
                };
                return Err(spec_err(
                    input,
                    format!("unknown parameter `{k}` for {family} kernels ({known})"),
                ));
            }
        }
    }
    let tokens = match family {
        "convvec" if (1..=31).contains(&depth) => format!("{}FD", "CR".repeat(depth)),
        "convnet" if depth <= 20 => format!("CR{}FD", "CRP".repeat(depth)),
        "convvec" => return Err(spec_err(input, format!("depth {depth} (expected 1..=31)"))),
        "convnet" => return Err(spec_err(input, format!("depth {depth} (expected 0..=20)"))),
        _ => layers
            .ok_or_else(|| {
                spec_err(
                    input,
                    "conv kernels need layers=TOKENS (e.g. conv-ntk:layers=CRCRPFD)".into(),
                )
            })?
            .to_string(),
    };
    let mut arch = ConvArch::from_tokens(&tokens, kind, w_std, b_std).map_err(|r| spec_err(input, r))?;
    arch.f32 = f32;
    Ok(Some(KernelSpec::Conv(arch)))
}

/// `rf-<conv name>` with `channels`, `models`, `seed` and the conv
/// parameters: the conv stack of the name (its NNGP readout).
fn parse_rf(input: &str, conv: &str, kv: &[(&str, &str)]) -> Result<KernelSpec> {
    let (mut channels, mut models, mut seed) = (DEFAULT_CHANNELS, DEFAULT_MODELS, 0u64);
    let mut rest = Vec::new();
    for &(k, v) in kv {
        let int = || {
            v.parse::<u64>()
                .map_err(|_| spec_err(input, format!("parameter {k}=`{v}` is not a non-negative integer")))
        };
        match k {
            "channels" => channels = int()? as usize,
            "models" => models = int()? as usize,
            "seed" => seed = int()?,
            "precision" => {
                return Err(spec_err(
                    input,
                    "random-feature kernels always run in f32 (no precision parameter)".into(),
                ))
            }
            _ => rest.push((k, v)),
        }
    }
    let name = format!("{conv}-nngp");
    match parse_conv(input, &name, &rest) {
        Ok(Some(KernelSpec::Conv(arch))) => Ok(KernelSpec::Rf(RfSpec {
            arch,
            channels,
            models,
            seed,
        })),
        Ok(_) => Err(spec_err(
            input,
            format!("`rf-{conv}`: expected rf-convnetL, rf-convvecL or rf-conv:layers=TOKENS"),
        )),
        Err(KernelError::Spec { reason, .. }) => Err(spec_err(input, reason.replace("-nngp", ""))),
        Err(e) => Err(e),
    }
}

fn parse_f64(input: &str, key: &str, v: &str) -> Result<f64> {
    v.parse::<f64>()
        .map_err(|_| spec_err(input, format!("parameter {key}=`{v}` is not a number")))
}

impl FromStr for KernelSpec {
    type Err = KernelError;

    fn from_str(input: &str) -> Result<Self> {
        let s = input.trim();
        let (name, params) = match s.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        let mut kv: Vec<(&str, &str)> = Vec::new();
        if let Some(p) = params {
            for item in p.split(',') {
                let (k, v) = item
                    .split_once('=')
                    .ok_or_else(|| spec_err(input, format!("parameter `{item}` is not key=value")))?;
                if kv.iter().any(|(k0, _)| *k0 == k.trim()) {
                    return Err(spec_err(input, format!("parameter `{}` given twice", k.trim())));
                }
                kv.push((k.trim(), v.trim()));
            }
        }
        let spec = if let Some(conv) = name.strip_prefix("rf-") {
            parse_rf(input, conv, &kv)?
        } else if let Some(spec) = parse_conv(input, name, &kv)? {
            spec
        } else if let Some(rest) = name.strip_prefix("fc") {
            let (depth, kind) = rest
                .split_once('-')
                .ok_or_else(|| spec_err(input, did_you_mean(name)))?;
            let depth: usize = depth
                .parse()
                .map_err(|_| spec_err(input, format!("depth `{depth}` is not a non-negative integer")))?;
            let kind = parse_kind(input, kind)?;
            let mut p = FcParams {
                depth,
                kind,
                act: Activation::Relu,
                w_std: DEFAULT_W_STD,
                b_std: DEFAULT_B_STD,
            };
            for (k, v) in kv {
                match k {
                    "act" => {
                        p.act = match v {
                            "relu" => Activation::Relu,
                            "erf" => Activation::Erf,
                            _ => return Err(spec_err(input, format!("activation `{v}` (expected relu or erf)"))),
                        }
                    }
                    "w_std" => p.w_std = parse_f64(input, k, v)?,
                    "b_std" => p.b_std = parse_f64(input, k, v)?,
                    _ => {
                        return Err(spec_err(
                            input,
                            format!("unknown parameter `{k}` for fc kernels (act, w_std, b_std)"),
                        ))
                    }
                }
            }
            KernelSpec::Fc(p)
        } else if name == "rbf" {
            let mut gamma = DEFAULT_GAMMA;
            for (k, v) in kv {
                match k {
                    "gamma" => gamma = parse_f64(input, k, v)?,
                    _ => return Err(spec_err(input, format!("unknown parameter `{k}` for rbf (gamma)"))),
                }
            }
            KernelSpec::Rbf { gamma }
        } else if name == "linear" {
            if let Some((k, _)) = kv.first() {
                return Err(spec_err(input, format!("linear takes no parameters, got `{k}`")));
            }
            KernelSpec::Linear
        } else {
            return Err(spec_err(input, did_you_mean(name)));
        };
        spec.validate().map_err(|e| spec_err(input, e.to_string()))?;
        Ok(spec)
    }
}

fn kind_name(kind: FcKind) -> &'static str {
    match kind {
        FcKind::Ntk => "ntk",
        FcKind::Nngp => "nngp",
    }
}

/// The non-default `w_std`, `b_std` as parameters.
fn push_stds(params: &mut Vec<String>, w_std: f64, b_std: f64) {
    if w_std != DEFAULT_W_STD {
        params.push(format!("w_std={w_std}"));
    }
    if b_std != DEFAULT_B_STD {
        params.push(format!("b_std={b_std}"));
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[String]) -> fmt::Result {
    if !params.is_empty() {
        write!(f, ":{}", params.join(","))?;
    }
    Ok(())
}

impl fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelSpec::Fc(p) => {
                write!(f, "fc{}-{}", p.depth, kind_name(p.kind))?;
                let mut params = Vec::new();
                if p.act == Activation::Erf {
                    params.push("act=erf".to_string());
                }
                push_stds(&mut params, p.w_std, p.b_std);
                write_params(f, &params)
            }
            KernelSpec::Rbf { gamma } if *gamma == DEFAULT_GAMMA => write!(f, "rbf"),
            KernelSpec::Rbf { gamma } => write!(f, "rbf:gamma={gamma}"),
            KernelSpec::Linear => write!(f, "linear"),
            KernelSpec::Conv(a) => {
                let kind = kind_name(a.kind);
                let mut params = Vec::new();
                match a.named() {
                    Some((family, depth)) => write!(f, "{family}{depth}-{kind}")?,
                    None => {
                        write!(f, "conv-{kind}")?;
                        params.push(format!("layers={}", a.tokens()));
                    }
                }
                push_stds(&mut params, a.w_std, a.b_std);
                if a.f32 {
                    params.push("precision=f32".into());
                }
                write_params(f, &params)
            }
            KernelSpec::Rf(r) => {
                let a = &r.arch;
                let mut params = Vec::new();
                match a.named() {
                    Some((family, depth)) => write!(f, "rf-{family}{depth}")?,
                    None => {
                        write!(f, "rf-conv")?;
                        params.push(format!("layers={}", a.tokens()));
                    }
                }
                params.push(format!("channels={},models={}", r.channels, r.models));
                if r.seed != 0 {
                    params.push(format!("seed={}", r.seed));
                }
                push_stds(&mut params, a.w_std, a.b_std);
                write_params(f, &params)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples_and_round_trips() {
        for s in [
            "fc1-ntk",
            "fc3-nngp",
            "fc2-ntk:w_std=1,b_std=0",
            "fc1-ntk:act=erf",
            "rbf:gamma=0.5",
            "rbf",
            "linear",
            "fc0-nngp:act=erf,w_std=1.5,b_std=0.25",
            "convvec3-ntk",
            "convvec1-nngp:b_std=0",
            "convnet3-ntk",
            "convnet1-nngp",
            "conv-ntk:layers=CRCRGD",
            "conv-nngp:layers=CEPFD,w_std=1.5",
            "convvec3-ntk:precision=f32",
            "conv-ntk:layers=CRCRGD,b_std=0.2,precision=f32",
            "rf-convnet3:channels=64,models=4",
            "rf-convvec2:channels=8,models=1,seed=7,b_std=0",
            "rf-conv:layers=CRPCRPCRPFD,channels=128,models=8",
            "rf-conv:layers=CRCRGD,channels=16,models=2,w_std=1.5",
        ] {
            let spec: KernelSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s, "print(parse(s)) == s");
            assert_eq!(spec.to_string().parse::<KernelSpec>().unwrap(), spec);
        }
        let spec: KernelSpec = "fc1-ntk:b_std=0.1,w_std=1.4142135623730951".parse().unwrap();
        assert_eq!(spec, KernelSpec::fc_ntk(1));
    }

    #[test]
    fn errors_list_what_is_accepted() {
        for (s, needle) in [
            ("fc1-ntq", "expected ntk or nngp"),
            ("fcx-ntk", "depth"),
            ("fc1-ntk:act=tanh", "activation"),
            ("fc1-ntk:w_std=-1", "w_std"),
            ("fc1-ntk:w_std=abc", "not a number"),
            ("fc1-ntk:b_std=nan", "b_std"),
            ("fc1-ntk:foo=1", "unknown parameter"),
            ("fc1-ntk:w_std", "key=value"),
            ("rbf:gamma=0", "gamma"),
            ("linear:gamma=1", "no parameters"),
            ("fc99-ntk", "depth"),
            ("fc1-ntk:w_std=1,w_std=2", "twice"),
            ("convvec0-ntk", "depth 0"),
            ("convnet21-ntk", "depth 21"),
            ("convvec3-ntq", "expected ntk or nngp"),
            ("convvec3", "convvecL-ntk"),
            ("conv-ntk", "layers=TOKENS"),
            ("conv-ntk:layers=CRXFD", "unknown layer token `X`"),
            ("conv-ntk:layers=CRCR", "must end with a readout"),
            ("conv-ntk:layers=CFRFD", "only appear in the readout"),
            ("convnet2-ntk:layers=CRFD", "unknown parameter"),
            ("convvec2-ntk:w_std=0", "w_std"),
        ] {
            let e = s.parse::<KernelSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
            assert!(e.contains("accepted"), "{s}: {e}");
        }
        let e = "lineer".parse::<KernelSpec>().unwrap_err().to_string();
        assert!(e.contains("did you mean `linear`"), "{e}");
        let e = "fc1ntk".parse::<KernelSpec>().unwrap_err().to_string();
        assert!(e.contains("did you mean `fc1-ntk`"), "{e}");
    }

    #[test]
    fn lists_keep_parameter_commas() {
        let v = KernelSpec::parse_list("fc1-ntk,fc2-ntk:w_std=1,b_std=0,rbf").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].to_string(), "fc2-ntk:w_std=1,b_std=0");
        assert!(KernelSpec::parse_list("fc1-ntk,bogus").is_err());
        let v = KernelSpec::parse_list("convvec2-ntk,conv-ntk:layers=CRPFD,w_std=1").unwrap();
        assert_eq!(v[1].to_string(), "conv-ntk:layers=CRPFD,w_std=1");
        // The named forms print by name whatever form they were given in.
        let s: KernelSpec = "conv-nngp:layers=CRCRPCRPFD".parse().unwrap();
        assert_eq!(s.to_string(), "convnet2-nngp");
        // ConvNet depth 0 (Conv, ReLU, Flatten, Dense) is Conv-Vec depth 1.
        let s: KernelSpec = "convnet0-ntk".parse().unwrap();
        assert_eq!(s, "convvec1-ntk".parse().unwrap());
        assert_eq!(s.to_string(), "convvec1-ntk");
    }
}
