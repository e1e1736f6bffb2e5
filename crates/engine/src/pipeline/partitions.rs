//! Cluster mode's partition ownership: taking a partition on (replaying its events stored
//! after its checkpoint), giving one up (checkpointed first on a hand-over, dropped when the
//! lease ran out), the fences every commit carries, and rebuilding the owned partitions after
//! a failed commit. In the embedded mode none of this runs: one owner holds everything.

use super::*;
use missive_store::Fence;

/// Events read per page when a partition is replayed.
const REPLAY_PAGE: u32 = 5_000;

/// Most identity routes kept in memory (about 100 bytes each).
const MAX_ROUTES: usize = 1_000_000;

impl Applier {
    /// An ingest call's log positions: none in the embedded mode; in cluster mode one per
    /// event, each in an owned partition.
    pub(super) fn check_positions(&self, positions: &[LogPosition]) -> Result<(), EngineError> {
        if !self.config.cluster {
            return match positions.is_empty() {
                true => Ok(()),
                false => Err(EngineError::Store(StoreError::Task(
                    "log positions are for cluster mode".into(),
                ))),
            };
        }
        if positions.is_empty() {
            return Err(EngineError::NotInCluster(
                "events from outside the log (publish them to the cluster's stream)",
            ));
        }
        match positions
            .iter()
            .find(|at| !self.owned.contains_key(&at.partition))
        {
            Some(at) => Err(EngineError::NotOwner(at.partition)),
            None => Ok(()),
        }
    }

    /// Records that an event of the log was folded into `target`: the profile is the
    /// partition's, and so is every profile the event merged into it (`self.repoint` from
    /// `merges_before` on); the partition's next checkpoint includes the event.
    pub(super) fn folded_in(&mut self, at: LogPosition, target: &ProfileId, merges_before: usize) {
        self.partition_of.insert(target.clone(), at.partition);
        for (from, _) in self.repoint.get(merges_before..).unwrap_or_default() {
            self.partition_of.insert(from.clone(), at.partition);
        }
        let through = self.pending.partitions.entry(at.partition).or_default();
        *through = (*through).max(at.seq);
    }

    /// Cluster mode: takes out of `e` (in memory; the stored body stays as sent) the
    /// identities routed to another partition than `partition`, so that the fold neither
    /// merges a profile another node owns nor takes one of its identities; returns them with
    /// their partitions, which the live fold asks to join (`merges`). Deterministic on
    /// replay: a partition's routes change only with a checkpoint of it (a merge's step),
    /// and the events replayed are those after it.
    pub(super) fn strip_foreign(&self, e: &mut Event, partition: u16) -> Vec<(IdentityKey, u16)> {
        let foreign = |k: &IdentityKey| self.routes.get(k).copied().filter(|p| *p != partition);
        let mut stripped = Vec::new();
        if let Some(k) = e.user_id.clone().map(IdentityKey::user_id)
            && let Some(p) = foreign(&k)
        {
            e.user_id = None;
            stripped.push((k, p));
        }
        if let Some(k) = e.anonymous_id.clone().map(IdentityKey::anonymous_id)
            && let Some(p) = foreign(&k)
        {
            e.anonymous_id = None;
            stripped.push((k, p));
        }
        if let Some(k) = e.email.as_ref().map(IdentityKey::email)
            && let Some(p) = foreign(&k)
        {
            // The address is another profile's: this one does not take it as a trait either,
            // or two profiles would be mailed at one address.
            e.email = None;
            e.traits.remove("email");
            stripped.push((k, p));
        }
        if let Some(prev) = e.previous_id.clone() {
            let keys = [
                IdentityKey::user_id(prev.clone()),
                IdentityKey::anonymous_id(prev),
            ];
            let routed: Vec<(IdentityKey, u16)> = keys
                .into_iter()
                .filter_map(|k| foreign(&k).map(|p| (k, p)))
                .collect();
            if !routed.is_empty() {
                e.previous_id = None;
                stripped.extend(routed);
            }
        }
        if !stripped.is_empty() {
            metrics::counter!("missive_cluster_foreign_identities_total").increment(1);
        }
        stripped
    }

    /// Cluster mode: the routes of the identities `events` name that are not known yet.
    pub(super) async fn load_routes(&mut self, events: &[&Event]) -> Result<(), EngineError> {
        // A cache, bounded by starting over: what this batch needs is then read again below.
        if self.routes.len() > MAX_ROUTES {
            self.routes.clear();
        }
        let mut missing = Vec::new();
        let mut seen = HashSet::new();
        for e in events {
            for k in identity::lookup_keys(e) {
                if !self.routes.contains_key(&k) && seen.insert(k.clone()) {
                    missing.push(k);
                }
            }
        }
        if !missing.is_empty() {
            let found = self.store.events().identity_routes(missing).await?;
            self.routes.extend(found);
        }
        Ok(())
    }

    /// The fences of the owned partitions among `partitions`, each once.
    pub(super) fn fences_for(&self, partitions: impl Iterator<Item = u16>) -> Vec<Fence> {
        let wanted: std::collections::BTreeSet<u16> = partitions.collect();
        wanted
            .into_iter()
            .filter_map(|p| self.owned.get(&p).cloned())
            .collect()
    }

    /// Handles an `Own` or `Disown` request; false when a writer is gone.
    pub(super) async fn change_ownership(
        &mut self,
        request: Request,
        _etx: &mpsc::Sender<EventJob>,
        ctx: &mpsc::Sender<CheckpointJob>,
    ) -> bool {
        match request {
            Request::Own { fence, ack } => {
                let result = self.own(fence).await.map_err(Arc::new);
                let _ = ack.send(result);
            }
            Request::Disown { partition, lost, ack } => {
                let mut result = Ok(());
                if lost {
                    // What is queued for it commits (or is fenced) before it is forgotten.
                    self.wait_for_writers().await;
                }
                if !lost && self.owned.contains_key(&partition) {
                    // A hand-over: what was folded is committed under the lease still held.
                    let (sync, committed) = oneshot::channel();
                    if !self.send_checkpoint(ctx, vec![sync]).await {
                        return false;
                    }
                    result = committed
                        .await
                        .unwrap_or_else(|_| Err(Arc::new(EngineError::ShuttingDown)));
                }
                self.forget_partition(partition);
                let _ = ack.send(result);
            }
            _ => {}
        }
        true
    }

    /// Takes a partition on: its events stored after its checkpoint are replayed.
    async fn own(&mut self, fence: Fence) -> Result<u64, EngineError> {
        let partition = fence.partition;
        // A commit still queued for this partition (under a lease dropped here but still
        // valid in the database) lands before the replay reads the checkpoint.
        self.wait_for_writers().await;
        if self.owned.insert(partition, fence).is_some() {
            // A new tenure of a partition already held: its memory is still right.
            return Ok(0);
        }
        // A profile of the partition cached while another node owned it is a copy of what
        // that node went on changing: read again from the store.
        self.drop_untagged();
        let replayed = async {
            let replayed = self.replay_partition(partition).await?;
            self.settle_partition(partition).await?;
            Ok(replayed)
        }
        .await;
        if replayed.is_err() {
            self.forget_partition(partition);
        }
        replayed
    }

    /// After the owned partitions were rebuilt: each settled as when it is taken on.
    pub(super) async fn settle_partitions(&mut self) -> Result<(), EngineError> {
        for partition in self.owned.keys().copied().collect::<Vec<_>>() {
            self.settle_partition(partition).await?;
        }
        Ok(())
    }

    /// What a partition's owner keeps besides its profiles, taken on with it: its segment
    /// timers (read in the background), and the model scorings and segment backfills its
    /// profiles were not evaluated with in full.
    async fn settle_partition(&mut self, partition: u16) -> Result<(), EngineError> {
        self.load_partition_timers(partition, Duration::ZERO);
        self.finish_partition_scoring(partition).await?;
        self.finish_partition_backfills(partition).await
    }

    /// Replays the events of `partition` stored after its checkpoint into memory.
    async fn replay_partition(&mut self, partition: u16) -> Result<u64, EngineError> {
        let mark = self
            .store
            .events()
            .partition_marks(vec![partition])
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        // Histories loaded while replaying must not already hold the events being replayed.
        self.history_through = Some(mark.checkpoint_seq);
        let mut after = mark.checkpoint_seq;
        let mut replayed = 0u64;
        let result = async {
            loop {
                let stored = self
                    .store
                    .events()
                    .partition_events_after(partition, after, REPLAY_PAGE)
                    .await?;
                let Some(last) = stored.last() else { break };
                after = last.seq;
                let events: Vec<(Event, ProfileId, i64)> = stored
                    .into_iter()
                    .map(|s| (event_from_stored(&s), s.origin_profile_id, s.seq))
                    .collect();
                let refs: Vec<&Event> = events.iter().map(|(e, _, _)| e).collect();
                self.load_routes(&refs).await?;
                self.prefetch_identities(&refs).await?;
                for (mut e, origin, seq) in events {
                    self.recent_ids.insert(e.message_id.clone());
                    self.strip_foreign(&mut e, partition);
                    let merges_before = self.repoint.len();
                    let (target, _) = self.apply(e, Some(&origin)).await?;
                    self.folded_in(LogPosition { partition, seq }, &target, merges_before);
                    replayed += 1;
                }
            }
            Ok::<(), EngineError>(())
        }
        .await;
        self.history_through = None;
        // Replayed merges re-point events that already point where they should.
        self.repoint.clear();
        result?;
        self.flush_now |= replayed > 0;
        if replayed > 0 {
            tracing::info!(
                partition,
                events = replayed,
                "replayed the partition's events stored after its checkpoint"
            );
        }
        Ok(replayed)
    }

    /// Forgets a partition: its profiles, their identities and timers, and what is pending of
    /// them (its next owner replays that from the log).
    fn forget_partition(&mut self, partition: u16) {
        self.owned.remove(&partition);
        // Routes to it are exact only while it is owned here: its next owner may move them.
        self.routes.retain(|_, p| *p != partition);
        let gone: HashSet<ProfileId> = self
            .partition_of
            .iter()
            .filter(|(_, p)| **p == partition)
            .map(|(id, _)| id.clone())
            .collect();
        self.partition_of.retain(|_, p| *p != partition);
        self.forget_profiles(&gone);
        self.pending.partitions.remove(&partition);
        self.pending.routes.retain(|m| m.from != partition);
        self.pending
            .partition_backfills
            .retain(|b| b.partition != partition);
        self.timer_loads.retain(|(fence, load)| {
            let keep = fence.partition != partition;
            if !keep {
                load.abort();
            }
            keep
        });
        self.queued_partitions.retain(|(_, p)| *p != partition);
        // Profiles cached without a partition go too: their owner may change them meanwhile.
        self.drop_untagged();
    }

    /// Forgets the profiles cached without a partition (read through an identity or a merge,
    /// never folded here): copies of what other nodes own.
    fn drop_untagged(&mut self) {
        let partition_of = &self.partition_of;
        self.profiles.retain(|id, _| partition_of.contains_key(id));
        let profiles = &self.profiles;
        self.identities.retain(|_, (id, _)| profiles.contains_key(id));
        metrics::gauge!("missive_profile_cache_profiles").set(self.profiles.len() as f64);
    }

    /// Forgets `gone` profiles: their cached state, identities and timers, and what is pending
    /// of them.
    pub(super) fn forget_profiles(&mut self, gone: &HashSet<ProfileId>) {
        self.partition_of.retain(|id, _| !gone.contains(id));
        self.profiles.retain(|id, _| !gone.contains(id));
        self.identities.retain(|_, (id, _)| !gone.contains(id));
        self.timers.retain(|Reverse((_, id))| !gone.contains(id));
        let pending = &mut self.pending;
        pending.touched.retain(|id, _| !gone.contains(id));
        pending.causes.retain(|id, _| !gone.contains(id));
        pending.identities.retain(|(_, id)| !gone.contains(id));
        pending
            .merges
            .retain(|m| !gone.contains(&m.into) && !gone.contains(&m.from));
        pending.segment_changes.retain(|c| !gone.contains(&c.profile_id));
    }

    /// After a failed commit: memory is rebuilt from the store, partition by partition.
    pub(super) async fn recover_partitions(&mut self) -> Result<u64, EngineError> {
        self.forget_memory();
        self.schema = recovery::load_schema(&self.store).await?;
        // The writers are drained: batches refused never will be stored.
        self.progress.events_committed.send_replace(self.sent_events);
        let mut replayed = 0;
        for partition in self.owned.keys().copied().collect::<Vec<_>>() {
            replayed += self.replay_partition(partition).await?;
        }
        Ok(replayed)
    }
}
