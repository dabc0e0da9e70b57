//! What integration tests need from the machine beyond the repository: the
//! real datasets under `$KIP_DATA_DIR` and python3 with numpy. Shared by the
//! tests of kip-data, kip-krr and kip-cli, each including this file with
//! `#[path = "../../kip-data/tests/support/test_env.rs"] mod test_env;`.
//!
//! Without them a test skips with a printed reason; CI sets
//! `KIP_REQUIRE_DATA=1` and `KIP_REQUIRE_NUMPY=1`, which turn a skip into a
//! failure.

#![allow(dead_code)]

use std::path::PathBuf;

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// The folder `$KIP_DATA_DIR/<sub>` (`mnist`, `cifar10`, `digits`) when it
/// exists; otherwise `None` after printing why the test skips (or a panic
/// under `KIP_REQUIRE_DATA=1`).
pub fn real_data(sub: &str) -> Option<PathBuf> {
    let reason = match std::env::var_os("KIP_DATA_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d).join(sub);
            if p.is_dir() {
                return Some(p);
            }
            format!("{} does not exist", p.display())
        }
        _ => "KIP_DATA_DIR is not set".to_string(),
    };
    assert!(
        !required("KIP_REQUIRE_DATA"),
        "KIP_REQUIRE_DATA=1 but real data `{sub}` is unavailable: {reason}"
    );
    eprintln!("SKIPPED (real data `{sub}`): {reason}");
    None
}

/// Whether python3 can import numpy; when it cannot, prints why `what` is
/// skipped (or panics under `KIP_REQUIRE_NUMPY=1`).
pub fn numpy(what: &str) -> bool {
    let out = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output();
    let reason = match out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("cannot run python3: {e}"),
    };
    assert!(
        !required("KIP_REQUIRE_NUMPY"),
        "KIP_REQUIRE_NUMPY=1 but python3 with numpy is unavailable for {what}: {reason}"
    );
    eprintln!("SKIPPED ({what}): python3 with numpy is unavailable: {reason}");
    false
}
