//! Tests and intervals for proportions: open rate, click-through, conversion.
//!
//! References (the CI test compares each with them on the same data):
//! - [`z_test`]: statsmodels `proportions_ztest` (pooled variance);
//! - [`chi_square`]: scipy `chi2_contingency`, with and without Yates' correction;
//! - [`fisher_exact`]: scipy `fisher_exact` (two-sided);
//! - [`wilson`]: statsmodels `proportion_confint(method="wilson")`;
//! - [`newcombe`]: statsmodels `confint_proportions_2indep(method="newcomb")`, Newcombe's
//!   hybrid score interval (method 10) for the difference;
//! - [`ratio`]: statsmodels `confint_proportions_2indep(compare="ratio", method="log")`: the
//!   delta method on the log of the ratio (Katz), from which the relative lift follows.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::factorial::ln_binomial;

use super::{Counts, Interval, StatsError, critical, finite, invalid, normal, not_enough};

/// A test statistic and its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Test {
    pub statistic: f64,
    pub p_value: f64,
}

/// Two-proportion z-test of `b` against `a`, with the pooled variance: z > 0 when `b`'s rate
/// is higher.
pub fn z_test(a: Counts, b: Counts) -> Result<Test, StatsError> {
    let (pa, pb) = (a.rate()?, b.rate()?);
    let pooled = (a.successes + b.successes) as f64 / (a.units + b.units) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / a.units as f64 + 1.0 / b.units as f64)).sqrt();
    if se == 0.0 {
        return Err(not_enough(
            "every unit had the same outcome: the rates cannot differ",
        ));
    }
    let z = (pb - pa) / se;
    Ok(Test {
        statistic: z,
        p_value: normal::two_sided(z),
    })
}

/// Pearson's chi-square test of independence over groups × {success, failure} (two groups or
/// more). `yates` applies Yates' continuity correction, which only a 2×2 table takes (as
/// scipy does: each cell moves towards its expectation by at most 0.5).
pub fn chi_square(groups: &[Counts], yates: bool) -> Result<Test, StatsError> {
    if groups.len() < 2 {
        return Err(not_enough("a test needs at least two groups"));
    }
    let total: u64 = groups.iter().map(|g| g.units).sum();
    let successes: u64 = groups.iter().map(|g| g.successes).sum();
    if groups.iter().any(|g| g.units == 0) {
        return Err(not_enough("a group has no units"));
    }
    if successes == 0 || successes == total {
        return Err(not_enough(
            "every unit had the same outcome: the rates cannot differ",
        ));
    }
    let col = [successes as f64, (total - successes) as f64];
    let total = total as f64;
    let correct = yates && groups.len() == 2;
    let mut stat = 0.0;
    for g in groups {
        let observed = [g.successes as f64, (g.units - g.successes) as f64];
        for (o, c) in observed.into_iter().zip(col) {
            let e = g.units as f64 * c / total;
            let mut o = o;
            if correct {
                let diff = e - o;
                o += diff.signum() * diff.abs().min(0.5);
            }
            stat += (o - e) * (o - e) / e;
        }
    }
    let dof = (groups.len() - 1) as f64;
    let dist = ChiSquared::new(dof).map_err(|e| invalid("groups", e.to_string()))?;
    Ok(Test {
        statistic: stat,
        p_value: dist.sf(stat),
    })
}

/// Fisher's exact test on the 2×2 table of `a` and `b` (two-sided): the probability, given the
/// margins, of a table at most as likely as the one observed. Right for small counts, where
/// the chi-square approximation is not.
pub fn fisher_exact(a: Counts, b: Counts) -> Result<f64, StatsError> {
    if a.units == 0 || b.units == 0 {
        return Err(not_enough("a group has no units"));
    }
    // Hypergeometric: `a.successes` of the `successes` drawn among `a.units` of `total`.
    let total = a.units + b.units;
    let successes = a.successes + b.successes;
    let ln_denominator = ln_binomial(total, successes);
    let ln_pmf = |k: u64| ln_binomial(a.units, k) + ln_binomial(b.units, successes - k) - ln_denominator;
    let low = successes.saturating_sub(b.units);
    let high = successes.min(a.units);
    let observed = ln_pmf(a.successes);
    // Tables as likely as the observed one count too; a relative tolerance keeps rounding
    // from splitting ties (R's 1e-7; scipy's is tighter, and agrees on every table the CI
    // test compares).
    let threshold = observed + (1.0 + 1e-7f64).ln();
    let p: f64 = (low..=high)
        .map(ln_pmf)
        .filter(|l| *l <= threshold)
        .map(f64::exp)
        .sum();
    Ok(p.min(1.0))
}

/// Wilson's score interval for a rate.
pub fn wilson(c: Counts, alpha: f64) -> Result<Interval, StatsError> {
    let z = critical(alpha)?;
    let p = c.rate()?;
    let n = c.units as f64;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Ok(Interval {
        low: (center - half).max(0.0),
        high: (center + half).min(1.0),
    })
}

/// The difference of rates `b - a` with Newcombe's hybrid score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    pub difference: f64,
    pub interval: Interval,
}

pub fn newcombe(a: Counts, b: Counts, alpha: f64) -> Result<Difference, StatsError> {
    let (pa, pb) = (a.rate()?, b.rate()?);
    let (wa, wb) = (wilson(a, alpha)?, wilson(b, alpha)?);
    let d = pb - pa;
    Ok(Difference {
        difference: d,
        interval: Interval {
            low: d - ((pb - wb.low).powi(2) + (wa.high - pa).powi(2)).sqrt(),
            high: d + ((wb.high - pb).powi(2) + (pa - wa.low).powi(2)).sqrt(),
        },
    })
}

/// The ratio of rates `b / a` with its interval (the delta method on the log ratio), and the
/// relative lift `b / a - 1` with the same interval shifted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    pub ratio: f64,
    pub interval: Interval,
    pub lift: f64,
    pub lift_interval: Interval,
}

pub fn ratio(a: Counts, b: Counts, alpha: f64) -> Result<Ratio, StatsError> {
    let z = critical(alpha)?;
    let (pa, pb) = (a.rate()?, b.rate()?);
    if a.successes == 0 || b.successes == 0 {
        return Err(not_enough(
            "a group has no successes: the ratio of rates has no interval",
        ));
    }
    let r = pb / pa;
    let se = (1.0 / b.successes as f64 - 1.0 / b.units as f64 + 1.0 / a.successes as f64
        - 1.0 / a.units as f64)
        .sqrt();
    let interval = Interval {
        low: finite((r.ln() - z * se).exp(), "the ratio's interval")?,
        high: finite((r.ln() + z * se).exp(), "the ratio's interval")?,
    };
    Ok(Ratio {
        ratio: r,
        interval,
        lift: r - 1.0,
        lift_interval: Interval {
            low: interval.low - 1.0,
            high: interval.high - 1.0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x: u64, n: u64) -> Counts {
        Counts::new(x, n).unwrap()
    }

    #[test]
    fn degenerate_data_says_why_instead_of_nan() {
        assert!(Counts::new(5, 4).is_err());
        let cases: Vec<Result<f64, StatsError>> = vec![
            z_test(c(0, 10), c(0, 10)).map(|t| t.p_value),
            z_test(c(0, 0), c(1, 10)).map(|t| t.p_value),
            chi_square(&[c(10, 10), c(5, 5)], true).map(|t| t.p_value),
            chi_square(&[c(1, 10)], false).map(|t| t.p_value),
            fisher_exact(c(0, 0), c(1, 1)),
            wilson(c(0, 0), 0.05).map(|i| i.low),
            wilson(c(1, 2), 1.5).map(|i| i.low),
            ratio(c(0, 10), c(3, 10), 0.05).map(|r| r.ratio),
        ];
        for (i, r) in cases.into_iter().enumerate() {
            assert!(r.is_err(), "case {i}: {r:?}");
        }
    }

    #[test]
    fn extreme_but_valid_data_have_answers() {
        // All successes in one group, none in the other: tests still answer.
        assert!(z_test(c(0, 20), c(20, 20)).unwrap().p_value < 1e-6);
        let w = wilson(c(0, 20), 0.05).unwrap();
        assert!(w.low.abs() < 1e-12 && w.high > 0.0 && w.high < 0.2);
        assert!((fisher_exact(c(3, 3), c(0, 3)).unwrap() - 0.1).abs() < 1e-12);
        assert!((fisher_exact(c(1, 2), c(1, 2)).unwrap() - 1.0).abs() < 1e-12);
    }
}
