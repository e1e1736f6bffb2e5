//! The results of one of missive's experiments: every variant's figures, the primary metric
//! analysed against control (the fixed-horizon tests with Holm's correction, the Bayesian chance
//! to beat control, the sample-ratio check), the guardrails, the sequential test with its
//! stopping rule, and a verdict in plain words that says when not to conclude.
//!
//! The fixed-horizon p-values are valid once, at the sample size planned before the start;
//! read before it, and again and again, they find false winners (the simulations in
//! `docs/BENCHMARKS.md` measure how many). The results say so while the plan is not reached,
//! and give the sequential test alongside: its p-value stays valid at every look. Its looks are
//! the ends of the days of first exposure, and now. Its mixture spread `τ` is the effect the
//! plan is sized for (baseline rate × minimum lift), or 10 % of control's rate without a plan.

use serde::Serialize;

use crate::analysis::{self, MetricKind, Report};
use crate::definition::{Experiment, Guardrail, Metric, Status, Varies};
use crate::outcomes::{self, Units, VariantMetrics};
use crate::stats::{Counts, sequential};

/// The significance level results are read at when the plan does not set one.
pub const DEFAULT_ALPHA: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ExperimentResults)]
pub struct Results {
    pub experiment: String,
    pub status: Status,
    pub varies: Varies,
    pub primary_metric: Metric,
    pub control: String,
    pub alpha: f64,
    pub variants: Vec<VariantMetrics>,
    /// The primary metric against control; `None` with `primary_note` when it cannot be
    /// computed yet.
    pub primary: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_note: Option<String>,
    pub guardrails: Vec<GuardrailCheck>,
    /// Rates only: the always-valid test of each variant against control.
    pub sequential: Vec<SequentialCheck>,
    /// How far the plan is: units per variant needed and the fewest any variant has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanProgress>,
    /// Exposures left out because their person was first exposed under another variant.
    pub crossed: u64,
    pub warnings: Vec<String>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GuardrailCheck {
    pub guardrail: Guardrail,
    /// Variants whose rate is significantly above control's.
    pub breached_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SequentialCheck {
    pub variant: String,
    /// The always-valid p-value: the smallest over the looks so far.
    pub p_value: f64,
    pub looks: u64,
    pub tau: f64,
    pub significant: bool,
    pub stopping_rule: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlanProgress {
    pub units_per_variant: u64,
    pub fewest: u64,
    pub reached: bool,
}

fn kind(metric: Metric) -> MetricKind {
    match metric {
        Metric::Revenue => MetricKind::Mean,
        _ => MetricKind::Rate,
    }
}

/// The results of `e` from its units' outcomes.
pub fn results(e: &Experiment, units: &Units) -> Results {
    let def = &e.definition;
    let alpha = def.plan.map_or(DEFAULT_ALPHA, |p| p.alpha);
    let names: Vec<&str> = def.variants.iter().map(|v| v.name.as_str()).collect();
    let variants = outcomes::metrics(units, &names);
    let planned = e.planned();
    let mut warnings = Vec::new();

    // A bandit's split changes from wave to wave: there is no planned split to check.
    let planned = def.bandit.is_none().then_some(&planned);
    if def.bandit.is_some() {
        warnings.push(
            "Run as a bandit: its split changed between waves, so its p-values and intervals are not valid tests. It earns opens while it learns; to measure, run a fixed split.".to_owned(),
        );
    }
    let (primary, primary_note) = match analysis::analyze_as(
        &outcomes::values(units, def.primary_metric),
        Some(kind(def.primary_metric)),
        Some(&e.control),
        alpha,
        planned,
    ) {
        Ok(r) => (Some(r), None),
        Err(err) => (None, Some(not_yet(&err))),
    };

    // A holdout receives no e-mail to unsubscribe from or complain about: its guardrails would
    // always "rise" in the group that is sent to.
    let guardrails = def
        .guardrails
        .iter()
        .map(|g| match def.varies {
            Varies::Holdout => GuardrailCheck {
                guardrail: *g,
                breached_by: Vec::new(),
                report: None,
                note: Some("Not comparable: the holdout receives no e-mail to react to.".to_owned()),
            },
            _ => guardrail(e, units, *g, alpha),
        })
        .collect::<Vec<_>>();

    let sequential = if def.primary_metric == Metric::Revenue {
        Vec::new()
    } else {
        names
            .iter()
            .filter(|v| **v != e.control)
            .filter_map(|v| sequential_check(e, units, v, alpha))
            .collect()
    };

    let fewest = variants.iter().map(|v| v.recipients).min().unwrap_or(0);
    let plan = e.estimate.as_ref().map(|p| PlanProgress {
        units_per_variant: p.units_per_variant,
        fewest,
        reached: fewest >= p.units_per_variant,
    });
    match &plan {
        Some(p) if !p.reached => warnings.push(format!(
            "The plan needs {} people per variant and the smallest has {}: until then, read the sequential test, not the fixed-horizon p-values, which find false winners when looked at before the planned end.",
            p.units_per_variant, p.fewest
        )),
        None => warnings.push(
            "No plan was given: the fixed-horizon p-values are valid only at a sample size fixed in advance. Read the sequential test, which stays valid at every look.".to_owned(),
        ),
        _ => {}
    }
    if def.primary_metric == Metric::Revenue {
        warnings.push("Revenue has no sequential test here: decide at the planned sample size.".to_owned());
    }
    if units.crossed > 0 {
        warnings.push(format!(
            "{} exposure(s) came under a second variant for the same person and were left out.",
            units.crossed
        ));
    }
    let verdict = match (&def.bandit, &primary) {
        (Some(_), Some(_)) => bandit_verdict(def.primary_metric, &variants),
        _ => verdict(
            e,
            primary.as_ref(),
            primary_note.as_deref(),
            &guardrails,
            &sequential,
            plan.as_ref(),
        ),
    };
    Results {
        experiment: def.name.clone(),
        status: e.status,
        varies: def.varies,
        primary_metric: def.primary_metric,
        control: e.control.clone(),
        alpha,
        variants,
        primary,
        primary_note,
        guardrails,
        sequential,
        plan,
        crossed: units.crossed,
        warnings,
        verdict,
    }
}

fn not_yet(err: &analysis::AnalysisError) -> String {
    match err {
        analysis::AnalysisError::Empty => "No one has been exposed yet.".to_owned(),
        analysis::AnalysisError::NoControl(..) | analysis::AnalysisError::OneVariant(_) => {
            format!("Not enough data: {err}.")
        }
        analysis::AnalysisError::Stats(s) => format!("Not enough data: {s}."),
    }
}

fn guardrail(e: &Experiment, units: &Units, g: Guardrail, alpha: f64) -> GuardrailCheck {
    match analysis::analyze_as(
        &outcomes::guardrail_values(units, g),
        Some(MetricKind::Rate),
        Some(&e.control),
        alpha,
        None,
    ) {
        Ok(report) => GuardrailCheck {
            guardrail: g,
            breached_by: report
                .comparisons
                .iter()
                .filter(|c| {
                    c.difference.is_some_and(|d| d.value > 0.0)
                        && c.p_value_holm.or(c.p_value).is_some_and(|p| p < alpha)
                })
                .map(|c| c.variant.clone())
                .collect(),
            report: Some(report),
            note: None,
        },
        Err(err) => GuardrailCheck {
            guardrail: g,
            breached_by: Vec::new(),
            report: None,
            note: Some(not_yet(&err)),
        },
    }
}

/// A bandit's results describe; they do not test.
fn bandit_verdict(metric: Metric, variants: &[VariantMetrics]) -> String {
    let rate = |m: &VariantMetrics| match metric {
        Metric::Open => m.open_rate,
        Metric::Click => m.click_rate,
        _ => m.conversion_rate,
    };
    let people: u64 = variants.iter().map(|v| v.recipients).sum();
    let best = variants
        .iter()
        .filter_map(|v| rate(v).map(|r| (v, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("none", |(v, _)| v.variant.as_str());
    format!(
        "A bandit: {people} people in all, and the highest observed rate is {best}'s. Its shifting split makes no test valid: this describes, it does not prove."
    )
}

/// The sequential test of `variant` against control. With several variants, each is tested at
/// alpha / (variants - 1) (Bonferroni), as the fixed tests are corrected by Holm's method.
fn sequential_check(e: &Experiment, units: &Units, variant: &str, alpha: f64) -> Option<SequentialCheck> {
    let alpha = alpha / (e.definition.variants.len().saturating_sub(1).max(1)) as f64;
    let days = outcomes::daily(units, e.definition.primary_metric, &e.control, variant);
    let total = days.iter().fold((0u64, 0u64), |t, d| {
        (t.0 + d.control.successes, t.1 + d.control.units)
    });
    // The mixture is tuned to the effect the plan is sized for (the baseline times the minimum
    // lift); without a plan, to 10 % of control's rate so far.
    let tau = match e.definition.plan {
        Some(p) if (p.baseline_rate * p.minimum_lift).abs() > 0.0 => (p.baseline_rate * p.minimum_lift).abs(),
        _ if total.1 > 0 => sequential::default_tau(total.0 as f64 / total.1 as f64),
        _ => return None,
    };
    let mut test = sequential::Sequential::new(tau, alpha).ok()?;
    let (mut a, mut b) = (
        Counts {
            successes: 0,
            units: 0,
        },
        Counts {
            successes: 0,
            units: 0,
        },
    );
    for d in &days {
        a.successes += d.control.successes;
        a.units += d.control.units;
        b.successes += d.variant.successes;
        b.units += d.variant.units;
        if a.units > 0 && b.units > 0 {
            // A look with too little data changes nothing; counts are consistent by construction.
            test.look(a, b).ok()?;
        }
    }
    Some(SequentialCheck {
        variant: variant.to_owned(),
        p_value: test.p_value,
        looks: test.looks,
        tau,
        significant: test.significant(),
        stopping_rule: format!(
            "Stop and declare a difference as soon as this p-value falls below {alpha}; it stays valid however often it is looked at (mSPRT, mixture spread {tau:.4})."
        ),
    })
}

fn verdict(
    e: &Experiment,
    primary: Option<&Report>,
    note: Option<&str>,
    guardrails: &[GuardrailCheck],
    sequential: &[SequentialCheck],
    plan: Option<&PlanProgress>,
) -> String {
    let Some(report) = primary else {
        return note.unwrap_or("Not enough data yet.").to_owned();
    };
    if report.sample_ratio.as_ref().is_some_and(|s| s.mismatch) {
        return report.verdict.clone();
    }
    let breached: Vec<String> = guardrails
        .iter()
        .flat_map(|g| {
            g.breached_by
                .iter()
                .map(move |v| format!("{v} ({:?})", g.guardrail).to_lowercase())
        })
        .collect();
    let mut out = String::new();
    if !breached.is_empty() {
        out.push_str(&format!(
            "A guardrail rose significantly: {}. Do not roll that out. ",
            breached.join(", ")
        ));
    }
    let winners: Vec<&str> = sequential
        .iter()
        .filter(|s| s.significant)
        .map(|s| s.variant.as_str())
        .collect();
    let planned = plan.is_some_and(|p| p.reached);
    if planned {
        out.push_str("The planned sample is reached: ");
        let each: Vec<&str> = report.comparisons.iter().map(|c| c.verdict.as_str()).collect();
        out.push_str(&each.join(" "));
    } else if winners.is_empty() {
        out.push_str(&format!(
            "No variant differs from control ({}) by the sequential test yet: keep it running, or conclude that no difference was shown.",
            e.control
        ));
    } else {
        out.push_str(&format!(
            "By the sequential test, which allows looking at any time: {} differ(s) from control ({}).",
            winners.join(", "),
            e.control
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;
    use crate::definition::{ExperimentIn, create};
    use crate::outcomes::{Action, Engagement, Exposure};

    fn experiment(plan: bool) -> Experiment {
        let mut v = serde_json::json!({
            "name": "subject", "varies": "subject", "primary_metric": "open",
            "variants": [
                {"name": "control", "weight": 1},
                {"name": "b", "weight": 1, "subject": "Hi {{ traits.first_name }}"}
            ]
        });
        if plan {
            v["plan"] = serde_json::json!({"baseline_rate": 0.2, "minimum_lift": 0.5, "units_per_day": 400});
        }
        let def: ExperimentIn = serde_json::from_value(v).unwrap();
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut e = create(def, now).unwrap();
        e.start(now).unwrap();
        e
    }

    /// `n` people per arm over `days` days, with `open_a` and `open_b` of them opening.
    fn simulate(n: u64, days: i64, open_a: u64, open_b: u64) -> Units {
        let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut exposures = Vec::new();
        let mut engagements = Vec::new();
        for (arm, opens) in [("control", open_a), ("b", open_b)] {
            for i in 0..n {
                let msg = format!("{arm}-{i}");
                let at = start + TimeDelta::hours(i as i64 * 24 * days / n as i64);
                exposures.push(Exposure {
                    profile: msg.clone(),
                    variant: arm.into(),
                    message_id: msg.clone(),
                    sent: true,
                    at,
                });
                // Spread the openers evenly over the people.
                if i * opens / n != (i + 1) * opens / n {
                    engagements.push(Engagement {
                        profile: msg.clone(),
                        message_id: msg,
                        action: Action::Opened,
                        at: at + TimeDelta::hours(1),
                    });
                }
            }
        }
        outcomes::units(
            &exposures,
            &engagements,
            &[],
            crate::definition::Attribution::Engagement,
            TimeDelta::hours(72),
        )
    }

    #[test]
    fn nobody_exposed_is_not_enough_data() {
        let r = results(&experiment(true), &Units::default());
        assert_eq!(r.verdict, "No one has been exposed yet.");
        assert!(r.primary.is_none());
        assert_eq!(r.variants.len(), 2);
    }

    #[test]
    fn a_clear_lift_is_found_and_the_plan_decides_what_to_read() {
        let units = simulate(2_000, 10, 400, 600);
        let r = results(&experiment(true), &units);
        assert_eq!(r.variants[0].opens, 400);
        assert_eq!(r.variants[1].opens, 600);
        let plan = r.plan.as_ref().unwrap();
        assert!(plan.reached, "{plan:?}");
        assert!(r.sequential[0].significant, "{:?}", r.sequential);
        assert!(r.sequential[0].looks >= 10);
        assert!(
            r.verdict.starts_with("The planned sample is reached"),
            "{}",
            r.verdict
        );
        assert!(r.verdict.contains("b: the rate is higher"), "{}", r.verdict);

        // Early, with no difference: the warning, and no winner.
        let early = results(&experiment(true), &simulate(100, 2, 20, 20));
        assert!(!early.plan.as_ref().unwrap().reached);
        assert!(
            early.warnings[0].contains("read the sequential test"),
            "{:?}",
            early.warnings
        );
        assert!(early.verdict.contains("keep it running"), "{}", early.verdict);
    }

    #[test]
    fn a_breached_guardrail_is_named() {
        let mut units = simulate(1_000, 5, 200, 200);
        for u in units.units.iter_mut().filter(|u| u.variant == "b").take(60) {
            u.unsubscribed = true;
        }
        let r = results(&experiment(false), &units);
        let g = r
            .guardrails
            .iter()
            .find(|g| g.guardrail == Guardrail::Unsubscribe)
            .unwrap();
        assert_eq!(g.breached_by, vec!["b".to_owned()]);
        assert!(
            r.verdict
                .starts_with("A guardrail rose significantly: b (unsubscribe)"),
            "{}",
            r.verdict
        );
        assert!(r.warnings[0].starts_with("No plan was given"));
    }
}
