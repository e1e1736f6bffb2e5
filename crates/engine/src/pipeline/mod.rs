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
//!
//! **Cluster mode** (`EngineConfig::cluster`; docs/ARCHITECTURE.md, "Cluster mode"): the
//! engine folds only the partitions it is told it owns ([`Engine::own`]), numbers events by
//! their JetStream stream sequence ([`LogPosition`]), records per partition how far its events
//! and its checkpoint have got, and makes every commit under the owned partitions' fences, so
//! that a node that lost a partition writes nothing for it. A partition taken over is replayed
//! from its own checkpoint (`partitions`).
//!
//! The rooms: this file holds the types and the [`Engine`] handle; `applier` the loop and the
//! fold of a batch; `identity` resolution, merges and the profile cache; `checkpoints` what a
//! checkpoint holds; `writers` the events and checkpoint writers; `recovery` start-up
//! (filters, replay); `segment_timers` membership and timers; `backfill` switching segment
//! definitions and the backfill of a saved segment, a page at a time between batches.

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
use missive_core::schema::SchemaRegistry;
use missive_segment::{Extra, MembershipChange, Schema, Segment, SegmentSet};
use missive_store::SegmentChange;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

mod applier;
mod backfill;
mod checkpoints;
mod identity;
mod merges;
mod partitions;
mod read_back;
mod recovery;
mod scoring;
mod segment_timers;
mod writers;

use applier::event_cause;
use identity::identity_bytes;
pub use identity::identity_hash;
use recovery::erasure_key;
pub(crate) use recovery::event_from_stored;
pub use recovery::logged_event;
pub(crate) use segment_timers::{compile_saved, load_segments};
use writers::{fail, run_checkpoint_writer, run_events_writer};

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
    pub default_time_zone: chrono_tz::Tz,
    /// Cluster mode: fold only owned partitions, from the log (see the module's docs).
    pub cluster: bool,
}

/// Where an event sits in the cluster's log: its partition and its JetStream stream sequence,
/// which becomes its `seq` (unique across the stream, increasing within a partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    pub partition: u16,
    pub seq: i64,
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
            default_time_zone: chrono_tz::Tz::UTC,
            cluster: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// Cluster mode: events of a partition this node does not own (any more).
    #[error("partition {0} is not owned by this node")]
    NotOwner(u16),
    /// Cluster mode: the log did not take the events (NATS unreachable, no acknowledgement).
    #[error("the cluster's log did not take the events: {0}")]
    Log(String),
    /// Cluster mode: a control record that must wait for another partition's commit (a merge's
    /// absorb, for the tombstone its former partition writes); nothing was changed, and the
    /// record is to be read again shortly.
    #[error("waiting for another partition: {0}")]
    NotYet(String),
    /// Cluster mode: what the engine does not do yet in cluster mode.
    #[error("not available in cluster mode yet: {0}")]
    NotInCluster(&'static str),
}

/// What happened to one ingest call's events; an ingest call resolves only once they are durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub stored: usize,
    /// The positions (in the call's events) of those naming an erased person: not stored,
    /// and never will be (a person who asked to be erased is not rebuilt from new events).
    pub erased: Vec<usize>,
    /// Already stored under the same message id: acknowledged, not applied again.
    pub duplicates: usize,
}

/// How long a cluster node's erasure waits for every partition's owner to settle it.
const ERASURE_WAIT: Duration = Duration::from_secs(60);

/// Where the outcome of one ingest call is sent once durable.
type Ack = oneshot::Sender<Result<IngestOutcome, Arc<EngineError>>>;
type SyncAck = oneshot::Sender<Result<(), Arc<EngineError>>>;
type Tasks = Vec<tokio::task::JoinHandle<()>>;
type SharedLog = Arc<std::sync::OnceLock<Arc<dyn crate::EventLog>>>;

enum Request {
    Ingest {
        events: Vec<Event>,
        /// Cluster mode: each event's place in the log (empty in the embedded mode).
        positions: Vec<LogPosition>,
        ack: Ack,
    },
    /// Cluster mode: take on a partition under its lease; answers with the events replayed.
    Own {
        fence: missive_store::Fence,
        ack: oneshot::Sender<Result<u64, Arc<EngineError>>>,
    },
    /// Cluster mode: give a partition up. `lost`: the lease is gone already, so what is not
    /// committed of it is dropped (its next owner replays it); otherwise it is checkpointed
    /// first.
    Disown {
        partition: u16,
        lost: bool,
        ack: oneshot::Sender<Result<(), Arc<EngineError>>>,
    },
    /// Cluster mode: a control record read from the log at `at` (a step of a merge across
    /// partitions); answered once the checkpoint that settles it is committed.
    Control {
        control: crate::log::Control,
        at: LogPosition,
        ack: SyncAck,
    },
    /// Cluster mode: the partition's log has nothing unread up to `at.seq` (its owner found
    /// it idle): its next checkpoint mark may say so.
    Settle { at: LogPosition },
    /// Checkpoint now and answer once it is committed (`None`: the timer's own checkpoint).
    Sync { ack: Option<SyncAck> },
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
    /// Use a new set of active models; score every profile with `rescore`.
    Models {
        set: Arc<crate::models::ScoringSet>,
        rescore: Option<crate::models::Rescore>,
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
    /// The last event batch handed to the events writer before it: committed first.
    after_events: u64,
    checkpoint: Checkpoint,
    sync_acks: Vec<SyncAck>,
}

/// What the writers tell the applier and each other.
struct Progress {
    /// Bumped when a commit fails: everything prepared before is refused, and the applier
    /// rebuilds its memory from the store.
    epoch: AtomicU64,
    /// The last event batch committed (batches are committed in order).
    events_committed: watch::Sender<u64>,
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

/// Handle to the running pipeline. Cheap to clone: one reference count, since every request
/// clones it (through the server's state) and contended counters cost on every core.
#[derive(Clone)]
pub struct Engine(Arc<Shared>);

/// What every handle of one engine shares.
pub struct Shared {
    tx: mpsc::Sender<Request>,
    stop: Arc<watch::Sender<bool>>,
    changes: tokio::sync::broadcast::Sender<SegmentChange>,
    /// Segment definitions change one at a time.
    segment_lock: Arc<tokio::sync::Mutex<()>>,
    /// The model registry changes one step at a time, and one model trains at a time.
    model_lock: Arc<tokio::sync::Mutex<()>>,
    training: Arc<tokio::sync::Semaphore>,
    store: Store,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    tasks: Arc<tokio::sync::Mutex<Tasks>>,
    write_health: Arc<Progress>,
    /// Cluster mode: where [`Engine::ingest`] appends (and the applier sends merges through).
    log: SharedLog,
    /// The saved segments the pipeline uses, as last handed to it by this node: a cluster
    /// node compares them with the store's to follow saves made through other nodes
    /// (`segments::follow_saved`).
    applied_segments: std::sync::Mutex<crate::segments::SavedSegments>,
    /// The active models the pipeline uses (name → definition), as last handed to it by this
    /// node, to follow activations made through other nodes (`models::follow_active`).
    applied_models: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Cluster mode: the identities erased, as this node last read them, for its ingest.
    erased: std::sync::RwLock<ErasedIdentities>,
}

/// Keyed hashes of erased identities ([`identity_hash`]), and the key.
#[derive(Default)]
struct ErasedIdentities {
    hashes: HashSet<String>,
    key: Vec<u8>,
}

impl std::ops::Deref for Engine {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Engine {
    /// Replays the events stored after the last profile checkpoint (a crash leaves some), then
    /// starts the pipeline.
    pub async fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let stats = store.events().stats().await?;
        let applied_segments = store
            .documents()
            .list_segments()
            .await?
            .iter()
            .map(crate::segments::saved_entry)
            .collect();
        let scorers = scoring::load_models(&store).await;
        let applied_models = scorers.definitions();
        // Read once: the applier folds with them, and a cluster node's ingest answers with them.
        let (erased_hashes, key) = (
            store.events().erased_identities().await?,
            erasure_key(&store).await?,
        );
        let erased = match config.cluster {
            true => ErasedIdentities {
                hashes: erased_hashes.clone(),
                key: key.clone(),
            },
            false => ErasedIdentities::default(),
        };
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
        let log: SharedLog = Arc::new(std::sync::OnceLock::new());
        let mut applier = Applier {
            log: log.clone(),
            outbound: Vec::new(),
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            progress: progress.clone(),
            seen_epoch: 0,
            batch_seq: 0,
            next_seq: 1,
            profiles: HashMap::new(),
            identities: HashMap::new(),
            owned: std::collections::BTreeMap::new(),
            partition_of: HashMap::new(),
            batch_partitions: Vec::new(),
            routes: HashMap::new(),
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
            segments: Arc::new(load_segments(&store).await?),
            scorers: Arc::new(scorers),
            timers: BinaryHeap::new(),
            eval_now: DateTime::<Utc>::MIN_UTC,
            erased: erased_hashes,
            erasure_key: key,
            schema: SchemaRegistry::default(),
            backfill: None,
            finished_backfills: Vec::new(),
            queued_segments: VecDeque::new(),
            queued_partitions: VecDeque::new(),
            timer_loads: Vec::new(),
        };
        if config.cluster {
            // Other nodes write too: the filters would say "new" of what they stored. Each
            // partition is replayed, its timers armed and its backfills finished when it is
            // owned (docs/ARCHITECTURE.md, "Cluster mode").
            applier.backfill_schema().await?;
            // What was observed of the schema so far, so that this node's observations add to
            // it (a checkpoint writes each field's examples whole).
            applier.schema = recovery::load_schema(&store).await?;
        } else {
            applier.load_filters().await?;
            applier.backfill_schema().await?;
            let replayed = applier.recover().await?;
            if replayed > 0 {
                tracing::info!(
                    events = replayed,
                    "replayed events stored after the last profile checkpoint"
                );
            }
            applier.load_timers().await?;
            applier.resume_backfills(None).await?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let changes = progress.segment_changes.clone();
        let write_health = progress.clone();
        let tasks = vec![
            tokio::spawn(applier.run(rx, etx, ctx, stop_rx)),
            tokio::spawn(run_events_writer(store.clone(), erx, progress.clone())),
            tokio::spawn(run_checkpoint_writer(store.clone(), crx, progress)),
        ];
        Ok(Self(Arc::new(Shared {
            tx,
            stop: Arc::new(stop),
            changes,
            segment_lock: Arc::new(tokio::sync::Mutex::new(())),
            model_lock: Arc::new(tokio::sync::Mutex::new(())),
            training: Arc::new(tokio::sync::Semaphore::new(1)),
            store,
            clock,
            config,
            tasks: Arc::new(tokio::sync::Mutex::new(tasks)),
            write_health,
            log,
            applied_segments: std::sync::Mutex::new(applied_segments),
            applied_models: std::sync::Mutex::new(applied_models),
            erased: std::sync::RwLock::new(erased),
        })))
    }

    /// The store's write health: the error of the last commit and how long ago it failed,
    /// when no commit has succeeded since (a full disk, a read-only file system, a lost
    /// database). Reads can still work while every write fails.
    pub fn write_failure(&self) -> Option<(Duration, String)> {
        let guard = self.write_health.write_failure.lock().ok()?;
        guard.as_ref().map(|(at, e)| (at.elapsed(), e.clone()))
    }

    /// Folds `events` into profiles and returns once they are durable.
    #[tracing::instrument(level = "debug", name = "ingest", skip_all, fields(events = events.len()))]
    pub async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome, Arc<EngineError>> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        if let Some(log) = self.log.get() {
            // Events naming an erased person are answered as the embedded mode answers them,
            // here, by what this node knows (`refresh_erased`); their partition's owner drops
            // any this node has not heard of yet.
            let erased = self.erased_positions(&events);
            let events: Vec<Event> = events
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !erased.contains(i))
                .map(|(_, e)| e)
                .collect();
            let mut outcome = match events.is_empty() {
                true => IngestOutcome::default(),
                false => log
                    .append(events)
                    .await
                    .map_err(|e| Arc::new(EngineError::Log(e)))?,
            };
            outcome.erased = erased;
            return Ok(outcome);
        }
        self.ingest_at(events, Vec::new()).await
    }

    /// Cluster mode: the positions of `events` naming a person erased, as far as this node
    /// knows.
    fn erased_positions(&self, events: &[Event]) -> Vec<usize> {
        let erased = self.erased.read().unwrap_or_else(|p| p.into_inner());
        if erased.hashes.is_empty() {
            return Vec::new();
        }
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.identity_keys()
                    .iter()
                    .any(|k| erased.hashes.contains(&identity_hash(&erased.key, k)))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Cluster mode: reads again the identities erased (through any node), which this node's
    /// ingest answers for (`IngestOutcome::erased`). A cluster node does it every second.
    pub async fn refresh_erased(&self) -> Result<(), StoreError> {
        let hashes = self.store.events().erased_identities().await?;
        self.erased.write().unwrap_or_else(|p| p.into_inner()).hashes = hashes;
        Ok(())
    }

    /// Cluster mode: from now on [`Engine::ingest`] appends to `log` (answering once the log
    /// has the events); the partition owners fold them. Set once; a second call is refused.
    pub fn set_log(&self, log: Arc<dyn crate::EventLog>) -> Result<(), EngineError> {
        self.log
            .set(log)
            .map_err(|_| EngineError::Store(StoreError::Task("the cluster's log is set already".into())))
    }

    /// Cluster mode: [`Engine::ingest`] of events read from the log, each with its place in
    /// it (`positions`, one per event); refused with [`EngineError::NotOwner`] for a partition
    /// this node does not own. Also records how far each partition has got when every event
    /// is a duplicate.
    pub async fn ingest_logged(
        &self,
        events: Vec<Event>,
        positions: Vec<LogPosition>,
    ) -> Result<IngestOutcome, Arc<EngineError>> {
        if positions.len() != events.len() {
            return Err(Arc::new(EngineError::Store(StoreError::Task(format!(
                "{} log positions for {} events",
                positions.len(),
                events.len()
            )))));
        }
        self.ingest_at(events, positions).await
    }

    async fn ingest_at(
        &self,
        events: Vec<Event>,
        positions: Vec<LogPosition>,
    ) -> Result<IngestOutcome, Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Ingest {
                events,
                positions,
                ack,
            })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// Cluster mode: applies a control record read from the log at `at` (a step of a merge
    /// across partitions, docs/ARCHITECTURE.md), and answers once the checkpoint that settles
    /// it is committed; what it sends to other partitions is in the log before that.
    pub async fn control(
        &self,
        control: crate::log::Control,
        at: LogPosition,
    ) -> Result<(), Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Control { control, at, ack })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// Cluster mode: the owner of `at.partition` found its log idle, with every message up to
    /// `at.seq` (the stream's last sequence read before it looked) folded and committed. The
    /// partition's next checkpoint raises its marks to it, so that the cluster's watermark
    /// (the lowest checkpoint mark, which log followers read up to) is not held back by a
    /// quiet partition.
    pub async fn settle_idle(&self, at: LogPosition) -> Result<(), Arc<EngineError>> {
        self.tx
            .send(Request::Settle { at })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))
    }

    /// Cluster mode: takes on a partition under `fence` (its lease): replays the events stored
    /// for it after its last checkpoint, then folds its events. Answers with the number replayed.
    pub async fn own(&self, fence: missive_store::Fence) -> Result<u64, Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Own { fence, ack })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
    }

    /// Cluster mode: gives a partition up. With `lost` false (a hand-over), what was folded of
    /// it is checkpointed first; with `lost` true (the lease ran out), it is dropped, and the
    /// next owner replays it from the log.
    pub async fn disown(&self, partition: u16, lost: bool) -> Result<(), Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Disown { partition, lost, ack })
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
        if self.config.cluster {
            return self
                .erase_in_cluster(profiles, identity_hashes)
                .await
                .map_err(Arc::new);
        }
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

    /// Cluster mode's erasure. The hashes are stored first (a node starting later loads them);
    /// every partition's owner is then sent an erase record through the log, which makes it
    /// drop events naming the person and forget the profiles; once every partition has
    /// settled it (its `applied_seq` is past the record), no owner holds or will write the
    /// profiles, and they are deleted from the store here.
    async fn erase_in_cluster(
        &self,
        profiles: Vec<ProfileId>,
        identity_hashes: Vec<String>,
    ) -> Result<ErasureCounts, EngineError> {
        let Some(log) = self.log.get() else {
            return Err(EngineError::NotInCluster(
                "erasure before the node joined the cluster",
            ));
        };
        self.store
            .events()
            .add_erased_identities(identity_hashes.clone(), self.clock.now())
            .await?;
        self.erased
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .hashes
            .extend(identity_hashes.iter().cloned());
        let control = crate::log::Control::Erase {
            profiles: profiles.clone(),
            identity_hashes,
        };
        let request = MessageId::generate();
        let records = (0..log.partitions())
            .map(|partition| crate::log::Outbound::Control {
                partition,
                message_id: format!("e:{request}:{partition}"),
                control: control.clone(),
            })
            .collect();
        let seqs = log.send(records).await.map_err(EngineError::Log)?;
        let started = Instant::now();
        loop {
            let marks = self
                .store
                .events()
                .partition_marks((0..log.partitions()).collect())
                .await?;
            let settled = seqs.iter().enumerate().all(|(p, seq)| {
                marks
                    .iter()
                    .any(|m| usize::from(m.partition) == p && m.applied_seq >= *seq)
            });
            if settled {
                break;
            }
            if started.elapsed() > ERASURE_WAIT {
                return Err(EngineError::Log(format!(
                    "the partitions' owners did not settle the erasure within {} s; it is in the log and they will apply it, and asking again deletes what is left",
                    ERASURE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(self.store.events().erase_profiles(profiles).await?)
    }

    /// The key of [`identity_hash`] for this workspace.
    pub async fn erasure_key(&self) -> Result<Vec<u8>, StoreError> {
        erasure_key(self.store()).await
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

    /// Hands the active models to the pipeline, scoring every profile with `rescore` (a model
    /// activated, or batch scoring); answers with the number of profiles scored. A cluster
    /// node scores those of its partitions; the others follow (`models::follow_active`).
    pub async fn use_models(
        &self,
        set: crate::models::ScoringSet,
        rescore: Option<crate::models::Rescore>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<u64, Arc<EngineError>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Models {
                set: Arc::new(set),
                rescore,
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

    /// Held while the model registry and the models in use change.
    pub async fn lock_models(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.model_lock.lock().await
    }

    /// A permit to train a model: `None` while another training runs (training takes both
    /// cores; a second one at once would only slow both and double the memory).
    pub fn try_train(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.training.clone().try_acquire_owned().ok()
    }

    /// The store, for the services built on the engine (the sending side, the CLI's one-shot
    /// commands). The HTTP layer reads through [`Engine::profiles`], [`Engine::segments`] and
    /// [`Engine::audit`] instead.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reading people: lookups, versions, events, segment explanations.
    pub fn profiles(&self) -> crate::profiles::Profiles {
        crate::profiles::Profiles::new(self.store.clone(), self.config.history_len)
    }

    /// Saved segments, members and previews.
    /// The saved segments the pipeline was last handed (name → expression).
    pub(crate) fn applied_segments(&self) -> std::sync::MutexGuard<'_, crate::segments::SavedSegments> {
        self.applied_segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The active models the pipeline was last handed (name → definition).
    pub(crate) fn applied_models(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, String>> {
        self.applied_models.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn segments(&self) -> crate::segments::Segments {
        crate::segments::Segments::new(self.store.clone())
    }

    /// The audit log.
    pub fn audit(&self) -> crate::audit::AuditLog {
        crate::audit::AuditLog::new(self.store.clone())
    }

    /// The store's backend (`sqlite`, `postgres`), for health checks and logs.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
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
        drop(self);
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
    /// Boxed: a `Profile` is about 800 bytes, and the cache's hash table holds its entries
    /// inline in every bucket, empty ones and the table being grown included. Boxed, a
    /// bucket is about 40 bytes, which took some 200–400 MB off a cache of 200,000 profiles
    /// (heaptrack; docs/BENCHMARKS.md, "Memory under ingest").
    profile: Box<Profile>,
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
    backfills: Vec<missive_store::BackfillUpdate>,
    /// Cluster mode: the partitions folded, with the last stream sequence of each.
    partitions: std::collections::BTreeMap<u16, i64>,
    /// Cluster mode: identities whose profile was shipped to another partition.
    routes: Vec<missive_store::RouteMove>,
    /// Cluster mode: segment backfills over a partition started or finished.
    partition_backfills: Vec<missive_store::PartitionBackfill>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.touched.is_empty()
            && self.identities.is_empty()
            && self.merges.is_empty()
            && self.backfills.is_empty()
            && self.partitions.is_empty()
            && self.routes.is_empty()
            && self.partition_backfills.is_empty()
    }
}

struct Applier {
    store: Store,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    progress: Arc<Progress>,
    seen_epoch: u64,
    batch_seq: u64,
    /// The `seq` the next new event gets.
    next_seq: i64,
    profiles: HashMap<ProfileId, CachedProfile>,
    identities: HashMap<IdentityKey, (ProfileId, u64)>,
    /// Cluster mode: the partitions owned, each with the lease its commits are made under.
    owned: std::collections::BTreeMap<u16, missive_store::Fence>,
    /// Cluster mode: the partition of each profile folded or loaded (empty in the embedded mode).
    partition_of: HashMap<ProfileId, u16>,
    /// Cluster mode: the partition of each event of the batch being folded, for its commit.
    batch_partitions: Vec<u16>,
    /// Cluster mode: the partition each identity seen is routed to. A route to an owned
    /// partition is exact (only its owner moves it); one to another partition may be stale.
    routes: HashMap<IdentityKey, u16>,
    /// Cluster mode: the log, to send records to other partitions through.
    log: SharedLog,
    /// Cluster mode: records for other partitions, sent before the commit that settles their cause.
    outbound: Vec<crate::log::Outbound>,
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
    /// The active models: the live ones score every profile change before its segments are
    /// checked.
    scorers: Arc<crate::models::ScoringSet>,
    timers: BinaryHeap<Reverse<(DateTime<Utc>, ProfileId)>>,
    /// The latest instant segments were evaluated at.
    eval_now: DateTime<Utc>,
    /// Keyed hashes of erased identities ([`identity_hash`]), and the key.
    erased: HashSet<String>,
    erasure_key: Vec<u8>,
    /// The traits, events and properties folded, for the workspace's schema; what changed is
    /// written with each checkpoint.
    schema: SchemaRegistry,
    /// The segment backfill under way, evaluated between batches.
    backfill: Option<backfill::Backfill>,
    /// Backfills done (or given up) whose callers are answered with the next checkpoint.
    finished_backfills: Vec<(Result<u64, Arc<EngineError>>, backfill::SegmentsAck)>,
    /// Segment switches waiting for the backfill under way.
    queued_segments: VecDeque<backfill::QueuedSwitch>,
    /// Cluster mode: segments a partition taken on was not backfilled with in full, waiting
    /// for the backfill under way.
    queued_partitions: VecDeque<(String, u16)>,
    /// Cluster mode: the segment timers of partitions taken on, being read.
    timer_loads: Vec<(missive_store::Fence, TimerLoad)>,
}

/// The segment timers of a partition's stored profiles, read in the background.
type TimerLoad = tokio::task::JoinHandle<Result<Vec<(DateTime<Utc>, ProfileId)>, StoreError>>;

impl Progress {
    /// Records the outcome of a commit for [`Engine::write_failure`].
    fn record_write(&self, error: Option<&StoreError>) {
        if let Ok(mut w) = self.write_failure.lock() {
            *w = error.map(|e| (Instant::now(), e.to_string()));
        }
    }
}
