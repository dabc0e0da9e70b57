//! Spreading one run over processes ("ranks"): the one collective
//! operation the library needs, and how work is split.
//!
//! A KIP step's target batch is cut into a fixed number of **shards**
//! (`KipParams::target_shards`, recorded with the run); each rank computes
//! the loss terms of its shards, the ranks exchange the per-shard partial
//! sums ([`Collective::all_gather`]) and every rank adds them in shard
//! order. The arithmetic therefore depends on the shard count, never on
//! the number of ranks: any number of ranks (1 included) gives bitwise the
//! same run, and a run may be resumed with a different number. Evaluation
//! splits its test blocks the same way.
//!
//! [`SingleProcess`] is the one-rank implementation; the `kip` binary built
//! with the `mpi` feature supplies one over MPI. kip-meta itself does not
//! depend on MPI.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// The ranks of a run and their exchange.
///
/// Every rank must call the operations in the same order (they are
/// collective): the library does, because every rank runs the same steps.
pub trait Collective: Send + Sync + fmt::Debug {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// Every rank's `local` concatenated in rank order, into `out` on every
    /// rank. `counts[r]` is rank `r`'s length (`counts[rank()] ==
    /// local.len()`); `out.len()` is their sum.
    fn all_gather(&self, local: &[f64], counts: &[usize], out: &mut [f64]);

    /// The lowest rank with `flag` set, as every rank sees it.
    fn first_flagged(&self, flag: bool) -> Option<usize> {
        let mut all = vec![0.0; self.size()];
        self.all_gather(&[f64::from(u8::from(flag))], &vec![1; self.size()], &mut all);
        all.iter().position(|&f| f != 0.0)
    }

    /// Whether this rank writes the run directory (rank 0).
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// The ranks of a run, shared by the runner and its KIP state machine.
pub type Ranks = Arc<dyn Collective>;

/// One process: rank 0 of 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_gather(&self, local: &[f64], _counts: &[usize], out: &mut [f64]) {
        out.copy_from_slice(local);
    }

    fn first_flagged(&self, flag: bool) -> Option<usize> {
        flag.then_some(0)
    }
}

/// The single-process ranks.
pub fn single_process() -> Ranks {
    Arc::new(SingleProcess)
}

/// The contiguous part of `n` items (shards, test blocks) that `rank` of
/// `size` takes: `n·rank/size .. n·(rank+1)/size`.
pub fn share(n: usize, rank: usize, size: usize) -> Range<usize> {
    n * rank / size..n * (rank + 1) / size
}

/// The rows of shard `j` of `count` over `n` rows.
pub fn shard_rows(n: usize, j: usize, count: usize) -> Range<usize> {
    share(n, j, count)
}

/// A failure of one rank as every rank learns it: the lowest failing rank
/// and its message (exchanged, so rank 0 can report it).
pub fn agree_on_failure(ranks: &dyn Collective, local: Option<&str>) -> Option<(usize, String)> {
    let rank = ranks.first_flagged(local.is_some())?;
    if ranks.size() == 1 {
        return Some((rank, local.unwrap_or_default().to_string()));
    }
    // The message's bytes, one per f64 (a failure path: size is no concern).
    let bytes: Vec<f64> = match (ranks.rank() == rank, local) {
        (true, Some(m)) => m.bytes().map(f64::from).collect(),
        _ => Vec::new(),
    };
    let mut lens = vec![0.0; ranks.size()];
    ranks.all_gather(&[bytes.len() as f64], &vec![1; ranks.size()], &mut lens);
    let counts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
    let mut all = vec![0.0; counts.iter().sum()];
    ranks.all_gather(&bytes, &counts, &mut all);
    let text: Vec<u8> = all.iter().map(|&b| b as u8).collect();
    Some((rank, String::from_utf8_lossy(&text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once_in_order() {
        for n in [0, 1, 5, 16, 17] {
            for size in 1..6 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| share(n, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
        assert_eq!(shard_rows(10, 1, 3), 3..6);
    }

    #[test]
    fn single_process_agrees_with_itself() {
        let one = SingleProcess;
        assert_eq!(one.first_flagged(false), None);
        assert_eq!(one.first_flagged(true), Some(0));
        assert_eq!(agree_on_failure(&one, Some("boom")), Some((0, "boom".into())));
        assert_eq!(agree_on_failure(&one, None), None);
        let mut out = [0.0; 2];
        one.all_gather(&[1.0, 2.0], &[2], &mut out);
        assert_eq!(out, [1.0, 2.0]);
    }
}
