//! The sample-ratio-mismatch check: did assignment split units as planned? A mismatch means
//! something removed or added units unevenly (a bug, a bot filter, a redirect), and every
//! other figure of the experiment is then suspect.
//!
//! Reference: scipy `chisquare(observed, f_exp)`.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{StatsError, invalid, not_enough};

/// Below this p-value, the split is flagged and the results marked untrustworthy.
pub const THRESHOLD: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SampleRatio {
    pub statistic: f64,
    pub p_value: f64,
    /// `p_value < THRESHOLD`.
    pub mismatch: bool,
}

/// Chi-square goodness of fit of the units per variant against the planned `weights` (any
/// positive numbers: they are normalized).
pub fn check(units: &[u64], weights: &[f64]) -> Result<SampleRatio, StatsError> {
    if units.len() != weights.len() {
        return Err(invalid(
            "weights",
            format!("{} weights for {} variants", weights.len(), units.len()),
        ));
    }
    if units.len() < 2 {
        return Err(not_enough("a split needs at least two variants"));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(invalid("weights", format!("{w} is not a positive weight")));
    }
    let total: u64 = units.iter().sum();
    if total == 0 {
        return Err(not_enough("no unit was assigned yet"));
    }
    let weight_sum: f64 = weights.iter().sum();
    let statistic: f64 = units
        .iter()
        .zip(weights)
        .map(|(o, w)| {
            let e = total as f64 * w / weight_sum;
            (*o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new((units.len() - 1) as f64).map_err(|e| invalid("weights", e.to_string()))?;
    let p_value = dist.sf(statistic);
    Ok(SampleRatio {
        statistic,
        p_value,
        mismatch: p_value < THRESHOLD,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_split_passes_and_a_skewed_one_is_flagged() {
        assert!(!check(&[5_000, 5_030], &[1.0, 1.0]).unwrap().mismatch);
        assert!(check(&[5_000, 5_400], &[1.0, 1.0]).unwrap().mismatch);
        assert!(!check(&[9_000, 1_000], &[90.0, 10.0]).unwrap().mismatch);
        assert!(check(&[1, 2], &[1.0]).is_err());
        assert!(check(&[1, 2], &[1.0, 0.0]).is_err());
        assert!(check(&[0, 0], &[1.0, 1.0]).is_err());
    }
}
