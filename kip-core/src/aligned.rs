//! [`AVec`]: a growable buffer of `f32` or `f64` whose data start on a
//! 64-byte boundary.
//!
//! An AVX-512 vector is 64 bytes, a cache line. A `Vec<f64>` of a few
//! kilobytes starts wherever the allocator puts it (16-byte aligned), so
//! nearly every vector load and store of a loop over it touches two cache
//! lines, which halves what L1 serves per cycle. The conv kernels' pair
//! passes, which stream a dozen such maps per layer, run about 9% faster
//! with their maps on cache-line boundaries.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::Scalar;

/// One cache line of storage (any bit pattern is a valid `f32`/`f64`).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A growable `[T]` (`T` = `f32` or `f64`) whose first element is 64-byte
/// aligned; it dereferences to a slice, so loops over it read as over a
/// `Vec`.
///
/// ```
/// use kip_core::AVec;
///
/// let mut v = AVec::<f64>::zeros(3);
/// v[1] = 2.0;
/// v.resize(5, 1.0);
/// assert_eq!(&v[..], &[0.0, 2.0, 0.0, 1.0, 1.0]);
/// assert_eq!(v.as_ptr() as usize % 64, 0);
/// ```
pub struct AVec<T> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> AVec<T> {
    const PER_LINE: usize = 64 / std::mem::size_of::<T>();

    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            lines: Vec::new(),
            len: 0,
            _t: PhantomData,
        }
    }
}

impl<T: Scalar> AVec<T> {
    /// `n` zeros.
    pub fn zeros(n: usize) -> Self {
        let mut v = Self::new();
        v.resize(n, T::ZERO);
        v
    }

    /// Set the length to `n`: new elements are `value`, elements past `n`
    /// are dropped (the storage is kept).
    pub fn resize(&mut self, n: usize, value: T) {
        let old = self.len;
        let lines = n.div_ceil(Self::PER_LINE);
        if lines > self.lines.len() {
            self.lines.resize(lines, Line([0; 64]));
        }
        self.len = n;
        if n > old {
            self[old..].fill(value);
        }
    }

    /// Length 0 (the storage is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Replace the contents with a copy of `src`.
    pub fn assign(&mut self, src: &[T]) {
        self.resize(src.len(), T::ZERO);
        self.copy_from_slice(src);
    }
}

impl<T: Scalar> Deref for AVec<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `lines` holds at least `len` elements of `T` (`resize`
        // keeps `lines.len()·PER_LINE ≥ len`); a `Line` is 64-aligned, which
        // `T` (4 or 8 bytes) divides; every bit pattern is a valid `T`;
        // an empty Vec's dangling pointer is aligned and non-null.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Scalar> DerefMut for AVec<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T> Default for AVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for AVec<T> {
    fn clone(&self) -> Self {
        Self {
            lines: self.lines[..self.len.div_ceil(Self::PER_LINE)].to_vec(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for AVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AVec {{ len: {} }}", self.len)
    }
}

impl<T: Scalar> FromIterator<T> for AVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v = Self::new();
        for x in iter {
            let n = v.len;
            v.resize(n + 1, x);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_shrinks_and_stays_aligned() {
        let mut v = AVec::<f32>::new();
        assert!(v.is_empty());
        for n in [1, 15, 16, 17, 100, 3, 0, 40] {
            let old = v.len();
            let kept: Vec<f32> = v[..old.min(n)].to_vec();
            v.resize(n, 7.0);
            assert_eq!(v.len(), n);
            assert_eq!(v.as_ptr() as usize % 64, 0);
            assert_eq!(&v[..kept.len()], &kept[..]);
            assert!(v[kept.len()..].iter().all(|&x| x == 7.0));
            for (k, x) in v.iter_mut().enumerate() {
                *x = k as f32;
            }
        }
        let w: AVec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(w.len(), 20);
        assert_eq!(w[19], 19.0);
        let c = w.clone();
        assert_eq!(&c[..], &w[..]);
        let mut z = AVec::<f64>::zeros(9);
        z.assign(&[1.0, 2.0]);
        assert_eq!(&z[..], &[1.0, 2.0]);
        z.clear();
        assert!(z.is_empty());
    }
}
