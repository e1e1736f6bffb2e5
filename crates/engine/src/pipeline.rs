//! The partition owner: one task folds events into profiles in memory; two writers make the
//! result durable, and only then are the senders told.
//!
//! - The **events writer** commits every batch's new events (group commit: while it waits
//!   for one fsync, the applier prepares the next batches, and the writer commits all of them
//!   together next). That is what makes an acknowledged event durable.
//! - The **checkpoint writer** commits, every `flush_interval` and whenever a reader asks
//!   ([`Engine::sync`]), the profiles, versions, identities and merges changed since the last
//!   checkpoint, with the sequence number of the last event they include. It runs alongside
//!   the events writer (SQLite keeps the two in separate files), and commits a checkpoint only
//!   once the events it includes are stored. Writing a hot profile once a checkpoint instead of
//!   once an event is what keeps ingest fast.
//!
//! The engine numbers events itself (`seq`), so a checkpoint knows exactly what it includes.
//! After a crash, the events stored after the last checkpoint are replayed into the profiles
//! at start-up ([`Engine::start`]), deterministically: a profile created by a replayed event
//! takes the id that event was first stored under. Identity merges cross any partitioning by
//! person, so on one box there is one owner of all profiles.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use missive_core::message::validate_message;
use missive_core::{Clock, Event, EventKind, IdentityKey, MessageId, Profile, ProfileId, Touched};
use missive_store::{
    Checkpoint, ErasureCounts, EventBatch, EventQuery, MergeRecord, ProfileVersion, Store, StoreError,
    StoredEvent,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::bloom::ScalableBloom;
use missive_segment::{Extra, MembershipChange, Schema, Segment, SegmentSet};
use missive_store::SegmentChange;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Recent events kept inside each profile.
    pub history_len: usize,
    /// Most events folded into one batch.
    pub max_batch_events: usize,
    /// Profiles kept in memory; beyond this, checkpointed ones are dropped and reloaded on demand.
    pub profile_cache: usize,
    /// A full snapshot is stored with every n-th version, bounding the replay of diffs
    /// (version 1 needs none: it is replayed over an empty profile).
    pub snapshot_every: u64,
    /// Longest time between profile checkpoints. Zero checkpoints with every batch.
    pub flush_interval: Duration,
    /// A checkpoint is also taken once this many profiles are waiting for one.
    pub max_dirty_profiles: usize,
    /// The time zone of people without a `timezone` trait (`content.default_time_zone`): for
    /// quiet hours, journey waits until a local time, and the `date` filter alike.
    pub default_time_zone: jiff::tz::TimeZone,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            history_len: 50,
            max_batch_events: 10_000,
            profile_cache: 200_000,
            snapshot_every: 32,
            flush_interval: Duration::from_millis(250),
            max_dirty_profiles: 100_000,
            default_time_zone: jiff::tz::TimeZone::UTC,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

/// What happened to one ingest call's events; an ingest call resolves only once they are durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub stored: usize,
    /// Naming an erased person: acknowledged and dropped.
    pub erased: usize,
    /// Already stored under the same message id: acknowledged, not applied again.
    pub duplicates: usize,
}

/// Where the outcome of one ingest call is sent once durable.
type Ack = oneshot::Sender<Result<IngestOutcome, Arc<EngineError>>>;
type SyncAck = oneshot::Sender<Result<(), Arc<EngineError>>>;
type Tasks = Vec<tokio::task::JoinHandle<()>>;

enum Request {
    Ingest {
        events: Vec<Event>,
        ack: Ack,
    },
    /// Checkpoint now and answer once it is committed (`None`: the timer's own checkpoint).
    Sync {
        ack: Option<SyncAck>,
    },
    /// Look at due segment timers (the ticker's).
    Tick,
    /// Erase profiles: from now on, events naming one of `identity_hashes` are dropped; once
    /// everything before is durable, the profiles are deleted from memory and from the store.
    Erase {
        profiles: Vec<ProfileId>,
        identity_hashes: Vec<String>,
        ack: oneshot::Sender<Result<ErasureCounts, Arc<EngineError>>>,
    },
    /// Use a new set of saved segments; evaluate `backfill` on every profile.
    Segments {
        set: Arc<SegmentSet>,
        backfill: Option<String>,
        progress: Option<watch::Sender<(u64, u64)>>,
        ack: oneshot::Sender<Result<u64, Arc<EngineError>>>,
    },
}

/// A batch of new events for the events writer.
struct EventJob {
    epoch: u64,
    batch_seq: u64,
    batch: EventBatch,
    acks: Vec<(Ack, IngestOutcome)>,
    events: usize,
}

/// A checkpoint for the checkpoint writer.
struct CheckpointJob {
    epoch: u64,
    batch_seq: u64,
    checkpoint: Checkpoint,
    sync_acks: Vec<SyncAck>,
}

/// What the writers tell the applier and each other.
struct Progress {
    /// Bumped when a commit fails: everything prepared before is refused, and the applier
    /// rebuilds its memory from the store.
    epoch: AtomicU64,
    /// The highest event `seq` committed.
    events_committed: watch::Sender<i64>,
    /// The last batch each writer has finished with (committed or refused).
    events_done: watch::Sender<u64>,
    checkpoints_done: watch::Sender<u64>,
    /// The batch of the last committed checkpoint: profiles changed up to it may be evicted.
    flushed_batch: AtomicU64,
    /// Segment entries and exits, published once their checkpoint is durable.
    segment_changes: tokio::sync::broadcast::Sender<SegmentChange>,
    /// The last commit that failed, unless one succeeded since: what `/health` reports.
    write_failure: std::sync::Mutex<Option<(Instant, String)>>,
}

/// Handle to the running pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
    stop: Arc<watch::Sender<bool>>,
    changes: tokio::sync::broadcast::Sender<SegmentChange>,
    /// Segment definitions change one at a time.
    segment_lock: Arc<tokio::sync::Mutex<()>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    tasks: Arc<tokio::sync::Mutex<Tasks>>,
    write_health: Arc<Progress>,
}

impl Engine {
    /// Replays the events stored after the last profile checkpoint (a crash leaves some), then
    /// starts the pipeline.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let stats = store.stats().await?;
        metrics::gauge!("missive_profiles").set(stats.profiles as f64);
        let (tx, rx) = mpsc::channel::<Request>(4096);
        // While a commit runs, the applier may prepare this many batches; the events writer
        // commits them together next.
        let (etx, erx) = mpsc::channel::<EventJob>(16);
        let (ctx, crx) = mpsc::channel::<CheckpointJob>(4);
        let progress = Arc::new(Progress {
            epoch: AtomicU64::new(0),
            events_committed: watch::channel(0).0,
            events_done: watch::channel(0).0,
            checkpoints_done: watch::channel(0).0,
            flushed_batch: AtomicU64::new(0),
            segment_changes: tokio::sync::broadcast::channel(65_536).0,
            write_failure: std::sync::Mutex::new(None),
        });
        let config = Arc::new(config);
        let mut applier = Applier {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            progress: progress.clone(),
            seen_epoch: 0,
            batch_seq: 0,
            next_seq: 1,
            profiles: HashMap::new(),
            identities: HashMap::new(),
            // Larger than anything in flight, so that a resent id is always caught.
            recent_ids: RecentIds::new((1 << 20).max(config.max_batch_events * 64)),
            pending: Pending::default(),
            repoint: Vec::new(),
            last_flush: Instant::now(),
            flush_now: false,
            history_through: None,
            sent_events: 0,
            sent_checkpoint: 0,
            message_filter: ScalableBloom::new(stats.events as usize * 2),
            identity_filter: ScalableBloom::new(stats.profiles as usize * 4),
            segments: Arc::new(load_segments(&*store).await?),
            timers: BinaryHeap::new(),
            eval_now: DateTime::<Utc>::MIN_UTC,
            erased: store.erased_identities().await?,
            erasure_key: erasure_key(&*store).await?,
        };
        applier.load_filters().await?;
        let replayed = applier.recover().await?;
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                "replayed events stored after the last profile checkpoint"
            );
        }
        applier.load_timers().await?;
        let (stop, stop_rx) = watch::channel(false);
        let changes = progress.segment_changes.clone();
        let write_health = progress.clone();
        let tasks = vec![
            tokio::spawn(applier.run(rx, etx, ctx, stop_rx)),
            tokio::spawn(run_events_writer(store.clone(), erx, progress.clone())),
            tokio::spawn(run_checkpoint_writer(store.clone(), crx, progress)),
        ];
        Ok(Self {
            tx,
            stop: Arc::new(stop),
            changes,
            segment_lock: Arc::new(tokio::sync::Mutex::new(())),
            store,
            clock,
            config,
            tasks: Arc::new(tokio::sync::Mutex::new(tasks)),
            write_health,
        })
    }

    /// The store's write health: the error of the last commit and how long ago it failed,
    /// when no commit has succeeded since (a full disk, a read-only file system, a lost
    /// database). Reads can still work while every write fails.
    pub fn write_failure(&self) -> Option<(Duration, String)> {
        let guard = self.write_health.write_failure.lock().ok()?;
        guard.as_ref().map(|(at, e)| (at.elapsed(), e.clone()))
    }

    /// Folds `events` into profiles and returns once they are durable.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome, Arc<EngineError>> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Ingest { events, ack })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// Erases profiles: every event naming one of `identity_hashes` ([`identity_hash`]) is
    /// dropped from now on, and the profiles, with everything stored about them, are deleted
    /// once what was accepted before is durable.
    pub async fn erase(
        &self,
        profiles: Vec<ProfileId>,
        identity_hashes: Vec<String>,
    ) -> Result<ErasureCounts, Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Erase {
                profiles,
                identity_hashes,
                ack,
            })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// The key of [`identity_hash`] for this workspace.
    pub async fn erasure_key(&self) -> Result<Vec<u8>, StoreError> {
        erasure_key(&**self.store()).await
    }

    /// Brings the stored profiles, versions, identities and merges up to date with every event
    /// acknowledged so far. Readers of the store call it first.
    pub async fn sync(&self) -> Result<(), Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Sync { ack: Some(ack) })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// Hands a new set of saved segments to the pipeline, evaluating `backfill` (a new or
    /// changed segment) on every profile; answers with the number of profiles evaluated.
    /// `progress`, when given, is told (profiles done, profiles in all) as the backfill goes.
    pub async fn use_segments(
        &self,
        set: SegmentSet,
        backfill: Option<String>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<u64, Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Segments {
                set: Arc::new(set),
                backfill,
                progress,
                ack,
            })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// Segment entries and exits, each published once the checkpoint recording it is durable:
    /// what journeys trigger on (`Segment Entered` / `Segment Exited`). A subscriber that falls
    /// more than 65,536 changes behind is told it lagged.
    pub fn subscribe_segment_changes(&self) -> tokio::sync::broadcast::Receiver<SegmentChange> {
        self.changes.subscribe()
    }

    /// Held while a segment definition changes, so that concurrent changes cannot hand the
    /// pipeline a set built from a stale list.
    pub async fn lock_segments(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.segment_lock.lock().await
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Stops taking events, commits everything already taken with a final checkpoint, and
    /// waits for it. Calls made after this fail with [`EngineError::ShuttingDown`].
    pub async fn shutdown(self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        let _ = self.stop.send(true);
        drop(self.tx);
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// A bounded set of message ids seen recently, which spares a store lookup for resent
/// batches and covers batches not committed yet.
struct RecentIds {
    set: HashSet<MessageId>,
    order: VecDeque<MessageId>,
    cap: usize,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, id: &MessageId) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: MessageId) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }
}

struct CachedProfile {
    profile: Profile,
    /// The batch that last changed it; it may be evicted only once a checkpoint that includes
    /// that batch is committed.
    last_batch: u64,
}

/// What changed since the last checkpoint: written with the next one.
#[derive(Default)]
struct Pending {
    touched: HashMap<ProfileId, Touched>,
    causes: HashMap<ProfileId, String>,
    identities: Vec<(IdentityKey, ProfileId)>,
    merges: Vec<MergeRecord>,
    segment_changes: Vec<SegmentChange>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.touched.is_empty() && self.identities.is_empty() && self.merges.is_empty()
    }
}

struct Applier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    progress: Arc<Progress>,
    seen_epoch: u64,
    batch_seq: u64,
    /// The `seq` the next new event gets.
    next_seq: i64,
    profiles: HashMap<ProfileId, CachedProfile>,
    identities: HashMap<IdentityKey, (ProfileId, u64)>,
    recent_ids: RecentIds,
    pending: Pending,
    /// Merges made in the batch being folded, for its event batch.
    repoint: Vec<(ProfileId, ProfileId)>,
    last_flush: Instant,
    /// Checkpoint with the next batch whatever the time (set after a replay).
    flush_now: bool,
    /// While replaying: only events up to this `seq` go into a loaded profile's history (the
    /// later ones are being replayed into it).
    history_through: Option<i64>,
    /// The last batch handed to each writer.
    sent_events: u64,
    sent_checkpoint: u64,
    /// Every message id and identity key ever stored (and maybe a few more): a "no" spares
    /// the store lookup that new messages and new customers would otherwise cost.
    message_filter: ScalableBloom,
    identity_filter: ScalableBloom,
    /// The saved segments, and when each profile's next segment timer falls due.
    segments: Arc<SegmentSet>,
    timers: BinaryHeap<Reverse<(DateTime<Utc>, ProfileId)>>,
    /// The latest instant segments were evaluated at.
    eval_now: DateTime<Utc>,
    /// Keyed hashes of erased identities ([`identity_hash`]), and the key.
    erased: HashSet<String>,
    erasure_key: Vec<u8>,
}

impl Applier {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        etx: mpsc::Sender<EventJob>,
        ctx: mpsc::Sender<CheckpointJob>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Segment timers are looked at every tick too: keep it short.
        let tick_every = self
            .config
            .flush_interval
            .clamp(Duration::from_millis(10), Duration::from_millis(100));
        let mut ticker = tokio::time::interval(tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                biased;
                r = rx.recv() => r,
                                _ = ticker.tick() => {
                    let timer_due = self.timers.peek().is_some_and(|Reverse((due, _))| *due <= self.clock.now());
                    let flush_due = !self.pending.is_empty()
                        && (self.flush_now || self.last_flush.elapsed() >= self.config.flush_interval);
                    if !timer_due && !flush_due {
                        continue;
                    }
                    Some(Request::Tick)
                }
                _ = stop.changed() => {
                    // No new requests from here on; those already queued are still committed.
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut requests = vec![first];
            let mut n = request_events(&requests[0]);
            while n < self.config.max_batch_events {
                match rx.try_recv() {
                    Ok(r) => {
                        n += request_events(&r);
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            if !self.handle(requests, false, &etx, &ctx).await {
                tracing::error!("a writer stopped; the applier exits");
                return;
            }
        }
        // The last checkpoint: everything accepted is in the stored profiles.
        self.handle(Vec::new(), true, &etx, &ctx).await;
    }

    /// Folds a batch of requests and hands the results to the writers; false when a writer
    /// is gone.
    async fn handle(
        &mut self,
        requests: Vec<Request>,
        force_checkpoint: bool,
        etx: &mpsc::Sender<EventJob>,
        ctx: &mpsc::Sender<CheckpointJob>,
    ) -> bool {
        let started = Instant::now();
        let mut lists = Vec::new();
        let mut acks = Vec::new();
        let mut erasures = Vec::new();
        let mut sync_acks = Vec::new();
        let mut sync_requested = force_checkpoint;
        let mut segment_requests = Vec::new();
        for r in requests {
            match r {
                Request::Ingest { events, ack } => {
                    lists.push(events);
                    acks.push(ack);
                }
                Request::Sync { ack } => {
                    sync_requested = true;
                    sync_acks.extend(ack);
                }
                Request::Tick => {}
                Request::Erase {
                    profiles,
                    identity_hashes,
                    ack,
                } => {
                    // Events in this very batch naming the person are dropped too.
                    self.erased.extend(identity_hashes.iter().cloned());
                    sync_requested = true;
                    erasures.push((profiles, identity_hashes, ack));
                }
                Request::Segments {
                    set,
                    backfill,
                    progress,
                    ack,
                } => segment_requests.push((set, backfill, progress, ack)),
            }
        }

        let n = lists.iter().map(Vec::len).sum::<usize>();
        let folded = self.prepare(lists).await;
        tracing::debug!(
            events = n,
            prepare_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch prepared"
        );
        let (batch, outcomes, stored) = match folded {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "batch preparation failed; rebuilding from the store");
                let e = Arc::new(e);
                fail(acks, sync_acks, &e);
                // A saved segment is still taken on: it is in the store already. Its backfill
                // is not done; the caller is told, and saving it again redoes it.
                for (set, _, _, ack) in segment_requests {
                    self.segments = set;
                    let _ = ack.send(Err(e.clone()));
                }
                // Make the next batch start over from the store.
                self.progress.epoch.fetch_add(1, Ordering::SeqCst);
                return true;
            }
        };
        let job = EventJob {
            epoch: self.seen_epoch,
            batch_seq: self.batch_seq,
            batch,
            acks: acks.into_iter().zip(outcomes).collect(),
            events: stored,
        };
        if !job.acks.is_empty() || !job.batch.events.is_empty() || !job.batch.repoint.is_empty() {
            if etx.send(job).await.is_err() {
                return false;
            }
            self.sent_events = self.batch_seq;
        }
        // After the fold (a failed commit has been recovered from) and after this batch's
        // events went to the writer (the backfill waits for them to be in the log).
        for (set, backfill, progress, ack) in segment_requests {
            let result = self
                .switch_segments(set, backfill, progress)
                .await
                .map_err(Arc::new);
            // Answer once the backfill's checkpoint is durable, not before.
            let (durable, committed) = oneshot::channel();
            sync_acks.push(durable);
            sync_requested = true;
            tokio::spawn(async move {
                let answer = match committed.await {
                    Ok(Ok(())) => result,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Arc::new(EngineError::ShuttingDown)),
                };
                let _ = ack.send(answer);
            });
        }
        let checkpoint = sync_requested
            || self.config.flush_interval.is_zero()
            || self.pending.touched.len() >= self.config.max_dirty_profiles
            || (!self.pending.is_empty()
                && (self.flush_now || self.last_flush.elapsed() >= self.config.flush_interval));
        if checkpoint {
            let job = CheckpointJob {
                epoch: self.seen_epoch,
                batch_seq: self.batch_seq,
                checkpoint: self.take_checkpoint(),
                sync_acks,
            };
            if ctx.send(job).await.is_err() {
                return false;
            }
            self.sent_checkpoint = self.batch_seq;
        }
        for (profiles, hashes, ack) in erasures {
            let _ = ack.send(self.erase(profiles, hashes).await.map_err(Arc::new));
        }
        true
    }

    /// Deletes profiles once everything sent to the writers is durable (their last events
    /// and checkpoint included), then forgets them.
    async fn erase(
        &mut self,
        profiles: Vec<ProfileId>,
        hashes: Vec<String>,
    ) -> Result<ErasureCounts, EngineError> {
        self.wait_for_writers().await;
        self.store.add_erased_identities(hashes, self.clock.now()).await?;
        let gone: HashSet<&ProfileId> = profiles.iter().collect();
        self.profiles.retain(|id, _| !gone.contains(id));
        self.identities.retain(|_, (p, _)| !gone.contains(p));
        self.timers.retain(|Reverse((_, p))| !gone.contains(p));
        Ok(self.store.erase_profiles(profiles).await?)
    }

    async fn prepare(
        &mut self,
        lists: Vec<Vec<Event>>,
    ) -> Result<(EventBatch, Vec<IngestOutcome>, usize), EngineError> {
        let current = self.progress.epoch.load(Ordering::SeqCst);
        if current != self.seen_epoch {
            // A commit failed: memory may hold changes that never reached the store. Let the
            // writers finish what they hold, then start over from the store's checkpoint and
            // the events stored after it.
            self.wait_for_writers().await;
            self.seen_epoch = current;
            self.recover().await?;
            self.load_timers().await?;
        }
        self.batch_seq += 1;
        self.evict_if_needed();
        self.run_due_timers(self.clock.now()).await?;
        self.fold(lists).await
    }

    /// Waits until both writers have finished with every batch sent to them.
    async fn wait_for_writers(&self) {
        let (events, checkpoints) = (self.sent_events, self.sent_checkpoint);
        let _ = self
            .progress
            .events_done
            .subscribe()
            .wait_for(|b| *b >= events)
            .await;
        let _ = self
            .progress
            .checkpoints_done
            .subscribe()
            .wait_for(|b| *b >= checkpoints)
            .await;
    }

    /// Deduplicates, resolves identities and folds the events; returns what to store.
    async fn fold(
        &mut self,
        lists: Vec<Vec<Event>>,
    ) -> Result<(EventBatch, Vec<IngestOutcome>, usize), EngineError> {
        // 1. Deduplicate by message id: against recent ids, then the store, then within the batch.
        let unknown: Vec<MessageId> = lists
            .iter()
            .flatten()
            .filter(|e| {
                !self.recent_ids.contains(&e.message_id)
                    && self.message_filter.may_contain(e.message_id.as_str().as_bytes())
            })
            .map(|e| e.message_id.clone())
            .collect();
        let stored = self.store.existing_message_ids(unknown).await?;
        let fresh: Vec<&Event> = lists
            .iter()
            .flatten()
            .filter(|e| !stored.contains(&e.message_id) && !self.recent_ids.contains(&e.message_id))
            .collect();
        self.prefetch_identities(&fresh).await?;

        // 2. Fold.
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(lists.len());
        let mut total = 0;
        for list in lists {
            let mut outcome = IngestOutcome::default();
            for e in list {
                if stored.contains(&e.message_id) || self.recent_ids.contains(&e.message_id) {
                    outcome.duplicates += 1;
                    continue;
                }
                if !self.erased.is_empty()
                    && e.identity_keys()
                        .iter()
                        .any(|k| self.erased.contains(&identity_hash(&self.erasure_key, k)))
                {
                    outcome.erased += 1;
                    continue;
                }
                self.recent_ids.insert(e.message_id.clone());
                self.message_filter.insert(e.message_id.as_str().as_bytes());
                let (target, e) = self.apply(e, None).await?;
                let seq = self.next_seq;
                self.next_seq += 1;
                events.push(StoredEvent {
                    seq,
                    message_id: e.message_id,
                    profile_id: target.clone(),
                    origin_profile_id: target,
                    kind: e.kind,
                    name: e.name,
                    timestamp: e.timestamp,
                    received_at: e.received_at,
                    body: e.body,
                });
                outcome.stored += 1;
                total += 1;
            }
            outcomes.push(outcome);
        }
        let repoint = std::mem::take(&mut self.repoint);
        Ok((EventBatch { events, repoint }, outcomes, total))
    }

    /// Loads, in one pass, every identity the events name that is not in memory yet, and the
    /// profiles they point to.
    async fn prefetch_identities(&mut self, events: &[&Event]) -> Result<(), EngineError> {
        let mut missing: Vec<IdentityKey> = Vec::new();
        let mut seen = HashSet::new();
        for e in events {
            let mut keys = e.identity_keys();
            if let Some(prev) = &e.previous_id {
                keys.push(IdentityKey::user_id(prev.clone()));
                keys.push(IdentityKey::anonymous_id(prev.clone()));
            }
            for k in keys {
                if !self.identities.contains_key(&k)
                    && self
                        .identity_filter
                        .may_contain(&identity_bytes(&self.store.identity_index(&k)))
                    && seen.insert(k.clone())
                {
                    missing.push(k);
                }
            }
        }
        let resolved = self.store.resolve_identities(missing).await?;
        let mut to_load = Vec::new();
        let mut queued = HashSet::new();
        for (k, p) in resolved {
            if !self.profiles.contains_key(&p) && queued.insert(p.clone()) {
                to_load.push(p.clone());
            }
            self.identities.insert(k, (p, 0));
        }
        for id in to_load {
            self.load_into_cache(&id).await?;
        }
        Ok(())
    }

    /// Takes everything pending as a checkpoint: one new version per changed profile, with
    /// its diff, including every event folded so far.
    fn take_checkpoint(&mut self) -> Checkpoint {
        let pending = std::mem::take(&mut self.pending);
        let now = self.clock.now();
        let mut cp = Checkpoint {
            identities: pending.identities,
            merges: pending.merges,
            segment_changes: pending.segment_changes,
            through_seq: self.next_seq - 1,
            ..Checkpoint::default()
        };
        let mut causes = pending.causes;
        let mut ids: Vec<_> = pending
            .touched
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .collect();
        // Sorted ids write the profile and version indexes in order.
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, touched) in ids {
            let Some(entry) = self.profiles.get_mut(&id) else {
                continue;
            };
            let p = &mut entry.profile;
            p.version += 1;
            p.updated_at = now;
            entry.last_batch = self.batch_seq;
            // The history is not stored with the profile: leave it out of the copies.
            let history = std::mem::take(&mut p.history);
            let snapshot = (p.version % self.config.snapshot_every == 0).then(|| p.clone());
            cp.versions.push(ProfileVersion {
                profile_id: id.clone(),
                version: p.version,
                recorded_at: now,
                cause: causes.remove(&id).unwrap_or_default(),
                diff: p.diff_for(&touched),
                snapshot,
            });
            cp.profiles.push(p.clone());
            p.history = history;
        }
        self.last_flush = Instant::now();
        self.flush_now = false;
        cp
    }

    /// Fills the filters from the store: every message id and identity key.
    async fn load_filters(&mut self) -> Result<(), EngineError> {
        let started = Instant::now();
        let (mut messages, mut after) = (0usize, 0i64);
        loop {
            let page = self.store.message_ids_after(after, 50_000).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            messages += page.len();
            for (_, id) in &page {
                self.message_filter.insert(id.as_str().as_bytes());
            }
        }
        let (mut identities, mut after) = (0usize, None);
        loop {
            let page = self.store.identity_keys_after(after, 50_000).await?;
            let Some(last) = page.last().cloned() else { break };
            identities += page.len();
            for k in &page {
                self.identity_filter.insert(&identity_bytes(k));
            }
            after = Some(last);
        }
        tracing::info!(
            messages,
            identities,
            bytes = self.message_filter.bytes() + self.identity_filter.bytes(),
            ms = started.elapsed().as_millis() as u64,
            "lookup filters loaded"
        );
        Ok(())
    }

    /// Rebuilds memory from the store: the checkpointed profiles (loaded on demand) and the
    /// events stored after the checkpoint, replayed in arrival order.
    async fn recover(&mut self) -> Result<u64, EngineError> {
        self.profiles.clear();
        self.identities.clear();
        self.recent_ids.clear();
        self.timers.clear();
        self.pending = Pending::default();
        self.repoint.clear();
        let checkpoint = self.store.profile_checkpoint().await?;
        // Never reuse a number, even one a failed batch took and a checkpoint already counted.
        self.next_seq = self
            .next_seq
            .max(self.store.last_event_seq().await?.max(checkpoint) + 1);
        // The writers are drained: numbers taken by batches that were never stored never will be,
        // and a checkpoint must not wait for them.
        self.progress.events_committed.send_replace(self.next_seq - 1);
        // Histories loaded while replaying must not already hold the events being replayed.
        self.history_through = Some(checkpoint);
        let mut after = checkpoint;
        let mut replayed = 0u64;
        loop {
            let stored = self.store.events_after(after, 5_000).await?;
            let Some(last) = stored.last() else { break };
            after = last.seq;
            let events: Vec<(Event, ProfileId)> = stored
                .into_iter()
                .map(|s| (event_from_stored(&s), s.origin_profile_id))
                .collect();
            let refs: Vec<&Event> = events.iter().map(|(e, _)| e).collect();
            self.prefetch_identities(&refs).await?;
            for (e, origin) in events {
                self.recent_ids.insert(e.message_id.clone());
                self.apply(e, Some(&origin)).await?;
                replayed += 1;
            }
        }
        self.history_through = None;
        // Replayed merges re-point events that already point where they should: nothing to store.
        self.repoint.clear();
        // What was replayed goes into the next checkpoint right away.
        self.flush_now = replayed > 0;
        Ok(replayed)
    }

    /// Re-evaluates a profile's segments after a change (`touched`; `None`: evaluate all),
    /// records entries and exits, and (re)arms its timer.
    fn update_segments(
        &mut self,
        id: &ProfileId,
        touched: Option<&Touched>,
        now: DateTime<Utc>,
        cause: &str,
    ) {
        let set = self.segments.clone();
        let Some(entry) = self.profiles.get_mut(id) else {
            return;
        };
        let p = &mut entry.profile;
        let mut state = std::mem::take(&mut p.segments);
        let before = state.clone();
        // Segments deleted since: forget them.
        state.segments.retain(|n| set.get(n).is_some());
        state.timers.retain(|n, _| set.get(n).is_some());
        let scores = p.model_scores();
        let changes: Vec<MembershipChange> = match touched {
            Some(t) => set.on_change(&mut state, p, &p.window_events, scores, t, Extra::default(), now),
            None => {
                let fresh = set.evaluate_all(p, &p.window_events, scores, now);
                let changes = fresh
                    .segments
                    .symmetric_difference(&state.segments)
                    .map(|name| MembershipChange {
                        segment: name.clone(),
                        entered: fresh.segments.contains(name),
                        at: now,
                        cause: cause.to_owned(),
                    })
                    .collect();
                state = fresh;
                changes
            }
        };
        let changed = state != before;
        let due = state.next_due();
        p.segments = state;
        if !changed {
            return;
        }
        entry.last_batch = self.batch_seq;
        self.pending.touched.entry(id.clone()).or_default().segments = true;
        self.record_segment_changes(id, changes);
        if let Some(due) = due {
            self.timers.push(Reverse((due, id.clone())));
        }
    }

    fn record_segment_changes(&mut self, id: &ProfileId, changes: Vec<MembershipChange>) {
        for c in changes {
            let kind = if c.entered { "entered" } else { "exited" };
            metrics::counter!("missive_segment_changes_total", "kind" => kind).increment(1);
            self.pending.segment_changes.push(SegmentChange {
                profile_id: id.clone(),
                segment: c.segment,
                entered: c.entered,
                at: c.at,
                cause: c.cause,
            });
        }
    }

    /// Fires every segment timer due by `now`, each at its own instant.
    async fn run_due_timers(&mut self, now: DateTime<Utc>) -> Result<(), EngineError> {
        self.eval_now = self.eval_now.max(now);
        if self.segments.is_empty() {
            self.timers.clear();
            return Ok(());
        }
        while let Some(Reverse((due, id))) = self.timers.peek().cloned() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(id) = self.load_into_cache(&id).await? else {
                continue;
            };
            let set = self.segments.clone();
            let Some(entry) = self.profiles.get_mut(&id) else {
                continue;
            };
            let p = &mut entry.profile;
            // A stale heap entry: the profile's timers moved since.
            if p.segments.next_due().is_none_or(|d| d > now) {
                continue;
            }
            let mut state = std::mem::take(&mut p.segments);
            let scores = p.model_scores();
            let mut changes = Vec::new();
            while let Some(at) = state.next_due().filter(|d| *d <= now) {
                changes.extend(set.on_due(&mut state, p, &p.window_events, scores, at));
                // A timer that did not move forward would loop: drop it.
                if state.next_due() == Some(at) {
                    state.timers.retain(|_, t| *t != at);
                }
            }
            let next = state.next_due();
            p.segments = state;
            set.prune(&mut p.window_events, now);
            entry.last_batch = self.batch_seq;
            self.pending.touched.entry(id.clone()).or_default().segments = true;
            self.record_segment_changes(&id, changes);
            if let Some(next) = next {
                self.timers.push(Reverse((next, id)));
            }
        }
        Ok(())
    }

    /// Takes a new set of segments; evaluates `backfill` on every live profile.
    async fn switch_segments(
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
        // Every live profile: those in the store, and those only in memory so far.
        let mut ids: Vec<ProfileId> = self
            .profiles
            .iter()
            .filter(|(_, c)| c.profile.merged_into.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut after = None;
        loop {
            let page = self.store.profiles_after(after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            ids.extend(
                page.into_iter()
                    .map(|p| p.id)
                    .filter(|id| !self.profiles.contains_key(id)),
            );
        }
        let total = ids.len() as u64;
        for (n, id) in ids.into_iter().enumerate() {
            let Some(id) = self.load_into_cache(&id).await? else {
                continue;
            };
            // The new segment may count events the profile did not keep: read them from the log.
            let loaded =
                crate::segments::load_window_events(&*self.store, &id, self.segments.windows(), now).await?;
            if let Some(entry) = self.profiles.get_mut(&id) {
                // A membership left from an earlier segment of that name must not hide an entry.
                if is_new {
                    entry.profile.segments.segments.remove(&name);
                }
                entry.profile.segments.timers.remove(&name);
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
            self.update_segments(&id, None, now, "backfill");
            if let Some(p) = &progress
                && n % 500 == 0
            {
                p.send_replace((n as u64, total));
            }
            if n % 10_000 == 9_999 {
                tracing::info!(segment = %name, done = n + 1, total, "segment backfill");
            }
        }
        tracing::info!(segment = %name, profiles = total, ms = started.elapsed().as_millis() as u64, "segment backfilled");
        Ok(total)
    }

    /// Re-arms the segment timers the stored profiles hold (after a restart).
    async fn load_timers(&mut self) -> Result<(), EngineError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        let mut after = None;
        loop {
            let page = self.store.profiles_after(after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for p in page {
                // Profiles in memory (replayed) are armed below, from their newer state.
                if let (Some(due), false) = (p.segments.next_due(), self.profiles.contains_key(&p.id)) {
                    self.timers.push(Reverse((due, p.id)));
                }
            }
        }
        for (id, c) in &self.profiles {
            if let Some(due) = c.profile.segments.next_due() {
                self.timers.push(Reverse((due, id.clone())));
            }
        }
        Ok(())
    }

    async fn load_into_cache(&mut self, id: &ProfileId) -> Result<Option<ProfileId>, EngineError> {
        // Follow merges: identities are re-pointed at merge time, but a stale pointer is cheap to follow.
        let mut id = id.clone();
        for _ in 0..16 {
            if let Some(c) = self.profiles.get(&id) {
                match &c.profile.merged_into {
                    Some(next) => {
                        id = next.clone();
                        continue;
                    }
                    None => return Ok(Some(id)),
                }
            }
            let Some(mut p) = self.store.load_profile(&id).await? else {
                return Ok(None);
            };
            if let Some(next) = p.merged_into.clone() {
                self.profiles.insert(
                    id.clone(),
                    CachedProfile {
                        profile: p,
                        last_batch: 0,
                    },
                );
                id = next;
                continue;
            }
            let history = self
                .store
                .profile_events(EventQuery {
                    profile_id: id.clone(),
                    received_before: None,
                    cursor: None,
                    limit: self.config.history_len as u32,
                })
                .await?;
            let through = self.history_through.unwrap_or(i64::MAX);
            p.history = history
                .iter()
                .rev()
                .filter(|e| e.seq <= through)
                .map(crate::profiles::history_entry)
                .collect();
            self.profiles.insert(
                id.clone(),
                CachedProfile {
                    profile: p,
                    last_batch: 0,
                },
            );
            return Ok(Some(id));
        }
        Err(EngineError::Store(StoreError::Corrupt(format!(
            "merge chain from {id} is longer than 16"
        ))))
    }

    fn evict_if_needed(&mut self) {
        if self.profiles.len() <= self.config.profile_cache {
            return;
        }
        // Only what a committed checkpoint holds may go: the store has it.
        let flushed = self.progress.flushed_batch.load(Ordering::SeqCst);
        let pending = &self.pending.touched;
        let target = self.config.profile_cache * 4 / 5;
        let mut excess = self.profiles.len() - target;
        self.profiles.retain(|id, c| {
            if excess > 0 && c.last_batch <= flushed && !pending.contains_key(id) {
                excess -= 1;
                false
            } else {
                true
            }
        });
        let profiles = &self.profiles;
        self.identities
            .retain(|_, (p, b)| *b > flushed || profiles.contains_key(p));
    }

    /// The live profile an identity points to, if any.
    async fn profile_of(&mut self, key: &IdentityKey) -> Result<Option<ProfileId>, EngineError> {
        let Some((id, _)) = self.identities.get(key).cloned() else {
            return Ok(None);
        };
        self.load_into_cache(&id).await
    }

    /// A new profile; on replay it takes the id its first event was stored under.
    async fn new_profile(
        &mut self,
        replay_id: Option<&ProfileId>,
        at: DateTime<Utc>,
    ) -> Result<ProfileId, EngineError> {
        // On replay, recreate the profile under the id its event was stored with, unless that
        // id exists (replay went another way): never overwrite a stored profile.
        let id = match replay_id {
            Some(id) if !self.profiles.contains_key(id) && self.store.load_profile(id).await?.is_none() => {
                id.clone()
            }
            _ => ProfileId::generate(),
        };
        let p = Profile::new(id.clone(), at);
        self.profiles.insert(
            id.clone(),
            CachedProfile {
                profile: p,
                last_batch: self.batch_seq,
            },
        );
        metrics::gauge!("missive_profiles").increment(1.0);
        Ok(id)
    }

    fn user_ids_compatible(&self, candidate: &ProfileId, user_id: Option<&str>) -> bool {
        let Some(u) = user_id else { return true };
        self.profiles.get(candidate).is_none_or(|c| {
            c.profile.identities.user_ids.is_empty() || c.profile.identities.user_ids.contains(u)
        })
    }

    /// A client event (public write key) may give a known person their first address, never
    /// change it: otherwise anyone who knows a user id could divert that person's mail. The
    /// address is taken out of the event (stored as sent) and the refusal is noted on the profile.
    fn refuse_client_email_change(&self, e: &mut Event, existing: Option<&ProfileId>) -> bool {
        if e.trust != missive_core::Trust::Client {
            return false;
        }
        let (Some(new), Some(id)) = (&e.email, existing) else {
            return false;
        };
        let current = self.profiles.get(id).and_then(|c| c.profile.email());
        if current.is_none_or(|c| c == new.as_str()) {
            return false;
        }
        e.email = None;
        e.traits.remove("email");
        true
    }

    fn map_identity(&mut self, key: IdentityKey, to: &ProfileId) {
        let unchanged = self.identities.get(&key).is_some_and(|(p, _)| p == to);
        if !unchanged {
            self.identity_filter
                .insert(&identity_bytes(&self.store.identity_index(&key)));
            self.identities.insert(key.clone(), (to.clone(), self.batch_seq));
            self.pending.identities.push((key, to.clone()));
        }
    }

    /// Resolves the event's profile (merging as identities dictate) and folds it in. Returns
    /// the profile it went to, and the event for storage.
    async fn apply(
        &mut self,
        mut e: Event,
        replay_id: Option<&ProfileId>,
    ) -> Result<(ProfileId, Event), EngineError> {
        let mut created = false;
        let user = match &e.user_id {
            Some(u) => self.profile_of(&IdentityKey::user_id(u.clone())).await?,
            None => None,
        };
        let by_anon = match &e.anonymous_id {
            Some(a) => self.profile_of(&IdentityKey::anonymous_id(a.clone())).await?,
            None => None,
        };
        let email_refused = self.refuse_client_email_change(&mut e, user.as_ref().or(by_anon.as_ref()));
        let by_email = match &e.email {
            Some(m) => self.profile_of(&IdentityKey::email(m)).await?,
            None => None,
        };

        let target = match user.clone() {
            Some(t) => t,
            None => {
                let candidate = [&by_email, &by_anon]
                    .into_iter()
                    .flatten()
                    .find(|c| self.user_ids_compatible(c, e.user_id.as_deref()))
                    .cloned();
                match candidate {
                    Some(c) => c,
                    None => {
                        created = true;
                        self.new_profile(replay_id, e.received_at).await?
                    }
                }
            }
        };

        // identify (and any call naming several identities) merges the anonymous or e-mail
        // profile into the known one, unless it belongs to another known user.
        let mut absorb: Vec<ProfileId> = Vec::new();
        for other in [&by_email, &by_anon].into_iter().flatten() {
            if other != &target
                && !absorb.contains(other)
                && self.mergeable(other, &target, e.user_id.as_deref())
            {
                absorb.push(other.clone());
            }
        }
        // alias merges previousId's profile, whoever it is.
        if e.kind == EventKind::Alias
            && let Some(prev) = &e.previous_id
        {
            let prev_profile = match self.profile_of(&IdentityKey::user_id(prev.clone())).await? {
                Some(p) => Some(p),
                None => self.profile_of(&IdentityKey::anonymous_id(prev.clone())).await?,
            };
            if let Some(p) = prev_profile
                && p != target
                && !absorb.contains(&p)
            {
                absorb.push(p);
            }
        }
        for from in absorb {
            self.merge(&from, &target, &e.message_id, e.received_at);
        }

        // Identities this event names now point at the target, unless another known user owns them.
        for key in e.identity_keys() {
            let owner = self.identities.get(&key).map(|(p, _)| p.clone());
            let free = match &owner {
                None => true,
                Some(o) => {
                    o == &target
                        || self
                            .profiles
                            .get(o)
                            .is_some_and(|c| c.profile.merged_into.is_some())
                }
            };
            if free {
                self.map_identity(key, &target);
            }
        }

        let history_len = self.config.history_len;
        let batch_seq = self.batch_seq;
        // A new profile, or one that absorbed another, may now be in any segment.
        let everything = created
            || self
                .pending
                .touched
                .get(&target)
                .is_some_and(|t| !t.merged_from.is_empty());
        // Segment time never goes backwards, even for an event received before a timer fired.
        let now = e.received_at.max(self.eval_now);
        self.eval_now = now;
        let Some(entry) = self.profiles.get_mut(&target) else {
            return Err(EngineError::Store(StoreError::Corrupt(format!(
                "profile {target} vanished from memory"
            ))));
        };
        let mut local = Touched::default();
        if email_refused {
            entry.profile.note_refusal(
                "email",
                &e,
                "a client write key cannot change a known person's address: send it with a server key",
                &mut local,
            );
        }
        entry.profile.apply_event(&e, history_len, &mut local);
        entry.last_batch = batch_seq;
        if self.segments.keeps(&e.name) {
            entry
                .profile
                .push_window_event(missive_core::profile::HistoryEntry::of(&e));
            self.segments.prune(&mut entry.profile.window_events, now);
        }
        if !self.segments.is_empty() {
            let scope = if everything { None } else { Some(&local) };
            self.update_segments(&target, scope, now, "event");
        }
        let touched = self.pending.touched.entry(target.clone()).or_default();
        touched.merge(local);
        let cause = self.pending.causes.entry(target.clone()).or_default();
        *cause = match (cause.is_empty(), touched.events_applied) {
            (true, _) => event_cause(&e),
            (false, n) if !touched.merged_from.is_empty() => format!("merge, {n} events"),
            (false, n) => format!("{n} events"),
        };
        Ok((target, e))
    }

    /// Whether `from` may be merged into `into` by an event naming `user_id`: never two
    /// profiles that belong to different known users (a shared device, a shared address).
    fn mergeable(&self, from: &ProfileId, into: &ProfileId, user_id: Option<&str>) -> bool {
        let (Some(f), Some(i)) = (self.profiles.get(from), self.profiles.get(into)) else {
            return false;
        };
        let fu = &f.profile.identities.user_ids;
        if fu.is_empty() {
            return true;
        }
        let mut target_users: Vec<&str> = i.profile.identities.user_ids.iter().map(String::as_str).collect();
        target_users.extend(user_id);
        target_users.is_empty() || target_users.iter().any(|u| fu.contains(*u))
    }

    fn merge(&mut self, from: &ProfileId, into: &ProfileId, cause: &MessageId, at: DateTime<Utc>) {
        let Some(mut source) = self.profiles.remove(from) else {
            return;
        };
        let history_len = self.config.history_len;
        {
            let touched = self.pending.touched.entry(into.clone()).or_default();
            if let Some(target) = self.profiles.get_mut(into) {
                target.profile.absorb(&source.profile, history_len, touched);
                target.last_batch = self.batch_seq;
            }
        }
        self.pending.causes.insert(into.clone(), "merge".into());
        // Only the keys `from` owns move; a key it merely saw (another customer's device) stays.
        // Keys not in memory are re-pointed in the store by the merge itself.
        for key in source.profile.identities.keys() {
            if self.identities.get(&key).is_some_and(|(owner, _)| owner == from) {
                self.map_identity(key, into);
            }
        }
        source.profile.merged_into = Some(into.clone());
        // The merged-away profile leaves its segments: the one it merged into carries on.
        let left: Vec<MembershipChange> = std::mem::take(&mut source.profile.segments)
            .segments
            .into_iter()
            .map(|segment| MembershipChange {
                segment,
                entered: false,
                at,
                cause: format!("merged into {into}"),
            })
            .collect();
        self.record_segment_changes(from, left);
        source.last_batch = self.batch_seq;
        let t = self.pending.touched.entry(from.clone()).or_default();
        t.merged_into = Some(into.clone());
        self.pending
            .causes
            .insert(from.clone(), format!("merged into {into}"));
        self.profiles.insert(from.clone(), source);
        self.repoint.push((from.clone(), into.clone()));
        self.pending.merges.push(MergeRecord {
            from: from.clone(),
            into: into.clone(),
            at,
            cause: cause.to_string(),
        });
        metrics::gauge!("missive_profiles").decrement(1.0);
        metrics::counter!("missive_profile_merges_total").increment(1);
        tracing::debug!(from = %from, into = %into, "profiles merged");
    }
}

fn identity_bytes(k: &IdentityKey) -> Vec<u8> {
    let mut b = Vec::with_capacity(k.value.len() + 16);
    b.extend_from_slice(k.kind.as_str().as_bytes());
    b.push(0);
    b.extend_from_slice(k.value.as_bytes());
    b
}

/// The keyed hash an erased identity is remembered by: the identity itself is not kept.
pub fn identity_hash(key: &[u8], k: &IdentityKey) -> String {
    missive_privacy::identity_hash(
        key,
        k.kind.as_str(),
        &k.value,
        k.kind == missive_core::IdentityKind::Email,
    )
}

async fn erasure_key(store: &dyn Store) -> Result<Vec<u8>, StoreError> {
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    let key = store.meta_get_or_init("secret.erasure_hash", fresh).await?;
    Ok(key.into_bytes())
}

fn request_events(r: &Request) -> usize {
    match r {
        Request::Ingest { events, .. } => events.len(),
        Request::Sync { .. } | Request::Tick | Request::Segments { .. } | Request::Erase { .. } => 0,
    }
}

fn event_cause(e: &Event) -> String {
    match e.kind {
        EventKind::Track => format!("track:{}", e.name),
        k => k.as_str().to_owned(),
    }
}

/// The event a stored one was made from, for replay: the stored body validates as it did,
/// and the stored (already skew-corrected) time is kept. A body that no longer passes today's
/// rules (an upgrade tightened them) is still replayed, from what it holds: it was accepted.
fn event_from_stored(s: &StoredEvent) -> Event {
    if let Ok(mut e) = validate_message(s.body.clone(), Some(s.kind), None, s.received_at) {
        e.timestamp = s.timestamp;
        return e;
    }
    tracing::warn!(
        seq = s.seq,
        "a stored event no longer validates; replayed from its stored fields"
    );
    let text = |k: &str| s.body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let object = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_object()).cloned().unwrap_or_default();
    let mut traits = object(s.body.get("context").and_then(|c| c.get("traits")));
    traits.extend(object(s.body.get("traits")));
    let email = traits
        .get("email")
        .and_then(|v| v.as_str())
        .and_then(|e| missive_core::EmailAddress::parse(e).ok());
    Event {
        message_id: s.message_id.clone(),
        kind: s.kind,
        name: s.name.clone(),
        user_id: text("userId"),
        anonymous_id: text("anonymousId"),
        previous_id: text("previousId"),
        group_id: text("groupId"),
        email,
        traits,
        properties: object(s.body.get("properties")),
        provenance: missive_core::event::Provenance::default(),
        timestamp: s.timestamp,
        received_at: s.received_at,
        trust: s
            .body
            .get(missive_core::Trust::FIELD)
            .and_then(|v| v.as_str())
            .and_then(missive_core::Trust::parse)
            .unwrap_or(missive_core::Trust::Server),
        body: s.body.clone(),
    }
}

impl Progress {
    /// Records the outcome of a commit for [`Engine::write_failure`].
    fn record_write(&self, error: Option<&StoreError>) {
        if let Ok(mut w) = self.write_failure.lock() {
            *w = error.map(|e| (Instant::now(), e.to_string()));
        }
    }
}

fn fail(acks: impl IntoIterator<Item = Ack>, sync_acks: Vec<SyncAck>, e: &Arc<EngineError>) {
    for ack in acks {
        let _ = ack.send(Err(e.clone()));
    }
    for ack in sync_acks {
        let _ = ack.send(Err(e.clone()));
    }
}

/// Most events one commit carries when the events writer merges queued batches.
const MAX_GROUP_EVENTS: usize = 50_000;

async fn run_events_writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<EventJob>, progress: Arc<Progress>) {
    while let Some(first) = rx.recv().await {
        // Everything the applier prepared while the last commit ran goes into this one: one
        // transaction and one fsync for all of it, in order.
        let mut group = vec![first];
        let mut queued = group[0].events;
        while queued < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    queued += job.events;
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let current = progress.epoch.load(Ordering::SeqCst);
        let mut batch = EventBatch::default();
        let mut acks = Vec::new();
        let mut events = 0;
        let mut last_batch = 0;
        for job in group {
            last_batch = job.batch_seq;
            if job.epoch != current {
                // Prepared on top of a batch that failed to commit: refuse it; senders retry.
                let e = Arc::new(EngineError::Store(StoreError::Task(
                    "an earlier batch failed; retry".into(),
                )));
                fail(job.acks.into_iter().map(|(a, _)| a), Vec::new(), &e);
                continue;
            }
            events += job.events;
            batch.events.extend(job.batch.events);
            batch.repoint.extend(job.batch.repoint);
            acks.extend(job.acks);
        }
        let last_seq = batch.events.last().map(|e| e.seq);
        let started = Instant::now();
        match store.commit_events(batch).await {
            Ok(()) => {
                progress.record_write(None);
                if let Some(seq) = last_seq {
                    progress.events_committed.send_replace(seq);
                }
                metrics::histogram!("missive_store_commit_seconds", "kind" => "events")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("missive_commit_batch_events").record(events as f64);
                tracing::debug!(
                    events,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    "events committed"
                );
                for (ack, outcome) in acks {
                    let _ = ack.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events, "group commit failed");
                progress.record_write(Some(&e));
                metrics::counter!("missive_store_commit_failures_total", "kind" => "events").increment(1);
                progress.epoch.fetch_add(1, Ordering::SeqCst);
                fail(
                    acks.into_iter().map(|(a, _)| a),
                    Vec::new(),
                    &Arc::new(EngineError::Store(e)),
                );
            }
        }
        progress.events_done.send_replace(last_batch);
    }
    // Wake a checkpoint writer waiting for events that will never come.
    progress.events_done.send_replace(u64::MAX);
}

async fn run_checkpoint_writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<CheckpointJob>,
    progress: Arc<Progress>,
) {
    let mut committed = progress.events_committed.subscribe();
    while let Some(job) = rx.recv().await {
        let through = job.checkpoint.through_seq;
        // A checkpoint may only claim events that are stored: wait for the events writer,
        // unless a failure has made this checkpoint void.
        let stale = loop {
            if job.epoch != progress.epoch.load(Ordering::SeqCst) {
                break true;
            }
            if *committed.borrow_and_update() >= through {
                break false;
            }
            if *progress.events_done.borrow() == u64::MAX {
                break true;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), committed.changed()).await;
        };
        if stale {
            let e = Arc::new(EngineError::Store(StoreError::Task(
                "an earlier batch failed; retry".into(),
            )));
            fail(Vec::new(), job.sync_acks, &e);
            progress.checkpoints_done.send_replace(job.batch_seq);
            continue;
        }
        let started = Instant::now();
        let profiles = job.checkpoint.profiles.len();
        let published =
            (progress.segment_changes.receiver_count() > 0).then(|| job.checkpoint.segment_changes.clone());
        match store.commit_checkpoint(job.checkpoint).await {
            Ok(()) => {
                progress.record_write(None);
                for change in published.into_iter().flatten() {
                    let _ = progress.segment_changes.send(change);
                }
                progress.flushed_batch.store(job.batch_seq, Ordering::SeqCst);
                metrics::histogram!("missive_store_commit_seconds", "kind" => "checkpoint")
                    .record(started.elapsed().as_secs_f64());
                tracing::debug!(
                    profiles,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    "checkpoint committed"
                );
                for ack in job.sync_acks {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, profiles, "checkpoint failed");
                progress.record_write(Some(&e));
                metrics::counter!("missive_store_commit_failures_total", "kind" => "checkpoint").increment(1);
                progress.epoch.fetch_add(1, Ordering::SeqCst);
                fail(Vec::new(), job.sync_acks, &Arc::new(EngineError::Store(e)));
            }
        }
        progress.checkpoints_done.send_replace(job.batch_seq);
    }
}

/// The saved segments, compiled. They were type-checked when saved; a definition that no
/// longer compiles (an upgrade changed the language) is left out, loudly.
pub(crate) async fn load_segments(store: &dyn Store) -> Result<SegmentSet, StoreError> {
    let mut compiled = Vec::new();
    for rec in store.list_segments().await? {
        match Segment::compile(&rec.expression, &Schema::default()) {
            Ok(seg) => compiled.push((rec.name, seg)),
            Err(e) => {
                tracing::error!(segment = %rec.name, error = %e, "saved segment does not compile; not evaluated")
            }
        }
    }
    match SegmentSet::new(compiled) {
        Ok(set) => Ok(set),
        Err(e) => {
            tracing::error!(error = %e, "saved segments are inconsistent; none evaluated");
            Ok(SegmentSet::default())
        }
    }
}
