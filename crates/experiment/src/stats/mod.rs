//! The statistics of experiments, as pure functions over counts and samples.
//!
//! Conventions: "control" is the first group (`a`), the "treatment" the second (`b`);
//! differences and lifts are `b` against `a`. Two-sided tests unless said otherwise. `alpha`
//! is the error rate of an interval (0.05 gives 95 % intervals).

pub mod bayes;
pub mod means;
pub mod multiple;
pub mod power;
pub mod proportions;
pub mod sequential;
pub mod srm;

use serde::Serialize;

/// Why a statistic cannot be computed. Said in words a marketer can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StatsError {
    /// Too little data for the statistic to mean anything (no units, no variance, …).
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// An input that cannot be right (more conversions than units, a negative weight, …).
    #[error("invalid {field}: {why}")]
    Invalid { field: &'static str, why: String },
}

fn not_enough(why: impl Into<String>) -> StatsError {
    StatsError::NotEnoughData(why.into())
}

fn invalid(field: &'static str, why: impl Into<String>) -> StatsError {
    StatsError::Invalid {
        field,
        why: why.into(),
    }
}

/// `x` successes out of `n` units: checked (`x <= n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = StatsCounts)]
pub struct Counts {
    pub successes: u64,
    pub units: u64,
}

impl Counts {
    pub fn new(successes: u64, units: u64) -> Result<Self, StatsError> {
        if successes > units {
            return Err(invalid(
                "successes",
                format!(
                    "{successes} successes out of {units} units: there cannot be more successes than units"
                ),
            ));
        }
        Ok(Self { successes, units })
    }

    /// The observed rate; an error for no units.
    pub fn rate(self) -> Result<f64, StatsError> {
        if self.units == 0 {
            return Err(not_enough("a group has no units"));
        }
        Ok(self.successes as f64 / self.units as f64)
    }
}

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = StatsInterval)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The standard normal distribution, through the complementary error function (accurate in
/// the tails, where `1 - cdf` would lose every digit).
pub(crate) mod normal {
    use statrs::function::erf::{erfc, erfc_inv};
    use std::f64::consts::SQRT_2;

    /// P(Z > z).
    pub fn sf(z: f64) -> f64 {
        0.5 * erfc(z / SQRT_2)
    }

    /// The two-sided p-value of a z statistic.
    pub fn two_sided(z: f64) -> f64 {
        erfc(z.abs() / SQRT_2)
    }

    /// z such that P(Z > z) = p (the upper quantile), for 0 < p < 1.
    pub fn isf(p: f64) -> f64 {
        SQRT_2 * erfc_inv(2.0 * p)
    }
}

/// Checks `alpha`, the error rate of a test or interval: 0 < alpha < 1.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(invalid("alpha", format!("{alpha} is not between 0 and 1")))
    }
}

/// Checks `alpha` and answers the critical value `z_{1-alpha/2}`.
pub(crate) fn critical(alpha: f64) -> Result<f64, StatsError> {
    check_alpha(alpha)?;
    Ok(normal::isf(alpha / 2.0))
}

/// A finite result, or "not enough data" naming what degenerated.
pub(crate) fn finite(v: f64, what: &str) -> Result<f64, StatsError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(not_enough(format!("{what} is undefined for these data")))
    }
}
