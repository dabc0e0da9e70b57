//! Shared helper of the fuzz targets: the loaders take paths, so each input
//! is written to a per-process scratch file first.

use std::path::PathBuf;

/// Write `bytes` to `name` in this process's scratch folder and return its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kip-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("scratch file");
    path
}
