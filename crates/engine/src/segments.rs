//! Segment tooling over the store: saving and deleting segments, and previews (how many
//! profiles a segment would hold, with a sample) without saving it. The schema they are
//! checked against is in [`crate::schema`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use missive_core::profile::HistoryEntry;
use missive_core::{Profile, ProfileId};
use missive_segment::{Facts, Schema, Segment};
use missive_store::{EventCursor, EventQuery, Store, StoreError, StoredEvent};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub members: u64,
    pub scanned: u64,
    pub sample: Vec<ProfileId>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("segment {0:?} does not exist: a preview can read saved segments only")]
    UnknownSegment(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Evaluates `segment` on every live profile at `now`; `progress` is told the profiles scanned.
/// A segment it reads (`segment "VIP"`) answers with its members as of the last checkpoint.
pub async fn preview(
    store: &Store,
    segment: &Segment,
    now: DateTime<Utc>,
    sample_size: usize,
    mut progress: impl FnMut(u64),
) -> Result<Preview, PreviewError> {
    let saved = store.documents().list_segments().await?;
    if let Some(name) = segment
        .inputs()
        .segments
        .iter()
        .find(|n| !saved.iter().any(|s| &s.name == *n))
    {
        return Err(PreviewError::UnknownSegment(name.clone()));
    }
    let mut out = Preview {
        members: 0,
        scanned: 0,
        sample: Vec::new(),
    };
    let mut after = None;
    loop {
        let page = store.events().profiles_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for p in &page {
            let events = window_events(store, p, segment, now).await?;
            let facts = Facts::new(p, &events, &p.segments.segments, p.model_scores());
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

/// The events of `p` the segment's aggregates can count: those inside each one's window, or
/// all of them for an aggregate without one.
pub async fn window_events(
    store: &Store,
    p: &Profile,
    segment: &Segment,
    now: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let windows: std::collections::HashMap<String, Option<chrono::TimeDelta>> = segment
        .inputs()
        .windows
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    load_window_events(store, &p.id, &windows, now).await
}

/// Why a segment could not be saved or deleted.
#[derive(Debug, thiserror::Error)]
pub enum SegmentServiceError {
    #[error("invalid segment name: {0}")]
    InvalidName(&'static str),
    #[error(transparent)]
    Language(#[from] missive_segment::SegmentError),
    #[error(transparent)]
    Set(#[from] missive_segment::SetError),
    #[error("segment {0:?} does not exist")]
    NotFound(String),
    #[error("segment {name:?} is read by segment {by:?}: change or delete that one first")]
    InUse { name: String, by: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the engine could not apply it: {0}")]
    Engine(#[from] std::sync::Arc<crate::EngineError>),
}

fn check_name(name: &str) -> Result<(), SegmentServiceError> {
    if name.trim().is_empty() {
        return Err(SegmentServiceError::InvalidName("it must not be empty"));
    }
    if name.len() > 100 {
        return Err(SegmentServiceError::InvalidName("it must be at most 100 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(SegmentServiceError::InvalidName(
            "it must not contain control characters",
        ));
    }
    Ok(())
}

/// The saved segments with `name` replaced by `expression` (or removed when `None`), compiled
/// and checked as a whole: no cycles, no reference to a missing segment.
async fn set_with(
    store: &Store,
    name: &str,
    expression: Option<&Segment>,
) -> Result<missive_segment::SegmentSet, SegmentServiceError> {
    let others = store
        .documents()
        .list_segments()
        .await?
        .into_iter()
        .filter(|r| r.name != name)
        .collect();
    let mut defs = crate::pipeline::compile_saved(others);
    if let Some(seg) = expression {
        defs.push((name.to_owned(), seg.clone()));
    }
    Ok(missive_segment::SegmentSet::new(defs)?)
}

/// Creates or replaces a saved segment and backfills its membership over every profile.
/// Returns the number of profiles evaluated.
pub async fn save_segment(
    engine: &crate::Engine,
    name: &str,
    expression: &str,
    progress: Option<tokio::sync::watch::Sender<(u64, u64)>>,
) -> Result<u64, SegmentServiceError> {
    check_name(name)?;
    let _one_at_a_time = engine.lock_segments().await;
    engine.sync().await?;
    let store = &engine.store();
    let segment = Segment::compile(expression, &crate::schema::segment_schema(store).await?)?;
    let set = set_with(store, name, Some(&segment)).await?;
    let now = engine.clock().now();
    let existing = store
        .documents()
        .list_segments()
        .await?
        .into_iter()
        .find(|r| r.name == name);
    store
        .documents()
        .save_segment(missive_store::SegmentRecord {
            name: name.to_owned(),
            expression: expression.to_owned(),
            created_at: existing.map_or(now, |r| r.created_at),
            updated_at: now,
        })
        .await?;
    let evaluated = engine.use_segments(set, Some(name.to_owned()), progress).await?;
    engine
        .applied_segments()
        .insert(name.to_owned(), (expression.to_owned(), now.timestamp_micros()));
    Ok(evaluated)
}

/// Saved segments as a node last took them on: name → (expression, when saved). A segment
/// saved again, even unchanged, is a change (its backfill runs again).
pub type SavedSegments = std::collections::BTreeMap<String, (String, i64)>;

pub(crate) fn saved_entry(r: &missive_store::SegmentRecord) -> (String, (String, i64)) {
    (
        r.name.clone(),
        (r.expression.clone(), r.updated_at.timestamp_micros()),
    )
}

/// Cluster mode: makes this node use the segments saved in the store, when they differ from
/// those it uses (saved or deleted through another node's API). Each new or changed segment
/// is backfilled over the partitions this node owns, as the node that saved it did over its
/// own. Answers the segments backfilled.
pub async fn follow_saved(engine: &crate::Engine) -> Result<Vec<String>, SegmentServiceError> {
    let _one_at_a_time = engine.lock_segments().await;
    let records = engine.store().documents().list_segments().await?;
    let saved: SavedSegments = records.iter().map(saved_entry).collect();
    let changed: Vec<String> = {
        let applied = engine.applied_segments();
        if *applied == saved {
            return Ok(Vec::new());
        }
        saved
            .iter()
            .filter(|(name, saved)| applied.get(*name) != Some(*saved))
            .map(|(name, _)| name.clone())
            .collect()
    };
    let set = || missive_segment::SegmentSet::new(crate::pipeline::compile_saved(records.clone()));
    if changed.is_empty() {
        // Only deletions.
        engine.use_segments(set()?, None, None).await?;
    }
    for name in &changed {
        let evaluated = engine.use_segments(set()?, Some(name.clone()), None).await?;
        tracing::info!(segment = %name, profiles = evaluated, "cluster: a segment saved through another node, backfilled over this node's partitions");
    }
    *engine.applied_segments() = saved;
    Ok(changed)
}

/// Deletes a saved segment; refused while another segment reads it.
pub async fn delete_segment(engine: &crate::Engine, name: &str) -> Result<(), SegmentServiceError> {
    let _one_at_a_time = engine.lock_segments().await;
    let store = &engine.store();
    if !store
        .documents()
        .list_segments()
        .await?
        .iter()
        .any(|r| r.name == name)
    {
        return Err(SegmentServiceError::NotFound(name.to_owned()));
    }
    let set = match set_with(store, name, None).await {
        Err(SegmentServiceError::Set(missive_segment::SetError::UnknownDependency(by, _))) => {
            return Err(SegmentServiceError::InUse {
                name: name.to_owned(),
                by,
            });
        }
        other => other?,
    };
    store.documents().delete_segment(name).await?;
    engine.use_segments(set, None, None).await?;
    engine.applied_segments().remove(name);
    Ok(())
}

/// A profile's events of the names in `windows`, back as far as each matters, oldest first.
pub async fn load_window_events(
    store: &Store,
    id: &ProfileId,
    windows: &Windows,
    now: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>, StoreError> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let oldest = window_start(windows, now);
    let mut out = Vec::new();
    let mut cursor: Option<EventCursor> = None;
    loop {
        let page = store
            .events()
            .profile_events(EventQuery {
                profile_id: id.clone(),
                received_before: None,
                cursor,
                limit: 1_000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(EventCursor::of(last));
        let done = oldest.is_some_and(|o| last.timestamp <= o) || page.len() < 1_000;
        out.extend(window_entries(&page, windows, now));
        if done {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// [`load_window_events`] for a page of profiles, in one read of the event log.
pub async fn load_window_events_of(
    store: &Store,
    ids: Vec<ProfileId>,
    windows: &Windows,
    now: DateTime<Utc>,
) -> Result<HashMap<ProfileId, Vec<HistoryEntry>>, StoreError> {
    if windows.is_empty() || ids.is_empty() {
        return Ok(HashMap::new());
    }
    let found = store
        .events()
        .events_since(ids, window_start(windows, now))
        .await?;
    Ok(found
        .into_iter()
        .map(|(id, page)| {
            let mut entries: Vec<HistoryEntry> = window_entries(&page, windows, now).collect();
            entries.reverse();
            (id, entries)
        })
        .collect())
}

/// Event windows by event name (`None`: no limit), as [`missive_segment::SegmentSet::windows`]
/// gives them.
type Windows = HashMap<String, Option<chrono::TimeDelta>>;

/// How far back the windows reach: the longest window, or `None` when one has no limit.
fn window_start(windows: &Windows, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut oldest = Some(now);
    for w in windows.values() {
        oldest = match (oldest, w) {
            (Some(o), Some(w)) => Some(o.min(now - *w)),
            _ => None,
        };
    }
    oldest
}

/// The events of `page` some window counts at `now`, in the page's order.
fn window_entries<'a>(
    page: &'a [StoredEvent],
    windows: &'a Windows,
    now: DateTime<Utc>,
) -> impl Iterator<Item = HistoryEntry> + 'a {
    page.iter()
        .filter(move |e| match windows.get(&e.name) {
            None => false,
            Some(None) => true,
            Some(Some(w)) => e.timestamp.checked_add_signed(*w).is_none_or(|end| end > now),
        })
        .map(crate::profiles::history_entry)
}

/// Saved segments and their members, for the API and the console ([`crate::Engine::segments`]).
#[derive(Clone)]
pub struct Segments {
    store: Store,
}

impl Segments {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The closed schema new expressions are checked against ([`crate::schema`]).
    pub async fn schema(&self) -> Result<Schema, StoreError> {
        crate::schema::segment_schema(&self.store).await
    }

    /// Every saved segment, by name.
    pub async fn saved(&self) -> Result<Vec<missive_store::SegmentRecord>, StoreError> {
        self.store.documents().list_segments().await
    }

    /// The saved segment named `name`.
    pub async fn get(&self, name: &str) -> Result<Option<missive_store::SegmentRecord>, StoreError> {
        Ok(self.saved().await?.into_iter().find(|r| r.name == name))
    }

    /// Members as of the last checkpoint, in id order, after `after`.
    pub async fn members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.store.events().segment_members(name, after, limit).await
    }

    /// Every segment's members as of the last checkpoint, with its entries and exits since
    /// `since` (the trend the console shows).
    pub async fn sizes(&self, since: DateTime<Utc>) -> Result<Vec<missive_store::SegmentSize>, StoreError> {
        self.store.events().segment_sizes(since).await
    }

    /// Evaluates an unsaved segment on every live profile (see [`preview`]).
    pub async fn preview(
        &self,
        segment: &Segment,
        now: DateTime<Utc>,
        sample_size: usize,
        progress: impl FnMut(u64),
    ) -> Result<Preview, PreviewError> {
        preview(&self.store, segment, now, sample_size, progress).await
    }
}
