//! Switching segment definitions, and the backfill of a new or changed segment over every
//! live profile.
//!
//! The backfill reads the store a page at a time (profiles, their history and the events the
//! segments' windows count: one read each), reading the next page in a task of its own while
//! the applier evaluates the current one. It runs on the applier, so events wait for it; its
//! membership changes are recorded and checkpointed like any other.

use super::*;

/// Profiles a backfill reads from the store at once.
const BACKFILL_PAGE: usize = 1_000;

/// What one page of a backfill needs from the store.
struct Page {
    /// The page's profiles that were not in the cache, without history.
    profiles: Vec<Profile>,
    /// Their newest events, for their history.
    history: HashMap<ProfileId, Vec<StoredEvent>>,
    /// The events the segments' windows count, for every profile of the page.
    windows: HashMap<ProfileId, Vec<missive_core::profile::HistoryEntry>>,
}

async fn read_page(
    store: Store,
    uncached: Vec<ProfileId>,
    all: Vec<ProfileId>,
    windows: HashMap<String, Option<chrono::TimeDelta>>,
    history_len: u32,
    now: DateTime<Utc>,
) -> Result<Page, StoreError> {
    let profiles = store.events().load_profiles(uncached.clone()).await?;
    let history = if history_len > 0 && !uncached.is_empty() {
        store.events().recent_events(uncached, history_len).await?
    } else {
        HashMap::new()
    };
    let windows = crate::segments::load_window_events_of(&store, all, &windows, now).await?;
    Ok(Page {
        profiles,
        history,
        windows,
    })
}

impl Applier {
    /// Takes a new set of segments; evaluates `backfill` on every live profile.
    pub(super) async fn switch_segments(
        &mut self,
        set: Arc<SegmentSet>,
        backfill: Option<String>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<u64, EngineError> {
        let previous = std::mem::replace(&mut self.segments, set);
        let Some(name) = backfill else { return Ok(0) };
        // A new name (or one deleted and saved again) starts from no membership; a changed
        // definition is compared with the old one, so that exits are recorded too.
        let is_new = previous.get(&name).is_none();
        // The event log must hold every event folded so far before the backfill reads it.
        self.wait_for_writers().await;
        let started = Instant::now();
        let now = self.clock.now().max(self.eval_now);
        self.eval_now = now;
        let ids = self.live_profile_ids().await?;
        let total = ids.len() as u64;
        let windows = self.segments.windows().clone();
        let history_len = self.config.history_len as u32;
        let read = |this: &Self, page: &[ProfileId]| {
            let uncached = page
                .iter()
                .filter(|id| !this.profiles.contains_key(*id))
                .cloned()
                .collect();
            tokio::spawn(read_page(
                this.store.clone(),
                uncached,
                page.to_vec(),
                windows.clone(),
                history_len,
                now,
            ))
        };
        let pages: Vec<&[ProfileId]> = ids.chunks(BACKFILL_PAGE).collect();
        let mut next = pages.first().map(|p| read(self, p));
        let mut done = 0usize;
        for (i, page) in pages.iter().enumerate() {
            let Some(reading) = next.take() else { break };
            let mut read_now = reading
                .await
                .map_err(|e| EngineError::Store(StoreError::Task(e.to_string())))??;
            // The next page is read while this one is evaluated.
            next = pages.get(i + 1).map(|p| read(self, p));
            self.cache_page(read_now.profiles, read_now.history);
            for id in page.iter() {
                let Some(live) = self.load_into_cache(id).await? else {
                    continue;
                };
                // The new segment may count events the profile did not keep: read from the log
                // with the page, or alone for a profile merged since the page was listed.
                let loaded = match read_now.windows.remove(id) {
                    Some(w) if live == *id => w,
                    None if live == *id => Vec::new(),
                    _ => crate::segments::load_window_events(&self.store, &live, &windows, now).await?,
                };
                self.backfill_one(&live, &name, is_new, loaded, now);
                done += 1;
                if let Some(p) = &progress
                    && done.is_multiple_of(500)
                {
                    p.send_replace((done as u64, total));
                }
                if done.is_multiple_of(10_000) {
                    tracing::info!(segment = %name, done, total, "segment backfill");
                }
            }
        }
        tracing::info!(segment = %name, profiles = total, ms = started.elapsed().as_millis() as u64, "segment backfilled");
        Ok(total)
    }

    /// Puts a page's profiles read from the store into the cache, with their history (as
    /// [`Applier::load_into_cache`] does one by one). Merged ones are left to it.
    fn cache_page(&mut self, profiles: Vec<Profile>, mut history: HashMap<ProfileId, Vec<StoredEvent>>) {
        for mut p in profiles {
            if p.merged_into.is_some() || self.profiles.contains_key(&p.id) {
                continue;
            }
            if let Some(events) = history.remove(&p.id) {
                p.history = self.history_of(&events);
            }
            self.profiles.insert(
                p.id.clone(),
                CachedProfile {
                    profile: p,
                    last_batch: 0,
                },
            );
        }
    }

    /// Evaluates the backfilled segment `name` on the cached profile `id`, with the window
    /// events `loaded` from the log added to those it kept.
    fn backfill_one(
        &mut self,
        id: &ProfileId,
        name: &str,
        is_new: bool,
        loaded: Vec<missive_core::profile::HistoryEntry>,
        now: DateTime<Utc>,
    ) {
        if let Some(entry) = self.profiles.get_mut(id) {
            // A membership left from an earlier segment of that name must not hide an entry.
            if is_new {
                entry.profile.segments.segments.remove(name);
            }
            entry.profile.segments.timers.remove(name);
            let kept = entry.profile.window_events.len();
            let w = &mut entry.profile.window_events;
            w.extend(loaded);
            // Sorted by time, then id: copies of one event end up side by side.
            w.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message_id.cmp(&b.message_id)));
            w.dedup_by(|a, b| a.message_id == b.message_id);
            self.segments.prune(w, now);
            if w.len() != kept {
                // Window events read from the log must reach the store even if membership
                // does not change.
                entry.last_batch = self.batch_seq;
                self.pending.touched.entry(id.clone()).or_default().segments = true;
            }
        }
        self.update_segments(id, None, now, "backfill");
    }
}
