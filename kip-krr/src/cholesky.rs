//! Cholesky factorisation of `K + λI` with documented jitter retries.
//!
//! The factorisation runs on faer's blocked, recursive LLᵀ (an order of
//! magnitude faster than nalgebra's unblocked one at n ≥ 1000;
//! `docs/performance.md`); nalgebra stays the public matrix type and faer
//! works on zero-copy views of its buffers. The factor's buffer is a fresh
//! zeroed allocation advised onto huge pages ([`kip_core::zeroed_huge`]),
//! so that filling it does not fault page by 4 KiB page.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch, LltError, LltRegularization};
use faer::linalg::triangular_solve::{solve_lower_triangular_in_place, solve_upper_triangular_in_place};
use faer::Par;
use nalgebra::DMatrix;

use crate::error::{check_finite, shape_err, KrrError, Result};

/// Relative jitter levels tried, in order, when `K + λI` is not numerically
/// positive definite: the extra diagonal is `ε · tr(K)/n` for each `ε` here.
///
/// The largest, `1e-6`, equals the reference's default relative ridge, so a
/// retry never regularises more than the paper's own default does.
pub const JITTER_STEPS: [f64; 4] = [1e-12, 1e-10, 1e-8, 1e-6];

/// Matrix size from which the factorisation and the triangular solves use
/// faer's parallel (rayon) code path; below it they run single-threaded,
/// where faer's threaded LLᵀ is the slower one (`docs/performance.md`).
pub const PARALLEL_MIN_N: usize = 1500;

/// The parallelism faer should use for an `n × n` factor on the current pool.
fn par_for(n: usize) -> Par {
    if n >= PARALLEL_MIN_N && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// The lower Cholesky factor `L` of `K + (ridge + jitter)·I = L Lᵀ`.
///
/// Built by [`Cholesky::factor`]; solves `(K + λI) X = B` in place with two
/// triangular solves ([`Cholesky::solve_in_place`]).
#[derive(Clone, Debug)]
pub struct Cholesky {
    /// Lower factor (the strict upper triangle is zero).
    l: DMatrix<f64>,
    /// Ridge asked for.
    ridge: f64,
    /// Extra diagonal added by the retries (0 when the first attempt worked).
    jitter: f64,
}

impl Cholesky {
    /// Factor `K + ridge·I = L Lᵀ` (the solve behind the paper's Eq. 2,
    /// `α = (K_ss + λI)⁻¹ y_s`).
    ///
    /// Only the lower triangle of `k` is read. A pivot `L_ii²` at or below
    /// `n · ε_mach · max_i (K_ii + ridge)` counts as zero (numerical rank
    /// deficiency: exact duplicate support points with a zero ridge give
    /// pivots of order `ε_mach`, which would otherwise "succeed" and blow
    /// `α` up to ~1e16). When the factorisation meets such a
    /// pivot, it is retried with an extra diagonal `ε · tr(K)/n` for each `ε`
    /// of [`JITTER_STEPS`] (`1e-12, 1e-10, 1e-8, 1e-6`) in turn; the one that
    /// worked is recorded and reported by [`Cholesky::jitter`]. If
    /// `tr(K) ≤ 0`, the scale `tr(K)/n` is replaced by 1.
    ///
    /// # Shapes
    /// `k`: `n × n`, `n ≥ 1`.
    ///
    /// # Errors
    /// [`KrrError::InvalidParam`] if `ridge` is negative or not finite;
    /// [`KrrError::Shape`] if `k` is not square or is empty;
    /// [`KrrError::NonFinite`] if `k` holds NaN or an infinity;
    /// [`KrrError::NotPositiveDefinite`] if every retry failed.
    ///
    /// # Examples
    /// ```
    /// use kip_krr::Cholesky;
    /// use nalgebra::DMatrix;
    /// // Two identical points: singular without a ridge, so a jitter is added.
    /// let k = DMatrix::from_element(2, 2, 1.0);
    /// let c = Cholesky::factor(&k, 0.0)?;
    /// assert!(c.jitter() > 0.0 && c.jitter() <= 1e-6);
    /// # Ok::<(), kip_krr::KrrError>(())
    /// ```
    pub fn factor(k: &DMatrix<f64>, ridge: f64) -> Result<Self> {
        if !(ridge.is_finite() && ridge >= 0.0) {
            return Err(KrrError::InvalidParam {
                name: "ridge",
                value: ridge,
                expected: "a finite number >= 0",
            });
        }
        let n = k.nrows();
        if n == 0 || k.ncols() != n {
            return Err(shape_err("k", "a non-empty square matrix".into(), k.shape()));
        }
        check_finite("k", k.as_slice())?;
        let trace = k.trace();
        let scale = if trace.is_finite() && trace > 0.0 {
            trace / n as f64
        } else {
            1.0
        };
        let par = par_for(n);
        let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(n, par, Default::default()));
        let mut l = kip_core::zeroed_matrix(n, n);
        let mut index = match attempt(k, ridge, &mut l, par, &mut mem) {
            Ok(()) => {
                return Ok(Self { l, ridge, jitter: 0.0 });
            }
            Err(i) => i,
        };
        let mut shift = ridge;
        for eps in JITTER_STEPS {
            let jitter = eps * scale;
            shift = ridge + jitter;
            match attempt(k, shift, &mut l, par, &mut mem) {
                Ok(()) => return Ok(Self { l, ridge, jitter }),
                Err(i) => index = i,
            }
        }
        Err(KrrError::NotPositiveDefinite { index, ridge: shift })
    }

    /// Size `n` of the factored matrix.
    pub fn n(&self) -> usize {
        self.l.nrows()
    }

    /// The ridge `λ` that was asked for.
    pub fn requested_ridge(&self) -> f64 {
        self.ridge
    }

    /// Extra diagonal added by the jitter retries (0 if none was needed).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Total diagonal added to `K`: `ridge + jitter`.
    pub fn ridge(&self) -> f64 {
        self.ridge + self.jitter
    }

    /// The lower factor `L` (strict upper triangle zero).
    pub fn l(&self) -> &DMatrix<f64> {
        &self.l
    }

    /// `log det(K + (ridge + jitter)·I) = 2 Σᵢ log Lᵢᵢ`.
    pub fn log_det(&self) -> f64 {
        2.0 * self.l.diagonal().iter().map(|d| d.ln()).sum::<f64>()
    }

    /// Overwrite `rhs` with `(K + λI)⁻¹ rhs` (forward then backward
    /// substitution; no allocation).
    ///
    /// # Shapes
    /// `rhs`: `n × m`, any `m`.
    ///
    /// # Panics
    /// If `rhs` does not have `n` rows.
    pub fn solve_in_place(&self, rhs: &mut DMatrix<f64>) {
        let n = self.n();
        assert_eq!(rhs.nrows(), n, "Cholesky::solve_in_place: rhs must have n rows");
        let m = rhs.ncols();
        if m == 0 {
            return;
        }
        let par = par_for(n);
        let l = faer::MatRef::from_column_major_slice(self.l.as_slice(), n, n);
        let mut b = faer::MatMut::from_column_major_slice_mut(rhs.as_mut_slice(), n, m);
        solve_lower_triangular_in_place(l, b.as_mut(), par);
        solve_upper_triangular_in_place(l.transpose(), b.as_mut(), par);
    }

    /// `(K + λI)⁻¹ rhs`, allocating the result.
    ///
    /// # Shapes
    /// `rhs`: `n × m` → `n × m`.
    ///
    /// # Panics
    /// If `rhs` does not have `n` rows.
    pub fn solve(&self, rhs: &DMatrix<f64>) -> DMatrix<f64> {
        let mut x = rhs.clone();
        self.solve_in_place(&mut x);
        x
    }
}

/// One factorisation attempt of `K + shift·I` into `l`; the index of the
/// failing pivot on error.
fn attempt(
    k: &DMatrix<f64>,
    shift: f64,
    l: &mut DMatrix<f64>,
    par: Par,
    mem: &mut MemBuffer,
) -> std::result::Result<(), usize> {
    let n = k.nrows();
    // Lower triangle only (faer reads no more), column by column.
    for j in 0..n {
        let src = &k.as_slice()[j * n + j..(j + 1) * n];
        l.as_mut_slice()[j * n + j..(j + 1) * n].copy_from_slice(src);
        l[(j, j)] += shift;
    }
    let a = faer::MatMut::from_column_major_slice_mut(l.as_mut_slice(), n, n);
    let stack = MemStack::new(mem);
    match cholesky_in_place(a, LltRegularization::default(), par, stack, Default::default()) {
        Ok(_) => {
            // faer uses the strict upper triangle as scratch: clear it.
            for j in 1..n {
                l.as_mut_slice()[j * n..j * n + j].fill(0.0);
            }
            // Numerical rank test on the pivots (see `Cholesky::factor`).
            let max_diag = (0..n).map(|i| k[(i, i)]).fold(f64::NEG_INFINITY, f64::max) + shift;
            let tol = n as f64 * f64::EPSILON * max_diag;
            match (0..n).find(|&i| {
                let p = l[(i, i)];
                !(p * p > tol && p.is_finite())
            }) {
                Some(i) => Err(i),
                None if lower_finite(l) => Ok(()),
                None => Err(n - 1),
            }
        }
        Err(LltError::NonPositivePivot { index }) => Err(index),
    }
}

/// Whether the lower triangle of `l` is finite (branch-free per column, so
/// it vectorises; the upper triangle, zero, is not read).
fn lower_finite(l: &DMatrix<f64>) -> bool {
    let n = l.nrows();
    (0..n).all(|j| {
        l.as_slice()[j * n + j..(j + 1) * n]
            .iter()
            .fold(true, |ok, v| ok & v.is_finite())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> DMatrix<f64> {
        let a = DMatrix::from_fn(n, n, |i, j| (((i * 31 + j * 17) % 23) as f64 - 11.0) / 7.0);
        &a * a.transpose() + DMatrix::identity(n, n) * n as f64
    }

    #[test]
    fn solves_and_log_det_match_nalgebra() {
        for n in [1, 5, 70, 300] {
            let k = spd(n);
            let b = DMatrix::from_fn(n, 3, |i, j| (i + 2 * j) as f64 / n as f64 - 0.5);
            let c = Cholesky::factor(&k, 0.5).unwrap();
            assert_eq!(c.jitter(), 0.0);
            let x = c.solve(&b);
            let kr = &k + DMatrix::identity(n, n) * 0.5;
            let r = (&kr * &x - &b).abs().max();
            assert!(r < 1e-10 * (b.abs().max() + 1.0), "n={n} residual {r}");
            let chol = kr.clone().cholesky().unwrap();
            let want = 2.0 * chol.l().diagonal().iter().map(|d| d.ln()).sum::<f64>();
            assert!((c.log_det() - want).abs() < 1e-9 * want.abs().max(1.0));
            assert!((c.l() * c.l().transpose() - kr).abs().max() < 1e-9 * n as f64);
        }
    }

    #[test]
    fn upper_triangle_is_exactly_zero_after_blocked_factor_and_retries() {
        // Large enough for faer's blocked/recursive path, and a rank-
        // deficient one (duplicate rows) that needs the jitter retries.
        let n = 1200;
        let mut k = spd(n);
        for j in 0..n {
            k[(n - 1, j)] = k[(n - 2, j)];
            k[(j, n - 1)] = k[(j, n - 2)];
        }
        k[(n - 1, n - 1)] = k[(n - 2, n - 2)];
        for (ridge, retried) in [(1.0, false), (0.0, true)] {
            let c = Cholesky::factor(&k, ridge).unwrap();
            assert_eq!(c.jitter() > 0.0, retried);
            let l = c.l();
            for j in 1..n {
                assert!(l.as_slice()[j * n..j * n + j].iter().all(|&v| v == 0.0), "column {j}");
            }
            let kr = &k + DMatrix::identity(n, n) * c.ridge();
            assert!((l * l.transpose() - kr).abs().max() < 1e-8 * n as f64);
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let k = spd(4);
        assert!(matches!(
            Cholesky::factor(&k, -1.0),
            Err(KrrError::InvalidParam { name: "ridge", .. })
        ));
        assert!(matches!(
            Cholesky::factor(&k, f64::NAN),
            Err(KrrError::InvalidParam { .. })
        ));
        assert!(matches!(
            Cholesky::factor(&DMatrix::zeros(3, 4), 0.0),
            Err(KrrError::Shape { .. })
        ));
        assert!(matches!(
            Cholesky::factor(&DMatrix::zeros(0, 0), 0.0),
            Err(KrrError::Shape { .. })
        ));
        let mut bad = k.clone();
        bad[(2, 1)] = f64::INFINITY;
        assert!(matches!(
            Cholesky::factor(&bad, 0.0),
            Err(KrrError::NonFinite { what: "k" })
        ));
    }

    #[test]
    fn indefinite_matrix_is_a_clear_error() {
        let k = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, -1.0]);
        match Cholesky::factor(&k, 0.0) {
            Err(KrrError::NotPositiveDefinite { index, ridge }) => {
                assert_eq!(index, 1);
                assert!(ridge > 0.0 && ridge.is_finite());
            }
            other => panic!("expected NotPositiveDefinite, got {other:?}"),
        }
    }

    #[test]
    fn singular_matrix_gets_the_smallest_working_jitter() {
        let v = DMatrix::from_fn(6, 2, |i, j| (i as f64 + 1.0) * (j as f64 + 0.5));
        let k = &v * v.transpose(); // rank 2
        let c = Cholesky::factor(&k, 0.0).unwrap();
        let scale = k.trace() / 6.0;
        assert!(c.jitter() > 0.0);
        assert!(JITTER_STEPS
            .iter()
            .any(|e| (e * scale - c.jitter()).abs() <= 1e-15 * scale));
        assert_eq!(c.ridge(), c.jitter());
        let x = c.solve(&DMatrix::from_element(6, 1, 1.0));
        assert!(x.iter().all(|v| v.is_finite()));
    }
}
