//! Errors of the kernel crate.

/// Everything that can go wrong when building or evaluating a kernel.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A kernel specification string could not be parsed.
    #[error("invalid kernel spec `{input}`: {reason}; accepted: {accepted}")]
    Spec {
        /// The string as given.
        input: String,
        /// What is wrong with it (with a did-you-mean where one is close).
        reason: String,
        /// The accepted forms.
        accepted: &'static str,
    },
    /// A kernel parameter is out of its range.
    #[error("invalid kernel parameter {name} = {value}: expected {expected}")]
    Param {
        /// Parameter name (`w_std`, `gamma`, ...).
        name: &'static str,
        /// The offending value.
        value: f64,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// Two inputs disagree on their shape.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Expected shape, in words.
        expected: String,
        /// Actual shape.
        got: String,
    },
    /// An input has no rows or no columns.
    #[error("empty input: {what} has shape {rows} x {cols}")]
    Empty {
        /// Which argument.
        what: &'static str,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// An input holds NaN or an infinity.
    #[error("non-finite value in {what} at row {row}, column {col}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Row of the first bad entry.
        row: usize,
        /// Column of the first bad entry.
        col: usize,
    },
    /// A point whose entries are finite but whose squared norm overflows
    /// (entries around 1e154 and beyond).
    #[error("the squared norm of {what} row {row} overflows (its values are too large for float64 arithmetic)")]
    NormOverflow {
        /// Which argument.
        what: &'static str,
        /// The row.
        row: usize,
    },
    /// The points do not fit an image kernel: no image shape given, or one
    /// whose size differs from the points' dimension, or a stack that
    /// pools the image away.
    #[error("kernel {kernel}: {reason}")]
    Image {
        /// The kernel's spec.
        kernel: String,
        /// What does not fit, with the shapes.
        reason: String,
    },
    /// A request larger than the memory this process can get (kip's
    /// memory rule, [`kip_core::check_memory`]): the sizes, what asked for
    /// them and the memory available.
    #[error("{0}")]
    Memory(#[from] kip_core::MemoryRefusal),
    /// An operation that exists for inner-product kernels only was given
    /// another kernel.
    #[error("{what} needs an inner-product kernel (fc, rbf, linear); {kernel} is not one")]
    NotInnerProduct {
        /// The operation.
        what: &'static str,
        /// The kernel's spec.
        kernel: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, KernelError>;
