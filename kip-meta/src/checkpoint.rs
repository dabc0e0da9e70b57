//! Checkpoints: a [`KipState`] in one file, written atomically.
//!
//! Layout: the magic `KIPCKPT1`, a little-endian `u64` header length, a JSON
//! header (step, shapes, kernels, RNG position, labels), the `f64` arrays
//! (support images, labels, Adam moments; little-endian, column-major), the
//! frozen-pixel mask (one byte each, column-major), and an FNV-1a 64
//! checksum of all that precedes it. The file is written atomically
//! ([`kip_data::write_atomic`]): a crash at any moment leaves the previous or
//! the new checkpoint, never a torn one.

use std::fs;
use std::path::Path;

use kip_data::PixelMask;

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::AdamState;
use crate::error::{MetaError, Result};
use crate::step::KipState;

const MAGIC: &[u8; 8] = b"KIPCKPT1";

/// The checkpoint header: what a resumed run checks against its own setup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Steps done.
    pub step: usize,
    /// Support size.
    pub n_support: usize,
    /// Image dimension.
    pub dim: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Kernel specs of the run.
    pub kernels: Vec<String>,
    /// Whether a frozen-pixel mask follows.
    pub has_frozen: bool,
    /// Class each support image came from.
    pub labels: Vec<usize>,
    rng_seed: Vec<u8>,
    rng_stream: u64,
    rng_word_pos: String,
    /// The Platt loss's log-temperature and its Adam moments (absent for
    /// MSE runs and older checkpoints: zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    temperature: Option<[f64; 3]>,
    /// The identity of the run that wrote it ([`run_identity`]): a resume
    /// refuses a checkpoint copied from another run (absent in older
    /// checkpoints: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// A run's identity: a hash of everything that defines its trajectory —
/// the data spec but its folder, the KIP parameters but the step count
/// (both may change on resume) — as 16 hex digits.
pub fn run_identity(config: &crate::RunConfig) -> String {
    let mut kip = config.kip.clone();
    kip.steps = 0;
    let mut data = config.data.clone();
    data.data_dir = None;
    let bytes = serde_json::to_vec(&(data, kip)).expect("the configuration serialises");
    format!("{:016x}", fnv1a(&bytes))
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn io_err(path: &Path, source: std::io::Error) -> MetaError {
    MetaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> MetaError {
    MetaError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Serialise a state (see the module docs for the layout).
pub fn to_bytes(state: &KipState, kernels: &[String], run_id: Option<&str>) -> Vec<u8> {
    let (n_s, d) = state.x_s.shape();
    let meta = CheckpointMeta {
        step: state.step,
        n_support: n_s,
        dim: d,
        n_classes: state.y_s.ncols(),
        kernels: kernels.to_vec(),
        has_frozen: state.frozen.is_some(),
        labels: state.labels.clone(),
        rng_seed: state.rng.get_seed().to_vec(),
        rng_stream: state.rng.get_stream(),
        rng_word_pos: state.rng.get_word_pos().to_string(),
        temperature: {
            let t = [state.log_temp, state.adam_t.m[0], state.adam_t.v[0]];
            (t != [0.0; 3]).then_some(t)
        },
        run_id: run_id.map(String::from),
    };
    let header = serde_json::to_vec(&meta).expect("header serialises");
    let mut out = Vec::with_capacity(16 + header.len() + 8 * 3 * (state.x_s.len() + state.y_s.len()));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for arr in [
        state.x_s.as_slice(),
        state.y_s.as_slice(),
        &state.adam_x.m,
        &state.adam_x.v,
        &state.adam_y.m,
        &state.adam_y.v,
    ] {
        for v in arr {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    if let Some(mask) = &state.frozen {
        // Column-major, as the support images.
        out.extend(mask.frozen().iter().map(|&f| u8::from(f)));
    }
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Save a state to `path` atomically, with the identity of its run.
///
/// # Errors
/// [`MetaError::Data`] when the file cannot be written (no partial file is
/// left).
pub fn save(path: &Path, state: &KipState, kernels: &[String], run_id: Option<&str>) -> Result<()> {
    Ok(kip_data::write_file_atomic(path, &to_bytes(state, kernels, run_id))?)
}

/// Read a state back.
///
/// # Errors
/// [`MetaError::Io`]; [`MetaError::Checkpoint`] for a wrong magic number, a
/// checksum mismatch, a truncated file or an inconsistent header.
pub fn load(path: &Path) -> Result<(KipState, CheckpointMeta)> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    from_bytes(path, &bytes)
}

fn from_bytes(path: &Path, bytes: &[u8]) -> Result<(KipState, CheckpointMeta)> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(bad(path, "not a kip checkpoint (bad magic number)"));
    }
    if bytes.len() < 24 {
        return Err(bad(
            path,
            format!("truncated: {} bytes, shorter than the header", bytes.len()),
        ));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    if fnv1a(body) != u64::from_le_bytes(tail.try_into().expect("8 bytes")) {
        return Err(bad(path, "checksum mismatch (truncated or corrupted file)"));
    }
    let hlen = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes")) as usize;
    if hlen > body.len() - 16 {
        return Err(bad(path, format!("header length {hlen} exceeds the file")));
    }
    let meta: CheckpointMeta =
        serde_json::from_slice(&body[16..16 + hlen]).map_err(|e| bad(path, format!("bad header: {e}")))?;
    let (n, d, c) = (meta.n_support, meta.dim, meta.n_classes);
    let n_f64 = 3 * n * d + 3 * n * c;
    let n_mask = if meta.has_frozen { n * d } else { 0 };
    let payload = &body[16 + hlen..];
    if payload.len() != 8 * n_f64 + n_mask || meta.labels.len() != n {
        return Err(bad(
            path,
            format!(
                "payload of {} bytes does not match {n} x {d} support, {c} classes",
                payload.len()
            ),
        ));
    }
    let mut vals = payload[..8 * n_f64]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")));
    let mut take = |k: usize| -> Vec<f64> { vals.by_ref().take(k).collect() };
    let x_s = DMatrix::from_vec(n, d, take(n * d));
    let y_s = DMatrix::from_vec(n, c, take(n * c));
    let adam_x = AdamState {
        m: take(n * d),
        v: take(n * d),
    };
    let adam_y = AdamState {
        m: take(n * c),
        v: take(n * c),
    };
    let frozen = meta.has_frozen.then(|| {
        let bits: Vec<bool> = payload[8 * n_f64..].iter().map(|&b| b != 0).collect();
        PixelMask::from_frozen(DMatrix::from_vec(n, d, bits))
    });
    let seed: [u8; 32] = meta
        .rng_seed
        .as_slice()
        .try_into()
        .map_err(|_| bad(path, "bad RNG seed"))?;
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(meta.rng_stream);
    rng.set_word_pos(meta.rng_word_pos.parse().map_err(|_| bad(path, "bad RNG position"))?);
    let state = KipState {
        step: meta.step,
        x_s,
        y_s,
        labels: meta.labels.clone(),
        adam_x,
        adam_y,
        frozen,
        rng,
        log_temp: meta.temperature.map_or(0.0, |t| t[0]),
        adam_t: AdamState {
            m: vec![meta.temperature.map_or(0.0, |t| t[1])],
            v: vec![meta.temperature.map_or(0.0, |t| t[2])],
        },
    };
    Ok((state, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn state() -> KipState {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let _: f64 = rng.random();
        KipState {
            step: 7,
            x_s: DMatrix::from_fn(3, 4, |i, j| (i * 4 + j) as f64 * 0.1 - 0.3),
            y_s: DMatrix::from_fn(3, 2, |i, j| (i + j) as f64),
            labels: vec![0, 1, 1],
            adam_x: AdamState {
                m: vec![0.5; 12],
                v: vec![0.25; 12],
            },
            adam_y: AdamState {
                m: vec![1.5; 6],
                v: vec![2.5; 6],
            },
            frozen: Some(PixelMask::from_frozen(DMatrix::from_fn(3, 4, |i, j| (i + j) % 3 == 0))),
            rng,
            log_temp: 0.7,
            adam_t: AdamState {
                m: vec![0.125],
                v: vec![1e-3],
            },
        }
    }

    #[test]
    fn round_trip_is_exact_including_the_rng_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.bin");
        let s = state();
        save(&p, &s, &["fc1-ntk".into()], None).unwrap();
        let (back, meta) = load(&p).unwrap();
        assert_eq!(back, s);
        assert_eq!(meta.kernels, vec!["fc1-ntk".to_string()]);
        let (mut r1, mut r2) = (s.rng.clone(), back.rng.clone());
        assert_eq!(r1.random::<u64>(), r2.random::<u64>());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn truncated_or_corrupted_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.bin");
        let bytes = to_bytes(&state(), &[], None);
        for (name, b) in [
            ("truncated", bytes[..bytes.len() - 20].to_vec()),
            ("flipped", {
                let mut b = bytes.clone();
                b[40] ^= 1;
                b
            }),
            ("magic", {
                let mut b = bytes.clone();
                b[0] = b'X';
                b
            }),
        ] {
            std::fs::write(&p, &b).unwrap();
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains("ckpt.bin"), "{name}: {e}");
        }
    }
}
