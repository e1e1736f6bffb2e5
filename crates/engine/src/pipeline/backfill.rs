//! Switching segment definitions, and the backfill of a new or changed segment over every
//! live profile, alongside ingest.
//!
//! A backfill is evaluated a page at a time ([`BACKFILL_PAGE`] profiles, in id order) between
//! batches of events: the applier folds whatever events are waiting, then evaluates one page,
//! so ingest goes on while a backfill runs. Each page is read from the store in one read each
//! for the profiles and the events the windows count, on the other core while the applier
//! evaluates the page before. The profiles the page changed then get their recent history
//! (one more read); those it left as they were leave the cache again (`settle_page`).
//!
//! - **No change lost or doubled.** A profile not yet evaluated that an event, a segment
//!   timer or a model reaches first is evaluated right then (its window events read from the
//!   log alone), and its page skips it. Each profile is evaluated for the new segment once,
//!   and its entry or exit is recorded once, by whichever comes first.
//! - **No stale copies.** A page reads only profiles not in the cache, and a profile leaves
//!   the cache only once a committed checkpoint holds it; one changed after its page was read
//!   was evaluated ahead, and its page leaves it alone. So a page never puts an older copy of
//!   a profile back in the cache.
//! - **Resumed after a crash.** Each checkpoint records the last profile id done
//!   ([`BackfillMark`]), with the memberships it changed; at start the engine resumes from it
//!   ([`Applier::resume_backfills`]). Profiles evaluated ahead of their page before the crash
//!   are evaluated again, which changes nothing.
//! - One backfill at a time: a second segment saved while one runs is taken on when it is
//!   done (saving segments is one at a time anyway; this is for a backfill resumed at start);
//!   saving the same segment again or deleting it stops it.
//! - Events replayed at start-up (those after the last checkpoint) are folded before the
//!   backfill resumes: a profile they reach is judged by the new segment without the events
//!   it did not keep, until the backfill reaches it.

use missive_store::{BackfillKind, BackfillMark, BackfillUpdate};

use super::*;

/// Profiles a backfill reads from the store at once.
const BACKFILL_PAGE: usize = 1_000;

/// A segment backfill under way.
pub(super) struct Backfill {
    name: String,
    is_new: bool,
    /// Every profile to evaluate, in id order; those before `next` are done.
    ids: Vec<ProfileId>,
    next: usize,
    /// Profiles at or after `next` evaluated ahead of their page.
    early: HashSet<ProfileId>,
    done: u64,
    windows: HashMap<String, Option<chrono::TimeDelta>>,
    /// The page being read: from `next`, so many profiles.
    reading: Option<(usize, tokio::task::JoinHandle<Result<Page, StoreError>>)>,
    progress: Option<watch::Sender<(u64, u64)>>,
    ack: Option<SegmentsAck>,
    started: Instant,
    /// Cluster mode: the partition of each profile listed, and the partitions covered, with
    /// the leases they were owned under when it started (empty in the embedded mode).
    homes: HashMap<ProfileId, u16>,
    covers: Vec<missive_store::Fence>,
}

/// Where a segment switch is answered: the number of profiles evaluated.
pub(super) type SegmentsAck = oneshot::Sender<Result<u64, Arc<EngineError>>>;

/// A segment switch waiting for the backfill under way: the set, the segment to backfill,
/// its progress and its caller.
pub(super) type QueuedSwitch = (
    Arc<SegmentSet>,
    Option<String>,
    Option<watch::Sender<(u64, u64)>>,
    SegmentsAck,
);

impl Backfill {
    /// Whether `id` still waits for its evaluation.
    fn is_pending(&self, id: &ProfileId) -> bool {
        !self.early.contains(id) && self.ids[self.next..].binary_search(id).is_ok()
    }

    fn mark(&self) -> BackfillMark {
        BackfillMark {
            segment: self.name.clone(),
            is_new: self.is_new,
            after: self.next.checked_sub(1).map(|i| self.ids[i].clone()),
        }
    }
}

/// What one page of a backfill needs from the store.
struct Page {
    /// The page's profiles that were not in the cache, without history: history is read
    /// only for those the backfill changes (see `Applier::settle_page`).
    profiles: Vec<Profile>,
    /// The events the segments' windows count, for every profile of the page.
    windows: HashMap<ProfileId, Vec<missive_core::profile::HistoryEntry>>,
}

async fn read_page(
    store: Store,
    uncached: Vec<ProfileId>,
    all: Vec<ProfileId>,
    windows: HashMap<String, Option<chrono::TimeDelta>>,
    now: DateTime<Utc>,
) -> Result<Page, StoreError> {
    let profiles = store.events().load_profiles(uncached).await?;
    let windows = crate::segments::load_window_events_of(&store, all, &windows, now).await?;
    Ok(Page { profiles, windows })
}

impl Applier {
    /// Takes a new set of segments, and starts the backfill of `backfill` (a new or changed
    /// segment) over every live profile. Returns `ack` when it is to be answered with the next
    /// durable checkpoint (no backfill, or a failure); a backfill answers it when it is done.
    pub(super) async fn switch_segments(
        &mut self,
        set: Arc<SegmentSet>,
        backfill: Option<String>,
        progress: Option<watch::Sender<(u64, u64)>>,
        ack: SegmentsAck,
    ) -> Option<(Result<u64, Arc<EngineError>>, SegmentsAck)> {
        // A backfill under way: stopped when its segment is gone or saved again; otherwise
        // this switch is taken on once it is done (ingest goes on meanwhile).
        if let Some(running) = &self.backfill {
            if set.get(&running.name).is_none() || backfill.as_deref() == Some(running.name.as_str()) {
                self.stop_backfill();
            } else {
                // Recorded now, so that a crash before its turn still backfills it.
                if let Some(name) = &backfill {
                    self.pending
                        .backfills
                        .push(BackfillUpdate::Progress(BackfillMark {
                            segment: name.clone(),
                            is_new: self.segments.get(name).is_none(),
                            after: None,
                        }));
                }
                self.queued_segments.push_back((set, backfill, progress, ack));
                return None;
            }
        }
        let previous = std::mem::replace(&mut self.segments, set);
        let Some(name) = backfill else {
            return Some((Ok(0), ack));
        };
        // A new name (or one deleted and saved again) starts from no membership; a changed
        // definition is compared with the old one, so that exits are recorded too.
        let is_new = previous.get(&name).is_none();
        match self.start_backfill(name, is_new, None, progress, None).await {
            Ok(()) => {
                if let Some(b) = &mut self.backfill {
                    b.ack = Some(ack);
                }
                None
            }
            Err(e) => Some((Err(Arc::new(e)), ack)),
        }
    }

    /// Lists the profiles to evaluate (after `after`, when resuming; in cluster mode those of
    /// the owned partitions, or of `only`) and records the start.
    async fn start_backfill(
        &mut self,
        name: String,
        is_new: bool,
        after: Option<ProfileId>,
        progress: Option<watch::Sender<(u64, u64)>>,
        only: Option<u16>,
    ) -> Result<(), EngineError> {
        // The event log must hold every event folded so far before anything is read from it.
        self.wait_for_writers().await;
        let (mut ids, homes) = self.live_profile_ids(only).await?;
        ids.sort_unstable();
        let covers: Vec<missive_store::Fence> = match (self.config.cluster, only) {
            (false, _) => Vec::new(),
            (true, Some(p)) => self.owned.get(&p).cloned().into_iter().collect(),
            (true, None) => self.owned.values().cloned().collect(),
        };
        // What an owner recorded done before no longer holds until this one finishes.
        for fence in &covers {
            self.pending
                .partition_backfills
                .push(missive_store::PartitionBackfill {
                    partition: fence.partition,
                    kind: BackfillKind::Segment,
                    name: name.clone(),
                    done: None,
                });
        }
        if let Some(after) = &after {
            ids.retain(|id| id > after);
        }
        tracing::info!(segment = %name, profiles = ids.len(), resumed = after.is_some(), "segment backfill started");
        let b = Backfill {
            name,
            is_new,
            ids,
            next: 0,
            early: HashSet::new(),
            done: 0,
            windows: self.segments.windows().clone(),
            reading: None,
            progress,
            ack: None,
            started: Instant::now(),
            homes,
            covers,
        };
        let mut mark = b.mark();
        mark.after = after;
        self.pending.backfills.push(BackfillUpdate::Progress(mark));
        self.backfill = Some(b);
        Ok(())
    }

    /// Resumes a backfill that a crash (or a failed commit) interrupted, as the store
    /// recorded it, or `interrupted` (the one under way when a commit failed) from the start
    /// if its first mark never reached the store; forgets those of segments deleted since.
    /// One runs at a time: the others stay recorded and are resumed when it is done.
    pub(super) async fn resume_backfills(
        &mut self,
        interrupted: Option<Backfill>,
    ) -> Result<(), EngineError> {
        let (mut progress, mut ack, mut restart) = (None, None, None);
        if let Some(mut b) = interrupted {
            if let Some((_, reading)) = b.reading.take() {
                reading.abort();
            }
            if self.segments.get(&b.name).is_some() {
                restart = Some((b.name.clone(), b.is_new));
            }
            progress = b.progress.take();
            ack = b.ack.take();
        }
        match self.resume_one(restart, progress).await {
            Ok(true) => {
                if let Some(b) = &mut self.backfill {
                    b.ack = ack;
                }
                Ok(())
            }
            Ok(false) => {
                if let Some(ack) = ack {
                    self.finished_backfills.push((Ok(0), ack));
                }
                Ok(())
            }
            Err(e) => {
                // Its caller is told; the store's marks stay for the next start.
                if let Some(ack) = ack {
                    self.tell_gave_up(ack, &e);
                }
                Err(e)
            }
        }
    }

    /// Starts the interrupted backfill `restart` (from its mark, or from the start when its
    /// first mark never landed), or else the first one the store records; false when there
    /// is none.
    async fn resume_one(
        &mut self,
        restart: Option<(String, bool)>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<bool, EngineError> {
        // Marks written by checkpoints still on their way must be read as they will be.
        self.wait_for_writers().await;
        let finished: HashSet<String> = self
            .pending
            .backfills
            .iter()
            .filter_map(|u| match u {
                BackfillUpdate::Finished { segment } => Some(segment.clone()),
                BackfillUpdate::Progress(_) => None,
            })
            .collect();
        let mut marks: Vec<BackfillMark> = self
            .store
            .events()
            .unfinished_backfills()
            .await?
            .into_iter()
            .filter(|m| !finished.contains(&m.segment))
            .collect();
        for gone in marks.iter().filter(|m| self.segments.get(&m.segment).is_none()) {
            self.pending.backfills.push(BackfillUpdate::Finished {
                segment: gone.segment.clone(),
            });
        }
        marks.retain(|m| self.segments.get(&m.segment).is_some());
        // Profiles past a mark that a change reached first were evaluated already; a second
        // look must not drop their membership and record it again: compared, not new.
        let (name, is_new, after) = match restart {
            Some((name, is_new)) => match marks.iter().find(|m| m.segment == name) {
                Some(m) => (name, false, m.after.clone()),
                None => (name, is_new, None),
            },
            None => match marks.first() {
                Some(m) => (m.segment.clone(), false, m.after.clone()),
                None => return Ok(false),
            },
        };
        self.start_backfill(name.clone(), is_new, after, progress, None)
            .await?;
        tracing::info!(segment = %name, "segment backfill resumed");
        Ok(true)
    }

    /// Answers the caller of a backfill `b` that cannot go on after `e`.
    pub(super) fn abandon(&mut self, b: Option<Backfill>, e: &EngineError) {
        if let Some(mut b) = b {
            if let Some((_, reading)) = b.reading.take() {
                reading.abort();
            }
            if let Some(ack) = b.ack.take() {
                self.tell_gave_up(ack, e);
            }
        }
    }

    /// Answers a backfill's caller, with the next checkpoint, that it cannot go on after `e`.
    fn tell_gave_up(&mut self, ack: SegmentsAck, e: &EngineError) {
        let told = EngineError::Store(StoreError::Task(format!(
            "the segment backfill could not go on: {e}"
        )));
        self.finished_backfills.push((Err(Arc::new(told)), ack));
    }

    /// Gives up the backfill under way after a failure: its caller is told; the store's mark
    /// stays, so it resumes at the next start.
    pub(super) fn abandon_backfill(&mut self, e: &EngineError) {
        let b = self.backfill.take();
        self.abandon(b, e);
    }

    /// Stops the backfill under way (its segment was deleted or replaced).
    fn stop_backfill(&mut self) {
        if let Some(mut b) = self.backfill.take() {
            if let Some((_, reading)) = b.reading.take() {
                reading.abort();
            }
            tracing::info!(segment = %b.name, done = b.done, "segment backfill stopped: the segment changed");
            self.pending.backfills.push(BackfillUpdate::Finished {
                segment: b.name.clone(),
            });
            if let Some(ack) = b.ack.take() {
                self.finished_backfills.push((Ok(b.done), ack));
            }
        }
    }

    /// Evaluates the next page of the backfill under way; finishes it after the last.
    pub(super) async fn backfill_step(&mut self) -> Result<(), EngineError> {
        if self.backfill.is_none() {
            return Ok(());
        }
        let now = self.clock.now().max(self.eval_now);
        self.eval_now = now;
        let (start, reading) = match self.backfill.as_mut().and_then(|b| b.reading.take()) {
            Some(r) => r,
            None => {
                let next = self.backfill.as_ref().map_or(0, |b| b.next);
                (next, self.read_backfill_page(next, now))
            }
        };
        let page = reading
            .await
            .map_err(|e| EngineError::Store(StoreError::Task(e.to_string())))??;
        let Some(b) = &mut self.backfill else {
            return Ok(());
        };
        let end = (start + BACKFILL_PAGE).min(b.ids.len());
        let page_ids: Vec<ProfileId> = b.ids[start..end]
            .iter()
            .filter(|id| !b.early.contains(*id))
            .cloned()
            .collect();
        // The next page is read while this one is evaluated.
        if end < b.ids.len() {
            let next = self.read_backfill_page(end, now);
            if let Some(b) = &mut self.backfill {
                b.reading = Some((end, next));
            }
        }
        if let Err(e) = self.evaluate_page(page, &page_ids, now).await {
            // The next step starts over at this page (profiles done in it are done again,
            // which changes nothing).
            if let Some((_, reading)) = self.backfill.as_mut().and_then(|b| b.reading.take()) {
                reading.abort();
            }
            return Err(e);
        }
        let Some(b) = &mut self.backfill else {
            return Ok(());
        };
        b.early.retain(|id| b.ids[end..].binary_search(id).is_ok());
        b.next = end;
        b.done += page_ids.len() as u64;
        let total = b.done + (b.ids.len() - b.next - b.early.len()) as u64;
        if let Some(p) = &b.progress {
            p.send_replace((b.done, total));
        }
        if b.done / 10_000 != (b.done - page_ids.len() as u64) / 10_000 {
            tracing::info!(segment = %b.name, done = b.done, total, "segment backfill");
        }
        if b.next < b.ids.len() {
            let mark = b.mark();
            self.pending.backfills.push(BackfillUpdate::Progress(mark));
            return Ok(());
        }
        if let Some(mut b) = self.backfill.take() {
            tracing::info!(segment = %b.name, profiles = b.done, ms = b.started.elapsed().as_millis() as u64, "segment backfilled");
            self.pending.backfills.push(BackfillUpdate::Finished {
                segment: b.name.clone(),
            });
            self.record_partitions_done(&b);
            if let Some(ack) = b.ack.take() {
                self.finished_backfills.push((Ok(b.done), ack));
            }
        }
        self.next_backfill().await
    }

    /// Cluster mode: records the partitions a finished backfill covered, and still owned
    /// under the same lease, as evaluated in full against its segment's definition.
    fn record_partitions_done(&mut self, b: &Backfill) {
        let Some(expression) = self.segments.get(&b.name).map(|s| s.source().to_owned()) else {
            return;
        };
        for fence in &b.covers {
            if self.owned.get(&fence.partition) != Some(fence) {
                continue;
            }
            self.queued_partitions
                .retain(|(s, p)| !(*s == b.name && *p == fence.partition));
            self.pending
                .partition_backfills
                .push(missive_store::PartitionBackfill {
                    partition: fence.partition,
                    kind: BackfillKind::Segment,
                    name: b.name.clone(),
                    done: Some(expression.clone()),
                });
        }
    }

    /// Cluster mode: queues again, over each partition it covered and still owned, the
    /// backfill under way (it failed), so that it is finished there.
    pub(super) fn requeue_partitions(&mut self) {
        let Some(b) = &self.backfill else { return };
        for fence in &b.covers {
            let entry = (b.name.clone(), fence.partition);
            if self.owned.get(&fence.partition) == Some(fence) && !self.queued_partitions.contains(&entry) {
                self.queued_partitions.push_back(entry);
            }
        }
    }

    /// Cluster mode: after a partition is taken on, queues a backfill over it of every
    /// segment its profiles were not evaluated against in full (a backfill its former owner
    /// did not finish, or a definition saved since), and starts the first unless one runs.
    pub(super) async fn finish_partition_backfills(&mut self, partition: u16) -> Result<(), EngineError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        let done = self.store.events().partition_backfills(partition).await?;
        // Only with a definition this node has caught up with: one saved since through another
        // node is this node's to backfill (over all it owns) once it follows it, and a stale
        // one must not overwrite what the partition was evaluated against.
        let saved: HashMap<String, String> = self
            .store
            .documents()
            .list_segments()
            .await?
            .into_iter()
            .map(|r| (r.name, r.expression))
            .collect();
        let mut missing: Vec<String> = self
            .segments
            .iter()
            .filter(|(name, seg)| saved.get(*name).map(String::as_str) == Some(seg.source()))
            .filter(|(name, seg)| {
                done.get(&(BackfillKind::Segment, (*name).clone()))
                    .map(String::as_str)
                    != Some(seg.source())
            })
            .map(|(name, _)| name.clone())
            .collect();
        missing.sort();
        for name in missing {
            if !self.queued_partitions.contains(&(name.clone(), partition)) {
                tracing::info!(partition, segment = %name, "cluster: the partition was not backfilled with this segment in full; backfilling it");
                self.queued_partitions.push_back((name, partition));
            }
        }
        if self.backfill.is_none() {
            self.next_backfill().await?;
        }
        Ok(())
    }

    /// With no backfill under way: the next queued switch, or else another backfill the
    /// store records (left by a crash), or else (cluster mode) a partition's.
    pub(super) async fn next_backfill(&mut self) -> Result<(), EngineError> {
        while self.backfill.is_none() {
            if self.take_queued_switch().await {
                continue;
            }
            if !self.config.cluster {
                return self.resume_backfills(None).await;
            }
            let Some((name, partition)) = self.queued_partitions.front().cloned() else {
                return Ok(());
            };
            if self.segments.get(&name).is_some() && self.owned.contains_key(&partition) {
                // Taken off the queue once started: one that cannot start now is tried again.
                self.start_backfill(name, false, None, None, Some(partition))
                    .await?;
            }
            self.queued_partitions.pop_front();
        }
        Ok(())
    }

    /// Takes on the oldest segment switch queued behind a backfill; false when none waits.
    pub(super) async fn take_queued_switch(&mut self) -> bool {
        let Some((set, name, progress, ack)) = self.queued_segments.pop_front() else {
            return false;
        };
        if let Some((result, ack)) = self.switch_segments(set, name, progress, ack).await {
            self.finished_backfills.push((result, ack));
        }
        true
    }

    /// Starts reading the page of the backfill that begins at `start`.
    fn read_backfill_page(
        &self,
        start: usize,
        now: DateTime<Utc>,
    ) -> tokio::task::JoinHandle<Result<Page, StoreError>> {
        let Some(b) = &self.backfill else {
            return tokio::spawn(async { Err(StoreError::Task("no backfill under way".into())) });
        };
        let page = &b.ids[start..(start + BACKFILL_PAGE).min(b.ids.len())];
        let uncached = page
            .iter()
            .filter(|id| !self.profiles.contains_key(*id))
            .cloned()
            .collect();
        tokio::spawn(read_page(
            self.store.clone(),
            uncached,
            page.to_vec(),
            b.windows.clone(),
            now,
        ))
    }

    /// Evaluates the backfilled segment on the page's profiles still waiting for it.
    async fn evaluate_page(
        &mut self,
        mut page: Page,
        ids: &[ProfileId],
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some((name, is_new, windows)) = self
            .backfill
            .as_ref()
            .map(|b| (b.name.clone(), b.is_new, b.windows.clone()))
        else {
            return Ok(());
        };
        let waiting: HashSet<&ProfileId> = ids.iter().collect();
        page.profiles.retain(|p| waiting.contains(&p.id));
        let fresh = self.cache_page(page.profiles);
        let evaluated = self
            .evaluate_cached(&mut page.windows, ids, &name, is_new, &windows, now)
            .await;
        // Settled however evaluation ended: the profiles it did not change leave the cache.
        let settled = self.settle_page(fresh).await;
        evaluated.and(settled)
    }

    /// Evaluates the backfilled segment on `ids`, read into the cache.
    async fn evaluate_cached(
        &mut self,
        page_windows: &mut HashMap<ProfileId, Vec<missive_core::profile::HistoryEntry>>,
        ids: &[ProfileId],
        name: &str,
        is_new: bool,
        windows: &HashMap<String, Option<chrono::TimeDelta>>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        for id in ids {
            let Some(live) = self.load_into_cache(id).await? else {
                continue;
            };
            // Cluster mode: its partition, for its checkpoint; one handed over since is left
            // to its new owner.
            let home = self
                .backfill
                .as_ref()
                .and_then(|b| b.homes.get(id).copied())
                .filter(|_| live == *id);
            if !self.adopt(&live, home).await? {
                continue;
            }
            // The new segment may count events the profile did not keep: read from the log
            // with the page, or alone for a profile merged since the page was listed.
            let loaded = match page_windows.remove(id) {
                Some(w) if live == *id => w,
                None if live == *id => Vec::new(),
                _ => {
                    if !self.backfill.as_ref().is_some_and(|b| b.is_pending(&live)) {
                        continue;
                    }
                    if let Some(b) = &mut self.backfill {
                        b.early.insert(live.clone());
                    }
                    crate::segments::load_window_events(&self.store, &live, windows, now).await?
                }
            };
            self.add_window_events(&live, loaded, now);
            self.backfill_one(&live, name, is_new, now);
        }
        Ok(())
    }

    /// After a page: the profiles read for it that the backfill left as they were leave the
    /// cache again (the store holds them as they are), and those it changed, which stay until
    /// the checkpoint writes them, get their history now. Most profiles of a segment few
    /// enter are left as they were, and reading every profile's history was most of a
    /// page's cost.
    async fn settle_page(&mut self, fresh: Vec<ProfileId>) -> Result<(), EngineError> {
        let (changed, unchanged): (Vec<ProfileId>, Vec<ProfileId>) = fresh
            .into_iter()
            .partition(|id| self.pending.touched.contains_key(id));
        for id in &unchanged {
            self.profiles.remove(id);
        }
        if changed.is_empty() || self.config.history_len == 0 {
            return Ok(());
        }
        let mut history = self
            .store
            .events()
            .recent_events(changed.clone(), self.config.history_len as u32)
            .await?;
        for id in changed {
            let Some(events) = history.remove(&id) else {
                continue;
            };
            let h = self.history_of(&events);
            if let Some(entry) = self.profiles.get_mut(&id) {
                entry.profile.history = h;
            }
        }
        Ok(())
    }

    /// Evaluates the backfilled segment on `id` now, if it still waits for it: called before
    /// an event, a timer or a model changes the profile, so that the change is judged by the
    /// new segment with the events it counts. `evaluate: false` (a profile about to be merged
    /// away) only completes its window events for the profile absorbing it.
    pub(super) async fn backfill_ahead(&mut self, id: &ProfileId, evaluate: bool) -> Result<(), EngineError> {
        let Some(b) = &mut self.backfill else {
            return Ok(());
        };
        if !b.is_pending(id) {
            return Ok(());
        }
        b.early.insert(id.clone());
        b.done += 1;
        let (name, is_new, windows) = (b.name.clone(), b.is_new, b.windows.clone());
        let now = self.clock.now().max(self.eval_now);
        self.eval_now = now;
        let Some(live) = self.load_into_cache(id).await? else {
            return Ok(());
        };
        let loaded = crate::segments::load_window_events(&self.store, &live, &windows, now).await?;
        self.add_window_events(&live, loaded, now);
        if evaluate {
            self.backfill_one(&live, &name, is_new, now);
        } else if is_new && let Some(entry) = self.profiles.get_mut(&live) {
            // A membership left from an earlier segment of that name is not one to leave.
            entry.profile.segments.segments.remove(&name);
            entry.profile.segments.timers.remove(&name);
        }
        Ok(())
    }

    /// Takes profiles out of the backfill without evaluating them (erased).
    pub(super) fn backfill_skip(&mut self, ids: &[ProfileId]) {
        if let Some(b) = &mut self.backfill {
            for id in ids {
                if b.is_pending(id) {
                    b.early.insert(id.clone());
                }
            }
        }
    }

    /// Puts a page's profiles read from the store into the cache, for now without their
    /// history (`settle_page` reads it for those the backfill changes); returns their ids.
    /// Merged ones are left to [`Applier::load_into_cache`].
    fn cache_page(&mut self, profiles: Vec<Profile>) -> Vec<ProfileId> {
        let mut fresh = Vec::with_capacity(profiles.len());
        for p in profiles {
            if p.merged_into.is_some() || self.profiles.contains_key(&p.id) {
                continue;
            }
            fresh.push(p.id.clone());
            self.profiles.insert(
                p.id.clone(),
                CachedProfile {
                    profile: Box::new(p),
                    last_batch: 0,
                },
            );
        }
        fresh
    }

    /// Adds the window events `loaded` from the log to those the cached profile `id` kept.
    fn add_window_events(
        &mut self,
        id: &ProfileId,
        loaded: Vec<missive_core::profile::HistoryEntry>,
        now: DateTime<Utc>,
    ) {
        let Some(entry) = self.profiles.get_mut(id) else {
            return;
        };
        let w = &mut entry.profile.window_events;
        let kept: HashSet<missive_core::MessageId> = if loaded.is_empty() {
            HashSet::new()
        } else {
            w.iter().map(|e| e.message_id.clone()).collect()
        };
        let kept_len = w.len();
        w.extend(loaded);
        // Sorted by time, then id: copies of one event end up side by side.
        w.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message_id.cmp(&b.message_id)));
        w.dedup_by(|a, b| a.message_id == b.message_id);
        self.segments.prune(w, now);
        // Changed: fewer or more events, or the same number with some new (as many pruned as
        // added).
        if w.len() != kept_len || (!kept.is_empty() && w.iter().any(|e| !kept.contains(&e.message_id))) {
            // Window events read from the log must reach the store even if membership
            // does not change.
            entry.last_batch = self.batch_seq;
            self.pending.touched.entry(id.clone()).or_default().segments = true;
        }
    }

    /// Evaluates the backfilled segment `name` on the cached profile `id`.
    fn backfill_one(&mut self, id: &ProfileId, name: &str, is_new: bool, now: DateTime<Utc>) {
        if let Some(entry) = self.profiles.get_mut(id) {
            // A membership left from an earlier segment of that name must not hide an entry.
            let mut cleared = is_new && entry.profile.segments.segments.remove(name);
            cleared |= entry.profile.segments.timers.remove(name).is_some();
            // What was cleared must reach the store even if the evaluation below finds the
            // profile as it was (it compares with the cleared state).
            if cleared {
                entry.last_batch = self.batch_seq;
                self.pending.touched.entry(id.clone()).or_default().segments = true;
            }
        }
        self.update_segments(id, None, now, "backfill");
    }
}
