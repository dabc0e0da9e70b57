//! The learning-rate schedule shared by KIP (`kip-meta`) and the
//! finite-network trainer (`kip-nn`).

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the learning rate changes over a run of `steps` steps (0-based
/// `step`): the multiplier [`LrSchedule::factor`] of the base rate.
///
/// # Examples
/// ```
/// use kip_core::LrSchedule;
/// let s: LrSchedule = "cosine:0.1".parse()?;
/// assert_eq!(s.factor(0, 11), 1.0);
/// assert!((s.factor(5, 11) - 0.55).abs() < 1e-12);
/// assert!((s.factor(10, 11) - 0.1).abs() < 1e-12); // the last step uses the floor
/// assert_eq!(s.to_string(), "cosine:0.1");
/// # Ok::<(), kip_core::ParseLrScheduleError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    /// The base rate at every step.
    #[default]
    Constant,
    /// Cosine decay from the base rate at step 0 to `min_factor` times it
    /// at the last step (`steps − 1`):
    /// `m + (1 − m)·½(1 + cos(π·step/(steps − 1)))`, and `m` after the end.
    Cosine {
        /// Final fraction of the base rate, in [0, 1].
        min_factor: f64,
    },
}

impl LrSchedule {
    /// The learning-rate multiplier at 0-based `step` of `steps`.
    pub fn factor(&self, step: usize, steps: usize) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { min_factor } => {
                let t = if steps > 1 {
                    (step as f64 / (steps - 1) as f64).min(1.0)
                } else {
                    0.0
                };
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (PI * t).cos())
            }
        }
    }

    /// Whether the parameters are in range (the cosine floor in [0, 1]).
    pub fn is_valid(&self) -> bool {
        match *self {
            LrSchedule::Constant => true,
            LrSchedule::Cosine { min_factor } => (0.0..=1.0).contains(&min_factor),
        }
    }
}

/// A schedule string that [`LrSchedule::from_str`] does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}`: expected constant, cosine or cosine:M with M in [0, 1]")]
pub struct ParseLrScheduleError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for LrSchedule {
    type Err = ParseLrScheduleError;

    /// `constant`, `cosine` (decay to 0) or `cosine:M` (decay to `M` times
    /// the base rate).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = match s.split_once(':') {
            None if s == "constant" => Some(LrSchedule::Constant),
            None if s == "cosine" => Some(LrSchedule::Cosine { min_factor: 0.0 }),
            Some(("cosine", m)) => m
                .parse::<f64>()
                .ok()
                .map(|min_factor| LrSchedule::Cosine { min_factor }),
            _ => None,
        };
        parsed
            .filter(LrSchedule::is_valid)
            .ok_or_else(|| ParseLrScheduleError { input: s.to_string() })
    }
}

impl fmt::Display for LrSchedule {
    /// The form [`LrSchedule::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Cosine { min_factor } if *min_factor == 0.0 => f.write_str("cosine"),
            LrSchedule::Cosine { min_factor } => write!(f, "cosine:{min_factor}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_runs_from_one_to_its_floor_at_the_last_step() {
        let c: LrSchedule = "cosine:0.1".parse().unwrap();
        assert_eq!(c.factor(0, 101), 1.0);
        assert!((c.factor(50, 101) - 0.55).abs() < 1e-12);
        assert!((c.factor(100, 101) - 0.1).abs() < 1e-12);
        assert!(
            (c.factor(500, 101) - 0.1).abs() < 1e-12,
            "past the end it stays at the floor"
        );
        assert_eq!(c.factor(0, 1), 1.0);
        assert_eq!(
            "cosine".parse::<LrSchedule>().unwrap(),
            LrSchedule::Cosine { min_factor: 0.0 }
        );
        assert_eq!("constant".parse::<LrSchedule>().unwrap().factor(7, 10), 1.0);
    }

    proptest::proptest! {
        /// A cosine schedule falls monotonically from 1 to its floor, and
        /// stays there.
        #[test]
        fn cosine_is_monotone(floor in 0.0f64..=1.0, steps in 1usize..500) {
            let s = LrSchedule::Cosine { min_factor: floor };
            let mut prev = f64::INFINITY;
            for t in 0..steps + 3 {
                let f = s.factor(t, steps);
                proptest::prop_assert!(f <= prev + 1e-15 && f >= floor - 1e-15 && f <= 1.0);
                prev = f;
            }
            let last = if steps > 1 { floor } else { 1.0 };
            proptest::prop_assert!((s.factor(steps - 1, steps) - last).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_strings_are_refused_and_good_ones_round_trip() {
        for bad in [
            "linear",
            "cosine:2",
            "cosine:-0.5",
            "cosine:x",
            "cosine:NaN",
            "constant:1",
            "",
        ] {
            let e = bad.parse::<LrSchedule>().unwrap_err().to_string();
            assert!(e.contains("expected constant"), "{bad}: {e}");
        }
        for good in ["constant", "cosine", "cosine:0.25"] {
            assert_eq!(good.parse::<LrSchedule>().unwrap().to_string(), good);
        }
        assert!(!LrSchedule::Cosine { min_factor: 1.5 }.is_valid());
    }
}
