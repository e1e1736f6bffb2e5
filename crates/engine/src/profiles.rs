//! Reading profiles for the API: lookup by any key, merges followed, history attached, and
//! the profile as it was recorded at a past time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use missive_core::profile::{HISTORY_PROPERTIES_MAX_BYTES, HistoryEntry, RecentEvent};
use missive_core::{EmailAddress, IdentityKey, IdentityKind, MessageId, Profile, ProfileId};
use missive_store::{EventCursor, EventQuery, MergeRecord, ProfileVersion, Store, StoreError, StoredEvent};

/// How a caller names a profile: its id, or one of its identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileKey {
    Id(ProfileId),
    Identity(IdentityKey),
    /// A bare string: tried as a user id, then an e-mail address, then an anonymous id.
    Any(String),
}

impl ProfileKey {
    /// `prf_…`, `user_id:…`, `anonymous_id:…`, `email:…`, or a bare value.
    pub fn parse(s: &str) -> Self {
        if let Ok(id) = ProfileId::parse(s) {
            return Self::Id(id);
        }
        if let Some((kind, value)) = s.split_once(':')
            && let Some(kind) = IdentityKind::parse(kind)
        {
            let value = match kind {
                IdentityKind::Email => EmailAddress::parse(value).map_or(value.to_owned(), String::from),
                _ => value.to_owned(),
            };
            return Self::Identity(IdentityKey { kind, value });
        }
        Self::Any(s.to_owned())
    }
}

/// The live profile a key names (following merges), with its recent history attached.
pub async fn find_profile(
    store: &Store,
    key: &ProfileKey,
    history_len: usize,
) -> Result<Option<Profile>, StoreError> {
    let Some(id) = key_to_id(store, key).await? else {
        return Ok(None);
    };
    let Some(mut p) = live_row(store, id).await? else {
        return Ok(None);
    };
    p.history = recent_history(store, &p.id, None, history_len).await?;
    Ok(Some(p))
}

/// [`find_profile`] for many profile ids in one read each of profiles and events: the
/// sender's batches. The map is keyed by the id asked for (a merged id maps to the profile it
/// was merged into); ids of profiles that are gone are left out.
pub async fn find_profiles(
    store: &Store,
    ids: &[ProfileId],
    history_len: usize,
) -> Result<HashMap<ProfileId, Profile>, StoreError> {
    let mut found = HashMap::with_capacity(ids.len());
    for p in store.events().load_profiles(ids.to_vec()).await? {
        match p.merged_into {
            None => {
                found.insert(p.id.clone(), p);
            }
            // Rare: followed one by one.
            Some(next) => {
                if let Some(live) = live_row(store, next).await? {
                    found.insert(p.id, live);
                }
            }
        }
    }
    if history_len > 0 {
        // A merged id and its survivor name one profile: asked once.
        let mut live: Vec<ProfileId> = found.values().map(|p| p.id.clone()).collect();
        live.sort_unstable();
        live.dedup();
        let events = store.events().recent_events(live, history_len as u32).await?;
        for p in found.values_mut() {
            // A merged id and its survivor share the survivor's history.
            if let Some(e) = events.get(&p.id) {
                p.history = e.iter().rev().map(recent_event).collect();
            }
        }
    }
    Ok(found)
}

/// The id of the live profile a key names.
pub async fn resolve_key(store: &Store, key: &ProfileKey) -> Result<Option<ProfileId>, StoreError> {
    let Some(id) = key_to_id(store, key).await? else {
        return Ok(None);
    };
    Ok(live_row(store, id).await?.map(|p| p.id))
}

/// The profile id a key names directly, before merges are followed.
async fn key_to_id(store: &Store, key: &ProfileKey) -> Result<Option<ProfileId>, StoreError> {
    Ok(match key {
        ProfileKey::Id(id) => Some(id.clone()),
        ProfileKey::Identity(k) => store
            .events()
            .resolve_identities(vec![k.clone()])
            .await?
            .remove(k),
        ProfileKey::Any(s) => {
            let mut candidates = vec![IdentityKey::user_id(s.clone())];
            if let Ok(e) = EmailAddress::parse(s) {
                candidates.push(IdentityKey::email(&e));
            }
            candidates.push(IdentityKey::anonymous_id(s.clone()));
            let found = store.events().resolve_identities(candidates.clone()).await?;
            candidates.iter().find_map(|k| found.get(k).cloned())
        }
    })
}

/// The stored row of the live profile `id` is, or was merged into (without history).
async fn live_row(store: &Store, mut id: ProfileId) -> Result<Option<Profile>, StoreError> {
    for _ in 0..16 {
        let Some(p) = store.events().load_profile(&id).await? else {
            return Ok(None);
        };
        match p.merged_into {
            Some(next) => id = next,
            None => return Ok(Some(p)),
        }
    }
    Err(StoreError::Corrupt(format!(
        "merge chain from {id} is longer than 16"
    )))
}

/// The profile as recorded at `at` (transaction time: what missive knew then), or `None`
/// when it did not exist yet.
pub async fn profile_as_of(
    store: &Store,
    id: &ProfileId,
    at: DateTime<Utc>,
    history_len: usize,
) -> Result<Option<Profile>, StoreError> {
    let versions = store.events().versions_for_as_of(id, at).await?;
    let mut iter = versions.into_iter();
    let Some(first) = iter.next() else { return Ok(None) };
    let mut p = match first.snapshot {
        Some(p) => p,
        // Version 1 replays over an empty profile.
        None if first.version == 1 => {
            let mut p = Profile::new(id.clone(), first.recorded_at);
            p.apply_diff(&first.diff, first.version, first.recorded_at);
            p
        }
        None => {
            return Err(StoreError::Corrupt(format!(
                "version {} of {id} should carry a snapshot",
                first.version
            )));
        }
    };
    for v in iter {
        p.apply_diff(&v.diff, v.version, v.recorded_at);
    }
    p.history = recent_history(store, id, Some(at), history_len).await?;
    Ok(Some(p))
}

pub async fn recent_history(
    store: &Store,
    id: &ProfileId,
    received_before: Option<DateTime<Utc>>,
    limit: usize,
) -> Result<std::collections::VecDeque<RecentEvent>, StoreError> {
    let events = store
        .events()
        .profile_events(EventQuery {
            profile_id: id.clone(),
            received_before,
            cursor: None,
            limit: limit as u32,
        })
        .await?;
    Ok(events.iter().rev().map(recent_event).collect())
}

/// Every event of a profile, newest (by event time) first, read in pages.
pub async fn all_events(store: &Store, id: &ProfileId) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
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
        let full = page.len() == 1_000;
        out.extend(page);
        if !full {
            break;
        }
    }
    Ok(out)
}

/// A stored event as the profile's history keeps it.
pub fn recent_event(e: &StoredEvent) -> RecentEvent {
    let none = serde_json::Map::new();
    let properties = match e.body.get("properties") {
        Some(serde_json::Value::Object(m)) => m,
        _ => &none,
    };
    RecentEvent::with_properties(
        MessageId::clone(&e.message_id),
        e.kind,
        e.name.clone(),
        e.timestamp,
        properties,
    )
}

/// A stored event as segments read it (window events), its properties parsed.
pub fn history_entry(e: &StoredEvent) -> HistoryEntry {
    let properties = match e.body.get("properties") {
        Some(serde_json::Value::Object(m))
            if missive_core::profile::fits(m, HISTORY_PROPERTIES_MAX_BYTES) =>
        {
            m.clone()
        }
        _ => serde_json::Map::new(),
    };
    HistoryEntry {
        message_id: MessageId::clone(&e.message_id),
        kind: e.kind,
        name: e.name.clone(),
        at: e.timestamp,
        properties,
    }
}

pub async fn versions(
    store: &Store,
    id: &ProfileId,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<ProfileVersion>, StoreError> {
    store.events().profile_versions(id, before, limit).await
}

pub async fn merges(store: &Store, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
    store.events().merges_of(id).await
}

/// Reading people, for the API and the console: the engine's view of its profiles. Cheap to
/// make ([`crate::Engine::profiles`]); every read goes through the store's event area.
#[derive(Clone)]
pub struct Profiles {
    store: Store,
    history_len: usize,
}

/// Why a profile is or is not in a saved segment, predicate by predicate.
#[derive(Debug, Clone)]
pub struct SegmentExplanation {
    pub segment: String,
    pub explanation: missive_segment::Evaluation,
}

impl Profiles {
    pub fn new(store: Store, history_len: usize) -> Self {
        Self { store, history_len }
    }

    /// The live profile a key names, with its recent history.
    pub async fn find(&self, key: &ProfileKey) -> Result<Option<Profile>, StoreError> {
        find_profile(&self.store, key, self.history_len).await
    }

    /// The live profile a key names, without history (cheaper: for consent and addresses).
    pub async fn find_bare(&self, key: &ProfileKey) -> Result<Option<Profile>, StoreError> {
        find_profile(&self.store, key, 0).await
    }

    /// The id of the live profile a key names.
    pub async fn resolve(&self, key: &ProfileKey) -> Result<Option<ProfileId>, StoreError> {
        resolve_key(&self.store, key).await
    }

    /// A profile row as stored, without history and without following merges.
    pub async fn load(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        self.store.events().load_profile(id).await
    }

    /// The profile as recorded at `at`.
    pub async fn as_of(&self, id: &ProfileId, at: DateTime<Utc>) -> Result<Option<Profile>, StoreError> {
        profile_as_of(&self.store, id, at, self.history_len).await
    }

    pub async fn versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        versions(&self.store, id, before, limit).await
    }

    pub async fn merges(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
        merges(&self.store, id).await
    }

    /// A profile's events, newest first.
    pub async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events().profile_events(query).await
    }

    /// A profile's entries into and exits from segments, newest first.
    pub async fn segment_changes(
        &self,
        id: &ProfileId,
        limit: u32,
    ) -> Result<Vec<missive_store::SegmentChange>, StoreError> {
        self.store.events().segment_changes_of(id, limit).await
    }

    /// Live profiles in id order after `after`: a page of a scan.
    pub async fn page(&self, after: Option<ProfileId>, limit: u32) -> Result<Vec<Profile>, StoreError> {
        self.store.events().profiles_after(after, limit).await
    }

    /// Why `profile` is or is not in each saved segment at `now`. Saved segments that no
    /// longer compile are left out (the segment list shows them disabled).
    pub async fn explain_segments(
        &self,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<Vec<SegmentExplanation>, StoreError> {
        let members = &profile.segments.segments;
        let scores = profile.model_scores();
        let mut out = Vec::new();
        for rec in self.store.documents().list_segments().await? {
            let Ok(seg) =
                missive_segment::Segment::compile(&rec.expression, &missive_segment::Schema::default())
            else {
                continue;
            };
            let events = crate::segments::window_events(&self.store, profile, &seg, now).await?;
            let facts = missive_segment::Facts::new(profile, &events, members, scores);
            out.push(SegmentExplanation {
                segment: rec.name,
                explanation: seg.explain(&facts, now),
            });
        }
        Ok(out)
    }
}
