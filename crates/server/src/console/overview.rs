//! `GET /console`: how the workspace is doing. Events, deliveries, opens, clicks, orders and
//! revenue over a chosen range (from the hourly activity totals, `missive_engine::activity`),
//! the journeys and broadcasts running, and what needs attention. No personal data: every
//! role that reads reports sees it.

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use maud::{Markup, html};
use missive_engine::activity::{hour_of, series};
use missive_sending::broadcasts::BroadcastState;
use missive_store::{ActivityCount, ActivityMetric};

use super::charts::{self, Kind, Series};
use super::layout::{self, Section, group, money};
use super::session::Visit;
use crate::AppState;
use crate::auth::Reports;

/// The ranges the overview offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub(crate) enum Range {
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[default]
    #[serde(rename = "30d")]
    Month,
    #[serde(rename = "90d")]
    Quarter,
}

impl Range {
    const ALL: [Range; 4] = [Range::Day, Range::Week, Range::Month, Range::Quarter];

    fn as_str(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::Quarter => "90d",
        }
    }

    /// Bucket width and count: hours over a day, six hours over a week, days beyond.
    fn buckets(self) -> (TimeDelta, usize) {
        match self {
            Range::Day => (TimeDelta::hours(1), 24),
            Range::Week => (TimeDelta::hours(6), 28),
            Range::Month => (TimeDelta::days(1), 30),
            Range::Quarter => (TimeDelta::days(1), 90),
        }
    }

    fn label(self, start: DateTime<Utc>) -> String {
        match self {
            Range::Day => start.format("%H:00").to_string(),
            Range::Week => start.format("%a %Hh").to_string(),
            Range::Month | Range::Quarter => start.format("%b %d").to_string(),
        }
    }
}

#[derive(serde::Deserialize)]
pub struct OverviewQuery {
    #[serde(default)]
    range: Range,
}

/// The buckets of a range ending with the one that holds `now`: their start, and labels.
pub(crate) fn window(range: Range, now: DateTime<Utc>) -> (DateTime<Utc>, Vec<String>) {
    let (width, n) = range.buckets();
    let end = hour_of(now) + TimeDelta::hours(1);
    // Day buckets start at midnight: the last one is today.
    let end = if width >= TimeDelta::days(1) {
        now.date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(end, |d| d.and_utc() + TimeDelta::days(1))
    } else if width > TimeDelta::hours(1) {
        let aligned = hour_of(now) - TimeDelta::hours(i64::from(now.hour()) % width.num_hours());
        aligned + width
    } else {
        end
    };
    let since = end - width * n as i32;
    let labels = (0..n).map(|i| range.label(since + width * i as i32)).collect();
    (since, labels)
}

/// Totals of one metric over the range.
fn total(counts: &[ActivityCount], metric: ActivityMetric) -> i64 {
    counts
        .iter()
        .filter(|c| c.metric == metric)
        .map(|c| c.value)
        .sum()
}

fn rate(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "–".into();
    }
    format!("{:.1} %", part as f64 / whole as f64 * 100.0)
}

fn kpi(label: &str, value: String, sub: Option<String>) -> Markup {
    html! {
        div.kpi {
            div.label { (label) }
            div.value { (value) }
            @if let Some(s) = sub { div.sub { (s) } }
        }
    }
}

pub async fn page(State(state): State<AppState>, visit: Visit, Query(q): Query<OverviewQuery>) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.overview", "Your role does not read reports.")
            .await;
    }
    let now = state.engine.clock().now();
    let (since, labels) = window(q.range, now);
    let (width, n) = q.range.buckets();
    let until = since + width * n as i32;
    let (counts, totals, broadcasts, journeys) = tokio::join!(
        state.engine.activity(since, until),
        state.engine.profile_count(),
        state.broadcasts.list(),
        state.journeys.definitions(),
    );
    let counts = match counts {
        Ok(c) => c,
        Err(e) => return layout::unavailable(&visit, Section::Overview, "Overview", &e),
    };
    let points = |m| -> Vec<f64> {
        series(&counts, m, since, width, n)
            .into_iter()
            .map(|v| v as f64)
            .collect()
    };
    let (events, delivered, opened, clicked, orders, revenue) = (
        points(ActivityMetric::Events),
        points(ActivityMetric::Delivered),
        points(ActivityMetric::Opened),
        points(ActivityMetric::Clicked),
        points(ActivityMetric::Orders),
        points(ActivityMetric::RevenueMinor)
            .into_iter()
            .map(|v| v / 100.0)
            .collect::<Vec<_>>(),
    );
    let problems = problems(&state, now).await;
    let t = |m| total(&counts, m);
    let d = t(ActivityMetric::Delivered);
    let broadcasts = broadcasts.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "overview: broadcasts unreadable");
        Vec::new()
    });
    let active: Vec<_> = broadcasts
        .iter()
        .filter(|b| {
            matches!(
                b.state,
                BroadcastState::Running | BroadcastState::Scheduled | BroadcastState::Paused
            )
        })
        .collect();
    let journeys = journeys.map(|j| j.to_vec()).unwrap_or_default();
    let body = html! {
        div.toolbar {
            nav.tabs aria-label="Range" {
                @for r in Range::ALL {
                    a href={ "/console?range=" (r.as_str()) } aria-current=[(r == q.range).then_some("true")] { (r.as_str()) }
                }
            }
            span.note { "By the events' own time, in UTC. Updated as events are committed." }
        }
        div.kpis {
            (kpi("Profiles", totals.as_ref().map_or("–".into(), |n| group(*n)), None))
            (kpi("Events", group(t(ActivityMetric::Events).max(0) as u64), Some(format!("in {}", q.range.as_str()))))
            (kpi("Delivered", group(d.max(0) as u64), None))
            (kpi("Opened", rate(t(ActivityMetric::Opened), d), Some(format!("{} opens", group(t(ActivityMetric::Opened).max(0) as u64)))))
            (kpi("Clicked", rate(t(ActivityMetric::Clicked), d), Some(format!("{} clicks", group(t(ActivityMetric::Clicked).max(0) as u64)))))
            (kpi("Orders", group(t(ActivityMetric::Orders).max(0) as u64), None))
            (kpi("Revenue", money(t(ActivityMetric::RevenueMinor)), None))
        }
        div.grid.charts {
            section.card {
                h2 { "Events" }
                (charts::chart("Events", &labels, &[Series { name: "Events", values: &events }], Kind::Lines, charts::compact))
            }
            section.card {
                h2 { "E-mail" }
                (charts::chart("E-mail", &labels, &[
                    Series { name: "Delivered", values: &delivered },
                    Series { name: "Opened", values: &opened },
                    Series { name: "Clicked", values: &clicked },
                ], Kind::Lines, charts::compact))
            }
            section.card {
                h2 { "Orders" }
                (charts::chart("Orders", &labels, &[Series { name: "Orders", values: &orders }], Kind::Bars, charts::compact))
            }
            section.card {
                h2 { "Revenue" }
                (charts::chart("Revenue", &labels, &[Series { name: "Revenue", values: &revenue }], Kind::Bars, charts::compact))
            }
        }
        div.grid {
            section.card {
                h2 { "Broadcasts in progress" }
                @if active.is_empty() {
                    p.empty { "None running or scheduled." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Broadcast" } th scope="col" { "State" } th scope="col" { "Progress" } } }
                        tbody {
                            @for b in &active {
                                tr {
                                    td { a href={ "/console/broadcasts/" (b.id) } { (b.template) " → " (b.segment) } }
                                    td { (super::broadcasts::state_badge(b.state)) }
                                    td { (layout::progress(b.queued, b.total, "Queued")) }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Journeys" }
                @if journeys.is_empty() {
                    p.empty { "No journeys yet." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Journey" } th scope="col" { "Version" } th scope="col" { "Starts on" } } }
                        tbody {
                            @for j in &journeys {
                                tr {
                                    td { a href={ "/console/journeys/" (layout::path_part(&j.name)) } { (j.name) } }
                                    td.num { (j.version) }
                                    td { (super::journeys::trigger(&j.def)) }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Needs attention" }
                (attention(&state, &broadcasts, &problems))
            }
        }
    };
    layout::page(&visit, Section::Overview, "Overview", body)
}

/// What failed lately or no longer works: read for "Needs attention".
struct Problems {
    failures: Option<missive_sending::failures::Summary>,
    /// Templates that no longer compile, with why.
    templates: Vec<(String, String)>,
    /// Blocks that no longer compile (a segment they read was removed), with why.
    blocks: Vec<(String, String)>,
}

/// How far back failed messages are read.
const FAILURES_SINCE_DAYS: i64 = 7;

async fn problems(state: &AppState, now: chrono::DateTime<Utc>) -> Problems {
    let since = now - TimeDelta::days(FAILURES_SINCE_DAYS);
    let failures = missive_sending::failures::recent(state.engine.store(), since)
        .await
        .map_err(|e| tracing::warn!(error = %e, "overview: failures unreadable"))
        .ok();
    let mut templates = Vec::new();
    if let Ok(list) = state.content.list_templates().await {
        for t in list {
            if let Err(e) = state.content.compiled_template(&t.name).await {
                templates.push((t.name, e.to_string()));
            }
        }
    }
    let blocks = state
        .content
        .blocks()
        .await
        .map(|b| b.broken.clone())
        .unwrap_or_default();
    Problems {
        failures,
        templates,
        blocks,
    }
}

/// Set-up warnings, domains refusing mail, templates and blocks that fail, cancelled broadcasts.
fn attention(
    state: &AppState,
    broadcasts: &[missive_sending::broadcasts::Broadcast],
    problems: &Problems,
) -> Markup {
    let warnings = &state.setup_warnings;
    let finished_bad: Vec<_> = broadcasts
        .iter()
        .filter(|b| b.state == BroadcastState::Cancelled)
        .take(5)
        .collect();
    let (domains, composing) = problems
        .failures
        .as_ref()
        .map_or((&[][..], &[][..]), |f| (&f.by_domain[..], &f.by_template[..]));
    let nothing = warnings.is_empty()
        && finished_bad.is_empty()
        && domains.is_empty()
        && composing.is_empty()
        && problems.templates.is_empty()
        && problems.blocks.is_empty();
    html! {
        @if nothing {
            p.empty { "Nothing needs attention." }
        }
        ul.attention {
            @for w in warnings.iter() { li { (layout::badge("Set-up", "warn")) " " (w.message()) } }
            @for g in domains.iter().take(5) {
                li {
                    (layout::badge("Refused", "bad")) " " strong { (g.key) } ": " (group(g.messages))
                    " message(s) refused for good in " (FAILURES_SINCE_DAYS) " days, e.g. " code { (g.example) }
                }
            }
            @for g in composing.iter().take(5) {
                li {
                    (layout::badge("Not composed", "bad")) " template " a href={ "/console/templates/edit/" (layout::path_part(&g.key)) } { (g.key) }
                    ": " (group(g.messages)) " message(s) failed, e.g. " code { (g.example) }
                }
            }
            @for (name, why) in &problems.templates {
                li { (layout::badge("Template", "bad")) " " a href={ "/console/templates/edit/" (layout::path_part(name)) } { (name) } " does not compile: " (why) }
            }
            @for (name, why) in &problems.blocks {
                li { (layout::badge("Block", "warn")) " " (name) " is left out: " (why) }
            }
            @for b in &finished_bad {
                li { (layout::badge("Cancelled", "idle")) " " a href={ "/console/broadcasts/" (b.id) } { "Broadcast " (b.template) " → " (b.segment) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_range_ends_with_the_bucket_that_holds_now() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 14, 25, 0).unwrap();
        let at = |d, h| Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap();
        for (range, since, first, last) in [
            (Range::Day, at(9, 15), "15:00", "14:00"),
            (Range::Week, at(3, 18), "Tue 18h", "Tue 12h"),
            (Range::Month, at(9, 0) - TimeDelta::days(28), "Feb 09", "Mar 10"),
        ] {
            let (s, labels) = window(range, now);
            assert_eq!(s, since, "{range:?}");
            assert_eq!(labels.first().map(String::as_str), Some(first), "{range:?}");
            assert_eq!(labels.last().map(String::as_str), Some(last), "{range:?}");
            let (width, n) = range.buckets();
            assert!(
                s + width * n as i32 > now && s + width * (n as i32 - 1) <= now,
                "{range:?}"
            );
        }
    }

    #[test]
    fn rates_say_nothing_without_deliveries() {
        assert_eq!(rate(5, 0), "–");
        assert_eq!(rate(1, 8), "12.5 %");
    }
}
