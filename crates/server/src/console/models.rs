//! `GET /console/models`: the models of the registry (propensity, clusters, lifetime value,
//! send time), each with its active and latest versions, when the version shown was trained and
//! on what, its validation verdict and its quality figures as the API's `/v1/models/{name}`
//! reports them (cross-validated and holdout AUC and log-loss with the calibration table;
//! cluster sizes and silhouette; the lifetime-value fit and its holdout check; everyone's
//! engagement by hour of the week), charted where a chart says more; and the recommendation
//! strategies served. Read-only: models are trained and activated with the API or `missive
//! model`. No personal data: every role that reads reports sees it.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use missive_engine::models::{ModelEntry, ModelKind, ModelVersion, Models, registry};
use serde_json::Value;

use super::charts::{self, Kind, Series, percent};
use super::layout::{self, Section, badge, group, time};
use super::session::Visit;
use crate::AppState;
use crate::auth::Reports;

fn kind_label(k: ModelKind) -> &'static str {
    match k {
        ModelKind::Propensity => "propensity",
        ModelKind::Cluster => "clusters",
        ModelKind::Clv => "lifetime value",
        ModelKind::SendTime => "send time",
    }
}

fn how_to_train() -> Markup {
    html! {
        p.note {
            "Models are trained with the API, " code { "POST /v1/models/{name}/train" }
            " (with " code { "kind" } ": propensity, cluster, clv or send_time; see docs/models.md), or with "
            code { "missive model train" } ", and scored into profiles once activated ("
            code { "POST /v1/models/{name}/activate" } "). Recommendations train with "
            code { "POST /v1/recommendations/train" } "."
        }
    }
}

/// A number at a JSON pointer of a training report.
fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn fixed(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

/// `GET /console/models`.
pub async fn page(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.models", "Your role does not read models.")
            .await;
    }
    let models = Models::new(state.engine.store().clone(), state.engine.clone());
    let entries = match models.list().await {
        Ok(e) => e,
        Err(e) => return layout::unavailable(&visit, Section::Models, "Models", &e),
    };
    // The version a model scores with, else its latest: its report is the one that counts.
    let mut shown = Vec::with_capacity(entries.len());
    for entry in entries {
        let n = entry.active.unwrap_or(entry.latest);
        match registry::version(state.engine.store(), &entry.name, n).await {
            Ok(v) => shown.push((entry, Some(v))),
            Err(registry::RegistryError::NoVersion { .. }) => shown.push((entry, None)),
            Err(e) => return layout::unavailable(&visit, Section::Models, "Models", &e),
        }
    }
    let body = html! {
        @if shown.is_empty() {
            p.empty { "No models yet." }
        }
        @for (entry, version) in &shown {
            (model_card(entry, version.as_ref()))
        }
        (recommendations(&state))
        (how_to_train())
    };
    layout::page(&visit, Section::Models, "Models", body)
}

fn model_card(entry: &ModelEntry, v: Option<&ModelVersion>) -> Markup {
    html! {
        section.card {
            h2 {
                (entry.name) " " (badge(kind_label(entry.kind), "idle")) " "
                @match entry.active {
                    Some(n) => (badge(&format!("active: v{n}"), "ok")),
                    None => (badge("inactive", "idle")),
                }
            }
            div.grid {
                dl.facts {
                    dt { "Versions" } dd { (entry.latest) @if let Some(n) = entry.active { " (v" (n) " scores profiles, " (if entry.live { "live on every change" } else { "in batch" }) ")" } }
                    dt { "Last trained" } dd { @if let Some(t) = entry.last_trained { (time(t)) } @else { "–" } }
                    dt { "Last scored" } dd { @if let Some(t) = entry.last_scored { (time(t)) } @else { "–" } }
                    @if let Some(h) = entry.schedule.score_every_hours { dt { "Scored again" } dd { "every " (h) " hours" } }
                    @if let Some(d) = entry.schedule.retrain_every_days { dt { "Trained again" } dd { "every " (d) " days" } }
                    @if let Some(v) = v {
                        dt { "Shown" } dd { "v" (v.version) ", trained " (time(v.trained_at)) " by " code { (v.trained_by) } }
                        dt { "Validation" } dd {
                            @if v.accepted { (badge("accepted", "ok")) } @else { (badge("refused", "bad")) }
                            " " (v.verdict)
                        }
                        dt { "Trained on" } dd {
                            (group(v.data.rows as u64)) " profiles"
                            @if let Some(p) = v.data.positives { ", " (group(p as u64)) " positive" }
                            @if v.data.sampled { " (a sample)" }
                        }
                        dt { "Left out" } dd {
                            (group(v.data.left_out_no_consent as u64)) " without profiling consent, "
                            (group(v.data.left_out_not_yet_seen as u64)) " not yet seen"
                        }
                        dt { "Data as of" } dd { (time(v.data.cutoff)) }
                        @if let Some(label) = &v.data.label {
                            dt { "Label" } dd { code { (label) } @if let Some(h) = v.data.horizon_days { " within " (h) " days" } }
                        }
                    }
                }
                @if let Some(v) = v { div { (quality(v)) } }
            }
            @if v.is_none() { p.empty { "The version to show could not be found (deleted while listed)." } }
        }
    }
}

/// The figures of a version's report, by kind.
fn quality(v: &ModelVersion) -> Markup {
    match v.kind {
        ModelKind::Propensity => propensity(&v.name, &v.metrics),
        ModelKind::Cluster => clusters(&v.name, &v.metrics),
        ModelKind::Clv => lifetime_value(&v.name, &v.metrics),
        ModelKind::SendTime => send_time(&v.name, &v.metrics),
    }
}

fn propensity(name: &str, m: &Value) -> Markup {
    let bins = m
        .pointer("/holdout/calibration")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let labels: Vec<String> = bins
        .iter()
        .map(|b| format!("{}–{}", fixed(num(b, "/from"), 1), fixed(num(b, "/to"), 1)))
        .collect();
    let predicted: Vec<f64> = bins
        .iter()
        .map(|b| num(b, "/mean_predicted").unwrap_or(0.0))
        .collect();
    let observed: Vec<f64> = bins
        .iter()
        .map(|b| num(b, "/observed_rate").unwrap_or(0.0))
        .collect();
    let importances: Vec<(String, f64)> = m
        .get("importances")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_str()?.to_owned(), p.get(1)?.as_f64()?)))
                .take(8)
                .collect()
        })
        .unwrap_or_default();
    html! {
        div.table-wrap { table {
            caption { "Quality: cross-validation (mean over the folds) and the held-out rows" }
            thead { tr { th scope="col" { "" } th.num scope="col" { "AUC" } th.num scope="col" { "PR-AUC" } th.num scope="col" { "Log-loss" } } }
            tbody {
                tr {
                    th scope="row" { "Cross-validation" }
                    td.num { (fixed(num(m, "/cross_validation/auc_mean"), 3)) " ± " (fixed(num(m, "/cross_validation/auc_sd"), 3)) }
                    td.num { (fixed(num(m, "/cross_validation/pr_auc_mean"), 3)) }
                    td.num { (fixed(num(m, "/cross_validation/log_loss_mean"), 3)) }
                }
                @if m.get("baseline").is_some_and(|b| !b.is_null()) {
                    tr {
                        th scope="row" { "Logistic baseline" }
                        td.num { (fixed(num(m, "/baseline/auc_mean"), 3)) }
                        td.num { (fixed(num(m, "/baseline/pr_auc_mean"), 3)) }
                        td.num { (fixed(num(m, "/baseline/log_loss_mean"), 3)) }
                    }
                }
                tr {
                    th scope="row" { "Holdout (" (group(num(m, "/holdout/rows").unwrap_or(0.0) as u64)) " rows)" }
                    td.num { (fixed(num(m, "/holdout/auc"), 3)) }
                    td.num { (fixed(num(m, "/holdout/pr_auc"), 3)) }
                    td.num { (fixed(num(m, "/holdout/log_loss"), 3)) }
                }
            }
        } }
        @if !importances.is_empty() {
            h3 { "Features that weigh most" }
            ol { @for (f, w) in &importances { li { code { (f) } " " span.note { (format!("{w:.3}")) } } } }
        }
        @if !bins.is_empty() {
            h3 { "Calibration on the holdout" }
            (charts::chart_of("Predicted probability", &format!("{name}: predicted and observed"), &labels, &[
                Series { name: "Predicted", values: &predicted },
                Series { name: "Observed", values: &observed },
            ], Kind::Bars, percent))
        }
    }
}

fn clusters(name: &str, m: &Value) -> Markup {
    let found = m
        .get("clusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let labels: Vec<String> = found
        .iter()
        .map(|c| {
            format!(
                "Cluster {}",
                c.get("cluster").and_then(Value::as_u64).unwrap_or(0)
            )
        })
        .collect();
    let sizes: Vec<f64> = found.iter().map(|c| num(c, "/size").unwrap_or(0.0)).collect();
    html! {
        dl.facts {
            dt { "Clusters" } dd { (found.len()) }
            dt { "Silhouette" } dd { (fixed(num(m, "/silhouette"), 3)) span.note { " (−1 to 1: higher is better separated)" } }
            @if let Some(i) = num(m, "/inertia") { dt { "Inertia" } dd { (format!("{i:.1}")) } }
            @if num(m, "/noise").is_some_and(|n| n > 0.0) { dt { "In no cluster" } dd { (fixed(num(m, "/noise"), 0)) } }
        }
        @if !found.is_empty() {
            (charts::chart_of("Cluster", &format!("{name}: cluster sizes"), &labels, &[Series { name: "Profiles", values: &sizes }], Kind::Bars, charts::compact))
            div.table-wrap { table {
                thead { tr { th scope="col" { "Cluster" } th.num scope="col" { "Profiles" } th scope="col" { "What sets it apart" } } }
                tbody {
                    @for (c, label) in found.iter().zip(&labels) {
                        tr {
                            th scope="row" { (label) }
                            td.num { (group(num(c, "/size").unwrap_or(0.0) as u64)) }
                            td { (c.get("summary").and_then(Value::as_str).unwrap_or("")) }
                        }
                    }
                }
            } }
        }
    }
}

fn lifetime_value(name: &str, m: &Value) -> Markup {
    let groups = m
        .pointer("/holdout/groups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let labels: Vec<String> = groups
        .iter()
        .map(|g| g.get("x").and_then(Value::as_str).unwrap_or("").to_owned())
        .collect();
    let expected: Vec<f64> = groups
        .iter()
        .map(|g| num(g, "/expected").unwrap_or(0.0))
        .collect();
    let actual: Vec<f64> = groups.iter().map(|g| num(g, "/actual").unwrap_or(0.0)).collect();
    html! {
        dl.facts {
            dt { "Customers" } dd { (group(num(m, "/customers").unwrap_or(0.0) as u64)) }
            dt { "BG/NBD" } dd { "r " (fixed(num(m, "/bg_nbd/r"), 3)) ", α " (fixed(num(m, "/bg_nbd/alpha"), 3)) ", a " (fixed(num(m, "/bg_nbd/a"), 3)) ", b " (fixed(num(m, "/bg_nbd/b"), 3)) }
            dt { "Gamma-Gamma" } dd {
                @if m.get("gamma_gamma").is_some_and(|g| !g.is_null()) {
                    "p " (fixed(num(m, "/gamma_gamma/p"), 3)) ", q " (fixed(num(m, "/gamma_gamma/q"), 3)) ", γ " (fixed(num(m, "/gamma_gamma/gamma"), 3))
                } @else { "not fitted (no repeat purchase of value)" }
            }
            dt { "Value over " (fixed(num(m, "/lifetime_value/months"), 0)) " months" } dd {
                (fixed(num(m, "/lifetime_value/mean"), 2)) " a customer, " (fixed(num(m, "/lifetime_value/total"), 2)) " in all"
            }
            @if m.get("holdout").is_some_and(|h| !h.is_null()) {
                dt { "Holdout check" } dd {
                    (fixed(num(m, "/holdout/expected"), 1)) " repeat purchases expected over " (fixed(num(m, "/holdout/weeks"), 1)) " weeks, "
                    (fixed(num(m, "/holdout/actual"), 1)) " made (" (num(m, "/holdout/error").map_or_else(|| "–".to_owned(), |e| format!("{:+.1} %", e * 100.0))) ")"
                }
            }
        }
        @if !groups.is_empty() {
            (charts::chart_of("Repeat purchases before", &format!("{name}: repeat purchases per customer after calibration, by purchases before"), &labels, &[
                Series { name: "Expected", values: &expected },
                Series { name: "Actual", values: &actual },
            ], Kind::Bars, |v| format!("{v:.2}")))
        }
    }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// An hour of the week (0 is Monday 00:00) as `Mon 19:00`.
fn hour_of_week(h: usize) -> String {
    format!("{} {:02}:00", DAYS[(h / 24) % 7], h % 24)
}

fn send_time(name: &str, m: &Value) -> Markup {
    let shares: Vec<f64> = m
        .get("population")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    let labels: Vec<String> = (0..shares.len()).map(hour_of_week).collect();
    html! {
        dl.facts {
            dt { "Profiles with opens or clicks" } dd { (group(num(m, "/profiles_with_engagement").unwrap_or(0.0) as u64)) }
            dt { "Opens and clicks" } dd { (group(num(m, "/events").unwrap_or(0.0) as u64)) }
            dt { "Everyone's best hour" } dd { (num(m, "/population_best_hour_of_week").map_or_else(|| "–".to_owned(), |h| hour_of_week(h as usize))) span.note { " (local time)" } }
        }
        @if !shares.is_empty() {
            (charts::chart_of("Hour of the week", &format!("{name}: share of opens and clicks by hour of the week"), &labels, &[Series { name: "Share", values: &shares }], Kind::Lines, percent))
        }
    }
}

/// The recommendation strategies served (trained as one model, kept in memory).
fn recommendations(state: &AppState) -> Markup {
    let recs = state.content.recs();
    let (current, training, failure) = (recs.current(), recs.progress(), recs.last_failure());
    html! {
        section.card {
            h2 { "Recommendations" }
            @if let Some(m) = &current {
                dl.facts {
                    dt { "Served" } dd { "version " (m.version) ", trained " (time(m.trained_at)) " in " (format!("{:.1}", m.seconds)) " s" }
                    dt { "Learned from" } dd { (group(m.read.with_interactions as u64)) " people, " (group(m.read.interactions as u64)) " product events" }
                    dt { "Left out" } dd { (group(m.read.no_consent as u64)) " without personalization consent" }
                    dt { "Products" } dd { (group(m.items.len() as u64)) }
                }
            } @else {
                p.empty { "Not trained since the server started: e-mails recommend by the marketer's rules, categories and best sellers only." }
            }
            @if let Some(t) = &training {
                p.note { "Training since " (time(t.started_at)) ": " (group(t.profiles_read as u64)) " profiles read." }
            }
            @if let Some(f) = &failure {
                p.alert.error role="alert" { "The last training failed (" (time(f.at)) "): " (f.error) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_of_the_week_start_on_monday_at_midnight() {
        for (h, s) in [
            (0, "Mon 00:00"),
            (19, "Mon 19:00"),
            (24, "Tue 00:00"),
            (167, "Sun 23:00"),
        ] {
            assert_eq!(hour_of_week(h), s);
        }
    }

    #[test]
    fn report_figures_are_read_by_pointer_and_missing_ones_shown_as_dashes() {
        let m = serde_json::json!({"cross_validation": {"auc_mean": 0.8123}, "silhouette": null});
        assert_eq!(fixed(num(&m, "/cross_validation/auc_mean"), 3), "0.812");
        assert_eq!(fixed(num(&m, "/silhouette"), 3), "–");
        assert_eq!(fixed(num(&m, "/nothing/here"), 3), "–");
        assert_eq!(fixed(Some(f64::NAN), 1), "–");
    }
}
