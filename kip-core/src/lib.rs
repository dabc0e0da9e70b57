//! The few building blocks that several kip crates need and none of them
//! owns.
//!
//! kip's crates form a chain (`kip-data → kip-kernels → kip-krr → kip-meta →
//! kip-cli`, with `kip-nn` beside it) and none may reach up it. The kernels,
//! the KRR solver, the KIP loop and the finite-network trainer all multiply
//! matrices, pick the largest class score and decay a learning rate; this
//! crate holds the one copy of each, so that they cannot drift apart:
//!
//! * [`MatRef`] / [`MatMut`]: strided matrix views over slices, checked on
//!   construction (bounds with overflow-checked arithmetic; no two elements
//!   of a mutable view share memory), and [`gemm()`], the workspace's only
//!   wrapper around the `gemm` crate (AVX-512 / AVX2 kernels chosen at run
//!   time), in BLAS argument order.
//! * [`Scalar`]: the element types the products take, sealed (`f32`, `f64`).
//! * [`multiversion!`]: compile an elementwise loop for AVX-512 and AVX2+FMA
//!   and pick one at run time.
//! * [`argmax`] (one NaN rule), [`dot`] (a fixed summation order).
//! * [`LrSchedule`]: the learning-rate schedule of KIP and of the trainer.
//! * [`zeroed_huge`] / [`zeroed_matrix`]: large zeroed buffers on huge pages.
//! * [`ImageShape`]: what the loaders produce and the conv kernels read.
//! * [`AVec`]: buffers on cache-line boundaries, for AVX-512 loops.
//! * [`check_memory`]: the memory rule — compute a large request's bytes
//!   (overflow-checked) and refuse it, by name, beyond what the process can
//!   get.
//!
//! Users of kip never need this crate directly: the public types of the
//! other crates are nalgebra matrices.
//!
//! ```
//! use kip_core::{gemm, MatMut, MatRef};
//! use nalgebra::DMatrix;
//!
//! let a = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let mut c = DMatrix::zeros(2, 2);
//! // c ← 1·a·aᵀ + 0·c: the transpose is the same buffer with swapped strides.
//! gemm(1.0, MatRef::from(&a), MatRef::from(&a).t(), 0.0, MatMut::from(&mut c));
//! assert_eq!(c, &a * a.transpose());
//! ```

#![warn(missing_docs)]

mod aligned;
mod gemm;
mod im2col;
mod mat;
mod memory;
mod real;
mod reduce;
mod schedule;
mod shape;
mod simd;
mod zeroed;

pub use aligned::AVec;
pub use gemm::{gemm, gemm_seq, gemm_seq_raw};
pub use im2col::{conv3x3_forward, conv3x3_input_grad, conv3x3_weight_grad, pool_backward, pool_forward};
pub use mat::{MatMut, MatRef, Scalar, ViewError};
pub use memory::{
    available_memory, bytes_of, check_memory, ellipsize, format_bytes, parse_limit, sum_bytes, MemoryRefusal,
    MEMORY_ENV,
};
pub use real::Real;
pub use reduce::{argmax, dot, sum};
pub use schedule::{LrSchedule, ParseLrScheduleError};
pub use shape::{ImageShape, ParseShapeError};
pub use simd::{detected_simd_level, simd_cap, simd_level, SimdLevel, SIMD_ENV};
pub use zeroed::{zeroed_huge, zeroed_matrix};
