//! Whole-file reading with transparent gzip decompression.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{DataError, Result};

/// Upper bound for the capacity hint taken from a gzip trailer (1 GiB); the
/// vector still grows past it if the stream really is longer.
const MAX_HINT: u64 = 1 << 30;

/// Reads the whole file, decompressing it when it starts with the gzip magic
/// bytes `1f 8b` (the extension is not consulted).
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read, [`DataError::Gzip`] when
/// the gzip stream is corrupt or truncated.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_maybe_gz(raw, path)
}

/// Decompresses `raw` if it is gzip, else returns it unchanged; `path` is
/// only used in error messages.
pub(crate) fn decode_maybe_gz(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return Ok(raw);
    }
    // ISIZE (last 4 bytes, little-endian) = uncompressed length mod 2^32 of
    // the last member; used only as a capacity hint, capped by the maximal
    // deflate ratio (1032:1) and by MAX_HINT.
    let hint = if raw.len() >= 18 {
        let t = &raw[raw.len() - 4..];
        let isize = u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64;
        isize.min(raw.len() as u64 * 1032).min(MAX_HINT)
    } else {
        0
    };
    let mut out = Vec::with_capacity(hint as usize);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::Gzip {
            path: path.to_path_buf(),
            source: e,
        })?;
    Ok(out)
}

/// Returns the first existing path among `dir/name` and `dir/name.gz`.
pub(crate) fn find_plain_or_gz(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Converts bytes to `f32` (values 0..255) in a tight, vectorisable loop.
pub(crate) fn bytes_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32).collect()
}

/// Writes `path` atomically: `write` fills a temporary file with a unique
/// name in the same folder, which is flushed, synced (`fsync`) and renamed
/// over `path`; then the folder is synced, so the rename itself survives a
/// crash. At any moment `path` holds the old file or the complete new one,
/// never a torn one. On any error the temporary file is removed and `path`
/// is untouched.
///
/// This is the one atomic writer of the workspace: support sets, pictures,
/// checkpoints, run configurations and summaries all go through it.
///
/// It never replaces what is not a file of ours: `path` must be a new name
/// or a regular file. A symbolic link is followed: its target (a regular
/// file, or a new name in an existing folder) is written atomically in the
/// target's folder and the link stays. A folder, FIFO, device or socket is
/// refused before anything is written.
///
/// # Errors
/// [`DataError::Invalid`] for a path without a file name; [`DataError::Io`]
/// naming the file when it is not a regular file or cannot be created,
/// written, synced or renamed; whatever `write` returns.
///
/// # Examples
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("note.txt");
/// kip_data::write_atomic(&path, |w| w.write_all(b"hello").map_err(|e| kip_data::DataError::io(&path, e)))?;
/// assert_eq!(std::fs::read(&path)?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if path.file_name().is_none() {
        return Err(DataError::invalid(format!(
            "output path {} has no file name",
            path.display()
        )));
    }
    let target = destination(path)?;
    let path = target.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| DataError::invalid(format!("output path {} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let mut w = BufWriter::new(file);
    let result = write(&mut w).and_then(|()| {
        let f = w.into_inner().map_err(|e| DataError::io(path, e.into_error()))?;
        f.sync_all().map_err(|e| DataError::io(path, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // The rename is durable only once the folder is synced. Some file
    // systems refuse to sync a folder; the new file is in place either way.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Checks, before any work, that [`write_atomic`] could write `path`: the
/// destination is a new name or a regular file (or a link to one), and a
/// file can be created in its folder (a probe file is created and removed).
///
/// # Errors
/// As [`write_atomic`] would fail: [`DataError::Io`] naming the file.
pub fn check_writable(path: &Path) -> Result<()> {
    let target = destination(path)?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(".kip-probe.{}", std::process::id()));
    File::create(&probe).map_err(|e| DataError::io(path, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Where [`write_atomic`] writes for `path`: `path` itself when it is new
/// or a regular file; a symbolic link's final target (resolved against the
/// link's folder) when that is; an error otherwise.
fn destination(path: &Path) -> Result<PathBuf> {
    use std::io::{Error, ErrorKind};
    let refuse = |what: &str| {
        DataError::io(
            path,
            Error::new(
                ErrorKind::InvalidInput,
                format!("{what}: kip writes only regular files and new names, and never replaces anything else"),
            ),
        )
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(path.to_path_buf());
    }
    if kind.is_dir() {
        return Err(refuse("is a folder"));
    }
    if !kind.is_symlink() {
        return Err(refuse("is not a regular file (a FIFO, device or socket)"));
    }
    // A link: follow the chain to the last name (which may not exist yet).
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = std::fs::read_link(&target).map_err(|e| DataError::io(path, e))?;
                target = match target.parent() {
                    Some(parent) if next.is_relative() => parent.join(next),
                    _ => next,
                };
            }
            Ok(m) if m.file_type().is_file() => return Ok(target),
            Ok(_) => {
                return Err(refuse(&format!(
                    "links to {}, which is not a regular file",
                    target.display()
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let folder_exists = target.parent().is_none_or(|p| p.as_os_str().is_empty() || p.is_dir());
                return if folder_exists {
                    Ok(target)
                } else {
                    Err(refuse(&format!(
                        "links to {}, whose folder does not exist",
                        target.display()
                    )))
                };
            }
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Err(refuse("is a chain of more than 40 symbolic links"))
}

/// [`write_atomic`] of a byte buffer.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).map_err(|e| DataError::io(path, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_raw_are_transparent() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.bin.gz"); // misleading extension on purpose
        std::fs::write(&raw, b"hello").unwrap();
        assert_eq!(read_maybe_gz(&raw).unwrap(), b"hello");
        let gz = dir.path().join("b");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"world").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read_maybe_gz(&gz).unwrap(), b"world");
    }
}

#[cfg(test)]
mod atomic_tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        write_file_atomic(&p, b"old").unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(b"partial").unwrap();
            Err(DataError::invalid("stop"))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        write_file_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(matches!(
            write_file_atomic(Path::new("/"), b"x"),
            Err(DataError::Invalid { .. })
        ));
    }
}

#[cfg(all(test, unix))]
mod destination_tests {
    use super::*;

    #[test]
    fn a_fifo_or_folder_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(ok.success());
        let e = write_file_atomic(&fifo, b"data").unwrap_err().to_string();
        assert!(e.contains("pipe") && e.contains("not a regular file"), "{e}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo_like());
        let e = write_file_atomic(dir.path(), b"data").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        // Nothing else appeared (no temporary file).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn check_writable_refuses_what_write_atomic_would() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("new.npy")).is_ok());
        assert!(check_writable(dir.path()).is_err());
        let e = check_writable(&dir.path().join("missing").join("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.npy"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no probe left");
    }

    #[test]
    fn a_symlink_has_its_target_replaced_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let target = sub.join("real.bin");
        std::fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink("sub/real.bin", &link).unwrap();
        write_file_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // A dangling link to a new name in an existing folder is created there.
        let dangling = dir.path().join("new.bin");
        std::os::unix::fs::symlink(sub.join("fresh.bin"), &dangling).unwrap();
        write_file_atomic(&dangling, b"x").unwrap();
        assert_eq!(std::fs::read(sub.join("fresh.bin")).unwrap(), b"x");
        // A link to a FIFO is refused.
        let fifo = sub.join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let to_fifo = dir.path().join("to_fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let e = write_file_atomic(&to_fifo, b"x").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    /// `FileType::is_fifo` without importing the Unix extension trait at
    /// every use.
    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for std::fs::FileType {
        fn is_fifo_like(&self) -> bool {
            std::os::unix::fs::FileTypeExt::is_fifo(self)
        }
    }
}
