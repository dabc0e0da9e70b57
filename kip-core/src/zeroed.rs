//! Large zeroed buffers on fresh, huge-page-advised memory.

use nalgebra::DMatrix;

/// Buffers from this many bytes are advised onto huge pages.
const HUGE_MIN_BYTES: usize = 8 << 20;

/// `len` zeros in a fresh allocation: `calloc`'s zero pages, nothing written
/// yet (`DMatrix::zeros` writes every element first). On Linux a buffer of
/// 8 MB or more is also advised onto transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, a hint the kernel may ignore), so that filling
/// it takes 2 MB page faults instead of 4 KiB ones (`docs/performance.md`,
/// "Memory").
pub fn zeroed_huge(len: usize) -> Vec<f64> {
    let v = vec![0.0; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = len * std::mem::size_of::<f64>();
        let start = v.as_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if bytes >= HUGE_MIN_BYTES && end > aligned {
            // SAFETY: [aligned, end) lies inside `v`'s allocation, which
            // outlives the call; MADV_HUGEPAGE changes no contents (the pages
            // stay zero) and its failure is harmless (the advice is a hint,
            // the result is ignored).
            unsafe {
                libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

/// An `n1 × n2` zero matrix on [`zeroed_huge`] storage.
pub fn zeroed_matrix(n1: usize, n2: usize) -> DMatrix<f64> {
    DMatrix::from_vec(n1, n2, zeroed_huge(n1 * n2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_and_small_buffers_are_zero() {
        for len in [0, 1, 3 << 20] {
            let v = super::zeroed_huge(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
        }
        assert_eq!(super::zeroed_matrix(3, 2).shape(), (3, 2));
    }
}
