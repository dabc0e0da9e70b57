//! [`ImageShape`]: the shape of one image, which the data loaders produce
//! and the convolutional kernels read their points as.

use std::fmt;

/// Height, width and channel count of one image. Pixels are stored
/// row-major HWC: index `(y * w + x) * c + channel` (channels fastest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageShape {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels (1 = grayscale, 3 = RGB).
    pub c: usize,
}

impl ImageShape {
    /// Creates a shape.
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        ImageShape { h, w, c }
    }

    /// The image shape of an array of points whose shape after the point
    /// axis is `dims`: `[h, w, c]` → `h × w × c`, `[h, w]` → `h × w × 1`;
    /// `None` for flat points (`[d]`) and other ranks.
    pub fn of_point_dims(dims: &[usize]) -> Option<Self> {
        match *dims {
            [h, w, c] => Some(Self::new(h, w, c)),
            [h, w] => Some(Self::new(h, w, 1)),
            _ => None,
        }
    }

    /// Number of features per image, `d = h · w · c`.
    ///
    /// # Panics
    /// In debug builds, when the product overflows `usize` (it wraps in
    /// release builds): a shape taken from user input goes through
    /// [`ImageShape::checked_dim`] first.
    pub fn dim(&self) -> usize {
        self.h * self.w * self.c
    }

    /// `d = h · w · c`, or `None` when the product overflows `usize`.
    ///
    /// # Examples
    /// ```
    /// use kip_core::ImageShape;
    /// assert_eq!(ImageShape::new(32, 32, 3).checked_dim(), Some(3072));
    /// assert_eq!(ImageShape::new(1 << 32, 1 << 32, 1).checked_dim(), None);
    /// ```
    pub fn checked_dim(&self) -> Option<usize> {
        self.h.checked_mul(self.w)?.checked_mul(self.c)
    }
}

impl fmt::Display for ImageShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

impl From<[usize; 3]> for ImageShape {
    fn from(s: [usize; 3]) -> Self {
        Self::new(s[0], s[1], s[2])
    }
}
