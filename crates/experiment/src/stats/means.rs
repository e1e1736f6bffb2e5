//! Tests for means: revenue per recipient, order value.
//!
//! References (the CI test compares each with them on the same data):
//! - [`welch`]: scipy `ttest_ind(equal_var=False)`, with the Welch–Satterthwaite degrees of
//!   freedom;
//! - [`mann_whitney`]: scipy `mannwhitneyu(method="asymptotic", use_continuity=True)`, with
//!   the tie correction. Revenue per recipient is mostly zeros and a long tail: the t-test's
//!   normal approximation can be poor there, so the rank test is reported alongside it and
//!   [`Summary::skewness`] says how skewed the data are.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{StatsError, finite, invalid, normal, not_enough};

/// Count, mean, sample variance and skewness of one group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = MeanSummary)]
pub struct Summary {
    pub n: u64,
    pub mean: f64,
    /// With `n - 1` in the denominator.
    pub variance: f64,
    /// The sample skewness (Fisher's, biased: scipy `skew`); 0 when all values are equal.
    pub skewness: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Result<Self, StatsError> {
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(invalid("values", format!("{v} is not a number")));
        }
        let n = values.len();
        if n < 2 {
            return Err(not_enough("a group needs at least two units"));
        }
        let nf = n as f64;
        let mean = values.iter().sum::<f64>() / nf;
        let (mut m2, mut m3) = (0.0, 0.0);
        for v in values {
            let d = v - mean;
            m2 += d * d;
            m3 += d * d * d;
        }
        let variance = m2 / (nf - 1.0);
        let (m2n, m3n) = (m2 / nf, m3 / nf);
        let skewness = if m2n > 0.0 { m3n / m2n.powf(1.5) } else { 0.0 };
        Ok(Self {
            n: n as u64,
            mean,
            variance,
            skewness,
        })
    }
}

/// Welch's t-test of `b` against `a`, and the interval of the difference of means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Welch {
    /// `mean(b) - mean(a)`.
    pub difference: f64,
    /// Of the difference: `√(s_a²/n_a + s_b²/n_b)`.
    pub standard_error: f64,
    pub statistic: f64,
    pub degrees_of_freedom: f64,
    pub p_value: f64,
}

pub fn welch(a: &[f64], b: &[f64]) -> Result<Welch, StatsError> {
    let (sa, sb) = (Summary::of(a)?, Summary::of(b)?);
    let (va, vb) = (sa.variance / sa.n as f64, sb.variance / sb.n as f64);
    if va + vb == 0.0 {
        return Err(not_enough(
            "every value is the same: the means cannot be compared",
        ));
    }
    let t = (sb.mean - sa.mean) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (sa.n as f64 - 1.0) + vb * vb / (sb.n as f64 - 1.0));
    let df = finite(df, "the degrees of freedom")?;
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|e| invalid("values", e.to_string()))?;
    Ok(Welch {
        difference: sb.mean - sa.mean,
        standard_error: (va + vb).sqrt(),
        statistic: t,
        degrees_of_freedom: df,
        p_value: (2.0 * dist.sf(t.abs())).min(1.0),
    })
}

/// The Mann–Whitney U test: `u` is the statistic of `a` (as scipy reports it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    pub u: f64,
    pub p_value: f64,
}

impl Welch {
    /// The two-sided interval of the difference at `alpha`, from the same t distribution.
    pub fn interval(&self, alpha: f64) -> Result<super::Interval, StatsError> {
        crate::stats::check_alpha(alpha)?;
        let dist = StudentsT::new(0.0, 1.0, self.degrees_of_freedom)
            .map_err(|e| invalid("values", e.to_string()))?;
        let t = dist.inverse_cdf(1.0 - alpha / 2.0);
        Ok(super::Interval {
            low: self.difference - t * self.standard_error,
            high: self.difference + t * self.standard_error,
        })
    }
}

pub fn mann_whitney(a: &[f64], b: &[f64]) -> Result<MannWhitney, StatsError> {
    if a.is_empty() || b.is_empty() {
        return Err(not_enough("a group has no units"));
    }
    if let Some(v) = a.iter().chain(b).find(|v| !v.is_finite()) {
        return Err(invalid("values", format!("{v} is not a number")));
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let n = n1 + n2;
    // Ranks of the pooled sample, ties at their average rank.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i;
        while j + 1 < pooled.len() && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum_a += rank * pooled[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let u1 = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let u = u1.max(n1 * n2 - u1);
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    if sd == 0.0 {
        return Err(not_enough("every value is the same: the groups cannot be ranked"));
    }
    let z = (u - mean - 0.5) / sd;
    Ok(MannWhitney {
        u: u1,
        p_value: (2.0 * normal::sf(z)).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_samples_say_why() {
        assert!(welch(&[1.0], &[1.0, 2.0]).is_err());
        assert!(welch(&[3.0, 3.0], &[3.0, 3.0]).is_err());
        assert!(welch(&[f64::NAN, 1.0], &[1.0, 2.0]).is_err());
        assert!(mann_whitney(&[], &[1.0]).is_err());
        assert!(mann_whitney(&[2.0, 2.0], &[2.0]).is_err());
    }

    #[test]
    fn summary_of_a_constant_sample_has_no_skew() {
        let s = Summary::of(&[4.0, 4.0, 4.0]).unwrap();
        assert_eq!((s.mean, s.variance, s.skewness), (4.0, 0.0, 0.0));
    }
}
