//! Segment tooling over the store: the trait types a segment is checked against, and previews
//! (how many profiles a segment would hold, with a sample) without saving it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use missive_core::profile::HistoryEntry;
use missive_core::{Profile, ProfileId};
use missive_segment::{Facts, Schema, Segment, TraitType};
use missive_store::{EventCursor, EventQuery, Store, StoreError};
use serde_json::Value;

/// Profiles looked at to learn the trait types.
const SCHEMA_SAMPLE: u32 = 2_000;

/// The type of each trait, from the values a sample of profiles holds. A trait seen with two
/// types is left out (any comparison is accepted).
pub async fn infer_schema(store: &dyn Store) -> Result<Schema, StoreError> {
    let mut seen: BTreeMap<String, Option<TraitType>> = BTreeMap::new();
    for p in store.profiles_after(None, SCHEMA_SAMPLE).await? {
        for (name, t) in &p.traits {
            let Some(ty) = type_of(&t.value) else { continue };
            seen.entry(name.clone())
                .and_modify(|known| {
                    if *known != Some(ty) {
                        *known = None;
                    }
                })
                .or_insert(Some(ty));
        }
    }
    Ok(Schema {
        traits: seen.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect(),
    })
}

fn type_of(v: &Value) -> Option<TraitType> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => TraitType::Bool,
        Value::Number(_) => TraitType::Number,
        Value::String(s) if s.len() >= 10 && missive_core::message::parse_time(s).is_some() => {
            TraitType::Time
        }
        Value::String(_) => TraitType::String,
        Value::Array(_) => TraitType::List,
        Value::Object(_) => TraitType::Object,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub members: u64,
    pub scanned: u64,
    pub sample: Vec<ProfileId>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("a preview cannot read other segments yet: `segment {0:?}` needs saved segments")]
    ReadsSegments(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Evaluates `segment` on every live profile at `now`; `progress` is told the profiles scanned.
pub async fn preview(
    store: &dyn Store,
    segment: &Segment,
    now: DateTime<Utc>,
    sample_size: usize,
    mut progress: impl FnMut(u64),
) -> Result<Preview, PreviewError> {
    if let Some(name) = segment.inputs().segments.iter().next() {
        return Err(PreviewError::ReadsSegments(name.clone()));
    }
    let (segments, scores) = (BTreeSet::new(), BTreeMap::new());
    let mut out = Preview {
        members: 0,
        scanned: 0,
        sample: Vec::new(),
    };
    let mut after = None;
    loop {
        let page = store.profiles_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for p in &page {
            let events = window_events(store, p, segment, now).await?;
            let facts = Facts::new(p, &events, &segments, &scores);
            if segment.evaluate(&facts, now).member {
                out.members += 1;
                if out.sample.len() < sample_size {
                    out.sample.push(p.id.clone());
                }
            }
            out.scanned += 1;
        }
        progress(out.scanned);
    }
    Ok(out)
}

/// The events of `p` the segment's aggregates can count: those inside its longest window, or
/// all of them when an aggregate has none.
pub async fn window_events(
    store: &dyn Store,
    p: &Profile,
    segment: &Segment,
    now: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let inputs = segment.inputs();
    if inputs.events.is_empty() {
        return Ok(Vec::new());
    }
    let oldest = if inputs.all_time_aggregate {
        None
    } else {
        inputs.longest_window.map(|w| now - w)
    };
    let mut out = Vec::new();
    let mut cursor: Option<EventCursor> = None;
    loop {
        let page = store
            .profile_events(EventQuery {
                profile_id: p.id.clone(),
                received_before: None,
                cursor,
                limit: 1_000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(EventCursor::of(last));
        let done = oldest.is_some_and(|o| last.timestamp <= o) || page.len() < 1_000;
        out.extend(
            page.iter()
                .filter(|e| inputs.events.contains(&e.name))
                .filter(|e| oldest.is_none_or(|o| e.timestamp > o))
                .map(crate::profiles::history_entry),
        );
        if done {
            break;
        }
    }
    Ok(out)
}
