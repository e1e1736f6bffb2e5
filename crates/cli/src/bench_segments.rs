//! `missive bench segments`: the cost of keeping segment membership right on every event,
//! re-checking only the affected segments versus all of them, and of a backfill over many
//! profiles.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::message::validate_message;
use missive_core::profile::HistoryEntry;
use missive_core::{Event, Profile, ProfileId, Touched};
use missive_segment::{Extra, FieldType, Membership, Schema, Segment, SegmentSet};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(clap::Args, Debug, Clone)]
pub struct SegmentsBench {
    /// Saved segments for the per-event measurement.
    #[arg(long, default_value_t = 1000)]
    segments: usize,
    /// Events folded in the per-event measurement.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Profiles in the backfill.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: usize,
    /// Segments in the backfill.
    #[arg(long, default_value_t = 100)]
    backfill_segments: usize,
    /// Threads for the backfill (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

const TRAITS: usize = 50;
const EVENTS: usize = 30;

fn schema() -> Schema {
    let mut traits = BTreeMap::new();
    for i in 0..TRAITS {
        traits.insert(
            format!("t{i}"),
            if i % 2 == 0 {
                FieldType::String
            } else {
                FieldType::Number
            },
        );
    }
    Schema::open_with_traits(traits)
}

/// Realistic shapes over 50 traits and 30 event names: trait tests, windows with and without
/// property filters, sums, order and recency rules, and combinations.
fn segment_source(i: usize, rng: &mut StdRng) -> String {
    let t = rng.random_range(0..TRAITS / 2) * 2;
    let n = rng.random_range(0..TRAITS / 2) * 2 + 1;
    let e = rng.random_range(0..EVENTS);
    let f = rng.random_range(0..EVENTS);
    match i % 6 {
        0 => format!(
            r#"traits.t{t} == "v{}" and traits.t{n} > {}"#,
            rng.random_range(0..5),
            rng.random_range(0..50)
        ),
        1 => format!(
            r#"count(event "e{e}" within {}d) >= {}"#,
            rng.random_range(1..30),
            rng.random_range(1..4)
        ),
        2 => format!(
            r#"count(event "e{e}" where properties.category == "c{}" within 30d) >= 1 and traits.t{t} exists"#,
            rng.random_range(0..5)
        ),
        3 => format!(
            r#"sum(event "Order Completed".revenue within 90d) > {} and orders.count >= 2"#,
            rng.random_range(10..500)
        ),
        4 => format!(
            r#"rfm.recency_days > {} and count(event "e{f}" within 7d) == 0"#,
            rng.random_range(1..60)
        ),
        _ => format!(
            r#"(traits.t{t} in ["v1", "v2"] or traits.t{n} >= {}) and last_seen after 30d ago"#,
            rng.random_range(0..50)
        ),
    }
}

fn compile_set(count: usize, rng: &mut StdRng) -> anyhow::Result<SegmentSet> {
    let schema = schema();
    let mut defs = Vec::with_capacity(count);
    for i in 0..count {
        defs.push((
            format!("s{i}"),
            Segment::compile(&segment_source(i, rng), &schema)?,
        ));
    }
    Ok(SegmentSet::new(defs)?)
}

fn random_event(rng: &mut StdRng, now: DateTime<Utc>, n: usize) -> anyhow::Result<Event> {
    let msg = if rng.random_bool(0.2) {
        let t = rng.random_range(0..TRAITS);
        let value = if t % 2 == 0 {
            json!(format!("v{}", rng.random_range(0..5)))
        } else {
            json!(rng.random_range(0..100))
        };
        json!({"type": "identify", "userId": "u", "traits": {format!("t{t}"): value}})
    } else if rng.random_bool(0.1) {
        json!({"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": rng.random_range(5..300)}})
    } else {
        json!({"type": "track", "userId": "u", "event": format!("e{}", rng.random_range(0..EVENTS)),
               "properties": {"category": format!("c{}", rng.random_range(0..5))}})
    };
    let mut msg = msg;
    msg["messageId"] = json!(format!("b{n}"));
    msg["timestamp"] = json!(now.to_rfc3339());
    validate_message(msg, None, None, now)
        .map_err(|r| anyhow::anyhow!("generated event refused: {}", r.message))
}

pub fn run(b: SegmentsBench) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(7);
    let set = compile_set(b.segments, &mut rng)?;
    let scores = BTreeMap::new();
    println!(
        "missive bench segments: {} segments, {} events, then a backfill of {} profiles × {} segments",
        b.segments, b.events, b.profiles, b.backfill_segments
    );

    // Pre-generate the events so that only folding and segment work is timed.
    let start: DateTime<Utc> = "2026-03-01T00:00:00Z".parse()?;
    let events: Vec<(Event, DateTime<Utc>)> = (0..b.events)
        .map(|n| {
            let now = start + TimeDelta::seconds(n as i64 * 7);
            Ok((random_event(&mut rng, now, n)?, now))
        })
        .collect::<anyhow::Result<_>>()?;

    // Per event, only affected segments (the engine's path). History bounded as in the engine.
    let history_len = 200;
    let (per_event_affected, checked) = {
        let mut profile = Profile::new(ProfileId::generate(), start);
        let mut state = Membership::default();
        let mut checked = 0usize;
        let started = Instant::now();
        for (e, now) in &events {
            let mut touched = Touched::default();
            profile.apply_event(e, history_len, &mut touched);
            push_window(&mut profile, e, history_len);
            checked += set.affected(&touched, Extra::default(), *now).len();
            let reevaluated = set.on_change(
                &mut state,
                &profile,
                &profile.window_events,
                &scores,
                &touched,
                Extra::default(),
                *now,
            );
            std::hint::black_box(&reevaluated);
        }
        (
            started.elapsed().as_secs_f64() / b.events as f64,
            checked as f64 / b.events as f64,
        )
    };
    // Folding alone, so that the segments' share can be told apart.
    let per_event_fold = {
        let mut profile = Profile::new(ProfileId::generate(), start);
        let started = Instant::now();
        for (e, _) in &events {
            let mut touched = Touched::default();
            profile.apply_event(e, history_len, &mut touched);
            push_window(&mut profile, e, history_len);
            std::hint::black_box(&profile.window_events);
        }
        started.elapsed().as_secs_f64() / b.events as f64
    };
    let all_events = b.events.min(20_000);
    let per_event_all = {
        let mut profile = Profile::new(ProfileId::generate(), start);
        let started = Instant::now();
        for (e, now) in events.iter().take(all_events) {
            let mut touched = Touched::default();
            profile.apply_event(e, history_len, &mut touched);
            push_window(&mut profile, e, history_len);
            std::hint::black_box(set.evaluate_all(&profile, &profile.window_events, &scores, *now));
        }
        started.elapsed().as_secs_f64() / all_events as f64
    };
    println!();
    println!(
        "| per event, {} segments | time per event | segments checked per event |",
        b.segments
    );
    println!("|---|---|---|");
    println!("| fold only, no segments | {:.2} µs | 0 |", per_event_fold * 1e6);
    println!(
        "| fold + affected segments only | {:.2} µs | {:.1} |",
        per_event_affected * 1e6,
        checked
    );
    println!(
        "| fold + all segments | {:.2} µs | {} |",
        per_event_all * 1e6,
        b.segments
    );

    // Backfill: profiles built first (not timed), then every segment evaluated on each.
    let backfill_set = compile_set(b.backfill_segments, &mut rng)?;
    let now = start + TimeDelta::days(60);
    let built = Instant::now();
    let profiles: Vec<(Profile, Vec<HistoryEntry>)> = (0..b.profiles)
        .map(|i| {
            let mut p = Profile::new(ProfileId::generate(), start);
            for k in 0..8 {
                let at = start + TimeDelta::hours(rng.random_range(0..60 * 24));
                let e = random_event(&mut rng, at, i * 8 + k)?;
                p.apply_event(&e, 8, &mut Touched::default());
                push_window(&mut p, &e, 8);
            }
            let window = std::mem::take(&mut p.window_events);
            Ok((p, window))
        })
        .collect::<anyhow::Result<_>>()?;
    println!(
        "\nbuilt {} profiles in {:.1} s (not timed)",
        profiles.len(),
        built.elapsed().as_secs_f64()
    );
    let threads = b
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let members: usize = std::thread::scope(|scope| {
        let chunk = profiles.len().div_ceil(threads);
        let handles: Vec<_> = profiles
            .chunks(chunk)
            .map(|part| {
                let set = &backfill_set;
                let scores = &scores;
                scope.spawn(move || {
                    part.iter()
                        .map(|(p, h)| set.evaluate_all(p, h, scores, now).segments.len())
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| backfill | {} profiles × {} segments | {} threads | {:.2} s | {:.0} evaluations/s | {} memberships |",
        b.profiles,
        b.backfill_segments,
        threads,
        secs,
        (b.profiles * b.backfill_segments) as f64 / secs,
        members
    );
    Ok(())
}

/// Adds the event to the profile's window events (what segments count), as the engine does,
/// keeping the newest `len` as the bench's history bound.
fn push_window(p: &mut Profile, e: &Event, len: usize) {
    p.push_window_event(HistoryEntry::of(e));
    let excess = p.window_events.len().saturating_sub(len);
    p.window_events.drain(..excess);
}
