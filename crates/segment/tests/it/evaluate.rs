//! Evaluation of compiled segments against profiles built from real events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::message::{parse_time, validate_message};
use missive_core::profile::HistoryEntry;
use missive_core::{Profile, ProfileId, Touched};
use missive_segment::{Facts, FieldType, Schema, Segment};
use proptest::prelude::*;
use serde_json::{Value, json};

fn t(s: &str) -> DateTime<Utc> {
    parse_time(s).unwrap()
}

/// A profile folded from `messages` (Segment JSON), with every event kept for windows.
fn profile(messages: &[Value]) -> (Profile, Vec<HistoryEntry>) {
    let mut p = Profile::new(ProfileId::generate(), t("2026-01-01T00:00:00Z"));
    let mut events = Vec::new();
    for m in messages {
        let e = validate_message(m.clone(), None, None, t("2026-03-01T00:00:00Z")).unwrap();
        p.apply_event(&e, 100, &mut Touched::default());
        events.push(HistoryEntry::of(&e));
    }
    (p, events)
}

fn schema() -> Schema {
    Schema::open_with_traits([
        ("city".to_owned(), FieldType::String),
        ("age".to_owned(), FieldType::Number),
    ])
}

fn evaluate(src: &str, p: &Profile, events: &[HistoryEntry], now: &str) -> missive_segment::Evaluation {
    let seg = Segment::compile(src, &schema()).unwrap();
    let (segments, scores) = (BTreeSet::new(), BTreeMap::new());
    seg.explain(&Facts::new(p, events, &segments, &scores), t(now))
}

const HIGH_VALUE_BROWSER: &str = r#"traits.city == "New York" and orders.count >= 2 and orders.revenue >= 500
    and count(event "Product Viewed" within 7d) >= 1 and count(event "Order Completed" within 7d) == 0"#;

fn new_yorker() -> Vec<Value> {
    vec![
        json!({"type": "identify", "userId": "u", "traits": {"city": "New York"}, "timestamp": "2026-01-02T00:00:00Z"}),
        json!({"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": 300}, "timestamp": "2026-01-10T00:00:00Z"}),
        json!({"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": 250}, "timestamp": "2026-02-01T00:00:00Z"}),
        json!({"type": "track", "userId": "u", "event": "Product Viewed", "properties": {"category": "shoes"}, "timestamp": "2026-02-20T10:00:00Z"}),
    ]
}

#[test]
fn the_issue_example_holds_for_a_new_york_repeat_buyer_who_browsed_this_week() {
    let (p, events) = profile(&new_yorker());
    let e = evaluate(HIGH_VALUE_BROWSER, &p, &events, "2026-02-22T00:00:00Z");
    assert!(e.member, "{:#?}", e.predicates);
    assert_eq!(e.predicates.len(), 5);
    assert_eq!(e.predicates[0].predicate, r#"traits.city == "New York""#);
    assert_eq!(
        e.predicates[3].predicate,
        r#"count(event "Product Viewed" within 7d) >= 1"#
    );
    assert_eq!(e.predicates[3].value, json!(1.0));
    // The view leaves the 7-day window 7 days after it happened: that is when to look again.
    assert_eq!(e.next_change, Some(t("2026-02-27T10:00:00Z")));
}

#[test]
fn a_profile_leaves_a_window_segment_at_exactly_the_instant_its_last_view_ages_out() {
    let (p, events) = profile(&new_yorker());
    let just_before = evaluate(HIGH_VALUE_BROWSER, &p, &events, "2026-02-27T09:59:59.999999Z");
    assert!(just_before.member);
    let at = just_before.next_change.unwrap();
    assert_eq!(at, t("2026-02-27T10:00:00Z"));
    let after = evaluate(HIGH_VALUE_BROWSER, &p, &events, "2026-02-27T10:00:00Z");
    assert!(!after.member);
    assert_eq!(after.next_change, None, "nothing left to age out");
}

#[test]
fn last_seen_before_ago_turns_true_when_the_threshold_passes() {
    let (p, events) = profile(&new_yorker());
    let e = evaluate("last_seen before 30d ago", &p, &events, "2026-03-01T00:00:00Z");
    assert!(!e.member);
    let at = e.next_change.unwrap();
    assert_eq!(at, t("2026-03-22T10:00:00Z") + TimeDelta::microseconds(1));
    assert!(evaluate("last_seen before 30d ago", &p, &events, &at.to_rfc3339()).member);
}

#[test]
fn filters_sums_lists_and_strings_evaluate() {
    let (p, events) = profile(&new_yorker());
    let now = "2026-02-22T00:00:00Z";
    for (segment, expected) in [
        (
            r#"count(event "Product Viewed" where properties.category == "shoes" within 30d) == 1"#,
            true,
        ),
        (
            r#"count(event "Product Viewed" where properties.category == "hats") >= 1"#,
            false,
        ),
        (r#"sum(event "Order Completed".revenue within 90d) == 550"#, true),
        (r#"sum(event "Order Completed".revenue within 30d) == 250"#, true),
        (
            r#"traits.city in ["Paris", "New York"] and traits.city starts_with "New""#,
            true,
        ),
        (r#"traits.city contains "York" and not traits.age exists"#, true),
        (
            r#"orders.average_order_value > 270 and events."Product Viewed".count == 1"#,
            true,
        ),
        (
            r#"orders.last_at after "2026-01-15" and first_seen before "2026-01-03""#,
            true,
        ),
        // A missing trait is never equal, nor unequal, to anything.
        ("traits.age == 3 or traits.age != 3", false),
    ] {
        assert_eq!(evaluate(segment, &p, &events, now).member, expected, "{segment}");
    }
}

#[test]
fn segment_membership_and_model_scores_are_read_from_the_facts() {
    let (p, events) = profile(&new_yorker());
    let seg = Segment::compile(
        r#"segment "VIP" and scores.churn < 0.2 and model.cluster == "loyal""#,
        &schema(),
    )
    .unwrap();
    let segments = BTreeSet::from(["VIP".to_owned()]);
    let scores = BTreeMap::from([
        ("churn".to_owned(), json!(0.1)),
        ("cluster".to_owned(), json!("loyal")),
    ]);
    let facts = Facts::new(&p, &events, &segments, &scores);
    assert!(seg.evaluate(&facts, t("2026-03-01T00:00:00Z")).member);
    let none = BTreeSet::new();
    let facts = Facts::new(&p, &events, &none, &scores);
    assert!(!seg.evaluate(&facts, t("2026-03-01T00:00:00Z")).member);
}

proptest! {
    /// Between `now` and `next_change` the answer does not change: evaluating at any instant in
    /// between gives the answer at `now`, and at `next_change` the engine looks again.
    #[test]
    fn the_answer_holds_until_next_change(
        offsets in prop::collection::vec(0i64..20 * 24 * 60, 0..12),
        window_hours in 1i64..200,
        threshold in 0u32..4,
        probe in 0.0f64..1.0,
    ) {
        let base = t("2026-02-01T00:00:00Z");
        let msgs: Vec<Value> = offsets
            .iter()
            .map(|m| json!({"type": "track", "userId": "u", "event": "Viewed",
                            "timestamp": (base + TimeDelta::minutes(*m)).to_rfc3339()}))
            .collect();
        let (p, events) = profile(&msgs);
        let src = format!("count(event \"Viewed\" within {window_hours}h) >= {threshold} or last_seen before 10d ago");
        let seg = Segment::compile(&src, &schema()).unwrap();
        let (segments, scores) = (BTreeSet::new(), BTreeMap::new());
        let facts = Facts::new(&p, &events, &segments, &scores);
        let now = base + TimeDelta::days(10);
        let at_now = seg.evaluate(&facts, now);
        let horizon = at_now.next_change.unwrap_or(now + TimeDelta::days(60));
        prop_assert!(horizon > now);
        let span = (horizon - now).num_microseconds().unwrap();
        let probe_at = now + TimeDelta::microseconds(((span - 1) as f64 * probe) as i64);
        prop_assert_eq!(seg.evaluate(&facts, probe_at).member, at_now.member);
    }
}
