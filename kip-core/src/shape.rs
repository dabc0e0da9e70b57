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

/// Why a string is not an image shape ([`ImageShape`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseShapeError {
    /// Not three positive integers joined by `x`.
    Syntax,
    /// `h · w · c` does not fit in `usize`.
    Overflow,
}

impl fmt::Display for ParseShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseShapeError::Syntax => f.write_str("expected HxWxC with positive integers, e.g. 32x32x3"),
            ParseShapeError::Overflow => {
                write!(f, "h·w·c overflows (more than {} values per image)", usize::MAX)
            }
        }
    }
}

impl std::error::Error for ParseShapeError {}

/// `HxWxC` (e.g. `32x32x3`; spaces around the numbers allowed): three
/// positive integers whose product fits in `usize` (a product that wraps
/// could match a wrong point length).
///
/// ```
/// use kip_core::ImageShape;
/// assert_eq!("32x32x3".parse::<ImageShape>(), Ok(ImageShape::new(32, 32, 3)));
/// assert!("8589934603x1219619441754028592x1".parse::<ImageShape>().is_err());
/// ```
impl std::str::FromStr for ImageShape {
    type Err = ParseShapeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut dims = [0usize; 3];
        let mut parts = s.split('x');
        for d in &mut dims {
            let p = parts.next().ok_or(ParseShapeError::Syntax)?.trim();
            *d = p.parse().map_err(|_| ParseShapeError::Syntax)?;
            if *d == 0 {
                return Err(ParseShapeError::Syntax);
            }
        }
        if parts.next().is_some() {
            return Err(ParseShapeError::Syntax);
        }
        let shape = Self::from(dims);
        shape.checked_dim().map(|_| shape).ok_or(ParseShapeError::Overflow)
    }
}

impl From<[usize; 3]> for ImageShape {
    fn from(s: [usize; 3]) -> Self {
        Self::new(s[0], s[1], s[2])
    }
}
