//! Progress bars (hidden with --quiet or when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `total` steps, starting at `pos`.
pub fn bar(total: usize, pos: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("valid template"),
    );
    pb.set_position(pos as u64);
    pb
}
