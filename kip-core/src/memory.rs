//! The memory rule: before kip allocates something large it computes the
//! bytes, with overflow-checked arithmetic, and refuses a request that
//! exceeds the memory this process can get, naming the size and what
//! asked for it — instead of letting the allocator abort the process (a
//! wrapped or absurd size) or the kernel's OOM killer end it later
//! (a size the allocator grants lazily).
//!
//! What "can get" means: the smallest of `MemAvailable + SwapFree`
//! (`/proc/meminfo`), the cgroup v2 limit less current use
//! (`/sys/fs/cgroup/memory.max`, when one is set) and `KIP_MEMORY_LIMIT`
//! (bytes, or with a `K`/`M`/`G`/`T` suffix; for tests and for users who
//! share a machine). Where none of these is known, only sizes that do not
//! fit in a `u64` are refused.

use std::fmt;

/// The environment variable that caps the memory kip plans to use.
pub const MEMORY_ENV: &str = "KIP_MEMORY_LIMIT";

/// A refused request: what asked, how much it needs (`None`: more than
/// `u64::MAX` bytes), how much there is and where that figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRefusal {
    /// What needs the memory, in the caller's words (names the flag or
    /// argument and the sizes that drive it).
    pub what: String,
    /// Bytes needed; `None` when the product overflows.
    pub need: Option<u64>,
    /// Bytes available.
    pub available: u64,
    /// Which limit `available` is.
    pub source: &'static str,
}

impl fmt::Display for MemoryRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let need = match self.need {
            Some(b) => format_bytes(b),
            None => "more than 18 EB (the size overflows)".to_string(),
        };
        write!(
            f,
            "{} needs {need} of memory, but {} is available ({}); use smaller sizes",
            self.what,
            format_bytes(self.available),
            self.source
        )
    }
}

impl std::error::Error for MemoryRefusal {}

/// `n` bytes in decimal units (`32.0 TB`, `800 B`).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `s` shortened for an error message: at most `max` characters of it,
/// then `… (N characters)`; unchanged when it is short enough. User input
/// echoed in errors goes through this, so that a 120,000-character flag
/// value does not flood the terminal.
pub fn ellipsize(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({n} characters)")
}

/// The bytes of `dims.product()` elements of `elem` bytes each; `None`
/// on overflow.
pub fn bytes_of(dims: &[usize], elem: usize) -> Option<u64> {
    dims.iter().try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// The sum of several byte counts; `None` if any is `None` or the sum
/// overflows.
pub fn sum_bytes(parts: &[Option<u64>]) -> Option<u64> {
    parts.iter().try_fold(0u64, |acc, p| acc.checked_add((*p)?))
}

/// Parse a `KIP_MEMORY_LIMIT` value: bytes, or a number with a `K`, `M`,
/// `G` or `T` suffix (powers of 1000; a trailing `B` is allowed).
pub fn parse_limit(s: &str) -> Option<u64> {
    let t = s.trim().trim_end_matches(['B', 'b']);
    let (num, mul) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1e3),
        'm' | 'M' => (&t[..t.len() - 1], 1e6),
        'g' | 'G' => (&t[..t.len() - 1], 1e9),
        't' | 'T' => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * mul < u64::MAX as f64).then_some((v * mul) as u64)
}

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    };
    Some(field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0)))
}

fn cgroup_available() -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max": no limit
    let current: u64 = read("memory.current").and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    Some(max.saturating_sub(current))
}

/// The memory this process can get now and which limit that is; `None`
/// where nothing is known (not Linux, no `KIP_MEMORY_LIMIT`).
///
/// An unparsable `KIP_MEMORY_LIMIT` is ignored here; front ends check it
/// with [`parse_limit`] and refuse it.
pub fn available_memory() -> Option<(u64, &'static str)> {
    let env = std::env::var(MEMORY_ENV).ok().and_then(|s| parse_limit(&s));
    let candidates = [
        (meminfo_available(), "MemAvailable + SwapFree"),
        (cgroup_available(), "the cgroup's memory.max less its current use"),
        (env, "KIP_MEMORY_LIMIT"),
    ];
    candidates
        .into_iter()
        .filter_map(|(v, s)| v.map(|v| (v, s)))
        .min_by_key(|(v, _)| *v)
}

/// Refuse `need` bytes (`None`: an overflowing size) when they exceed
/// [`available_memory`]; `what` names the request (the flag or argument and
/// the sizes), built only on refusal.
///
/// # Errors
/// [`MemoryRefusal`] with the sizes.
pub fn check_memory(need: Option<u64>, what: impl FnOnce() -> String) -> Result<(), MemoryRefusal> {
    let avail = available_memory();
    let fits = match (need, avail) {
        (None, _) => false,
        (Some(n), Some((a, _))) => n <= a,
        (Some(_), None) => true,
    };
    if fits {
        return Ok(());
    }
    let (available, source) = avail.unwrap_or((u64::MAX, "no limit known"));
    Err(MemoryRefusal {
        what: what(),
        need,
        available,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_overflow_to_none() {
        assert_eq!(bytes_of(&[2_000_000, 2_000_000], 8), Some(32_000_000_000_000));
        assert_eq!(bytes_of(&[usize::MAX, 2], 8), None);
        assert_eq!(sum_bytes(&[Some(1), Some(2)]), Some(3));
        assert_eq!(sum_bytes(&[Some(u64::MAX), Some(1)]), None);
        assert_eq!(sum_bytes(&[Some(1), None]), None);
    }

    #[test]
    fn long_input_is_shortened_for_messages() {
        assert_eq!(ellipsize("fc1-ntk", 10), "fc1-ntk");
        assert_eq!(ellipsize(&"ab".repeat(50), 4), "abab… (100 characters)");
        assert_eq!(ellipsize("ééééé", 2), "éé… (5 characters)");
    }

    #[test]
    fn limits_parse_with_suffixes() {
        assert_eq!(parse_limit("1000"), Some(1000));
        assert_eq!(parse_limit("2G"), Some(2_000_000_000));
        assert_eq!(parse_limit("1.5 MB"), Some(1_500_000));
        assert_eq!(parse_limit("-1"), None);
        assert_eq!(parse_limit("lots"), None);
        assert_eq!(parse_limit(""), None);
    }

    #[test]
    fn bytes_read_in_decimal_units() {
        assert_eq!(format_bytes(800), "800 B");
        assert_eq!(format_bytes(32_000_000_000_000), "32.0 TB");
        assert_eq!(format_bytes(1_500_000), "1.5 MB");
    }

    #[test]
    fn an_overflowing_or_absurd_request_is_refused_with_its_name() {
        let e = check_memory(None, || "--width 1e30".into()).unwrap_err();
        assert!(
            e.to_string().contains("--width 1e30") && e.to_string().contains("overflows"),
            "{e}"
        );
        // More than any machine this runs on has (18 EB).
        if available_memory().is_some() {
            let e = check_memory(Some(u64::MAX), || "a Gram matrix".into()).unwrap_err();
            assert!(e.to_string().starts_with("a Gram matrix needs 18.4 EB"), "{e}");
        }
        assert!(check_memory(Some(1), || unreachable!()).is_ok());
    }
}
