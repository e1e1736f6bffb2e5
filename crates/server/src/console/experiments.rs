//! Experiments: `GET /console/experiments` lists them (name, what varies, status, variants,
//! when started); `GET /console/experiments/{name}` shows one's results as the API's
//! `/v1/experiments/{name}/results` gives them, from the same engine calls: every variant's
//! exposures, deliveries, opens, clicks and conversions, the primary metric per variant with
//! its confidence interval (drawn as bars with whiskers), the tests against control, the
//! sequential test, the guardrails, the plan's progress, the verdict and its warnings, and the
//! cumulative lift of each variant over control (the engine's own chart).
//!
//! Read-only: experiments are created, started and concluded with the API or `missive
//! experiment`. No personal data: every role that reads reports sees them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use maud::{Markup, html};
use missive_experiment::analysis::{Estimate, MetricKind, Report};
use missive_experiment::chart;
use missive_experiment::definition::{Experiment, Guardrail, Metric, Status};
use missive_experiment::outcomes::{self, Units, VariantMetrics};
use missive_experiment::results::{self, Results};
use missive_experiment::stats::{Counts, proportions};
use missive_sending::experiments::ExperimentError;

use super::charts::{self, Ranged, percent};
use super::layout::{self, Section, badge, group, time};
use super::session::Visit;
use crate::AppState;
use crate::auth::Reports;

const REFUSED: &str = "Your role does not read experiments.";

/// How an experiment is made, said where there is none (or not the one asked for).
fn how_to_create() -> Markup {
    html! {
        p.note {
            "Experiments are created as drafts with the API, "
            code { "POST /v1/experiments" } " (a JSON definition: what varies, the variants and their weights, the primary metric; see docs/experiments.md), or with "
            code { "missive experiment create --file experiment.json" } ". Start one with "
            code { "POST /v1/experiments/{name}/start" } " (or " code { "missive experiment start NAME" }
            "); broadcasts and journeys' send steps that name it then expose people to its variants."
        }
    }
}

pub(crate) fn status_badge(s: Status) -> Markup {
    match s {
        Status::Draft => badge("draft", "idle"),
        Status::Running => badge("running", "ok"),
        Status::Stopped => badge("stopped", "warn"),
        Status::Concluded => badge("concluded", "idle"),
    }
}

fn metric_label(m: Metric) -> &'static str {
    match m {
        Metric::Open => "open rate",
        Metric::Click => "click rate",
        Metric::Conversion => "conversion rate",
        Metric::Revenue => "revenue per recipient",
    }
}

fn guardrail_label(g: Guardrail) -> &'static str {
    match g {
        Guardrail::Unsubscribe => "unsubscribe rate",
        Guardrail::Complaint => "complaint rate",
    }
}

/// `GET /console/experiments`.
pub async fn list(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Reports>() {
        return visit.refuse(&state, "console.experiments", REFUSED).await;
    }
    let experiments = match state.experiments.list().await {
        Ok(e) => e,
        Err(e) => return layout::unavailable(&visit, Section::Experiments, "Experiments", &e),
    };
    let body = html! {
        @if experiments.is_empty() {
            p.empty { "No experiments yet." }
            (how_to_create())
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Experiment" } th scope="col" { "Varies" } th scope="col" { "Status" }
                    th scope="col" { "Variants" } th scope="col" { "Decided on" } th scope="col" { "Started" }
                } }
                tbody {
                    @for e in &experiments {
                        tr {
                            th scope="row" { a href={ "/console/experiments/" (layout::path_part(&e.definition.name)) } { (e.definition.name) } }
                            td { (e.definition.varies.as_str()) }
                            td { (status_badge(e.status)) }
                            td { (variant_names(e)) }
                            td { (metric_label(e.definition.primary_metric)) }
                            td { @if let Some(t) = e.started_at { (time(t)) } @else { "not started" } }
                        }
                    }
                }
            } }
            (how_to_create())
        }
    };
    layout::page(&visit, Section::Experiments, "Experiments", body)
}

/// The variants with their share of the traffic, control first and marked.
fn variant_names(e: &Experiment) -> Markup {
    let shares = e.planned_shares();
    html! {
        ul.plain {
            @for (v, share) in e.definition.variants.iter().zip(shares) {
                li {
                    (v.name) " " span.note { (percent(share)) }
                    @if v.name == e.control { " " (badge("control", "idle")) }
                    @if v.holdout { " " (badge("holdout", "idle")) }
                }
            }
        }
    }
}

/// `GET /console/experiments/{name}`.
pub async fn page(State(state): State<AppState>, visit: Visit, Path(name): Path<String>) -> Response {
    if !visit.may::<Reports>() {
        return visit.refuse(&state, "console.experiments", REFUSED).await;
    }
    let e = match state.experiments.get(&name).await {
        Ok(e) => e,
        Err(ExperimentError::NotFound(_)) => {
            let body = html! {
                (layout::error(&format!("No experiment is named {name:?}.")))
                p { a href="/console/experiments" { "Back to the experiments" } }
                (how_to_create())
            };
            return layout::page_with(
                &visit,
                Section::Experiments,
                "Experiment",
                body,
                StatusCode::NOT_FOUND,
                None,
            );
        }
        Err(err) => return layout::unavailable(&visit, Section::Experiments, "Experiment", &err),
    };
    // What `Experiments::results` does, in its steps: the units are read once for the results
    // and for the lift charts.
    let units = match state.experiments.units(&e).await {
        Ok(u) => u,
        Err(err) => return layout::unavailable(&visit, Section::Experiments, "Experiment", &err),
    };
    let r = results::results(&e, &units);
    let title = format!("Experiment {}", e.definition.name);
    let body = html! {
        p { a href="/console/experiments" { "← All experiments" } }
        div.grid {
            section.card {
                h2 { "Definition" }
                (definition(&e))
            }
            section.card {
                h2 { "Verdict" }
                p class={ "alert " (verdict_tone(&r)) } role="status" { (r.verdict) }
                @if let Some(plan) = &r.plan {
                    (layout::progress(plan.fewest, plan.units_per_variant, "Smallest variant against the plan"))
                }
                @if !r.warnings.is_empty() {
                    ul { @for w in &r.warnings { li { (w) } } }
                }
            }
        }
        section.card {
            h2 { "Variants" }
            (variants(&e, &r))
        }
        section.card {
            h2 { "The " (metric_label(r.primary_metric)) " against control" }
            @match (&r.primary, &r.primary_note) {
                (Some(report), _) => (comparisons(report)),
                (None, Some(note)) => p.empty { (note) },
                (None, None) => p.empty { "Not computed." },
            }
        }
        @if !r.sequential.is_empty() {
            section.card {
                h2 { "Sequential test" }
                (sequential(&r))
            }
        }
        @if !r.guardrails.is_empty() {
            section.card {
                h2 { "Guardrails" }
                (guardrails(&r))
            }
        }
        (lifts(&e, &units, r.alpha))
    };
    layout::page(&visit, Section::Experiments, &title, body)
}

fn definition(e: &Experiment) -> Markup {
    let d = &e.definition;
    html! {
        dl.facts {
            dt { "Status" } dd { (status_badge(e.status)) }
            dt { "Varies" } dd { (d.varies.as_str()) }
            dt { "Decided on" } dd { (metric_label(d.primary_metric)) }
            dt { "Hypothesis" } dd { @if d.hypothesis.is_empty() { "–" } @else { (d.hypothesis) } }
            dt { "Variants" } dd { (variant_names(e)) }
            dt { "Guardrails" } dd {
                @if d.guardrails.is_empty() { "none" } @else {
                    (d.guardrails.iter().map(|g| guardrail_label(*g)).collect::<Vec<_>>().join(", "))
                }
            }
            dt { "Conversions" } dd { "within " (d.conversion_window_hours) " hours of " (match e.attribution() {
                missive_experiment::definition::Attribution::Engagement => "an open or a click",
                missive_experiment::definition::Attribution::Exposure => "the exposure",
            }) }
            @if let Some(plan) = &e.estimate { dt { "Plan" } dd { (plan.summary) } }
            dt { "Created" } dd { (time(e.created_at)) }
            dt { "Started" } dd { @if let Some(t) = e.started_at { (time(t)) } @else { "not started" } }
            @if let Some(t) = e.stopped_at { dt { "Stopped" } dd { (time(t)) } }
            @if let Some(c) = &e.concluded {
                dt { "Concluded" } dd { (time(c.at)) ", " @if let Some(w) = &c.winner { "winner: " strong { (w) } } @else { "no difference shown" } }
            }
        }
    }
}

fn verdict_tone(r: &Results) -> &'static str {
    let srm = r
        .primary
        .as_ref()
        .and_then(|p| p.sample_ratio)
        .is_some_and(|s| s.mismatch);
    let breached = r.guardrails.iter().any(|g| !g.breached_by.is_empty());
    if srm || breached {
        "error"
    } else if r.sequential.iter().any(|s| s.significant) {
        "ok"
    } else {
        "warn"
    }
}

/// The primary metric's successes of a variant (rates only).
fn successes(m: &VariantMetrics, metric: Metric) -> Option<u64> {
    match metric {
        Metric::Open => Some(m.opens),
        Metric::Click => Some(m.clicks),
        Metric::Conversion => Some(m.conversions),
        Metric::Revenue => None,
    }
}

fn primary_value(m: &VariantMetrics, metric: Metric) -> Option<f64> {
    match metric {
        Metric::Open => m.open_rate,
        Metric::Click => m.click_rate,
        Metric::Conversion => m.conversion_rate,
        Metric::Revenue => m.revenue_per_recipient,
    }
}

/// A rate's interval at the results' level: the experiment crate's Wilson interval, the one
/// its analysis gives rates (none for revenue, a mean, nor before anyone is exposed).
fn rate_interval(m: &VariantMetrics, metric: Metric, alpha: f64) -> Option<(f64, f64)> {
    let x = successes(m, metric)?;
    let i = proportions::wilson(Counts::new(x, m.recipients).ok()?, alpha).ok()?;
    Some((i.low, i.high))
}

fn amount(v: f64) -> String {
    layout::money((v * 100.0).round() as i64)
}

fn variants(e: &Experiment, r: &Results) -> Markup {
    let metric = r.primary_metric;
    let winner = e.concluded.as_ref().and_then(|c| c.winner.as_deref());
    let confidence = format!("{:.0} % interval", (1.0 - r.alpha) * 100.0);
    let bars: Vec<Ranged<'_>> = r
        .variants
        .iter()
        .map(|m| Ranged {
            label: &m.variant,
            value: primary_value(m, metric).unwrap_or(0.0),
            interval: rate_interval(m, metric, r.alpha),
        })
        .collect();
    let (chart_title, format): (String, fn(f64) -> String) = match metric {
        Metric::Revenue => ("Revenue per recipient by variant".into(), amount),
        _ => (
            format!(
                "{} by variant, with its {confidence}",
                capitalized(metric_label(metric))
            ),
            percent,
        ),
    };
    html! {
        div.table-wrap { table {
            thead { tr {
                th scope="col" { "Variant" } th.num scope="col" { "Exposed" } th.num scope="col" { "Delivered" }
                th.num scope="col" { "Opened" } th.num scope="col" { "Clicked" } th.num scope="col" { "Converted" }
                th.num scope="col" { "Revenue" } th.num scope="col" { (capitalized(metric_label(metric))) }
                @if metric != Metric::Revenue { th.num scope="col" { (confidence) } }
            } }
            tbody {
                @for m in &r.variants {
                    tr {
                        th scope="row" {
                            (m.variant)
                            @if m.variant == r.control { " " (badge("control", "idle")) }
                            @if Some(m.variant.as_str()) == winner { " " (badge("winner", "ok")) }
                        }
                        td.num { (group(m.recipients)) }
                        td.num { (group(m.delivered)) }
                        td.num { (group(m.opens)) }
                        td.num { (group(m.clicks)) }
                        td.num { (group(m.conversions)) }
                        td.num { (amount(m.revenue)) }
                        td.num { (primary_value(m, metric).map_or_else(|| "–".to_owned(), format)) }
                        @if metric != Metric::Revenue {
                            td.num { (rate_interval(m, metric, r.alpha).map_or_else(|| "–".to_owned(), |(l, h)| format!("{} – {}", percent(l), percent(h)))) }
                        }
                    }
                }
            }
        } }
        @if r.crossed > 0 {
            p.note { (group(r.crossed)) " exposure(s) under a second variant for the same person are left out." }
        }
        p.note { "A person is one unit, however many of the experiment's messages they got; rates are per person exposed (the holdout's people were held back)." }
        (charts::ranged_bars(&chart_title, "Variant", &bars, format))
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

fn p_value(p: Option<f64>) -> String {
    match p {
        None => "–".into(),
        Some(p) if p < 0.0001 => "< 0.0001".into(),
        Some(p) => format!("{p:.4}"),
    }
}

/// An estimate with its interval: points for rates, amounts for means.
fn estimate(e: Option<Estimate>, kind: MetricKind, relative: bool) -> String {
    let Some(e) = e else { return "–".into() };
    let f = |v: f64| match (kind, relative) {
        (_, true) => format!("{:+.1} %", v * 100.0),
        (MetricKind::Rate, false) => format!("{:+.2} pp", v * 100.0),
        (MetricKind::Mean, false) => format!("{:+.2}", v),
    };
    format!("{} [{}, {}]", f(e.value), f(e.low), f(e.high))
}

fn comparisons(report: &Report) -> Markup {
    let value = |v: f64| match report.metric {
        MetricKind::Rate => percent(v),
        MetricKind::Mean => amount(v),
    };
    let rates = report.metric == MetricKind::Rate;
    html! {
        p { (report.verdict) }
        @if let Some(s) = report.sample_ratio {
            @if s.mismatch {
                p.alert.error role="alert" { "The split does not match the plan (sample-ratio test p = " (p_value(Some(s.p_value))) "): something decides who gets which variant, and the results cannot be trusted." }
            } @else {
                p.note { "The split matches the plan (sample-ratio test p = " (p_value(Some(s.p_value))) ")." }
            }
        }
        div.table-wrap { table {
            caption { "Control " (report.control) ": " (value(report.control_value)) " over " (group(report.control_units)) " people. Intervals at " (format!("{:.0}", (1.0 - report.alpha) * 100.0)) " %." }
            thead { tr {
                th scope="col" { "Variant" } th.num scope="col" { "People" } th.num scope="col" { "Value" }
                th.num scope="col" { "Difference" }
                @if rates { th.num scope="col" { "Lift" } }
                th.num scope="col" { "p-value" } th.num scope="col" { "p (Holm)" } th.num scope="col" { "Other test p" }
                @if rates { th.num scope="col" { "Chance to beat control" } th.num scope="col" { "Expected loss" } }
                th scope="col" { "Reading" }
            } }
            tbody {
                @for c in &report.comparisons {
                    tr {
                        th scope="row" { (c.variant) }
                        td.num { (group(c.units)) }
                        td.num { (value(c.value)) }
                        td.num { (estimate(c.difference, report.metric, false)) }
                        @if rates { td.num { (estimate(c.lift, report.metric, true)) } }
                        td.num { (p_value(c.p_value)) }
                        td.num { (p_value(c.p_value_holm)) }
                        td.num { (p_value(c.p_value_alt)) }
                        @if rates {
                            td.num { (c.chance_to_beat.map_or_else(|| "–".to_owned(), percent)) }
                            td.num { (c.expected_loss.map_or_else(|| "–".to_owned(), |l| format!("{:.2} pp", l * 100.0))) }
                        }
                        td {
                            (c.verdict)
                            @for n in &c.notes { br; span.note { (n) } }
                        }
                    }
                }
            }
        } }
    }
}

fn sequential(r: &Results) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr {
                th scope="col" { "Variant" } th.num scope="col" { "Always-valid p" } th.num scope="col" { "Looks" }
                th scope="col" { "Difference shown" } th scope="col" { "Stopping rule" }
            } }
            tbody {
                @for s in &r.sequential {
                    tr {
                        th scope="row" { (s.variant) }
                        td.num { (p_value(Some(s.p_value))) }
                        td.num { (group(s.looks)) }
                        td { @if s.significant { (badge("yes", "ok")) } @else { (badge("not yet", "idle")) } }
                        td.note { (s.stopping_rule) }
                    }
                }
            }
        } }
    }
}

fn guardrails(r: &Results) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr { th scope="col" { "Guardrail" } th scope="col" { "State" } th scope="col" { "Reading" } } }
            tbody {
                @for g in &r.guardrails {
                    tr {
                        th scope="row" { (capitalized(guardrail_label(g.guardrail))) }
                        td {
                            @if !g.breached_by.is_empty() { (badge("breached", "bad")) " by " (g.breached_by.join(", ")) }
                            @else if g.report.is_some() { (badge("holds", "ok")) }
                            @else { (badge("not read", "idle")) }
                        }
                        td {
                            @if let Some(n) = &g.note { (n) }
                            @else if let Some(rep) = &g.report { (rep.verdict) }
                        }
                    }
                }
            }
        } }
    }
}

/// The engine's cumulative-lift chart of each variant against control, as an image (it is a
/// self-contained SVG), with its numbers.
fn lifts(e: &Experiment, units: &Units, alpha: f64) -> Markup {
    let metric = e.definition.primary_metric;
    let others: Vec<&str> = e
        .definition
        .variants
        .iter()
        .map(|v| v.name.as_str())
        .filter(|v| *v != e.control)
        .collect();
    html! {
        section.card {
            h2 { "Cumulative lift against control" }
            @if units.units.is_empty() {
                p.empty { "No one has been exposed yet: the lift is drawn day by day from the first exposure." }
            } @else {
                div.grid {
                    @for v in others {
                        @let days = outcomes::daily(units, metric, &e.control, v);
                        @let points = chart::cumulative_lift(&days, alpha);
                        @let title = format!("{v} against {} ({}, cumulative lift)", e.control, metric_label(metric));
                        @let svg = chart::svg(&points, &title);
                        figure.lift {
                            img src={ "data:image/svg+xml;base64," (base64::engine::general_purpose::STANDARD.encode(svg)) }
                                alt={ (title) ": the relative lift as of each day's end with its interval band, and each day's exposures" };
                            figcaption {
                                details {
                                    summary { "Numbers" }
                                    div.table-wrap { table {
                                        caption.visually-hidden { (title) }
                                        thead { tr { th scope="col" { "Day" } th.num scope="col" { "Exposed" } th.num scope="col" { "Lift" } th.num scope="col" { "Interval" } } }
                                        tbody {
                                            @for p in &points {
                                                tr {
                                                    th scope="row" { (p.day) }
                                                    td.num { (group(p.exposures)) }
                                                    @if let Some((l, lo, hi)) = p.lift {
                                                        td.num { (format!("{:+.1} %", l * 100.0)) }
                                                        td.num { (format!("{:+.1} % to {:+.1} %", lo * 100.0, hi * 100.0)) }
                                                    } @else {
                                                        td.num { "–" } td.num { "–" }
                                                    }
                                                }
                                            }
                                        }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_read_as_points_percentages_or_amounts() {
        let e = Some(Estimate {
            value: 0.012,
            low: -0.003,
            high: 0.027,
        });
        assert_eq!(
            estimate(e, MetricKind::Rate, false),
            "+1.20 pp [-0.30 pp, +2.70 pp]"
        );
        assert_eq!(estimate(e, MetricKind::Rate, true), "+1.2 % [-0.3 %, +2.7 %]");
        assert_eq!(estimate(e, MetricKind::Mean, false), "+0.01 [-0.00, +0.03]");
        assert_eq!(estimate(None, MetricKind::Rate, false), "–");
    }

    #[test]
    fn p_values_are_rounded_and_tiny_ones_bounded() {
        for (p, s) in [
            (None, "–"),
            (Some(0.04567), "0.0457"),
            (Some(0.00001), "< 0.0001"),
            (Some(1.0), "1.0000"),
        ] {
            assert_eq!(p_value(p), s);
        }
    }

    #[test]
    fn a_rate_has_an_interval_and_revenue_or_no_one_none() {
        let m = VariantMetrics {
            variant: "b".into(),
            recipients: 100,
            opens: 20,
            ..VariantMetrics::default()
        };
        let (low, high) = rate_interval(&m, Metric::Open, 0.05).unwrap();
        assert!(
            low < 0.2 && 0.2 < high && low > 0.12 && high < 0.3,
            "{low} {high}"
        );
        assert_eq!(rate_interval(&m, Metric::Revenue, 0.05), None);
        let nobody = VariantMetrics::default();
        assert_eq!(rate_interval(&nobody, Metric::Open, 0.05), None);
    }
}
