//! The analysis of one metric over units assigned to variants: every variant against control,
//! with the statistics of [`crate::stats`], a Holm correction across variants, the
//! sample-ratio check when the planned split is known, and a verdict in plain words that says
//! when not to conclude. Used for experiments run elsewhere (`missive experiment analyze`)
//! and, later, for missive's own.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::{Counts, StatsError, bayes, means, multiple, proportions, srm};

/// What a metric measures, from its values: 0/1 outcomes are rates, anything else amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Every value is 0 or 1: a conversion, an open, a click.
    Rate,
    /// Amounts: revenue, order value.
    Mean,
}

/// Below this many units in a group, or expected successes/failures, the normal
/// approximations are poor: Fisher's exact test is the one to read.
const SMALL: f64 = 5.0;
/// Skewness above which the t-test's p-value is flagged as doubtful.
const SKEWED: f64 = 2.0;

/// One variant against control.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AnalysisComparison)]
pub struct Comparison {
    pub variant: String,
    pub units: u64,
    /// Rate or mean of the variant.
    pub value: f64,
    /// `value - control value`, with its interval (Newcombe for rates; Welch's for means).
    pub difference: Option<Estimate>,
    /// `value / control value - 1`, with its interval (rates only).
    pub lift: Option<Estimate>,
    /// The p-value of the main test (z-test for rates, or Fisher's exact test when counts are
    /// small; Welch's t for means) and after Holm.
    pub p_value: Option<f64>,
    pub p_value_holm: Option<f64>,
    /// The other test, alongside: Fisher's exact or the z-test (rates), Mann–Whitney (means).
    pub p_value_alt: Option<f64>,
    /// Rates only: P(variant beats control) and the expected loss of choosing it.
    pub chance_to_beat: Option<f64>,
    pub expected_loss: Option<f64>,
    /// What could not be computed, and why.
    pub notes: Vec<String>,
    pub verdict: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AnalysisEstimate)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AnalysisReport)]
pub struct Report {
    pub metric: MetricKind,
    pub alpha: f64,
    pub control: String,
    pub control_units: u64,
    pub control_value: f64,
    pub comparisons: Vec<Comparison>,
    /// Present when the planned split was given.
    pub sample_ratio: Option<srm::SampleRatio>,
    pub verdict: String,
}

/// Why there is no report at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    #[error("no units to analyse")]
    Empty,
    #[error("control variant {0:?} has no units (variants: {1})")]
    NoControl(String, String),
    #[error("only one variant ({0:?}): there is nothing to compare it with")]
    OneVariant(String),
    #[error("{0}")]
    Stats(#[from] StatsError),
}

fn group(units: &[(String, f64)]) -> BTreeMap<&str, Vec<f64>> {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (v, x) in units {
        by.entry(v.as_str()).or_default().push(*x);
    }
    by
}

/// Analyses `units` (variant, value) with `control` as the reference (the first variant by
/// name when `None`), at `alpha`. `planned` gives each variant's planned weight, for the
/// sample-ratio check.
pub fn analyze(
    units: &[(String, f64)],
    control: Option<&str>,
    alpha: f64,
    planned: Option<&BTreeMap<String, f64>>,
) -> Result<Report, AnalysisError> {
    analyze_as(units, None, control, alpha, planned)
}

/// [`analyze`] with the metric's kind given (revenue stays a mean when every value happens to
/// be 0 or 1) instead of read from the values. A rate's values must be 0 or 1.
pub fn analyze_as(
    units: &[(String, f64)],
    kind: Option<MetricKind>,
    control: Option<&str>,
    alpha: f64,
    planned: Option<&BTreeMap<String, f64>>,
) -> Result<Report, AnalysisError> {
    crate::stats::check_alpha(alpha)?;
    let by = group(units);
    let Some(first) = by.keys().next() else {
        return Err(AnalysisError::Empty);
    };
    let control = control.unwrap_or(first).to_owned();
    let names = || by.keys().copied().collect::<Vec<_>>().join(", ");
    let Some(control_values) = by.get(control.as_str()) else {
        return Err(AnalysisError::NoControl(control, names()));
    };
    if by.len() < 2 {
        return Err(AnalysisError::OneVariant(control));
    }
    let binary = units.iter().all(|(_, x)| *x == 0.0 || *x == 1.0);
    let metric = match kind {
        Some(MetricKind::Rate) if !binary => {
            return Err(AnalysisError::Stats(StatsError::Invalid {
                field: "values",
                why: "a rate's values are 0 or 1".into(),
            }));
        }
        Some(k) => k,
        None if binary => MetricKind::Rate,
        None => MetricKind::Mean,
    };
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let mut comparisons: Vec<Comparison> = by
        .iter()
        .filter(|(v, _)| **v != control)
        .map(|(v, xs)| match metric {
            MetricKind::Rate => compare_rates(v, control_values, xs, alpha),
            MetricKind::Mean => compare_means(v, control_values, xs, alpha),
        })
        .collect();
    // Holm across the variants that have a p-value.
    let ps: Vec<f64> = comparisons.iter().filter_map(|c| c.p_value).collect();
    let adjusted = multiple::holm(&ps)?;
    let mut it = adjusted.into_iter();
    for c in comparisons.iter_mut().filter(|c| c.p_value.is_some()) {
        c.p_value_holm = it.next();
    }
    let sample_ratio = match planned {
        Some(w) => {
            // Planned variants without a unit count too: that is the worst mismatch.
            let mut names: Vec<&str> = by.keys().copied().collect();
            for planned_name in w.keys() {
                if !by.contains_key(planned_name.as_str()) {
                    names.push(planned_name);
                }
            }
            let weights = names
                .iter()
                .map(|n| {
                    w.get(*n).copied().ok_or_else(|| StatsError::Invalid {
                        field: "weights",
                        why: format!("no planned weight for variant {n:?}"),
                    })
                })
                .collect::<Result<Vec<f64>, _>>()?;
            let counts: Vec<u64> = names
                .iter()
                .map(|n| by.get(n).map_or(0, |v| v.len() as u64))
                .collect();
            Some(srm::check(&counts, &weights)?)
        }
        None => None,
    };
    for c in &mut comparisons {
        c.verdict = verdict(c, alpha, metric);
    }
    let verdict = overall(&comparisons, sample_ratio.as_ref(), alpha);
    Ok(Report {
        metric,
        alpha,
        control_units: control_values.len() as u64,
        control_value: mean(control_values),
        control,
        comparisons,
        sample_ratio,
        verdict,
    })
}

fn counts(xs: &[f64]) -> Result<Counts, StatsError> {
    Counts::new(xs.iter().filter(|x| **x == 1.0).count() as u64, xs.len() as u64)
}

fn empty(variant: &str, units: u64, value: f64) -> Comparison {
    Comparison {
        variant: variant.to_owned(),
        units,
        value,
        difference: None,
        lift: None,
        p_value: None,
        p_value_holm: None,
        p_value_alt: None,
        chance_to_beat: None,
        expected_loss: None,
        notes: Vec::new(),
        verdict: String::new(),
    }
}

/// Runs `f`, keeping its value or noting why there is none.
fn keep<T>(notes: &mut Vec<String>, what: &str, r: Result<T, StatsError>) -> Option<T> {
    r.map_err(|e| notes.push(format!("{what}: {e}"))).ok()
}

fn compare_rates(variant: &str, control: &[f64], xs: &[f64], alpha: f64) -> Comparison {
    let (Ok(a), Ok(b)) = (counts(control), counts(xs)) else {
        return empty(variant, xs.len() as u64, f64::NAN);
    };
    let mut c = empty(variant, b.units, b.successes as f64 / b.units as f64);
    let notes = &mut c.notes;
    c.difference = keep(notes, "difference", proportions::newcombe(a, b, alpha)).map(|d| Estimate {
        value: d.difference,
        low: d.interval.low,
        high: d.interval.high,
    });
    c.lift = keep(notes, "lift", proportions::ratio(a, b, alpha)).map(|r| Estimate {
        value: r.lift,
        low: r.lift_interval.low,
        high: r.lift_interval.high,
    });
    let z = keep(notes, "z-test", proportions::z_test(a, b)).map(|t| t.p_value);
    let fisher = keep(notes, "Fisher's exact test", proportions::fisher_exact(a, b));
    if let Some(bb) = keep(notes, "chance to beat", bayes::beta_binomial(a, b)) {
        c.chance_to_beat = Some(bb.chance_to_beat);
        c.expected_loss = Some(bb.expected_loss_b);
    }
    let small = [a, b]
        .iter()
        .any(|g| (g.successes as f64) < SMALL || ((g.units - g.successes) as f64) < SMALL);
    // With few successes or failures the z-test's approximation is poor: the verdict rests on
    // Fisher's exact test then, and the z-test is the alternative shown.
    if small {
        c.p_value = fisher;
        c.p_value_alt = z;
        c.notes.push(
            "few successes or failures: the p-value is Fisher's exact test; the z-test (p_value_alt) is approximate here"
                .into(),
        );
    } else {
        c.p_value = z;
        c.p_value_alt = fisher;
    }
    c
}

fn compare_means(variant: &str, control: &[f64], xs: &[f64], alpha: f64) -> Comparison {
    let mut c = empty(variant, xs.len() as u64, xs.iter().sum::<f64>() / xs.len() as f64);
    let notes = &mut c.notes;
    if let Some(w) = keep(notes, "Welch's t-test", means::welch(control, xs)) {
        c.p_value = Some(w.p_value);
        if let Some(i) = keep(notes, "interval", w.interval(alpha)) {
            c.difference = Some(Estimate {
                value: w.difference,
                low: i.low,
                high: i.high,
            });
        }
    }
    c.p_value_alt = keep(notes, "Mann–Whitney", means::mann_whitney(control, xs)).map(|m| m.p_value);
    let skew = [control, xs]
        .iter()
        .filter_map(|s| means::Summary::of(s).ok())
        .map(|s| s.skewness.abs())
        .fold(0.0, f64::max);
    if skew > SKEWED {
        c.notes.push(format!(
            "the data are heavily skewed (skewness {skew:.1}): the t-test's p-value is approximate; compare it with Mann–Whitney's (p_value_alt)"
        ));
    }
    c
}

fn verdict(c: &Comparison, alpha: f64, metric: MetricKind) -> String {
    let Some(p) = c.p_value_holm.or(c.p_value) else {
        return format!("{}: not enough data to compare.", c.variant);
    };
    let what = match metric {
        MetricKind::Rate => "rate",
        MetricKind::Mean => "mean",
    };
    let direction = match &c.difference {
        Some(d) if d.value > 0.0 => "higher",
        Some(d) if d.value < 0.0 => "lower",
        _ => "different",
    };
    if p < alpha {
        format!(
            "{}: the {what} is {direction} than control's (p = {p:.4} after Holm's correction).",
            c.variant
        )
    } else {
        format!(
            "{}: no difference shown (p = {p:.4} after Holm's correction): do not conclude that it is worse or better; more data would narrow the interval.",
            c.variant
        )
    }
}

fn overall(comparisons: &[Comparison], sample_ratio: Option<&srm::SampleRatio>, alpha: f64) -> String {
    if let Some(s) = sample_ratio
        && s.mismatch
    {
        return format!(
            "Do not trust these results: units were not split as planned (sample-ratio mismatch, p = {:.2e}). Find what removed or added units unevenly first.",
            s.p_value
        );
    }
    let winners: Vec<&str> = comparisons
        .iter()
        .filter(|c| c.p_value_holm.is_some_and(|p| p < alpha))
        .map(|c| c.variant.as_str())
        .collect();
    let fixed = "These are fixed-horizon tests: valid once, at the sample size planned before the start, not when looked at repeatedly.";
    if winners.is_empty() {
        format!("No variant differs from control at alpha = {alpha}. {fixed}")
    } else {
        format!("Differs from control: {}. {fixed}", winners.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &[(&str, u64, u64)]) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (v, x, n) in spec {
            for i in 0..*n {
                out.push(((*v).to_owned(), if i < *x { 1.0 } else { 0.0 }));
            }
        }
        out
    }

    #[test]
    fn rates_are_compared_with_control_and_corrected() {
        let units = rows(&[("a", 100, 1_000), ("b", 150, 1_000), ("c", 105, 1_000)]);
        let r = analyze(&units, Some("a"), 0.05, None).unwrap();
        assert_eq!(r.metric, MetricKind::Rate);
        assert_eq!(r.comparisons.len(), 2);
        let b = &r.comparisons[0];
        assert!(
            b.p_value_holm.unwrap() < 0.05 && b.lift.unwrap().value > 0.4,
            "{b:?}"
        );
        assert!(b.verdict.contains("higher"), "{}", b.verdict);
        let c = &r.comparisons[1];
        assert!(c.verdict.contains("do not conclude"), "{}", c.verdict);
        assert!(r.verdict.starts_with("Differs from control: b."), "{}", r.verdict);
    }

    #[test]
    fn bad_and_edge_input_has_clear_answers() {
        assert_eq!(analyze(&[], None, 0.05, None), Err(AnalysisError::Empty));
        let one = rows(&[("a", 1, 10)]);
        assert!(matches!(
            analyze(&one, None, 0.05, None),
            Err(AnalysisError::OneVariant(_))
        ));
        let two = rows(&[("a", 1, 10), ("b", 2, 10)]);
        assert!(matches!(
            analyze(&two, Some("z"), 0.05, None),
            Err(AnalysisError::NoControl(..))
        ));
        // All zeros: the z-test cannot run (a note says so); Fisher's exact test answers
        // that nothing differs; never NaN.
        let zeros = rows(&[("a", 0, 10), ("b", 0, 10)]);
        let r = analyze(&zeros, None, 0.05, None).unwrap();
        assert_eq!(r.comparisons[0].p_value, Some(1.0));
        assert!(
            r.comparisons[0]
                .notes
                .iter()
                .any(|n| n.starts_with("z-test: not enough data"))
        );
        assert!(
            r.comparisons[0].verdict.contains("no difference shown"),
            "{}",
            r.comparisons[0].verdict
        );
        // A split far from the plan is flagged before anything else.
        let skewed = rows(&[("a", 10, 1_000), ("b", 10, 1_400)]);
        let plan: BTreeMap<String, f64> = [("a".to_owned(), 1.0), ("b".to_owned(), 1.0)].into();
        let r = analyze(&skewed, None, 0.05, Some(&plan)).unwrap();
        assert!(r.verdict.starts_with("Do not trust"), "{}", r.verdict);
        let missing: BTreeMap<String, f64> = [("a".to_owned(), 1.0)].into();
        assert!(analyze(&skewed, None, 0.05, Some(&missing)).is_err());
        // A planned variant that got no unit at all is the worst mismatch.
        let three: BTreeMap<String, f64> = [
            ("a".to_owned(), 1.0),
            ("b".to_owned(), 1.0),
            ("c".to_owned(), 1.0),
        ]
        .into();
        let even = rows(&[("a", 10, 1_000), ("b", 10, 1_000)]);
        let r = analyze(&even, None, 0.05, Some(&three)).unwrap();
        assert!(r.sample_ratio.unwrap().mismatch);
        assert!(analyze(&even, None, 1.5, None).is_err(), "alpha is checked");
        // Few successes: the verdict rests on Fisher's exact test.
        let few = rows(&[("a", 1, 40), ("b", 6, 40)]);
        let r = analyze(&few, None, 0.05, None).unwrap();
        let b = &r.comparisons[0];
        let fisher =
            proportions::fisher_exact(Counts::new(1, 40).unwrap(), Counts::new(6, 40).unwrap()).unwrap();
        assert_eq!(b.p_value, Some(fisher));
    }

    #[test]
    fn amounts_are_compared_as_means_and_skew_is_said() {
        let mut units = Vec::new();
        for i in 0..400 {
            let spend = if i % 10 == 0 { 90.0 + i as f64 } else { 0.0 };
            units.push(("a".to_owned(), spend));
            units.push(("b".to_owned(), if i % 10 == 0 { spend * 1.5 } else { 0.0 }));
        }
        let r = analyze(&units, None, 0.05, None).unwrap();
        assert_eq!(r.metric, MetricKind::Mean);
        let b = &r.comparisons[0];
        let d = b.difference.unwrap();
        assert!(d.low < d.value && d.value < d.high);
        assert!(b.p_value_alt.is_some());
        assert!(b.notes.iter().any(|n| n.contains("skewed")), "{:?}", b.notes);
    }
}
