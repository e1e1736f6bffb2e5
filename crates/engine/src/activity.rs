//! Hourly activity totals: what each committed batch of events adds to the console's
//! overview (events, deliveries, opens, clicks, orders and their revenue), by the hour of the
//! events' own timestamps. Pure: the events writer stores the totals in the events' commit,
//! and [`series`] reads them back as charts' points.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use missive_core::EventKind;
use missive_core::profile::{ORDER_COMPLETED, order_revenue};
use missive_store::{ActivityCount, ActivityMetric, StoredEvent};

/// The most one order adds to the revenue totals (ten billion in major units): a value past
/// it is a client's mistake or abuse, and must not overflow an hour's total (the stores also
/// saturate their sums).
pub const MAX_ORDER_REVENUE_MINOR: i64 = 1_000_000_000_000;

/// What `events` add to the hourly totals, one count per hour and metric.
pub fn tally(events: &[StoredEvent]) -> Vec<ActivityCount> {
    let mut counts = Vec::with_capacity(events.len() + 4);
    for e in events {
        let hour = hour_of(e.timestamp);
        let mut add = |metric, value| counts.push(ActivityCount { hour, metric, value });
        add(ActivityMetric::Events, 1);
        if e.kind != EventKind::Track {
            continue;
        }
        match e.name.as_str() {
            "Email Delivered" => add(ActivityMetric::Delivered, 1),
            "Email Opened" => add(ActivityMetric::Opened, 1),
            "Email Link Clicked" => add(ActivityMetric::Clicked, 1),
            ORDER_COMPLETED => {
                add(ActivityMetric::Orders, 1);
                if let Some(props) = e.body.get("properties").and_then(|p| p.as_object()) {
                    add(
                        ActivityMetric::RevenueMinor,
                        order_revenue(props).0.clamp(0, MAX_ORDER_REVENUE_MINOR),
                    );
                }
            }
            _ => {}
        }
    }
    ActivityCount::summed(counts)
}

impl crate::Engine {
    /// The hourly totals with `since <= hour < until`, as committed (the events of the last
    /// fraction of a second may not be in them yet).
    pub async fn activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ActivityCount>, missive_store::StoreError> {
        self.store().events().activity(since, until).await
    }

    /// Live profiles, as of the last commit (a count of the profiles, not of the events).
    pub async fn profile_count(&self) -> Result<u64, missive_store::StoreError> {
        self.store().events().profile_count().await
    }
}

/// The hour `at` falls in.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// One metric's totals over consecutive buckets of `bucket` (a whole number of hours) from
/// `since`: `buckets` values, zero where nothing happened.
pub fn series(
    counts: &[ActivityCount],
    metric: ActivityMetric,
    since: DateTime<Utc>,
    bucket: TimeDelta,
    buckets: usize,
) -> Vec<i64> {
    let mut out = vec![0i64; buckets];
    let width = bucket.num_seconds().max(1);
    for c in counts.iter().filter(|c| c.metric == metric) {
        let offset = (c.hour - since).num_seconds();
        if offset < 0 {
            continue;
        }
        if let Some(v) = out.get_mut((offset / width) as usize) {
            *v = v.saturating_add(c.value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use missive_core::{MessageId, ProfileId};
    use serde_json::json;

    fn ev(name: &str, kind: EventKind, at: DateTime<Utc>, props: serde_json::Value) -> StoredEvent {
        let p = ProfileId::generate();
        StoredEvent {
            seq: 1,
            message_id: MessageId::parse("m-1").unwrap(),
            profile_id: p.clone(),
            origin_profile_id: p,
            kind,
            name: name.into(),
            timestamp: at,
            received_at: at,
            body: json!({ "properties": props }),
        }
    }

    #[test]
    fn tally_counts_each_metric_by_the_events_own_hour() {
        let at = |h, m| Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap();
        let events = [
            ev(
                "Order Completed",
                EventKind::Track,
                at(9, 5),
                json!({"revenue": 89.9}),
            ),
            ev(
                "Order Completed",
                EventKind::Track,
                at(9, 55),
                json!({"total": "10.10"}),
            ),
            ev("Email Opened", EventKind::Track, at(10, 0), json!({})),
            ev("Email Link Clicked", EventKind::Track, at(10, 1), json!({})),
            ev("Email Delivered", EventKind::Track, at(10, 2), json!({})),
            // Absurd revenue is capped, not summed into an overflow.
            ev(
                "Order Completed",
                EventKind::Track,
                at(11, 0),
                json!({"products": [{"price": 1e15, "quantity": 1e6}]}),
            ),
            // Not a track: counts as an event only.
            ev(
                "Order Completed",
                EventKind::Page,
                at(10, 3),
                json!({"revenue": 5}),
            ),
        ];
        let got = tally(&events);
        let find = |h, m: ActivityMetric| {
            got.iter()
                .find(|c| c.hour == at(h, 0) && c.metric == m)
                .map(|c| c.value)
        };
        assert_eq!(find(9, ActivityMetric::Events), Some(2));
        assert_eq!(find(9, ActivityMetric::Orders), Some(2));
        assert_eq!(find(9, ActivityMetric::RevenueMinor), Some(10_000));
        assert_eq!(find(10, ActivityMetric::Events), Some(4));
        assert_eq!(find(10, ActivityMetric::Opened), Some(1));
        assert_eq!(find(10, ActivityMetric::Clicked), Some(1));
        assert_eq!(find(10, ActivityMetric::Delivered), Some(1));
        assert_eq!(find(10, ActivityMetric::Orders), None);
        assert_eq!(
            find(11, ActivityMetric::RevenueMinor),
            Some(MAX_ORDER_REVENUE_MINOR)
        );
        assert_eq!(got.len(), 10, "one count per hour and metric: {got:?}");
    }

    #[test]
    fn series_buckets_hours_and_fills_gaps_with_zero() {
        let since = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let c = |h: i64, v| ActivityCount {
            hour: since + TimeDelta::hours(h),
            metric: ActivityMetric::Orders,
            value: v,
        };
        let counts = [
            c(-1, 100),
            c(0, 1),
            c(5, 2),
            c(23, 3),
            c(24, 4),
            c(71, 5),
            c(72, 6),
        ];
        assert_eq!(
            series(&counts, ActivityMetric::Orders, since, TimeDelta::days(1), 3),
            vec![6, 4, 5]
        );
        assert_eq!(
            series(&counts, ActivityMetric::Events, since, TimeDelta::days(1), 3),
            vec![0, 0, 0]
        );
    }
}
