//! The partition owner: one task folds events into profiles in memory, a second commits the
//! result in one transaction per batch (group commit), and only then are the senders told.
//!
//! While the writer waits for one batch's fsync, the applier prepares the next from whatever
//! arrived meanwhile, so one fsync carries as many events as came in during the previous one.
//! Identity merges cross any partitioning by person, so on one box there is one owner of all
//! profiles; SQLite has one writer anyway.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use missive_core::{Clock, Event, EventKind, IdentityKey, MessageId, Profile, ProfileId, Touched};
use missive_store::{CommitBatch, EventQuery, MergeRecord, ProfileVersion, Store, StoreError, StoredEvent};
use tokio::sync::{mpsc, oneshot};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Recent events kept inside each profile.
    pub history_len: usize,
    /// Most events folded into one group commit.
    pub max_batch_events: usize,
    /// Profiles kept in memory; beyond this, committed ones are dropped and reloaded on demand.
    pub profile_cache: usize,
    /// A full snapshot is stored with every n-th version, bounding the replay of diffs
    /// (version 1 needs none: it is replayed over an empty profile).
    pub snapshot_every: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            history_len: 50,
            max_batch_events: 10_000,
            profile_cache: 200_000,
            snapshot_every: 32,
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
    /// Already stored under the same message id: acknowledged, not applied again.
    pub duplicates: usize,
}

/// Where the outcome of one ingest call is sent once durable.
type Ack = oneshot::Sender<Result<IngestOutcome, Arc<EngineError>>>;
type Tasks = Option<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)>;

struct Request {
    events: Vec<Event>,
    ack: Ack,
}

struct Prepared {
    epoch: u64,
    batch_seq: u64,
    batch: CommitBatch,
    acks: Vec<(Ack, IngestOutcome)>,
    events: usize,
}

/// Handle to the running pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    tasks: Arc<tokio::sync::Mutex<Tasks>>,
}

impl Engine {
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let stats = store.stats().await?;
        metrics::gauge!("missive_profiles").set(stats.profiles as f64);
        let (tx, rx) = mpsc::channel::<Request>(4096);
        // One batch committing, two waiting; the applier never runs further ahead.
        let (wtx, wrx) = mpsc::channel::<Prepared>(2);
        let epoch = Arc::new(AtomicU64::new(0));
        let config = Arc::new(config);
        let applier = Applier {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            epoch: epoch.clone(),
            seen_epoch: 0,
            batch_seq: 0,
            committed_seq: Arc::new(AtomicU64::new(0)),
            profiles: HashMap::new(),
            identities: HashMap::new(),
            recent_ids: RecentIds::new(1 << 20),
        };
        let committed = applier.committed_seq.clone();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let applier_task = tokio::spawn(applier.run(rx, wtx, stop_rx));
        let writer_task = tokio::spawn(run_writer(store.clone(), wrx, epoch, committed));
        Ok(Self {
            tx,
            stop: Arc::new(stop),
            store,
            clock,
            config,
            tasks: Arc::new(tokio::sync::Mutex::new(Some((applier_task, writer_task)))),
        })
    }

    /// Folds `events` into profiles and returns once they are durable.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome, Arc<EngineError>> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request { events, ack })
            .await
            .map_err(|_| Arc::new(EngineError::ShuttingDown))?;
        rx.await.map_err(|_| Arc::new(EngineError::ShuttingDown))?
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

    /// Stops taking events, commits everything already taken, and waits for it. Ingest calls
    /// made after this fail with [`EngineError::ShuttingDown`].
    pub async fn shutdown(self) {
        let tasks = self.tasks.lock().await.take();
        let _ = self.stop.send(true);
        drop(self.tx);
        if let Some((a, w)) = tasks {
            let _ = a.await;
            let _ = w.await;
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
    /// The batch that last changed it; it may be evicted only once that batch is committed.
    last_batch: u64,
}

struct Applier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    epoch: Arc<AtomicU64>,
    seen_epoch: u64,
    batch_seq: u64,
    committed_seq: Arc<AtomicU64>,
    profiles: HashMap<ProfileId, CachedProfile>,
    identities: HashMap<IdentityKey, (ProfileId, u64)>,
    recent_ids: RecentIds,
}

/// Per-batch working state.
#[derive(Default)]
struct BatchState {
    touched: HashMap<ProfileId, Touched>,
    causes: HashMap<ProfileId, String>,
    identities: Vec<(IdentityKey, ProfileId)>,
    merges: Vec<MergeRecord>,
    events: Vec<StoredEvent>,
    new_profiles: i64,
}

impl Applier {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        wtx: mpsc::Sender<Prepared>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                r = rx.recv() => r,
                _ = stop.changed() => {
                    // No new requests from here on; those already queued are still committed.
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut requests = vec![first];
            let mut n = requests[0].events.len();
            while n < self.config.max_batch_events {
                match rx.try_recv() {
                    Ok(r) => {
                        n += r.events.len();
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            let prepare_started = Instant::now();
            let prepared = self.prepare(requests).await;
            tracing::debug!(
                events = n,
                prepare_ms = prepare_started.elapsed().as_secs_f64() * 1e3,
                "batch prepared"
            );
            let prepared = match prepared {
                Ok(p) => p,
                Err((e, acks)) => {
                    tracing::error!(error = %e, "batch preparation failed; caches dropped");
                    self.reset();
                    let e = Arc::new(e);
                    for ack in acks {
                        let _ = ack.send(Err(e.clone()));
                    }
                    continue;
                }
            };
            if wtx.send(prepared).await.is_err() {
                tracing::error!("writer stopped; applier exits");
                return;
            }
        }
    }

    fn reset(&mut self) {
        self.profiles.clear();
        self.identities.clear();
        self.recent_ids.clear();
    }

    #[allow(clippy::type_complexity)]
    async fn prepare(&mut self, requests: Vec<Request>) -> Result<Prepared, (EngineError, Vec<Ack>)> {
        let current = self.epoch.load(Ordering::SeqCst);
        if current != self.seen_epoch {
            // A commit failed: what is in memory may include changes that never reached the
            // store. Start over from the store.
            self.reset();
            self.seen_epoch = current;
        }
        self.batch_seq += 1;
        self.evict_if_needed();

        let (event_lists, acks): (Vec<_>, Vec<_>) = requests.into_iter().map(|r| (r.events, r.ack)).unzip();
        match self.prepare_events(event_lists).await {
            Ok((batch, outcomes, events)) => Ok(Prepared {
                epoch: self.seen_epoch,
                batch_seq: self.batch_seq,
                batch,
                acks: acks.into_iter().zip(outcomes).collect(),
                events,
            }),
            Err(e) => Err((e, acks)),
        }
    }

    async fn prepare_events(
        &mut self,
        lists: Vec<Vec<Event>>,
    ) -> Result<(CommitBatch, Vec<IngestOutcome>, usize), EngineError> {
        // 1. Deduplicate by message id: against recent ids, then the store, then within the batch.
        let unknown: Vec<MessageId> = lists
            .iter()
            .flatten()
            .filter(|e| !self.recent_ids.contains(&e.message_id))
            .map(|e| e.message_id.clone())
            .collect();
        let stored = self.store.existing_message_ids(unknown).await?;

        // 2. Resolve every identity named in the batch that is not in memory yet.
        let mut missing_keys: Vec<IdentityKey> = Vec::new();
        let mut seen_keys = HashSet::new();
        let fresh = |e: &&Event| !stored.contains(&e.message_id) && !self.recent_ids.contains(&e.message_id);
        for e in lists.iter().flatten().filter(fresh) {
            let mut keys = e.identity_keys();
            if let Some(prev) = &e.previous_id {
                keys.push(IdentityKey::user_id(prev.clone()));
                keys.push(IdentityKey::anonymous_id(prev.clone()));
            }
            for k in keys {
                if !self.identities.contains_key(&k) && seen_keys.insert(k.clone()) {
                    missing_keys.push(k);
                }
            }
        }
        let resolved = self.store.resolve_identities(missing_keys).await?;
        let mut to_load: Vec<ProfileId> = Vec::new();
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

        // 3. Fold.
        let mut st = BatchState::default();
        let mut outcomes = Vec::with_capacity(lists.len());
        let mut total = 0;
        for list in lists {
            let mut outcome = IngestOutcome::default();
            for e in list {
                if stored.contains(&e.message_id) || self.recent_ids.contains(&e.message_id) {
                    outcome.duplicates += 1;
                    continue;
                }
                self.recent_ids.insert(e.message_id.clone());
                self.apply(e, &mut st).await?;
                outcome.stored += 1;
                total += 1;
            }
            outcomes.push(outcome);
        }

        // 4. Versions and rows of every profile this batch changed.
        let now = self.clock.now();
        let mut batch = CommitBatch {
            events: std::mem::take(&mut st.events),
            merges: std::mem::take(&mut st.merges),
            identities: std::mem::take(&mut st.identities),
            profiles: Vec::with_capacity(st.touched.len()),
            versions: Vec::with_capacity(st.touched.len()),
        };
        for (id, touched) in st.touched {
            if touched.is_empty() {
                continue;
            }
            let Some(entry) = self.profiles.get_mut(&id) else {
                continue;
            };
            let p = &mut entry.profile;
            p.version += 1;
            p.updated_at = now;
            let cause = st.causes.remove(&id).unwrap_or_default();
            let snapshot = (p.version % self.config.snapshot_every == 0).then(|| p.clone());
            batch.versions.push(ProfileVersion {
                profile_id: id.clone(),
                version: p.version,
                recorded_at: now,
                cause,
                diff: p.diff_for(&touched),
                snapshot,
            });
            batch.profiles.push(p.clone());
        }
        metrics::gauge!("missive_profiles").increment(st.new_profiles as f64);
        Ok((batch, outcomes, total))
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
            p.history = history.iter().rev().map(crate::profiles::history_entry).collect();
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
        let committed = self.committed_seq.load(Ordering::SeqCst);
        let target = self.config.profile_cache * 4 / 5;
        let mut excess = self.profiles.len() - target;
        self.profiles.retain(|_, c| {
            if excess > 0 && c.last_batch <= committed {
                excess -= 1;
                false
            } else {
                true
            }
        });
        let profiles = &self.profiles;
        self.identities
            .retain(|_, (p, b)| *b > committed || profiles.contains_key(p));
    }

    /// The live profile an identity points to, if any.
    async fn profile_of(&mut self, key: &IdentityKey) -> Result<Option<ProfileId>, EngineError> {
        let Some((id, _)) = self.identities.get(key).cloned() else {
            return Ok(None);
        };
        self.load_into_cache(&id).await
    }

    fn new_profile(&mut self, st: &mut BatchState) -> ProfileId {
        let id = ProfileId::generate();
        let p = Profile::new(id.clone(), self.clock.now());
        self.profiles.insert(
            id.clone(),
            CachedProfile {
                profile: p,
                last_batch: self.batch_seq,
            },
        );
        st.new_profiles += 1;
        id
    }

    fn user_ids_compatible(&self, candidate: &ProfileId, user_id: Option<&str>) -> bool {
        let Some(u) = user_id else { return true };
        self.profiles.get(candidate).is_none_or(|c| {
            c.profile.identities.user_ids.is_empty() || c.profile.identities.user_ids.contains(u)
        })
    }

    fn map_identity(&mut self, key: IdentityKey, to: &ProfileId, st: &mut BatchState) {
        let unchanged = self.identities.get(&key).is_some_and(|(p, _)| p == to);
        if !unchanged {
            self.identities.insert(key.clone(), (to.clone(), self.batch_seq));
            st.identities.push((key, to.clone()));
        }
    }

    async fn apply(&mut self, e: Event, st: &mut BatchState) -> Result<(), EngineError> {
        let user = match &e.user_id {
            Some(u) => self.profile_of(&IdentityKey::user_id(u.clone())).await?,
            None => None,
        };
        let by_email = match &e.email {
            Some(m) => self.profile_of(&IdentityKey::email(m)).await?,
            None => None,
        };
        let by_anon = match &e.anonymous_id {
            Some(a) => self.profile_of(&IdentityKey::anonymous_id(a.clone())).await?,
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
                    None => self.new_profile(st),
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
            self.merge(&from, &target, &e.message_id, st);
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
                self.map_identity(key, &target, st);
            }
        }

        let history_len = self.config.history_len;
        let batch_seq = self.batch_seq;
        let touched = st.touched.entry(target.clone()).or_default();
        let Some(entry) = self.profiles.get_mut(&target) else {
            return Err(EngineError::Store(StoreError::Corrupt(format!(
                "profile {target} vanished from memory"
            ))));
        };
        entry.profile.apply_event(&e, history_len, touched);
        entry.last_batch = batch_seq;
        let cause = st.causes.entry(target.clone()).or_default();
        *cause = match (cause.is_empty(), touched.events_applied) {
            (true, _) => event_cause(&e),
            (false, n) if !touched.merged_from.is_empty() => format!("merge, {n} events"),
            (false, n) => format!("{n} events"),
        };

        st.events.push(StoredEvent {
            seq: 0,
            message_id: e.message_id,
            profile_id: target,
            kind: e.kind,
            name: e.name,
            timestamp: e.timestamp,
            received_at: e.received_at,
            body: e.body,
        });
        Ok(())
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

    fn merge(&mut self, from: &ProfileId, into: &ProfileId, cause: &MessageId, st: &mut BatchState) {
        let Some(mut source) = self.profiles.remove(from) else {
            return;
        };
        let history_len = self.config.history_len;
        let now = self.clock.now();
        {
            let touched = st.touched.entry(into.clone()).or_default();
            if let Some(target) = self.profiles.get_mut(into) {
                target.profile.absorb(&source.profile, history_len, touched);
                target.last_batch = self.batch_seq;
            }
        }
        st.causes.insert(into.clone(), "merge".into());
        for key in source.profile.identities.keys() {
            self.map_identity(key, into, st);
        }
        source.profile.merged_into = Some(into.clone());
        source.last_batch = self.batch_seq;
        let t = st.touched.entry(from.clone()).or_default();
        t.merged_into = Some(into.clone());
        st.causes.insert(from.clone(), format!("merged into {into}"));
        self.profiles.insert(from.clone(), source);
        st.merges.push(MergeRecord {
            from: from.clone(),
            into: into.clone(),
            at: now,
            cause: cause.to_string(),
        });
        st.new_profiles -= 1;
        metrics::counter!("missive_profile_merges_total").increment(1);
        tracing::debug!(from = %from, into = %into, "profiles merged");
    }
}

fn event_cause(e: &Event) -> String {
    match e.kind {
        EventKind::Track => format!("track:{}", e.name),
        k => k.as_str().to_owned(),
    }
}

async fn run_writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Prepared>,
    epoch: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
) {
    while let Some(p) = rx.recv().await {
        if p.epoch != epoch.load(Ordering::SeqCst) {
            // Prepared on top of a batch that failed to commit: refuse it; senders retry.
            let e = Arc::new(EngineError::Store(StoreError::Task(
                "an earlier batch failed; retry".into(),
            )));
            for (ack, _) in p.acks {
                let _ = ack.send(Err(e.clone()));
            }
            continue;
        }
        let started = Instant::now();
        let events = p.events;
        match store.commit(p.batch).await {
            Ok(()) => {
                committed.store(p.batch_seq, Ordering::SeqCst);
                metrics::histogram!("missive_store_commit_seconds").record(started.elapsed().as_secs_f64());
                metrics::histogram!("missive_commit_batch_events").record(events as f64);
                tracing::debug!(
                    events,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    "batch committed"
                );
                for (ack, outcome) in p.acks {
                    let _ = ack.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events, "group commit failed");
                metrics::counter!("missive_store_commit_failures_total").increment(1);
                epoch.fetch_add(1, Ordering::SeqCst);
                let e = Arc::new(EngineError::Store(e));
                for (ack, _) in p.acks {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }
}
