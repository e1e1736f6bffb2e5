//! Incremental membership equals a from-scratch evaluation after any sequence of events and
//! clock advances.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::message::{parse_time, validate_message};
use missive_core::profile::HistoryEntry;
use missive_core::{Profile, ProfileId, Touched};
use missive_segment::FieldType;
use missive_segment::{Extra, Facts, Membership, Schema, Segment, SegmentSet, SetError};
use proptest::prelude::*;
use serde_json::json;

fn schema() -> Schema {
    Schema::open_with_traits([("city".to_owned(), FieldType::String)])
}

/// `last_seen after …` in the ways an event may skip re-checking it, and may not.
const SEEN_AFTER: [(&str, &str); 3] = [
    ("active", "last_seen after 2d ago"),
    (
        "active-ny",
        r#"traits.city == "New York" and last_seen after 1d ago"#,
    ),
    ("not-active", "not (last_seen after 1d ago) and orders.count >= 1"),
];

/// Segments sharing an aggregate with others, and `and`/`or` whose cheap side comes first.
const SHARED: [(&str, &str); 7] = [
    (
        "paris-browsing-twice",
        r#"count(event "Product Viewed" within 2d) >= 2 and traits.city == "Paris""#,
    ),
    (
        "big-or-ny",
        r#"sum(event "Order Completed".revenue within 30d) > 150 or traits.city == "New York""#,
    ),
    (
        "recent-or-repeat",
        "rfm.recency_days < 1 or (orders.count >= 3 and not segment \"browsing\")",
    ),
    // A count whose filter has an instant of its own, shared by a second segment.
    (
        "fresh-views",
        r#"count(event "Product Viewed" where properties.seen_at after 1d ago) >= 1"#,
    ),
    (
        "paris-fresh-views",
        r#"traits.city == "Paris" and count(event "Product Viewed" where properties.seen_at after 1d ago) >= 1"#,
    ),
    // Recency written the other way round, and against a list.
    ("lapsed-reversed", "orders.count >= 1 and 2 < rfm.recency_days"),
    ("recency-in", "rfm.recency_days in [1, 2]"),
];

fn set() -> SegmentSet {
    set_with(&[])
}

/// The names of `set_with(extra)`, in the order written (each after those it reads).
fn names_with(extra: &[(&str, &str)]) -> Vec<String> {
    BASE.iter().chain(extra).map(|(n, _)| n.to_string()).collect()
}

const BASE: [(&str, &str); 9] = [
    ("new-yorkers", r#"traits.city == "New York""#),
    ("browsing", r#"count(event "Product Viewed" within 2d) >= 1"#),
    (
        "shoe-fans",
        r#"count(event "Product Viewed" where properties.category == "shoes" within 7d) >= 2"#,
    ),
    (
        "abandoners",
        r#"count(event "Product Added" within 6h) >= 1 and count(event "Order Completed" within 6h) == 0"#,
    ),
    (
        "buyers",
        "orders.count >= 2 and sum(event \"Order Completed\".revenue within 30d) > 100",
    ),
    ("lapsed", "orders.count >= 1 and rfm.recency_days > 5"),
    ("dormant", "last_seen before 3d ago"),
    ("ny-browsers", r#"segment "new-yorkers" and segment "browsing""#),
    (
        "not-ny-browsers",
        r#"segment "browsing" and not segment "ny-browsers""#,
    ),
];

fn set_with(extra: &[(&str, &str)]) -> SegmentSet {
    SegmentSet::new(
        BASE.iter()
            .chain(extra)
            .map(|(n, s)| (n.to_string(), Segment::compile(s, &schema()).unwrap()))
            .collect(),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Identify(bool),
    View(bool),
    Add,
    Order(u32),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(Op::Identify),
        any::<bool>().prop_map(Op::View),
        Just(Op::Add),
        (1u32..200).prop_map(Op::Order),
        (1i64..6 * 24 * 60).prop_map(Op::Advance),
    ]
}

fn t(s: &str) -> DateTime<Utc> {
    parse_time(s).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn incremental_membership_equals_evaluation_from_scratch(ops in prop::collection::vec(op(), 1..60)) {
        // Plus a segment reached through a dependency that counts an event the change did not
        // touch: it must scan the events, not read a partial index.
        let mut extra = SEEN_AFTER.to_vec();
        extra.push(("ny-adders", r#"segment "new-yorkers" and count(event "Product Added" within 1d) >= 1"#));
        // Aggregates other segments count too (one shared count), behind a side evaluated
        // first that may end the evaluation early.
        extra.extend(SHARED);
        let set = set_with(&extra);
        let names = names_with(&extra);
        // The same without the segments that read segments (evaluated in one pass, in bulk).
        let flat_defs: Vec<(&str, &str)> = BASE.iter().chain(&extra).copied().filter(|(_, s)| !s.contains("segment ")).collect();
        let flat = SegmentSet::new(flat_defs.iter().map(|(n, s)| (n.to_string(), Segment::compile(s, &schema()).unwrap())).collect()).unwrap();
        let scores = BTreeMap::new();
        let mut now = t("2026-03-01T00:00:00Z");
        let mut profile = Profile::new(ProfileId::generate(), now);
        let mut events: Vec<HistoryEntry> = Vec::new();
        let mut state = Membership::default();
        for (n, op) in ops.iter().enumerate() {
            let msg = match op {
                Op::Advance(minutes) => {
                    let target = now + TimeDelta::minutes(*minutes);
                    // Timers fire at their own instant, in order, before the clock moves on.
                    while let Some(due) = state.next_due().filter(|d| *d <= target) {
                        let before = state.clone();
                        let r = set.on_due(&mut state, &profile, &events, &scores, due);
                        prop_assert_eq!(state != before, r.timers_moved || !r.changes.is_empty());
                        prop_assert!(state.next_due().is_none_or(|d| d > due), "a timer did not move forward");
                    }
                    now = target;
                    None
                }
                Op::Identify(ny) => Some(json!({"type": "identify", "userId": "u",
                    "traits": {"city": if *ny { "New York" } else { "Paris" }}})),
                Op::View(shoes) => Some(json!({"type": "track", "userId": "u", "event": "Product Viewed",
                    "properties": {"category": if *shoes { "shoes" } else { "hats" }, "seen_at": now.to_rfc3339()}})),
                Op::Add => Some(json!({"type": "track", "userId": "u", "event": "Product Added"})),
                Op::Order(rev) => Some(json!({"type": "track", "userId": "u", "event": "Order Completed",
                    "properties": {"revenue": rev}})),
            };
            if let Some(mut msg) = msg {
                msg["messageId"] = json!(format!("m{n}"));
                msg["timestamp"] = json!(now.to_rfc3339());
                let e = validate_message(msg, None, None, now).unwrap();
                let mut touched = Touched::default();
                profile.apply_event(&e, 1000, &mut touched);
                events.push(HistoryEntry::of(&e));
                let before = state.clone();
                let r = set.on_change(&mut state, &profile, &events, &scores, &touched, Extra::default(), now);
                // What it says changed is what changed (the engine saves on its word).
                prop_assert_eq!(state != before, r.timers_moved || !r.changes.is_empty());
            }
            let scratch = set.evaluate_all(&profile, &events, &scores, now);
            prop_assert_eq!(&state.segments, &scratch.segments, "after op {} ({:?}) at {}", n, op, now);
            // And both equal each segment's explanation, which walks the expression as written,
            // every side, and counts every aggregate itself.
            let mut written = std::collections::BTreeSet::new();
            for name in &names {
                let facts = Facts::new(&profile, &events, &written, &scores);
                if set.get(name).unwrap().explain(&facts, now).member {
                    written.insert(name.to_string());
                }
            }
            prop_assert_eq!(&scratch.segments, &written, "explained, after op {} ({:?}) at {}", n, op, now);
            let bulk = flat.evaluate_all(&profile, &events, &scores, now);
            let in_flat = |name: &String| flat.get(name).is_some();
            prop_assert_eq!(bulk.segments, scratch.segments.iter().filter(|n| in_flat(n)).cloned().collect());
            prop_assert_eq!(bulk.timers, scratch.timers.iter().filter(|(n, _)| in_flat(n)).map(|(n, t)| (n.clone(), *t)).collect());
        }
    }
}

#[test]
fn a_change_reevaluates_only_the_segments_that_read_it() {
    let set = set();
    let touched = Touched {
        traits: ["city".to_owned()].into(),
        ..Touched::default()
    };
    let now = t("2026-03-10T00:00:00Z");
    let affected = set.affected(&touched, Extra::default(), now);
    assert_eq!(affected.len(), 1);
    let touched = Touched {
        events: ["Product Viewed".to_owned()].into(),
        ..Touched::default()
    };
    assert_eq!(set.affected(&touched, Extra::default(), now).len(), 2);
}

/// An event moves `last_seen` forward: `last_seen after …` segments are re-checked only when
/// that could turn them true; `before`, `not` and the unknown are always re-checked.
#[test]
fn last_seen_after_is_rechecked_only_when_it_can_flip() {
    let set = set_with(&SEEN_AFTER);
    let now = t("2026-03-10T00:00:00Z");
    let seen = |from: Option<&str>| Touched {
        seen: true,
        seen_from: from.map(t),
        ..Touched::default()
    };
    let names = |touched: &Touched| -> Vec<&str> {
        let all = [
            "new-yorkers",
            "browsing",
            "shoe-fans",
            "abandoners",
            "buyers",
            "lapsed",
            "dormant",
            "ny-browsers",
            "not-ny-browsers",
            "active",
            "active-ny",
            "not-active",
        ];
        set.affected(touched, Extra::default(), now)
            .into_iter()
            .map(|i| all[i])
            .collect()
    };
    // Seen an hour ago: `after 2d ago` and `after 1d ago` were true and stay true.
    assert_eq!(
        names(&seen(Some("2026-03-09T23:00:00Z"))),
        vec!["dormant", "not-active"]
    );
    // Seen 36 hours ago: `after 1d ago` was false, and may turn true.
    assert_eq!(
        names(&seen(Some("2026-03-08T12:00:00Z"))),
        vec!["dormant", "active-ny", "not-active"]
    );
    // Never seen, or not known: everything that reads it.
    assert_eq!(
        names(&seen(None)),
        vec!["dormant", "active", "active-ny", "not-active"]
    );
}

fn summary(changes: &[missive_segment::MembershipChange]) -> Vec<(&str, bool, &str)> {
    changes
        .iter()
        .map(|c| (c.segment.as_str(), c.entered, c.cause.as_str()))
        .collect()
}

#[test]
fn entering_a_segment_reports_the_cause_and_moves_segments_that_read_it() {
    let set = set();
    let scores = BTreeMap::new();
    let now = t("2026-03-01T00:00:00Z");
    let mut profile = Profile::new(ProfileId::generate(), now);
    let mut state = Membership::default();
    let mut events = Vec::new();
    for msg in [
        json!({"type": "identify", "userId": "u", "traits": {"city": "New York"}, "timestamp": "2026-03-01T00:00:00Z"}),
        json!({"type": "track", "userId": "u", "event": "Product Viewed", "timestamp": "2026-03-01T00:00:00Z"}),
    ] {
        let e = validate_message(msg, None, None, now).unwrap();
        let mut touched = Touched::default();
        profile.apply_event(&e, 100, &mut touched);
        events.push(HistoryEntry::of(&e));
        let changes = set
            .on_change(
                &mut state,
                &profile,
                &events,
                &scores,
                &touched,
                Extra::default(),
                now,
            )
            .changes;
        if e.kind == missive_core::EventKind::Track {
            let names = summary(&changes);
            assert_eq!(
                names,
                [
                    ("browsing", true, "event"),
                    ("ny-browsers", true, "segment:browsing")
                ]
            );
        }
    }
    // Two days later the view leaves the window: out of "browsing" and "ny-browsers", by time.
    let due = state.next_due().unwrap();
    assert_eq!(due, t("2026-03-03T00:00:00Z"));
    let changes = set.on_due(&mut state, &profile, &events, &scores, due).changes;
    let names = summary(&changes);
    assert_eq!(
        names,
        [
            ("browsing", false, "time"),
            ("ny-browsers", false, "segment:browsing")
        ]
    );
}

#[test]
fn cycles_and_unknown_segments_are_refused() {
    let seg = |s: &str| Segment::compile(s, &schema()).unwrap();
    let err = SegmentSet::new(vec![
        ("a".into(), seg(r#"segment "b""#)),
        ("b".into(), seg(r#"segment "a""#)),
    ])
    .unwrap_err();
    assert!(matches!(err, SetError::Cycle(_)), "{err:?}");
    let err = SegmentSet::new(vec![("a".into(), seg(r#"segment "nope""#))]).unwrap_err();
    assert!(matches!(err, SetError::UnknownDependency(..)));
}
