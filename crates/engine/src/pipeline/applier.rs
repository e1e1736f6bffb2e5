//! The applier's loop: requests in, batches folded in memory, jobs handed to the writers.

use super::*;

impl Applier {
    pub(super) async fn run(
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
            // A backfill under way: the requests waiting (up to a batch), then one page, in
            // turn, so that neither starves the other.
            if self.backfill.is_some() && !*stop.borrow() {
                let handled = match rx.try_recv() {
                    Ok(r) => self.handle_all(r, &mut rx, &etx, &ctx).await,
                    Err(mpsc::error::TryRecvError::Empty) => true,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                };
                if !handled {
                    return;
                }
                if self.backfill.is_some() {
                    if let Err(e) = self.backfill_step().await {
                        tracing::error!(error = %e, "segment backfill failed; it resumes at the next start (in cluster mode, with the next batch)");
                        self.requeue_partitions();
                        self.abandon_backfill(&e);
                        // What was queued behind it is not left waiting (the failed one is
                        // not resumed here: it would likely fail again at once).
                        self.take_queued_switch().await;
                    }
                    if !self.handle(vec![Request::Tick], false, &etx, &ctx).await {
                        return;
                    }
                }
                continue;
            }
            let first = tokio::select! {
                biased;
                r = rx.recv() => r,
                                _ = ticker.tick() => {
                    let timer_due = self.timers.peek().is_some_and(|Reverse((due, _))| *due <= self.clock.now())
                        || self.timer_loads.iter().any(|(_, load)| load.is_finished());
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
            if !self.handle_all(first, &mut rx, &etx, &ctx).await {
                return;
            }
        }
        // The last checkpoint: everything accepted is in the stored profiles (a backfill
        // under way resumes from it at the next start).
        self.handle(Vec::new(), true, &etx, &ctx).await;
    }

    /// Handles `first` with the requests queued behind it, up to a batch; false when a
    /// writer is gone.
    async fn handle_all(
        &mut self,
        first: Request,
        rx: &mut mpsc::Receiver<Request>,
        etx: &mpsc::Sender<EventJob>,
        ctx: &mpsc::Sender<CheckpointJob>,
    ) -> bool {
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
        let alive = self.handle(requests, false, etx, ctx).await;
        if !alive {
            tracing::error!("a writer stopped; the applier exits");
        }
        alive
    }

    /// Folds a batch of requests and hands the results to the writers; false when a writer
    /// is gone.
    pub(super) async fn handle(
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
        let mut model_requests = Vec::new();
        let mut ownership = Vec::new();
        let mut controls = Vec::new();
        for r in requests {
            match r {
                Request::Ingest {
                    events,
                    positions,
                    ack,
                } => {
                    if let Err(e) = self.check_positions(&positions) {
                        let _ = ack.send(Err(Arc::new(e)));
                        continue;
                    }
                    lists.push((events, positions));
                    acks.push(ack);
                }
                r @ (Request::Own { .. } | Request::Disown { .. }) => ownership.push(r),
                Request::Control { control, at, ack } => match self.check_positions(&[at]) {
                    Ok(()) => controls.push((control, at, ack)),
                    Err(e) => {
                        let _ = ack.send(Err(Arc::new(e)));
                    }
                },
                Request::Sync { ack } => {
                    sync_requested = true;
                    sync_acks.extend(ack);
                }
                Request::Tick => {}
                Request::Settle { at } => {
                    if self.owned.contains_key(&at.partition) {
                        let through = self.pending.partitions.entry(at.partition).or_default();
                        *through = (*through).max(at.seq);
                    }
                }
                Request::Erase { ack, .. } if self.config.cluster => {
                    let _ = ack.send(Err(Arc::new(EngineError::NotInCluster(
                        "erasure (the profile's partition owner must erase it)",
                    ))));
                }
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
                Request::Models {
                    set,
                    rescore,
                    progress,
                    ack,
                } => model_requests.push((set, rescore, progress, ack)),
            }
        }

        let n = lists.iter().map(|(events, _)| events.len()).sum::<usize>();
        // What the fold sends to other partitions is in the log before its events commit.
        let folded = match self.prepare(lists).await {
            Ok(f) => self.send_outbound().await.map(|()| f),
            Err(e) => Err(e),
        };
        tracing::debug!(
            events = n,
            prepare_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch prepared"
        );
        let (batch, outcomes, stored) = match folded {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "batch preparation failed; rebuilding from the store");
                self.outbound.clear();
                let e = Arc::new(e);
                fail(acks, sync_acks, &e);
                for (_, _, ack) in controls {
                    let _ = ack.send(Err(e.clone()));
                }
                // A saved segment is still taken on: it is in the store already. Its backfill
                // is not done; the caller is told, and saving it again redoes it.
                for (set, _, _, ack) in segment_requests {
                    self.segments = set;
                    let _ = ack.send(Err(e.clone()));
                }
                for (set, _, _, ack) in model_requests {
                    self.scorers = set;
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
            // Answered once the change is durable: at once without a backfill, when the
            // backfill is done with one.
            if let Some((result, ack)) = self.switch_segments(set, backfill, progress, ack).await {
                sync_acks.push(answer_when_durable(result, ack));
            }
            sync_requested = true;
        }
        for (result, ack) in std::mem::take(&mut self.finished_backfills) {
            sync_acks.push(answer_when_durable(result, ack));
            sync_requested = true;
        }
        for (set, rescore, progress, ack) in model_requests {
            let result = self.switch_models(set, rescore, progress).await.map_err(Arc::new);
            sync_acks.push(answer_when_durable(result, ack));
            sync_requested = true;
        }
        let checkpoint = sync_requested
            || self.config.flush_interval.is_zero()
            || self.pending.touched.len() >= self.config.max_dirty_profiles
            || (!self.pending.is_empty()
                && (self.flush_now || self.last_flush.elapsed() >= self.config.flush_interval));
        if checkpoint && !self.send_checkpoint(ctx, sync_acks).await {
            return false;
        }
        for (control, at, ack) in controls {
            if !self.settle_control(control, at, ack, etx, ctx).await {
                return false;
            }
        }
        for (profiles, hashes, ack) in erasures {
            let _ = ack.send(self.erase(profiles, hashes).await.map_err(Arc::new));
        }
        // Ownership changes after the batch: a hand-over checkpoints what was folded above.
        for r in ownership {
            if !self.change_ownership(r, etx, ctx).await {
                return false;
            }
        }
        true
    }

    /// Applies one control record, sends what it produces, and hands its checkpoint (with
    /// the events it re-points, first) to the writers; `ack` is answered once that
    /// checkpoint is committed. False when a writer is gone.
    async fn settle_control(
        &mut self,
        control: crate::log::Control,
        at: LogPosition,
        ack: SyncAck,
        etx: &mpsc::Sender<EventJob>,
        ctx: &mpsc::Sender<CheckpointJob>,
    ) -> bool {
        let applied = match self.apply_control(control, at).await {
            Ok(()) => self.send_outbound().await,
            Err(e) => Err(e),
        };
        if let Err(EngineError::NotYet(why)) = &applied {
            // Nothing was changed: the owner reads the record again shortly.
            tracing::debug!(
                partition = at.partition,
                seq = at.seq,
                why,
                "cluster: a merge step waits"
            );
            let _ = ack.send(applied.map_err(Arc::new));
            return true;
        }
        if let Err(e) = applied {
            tracing::error!(partition = at.partition, seq = at.seq, error = %e, "cluster: a merge step failed; rebuilding from the store");
            self.outbound.clear();
            let _ = ack.send(Err(Arc::new(e)));
            // Memory may hold half of the step: the next batch starts over from the store.
            self.progress.epoch.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        if !self.repoint.is_empty() {
            // A batch number of its own: the checkpoint below waits for this job to commit.
            self.batch_seq += 1;
            let job = EventJob {
                epoch: self.seen_epoch,
                batch_seq: self.batch_seq,
                batch: EventBatch {
                    repoint: std::mem::take(&mut self.repoint),
                    fences: self.fences_for(std::iter::once(at.partition)),
                    ..EventBatch::default()
                },
                acks: Vec::new(),
                events: 0,
            };
            if etx.send(job).await.is_err() {
                return false;
            }
            self.sent_events = self.batch_seq;
        }
        self.send_checkpoint(ctx, vec![ack]).await
    }

    /// Hands everything pending to the checkpoint writer as one checkpoint, after the event
    /// batches sent before it; `sync_acks` are answered once it is committed. False when the
    /// writer is gone.
    pub(super) async fn send_checkpoint(
        &mut self,
        ctx: &mpsc::Sender<CheckpointJob>,
        sync_acks: Vec<SyncAck>,
    ) -> bool {
        let job = CheckpointJob {
            epoch: self.seen_epoch,
            batch_seq: self.batch_seq,
            after_events: self.sent_events,
            checkpoint: self.take_checkpoint(),
            sync_acks,
        };
        if ctx.send(job).await.is_err() {
            return false;
        }
        self.sent_checkpoint = self.batch_seq;
        true
    }

    /// Deletes profiles once everything sent to the writers is durable (their last events
    /// and checkpoint included), then forgets them.
    pub(super) async fn erase(
        &mut self,
        profiles: Vec<ProfileId>,
        hashes: Vec<String>,
    ) -> Result<ErasureCounts, EngineError> {
        self.wait_for_writers().await;
        self.backfill_skip(&profiles);
        self.store
            .events()
            .add_erased_identities(hashes, self.clock.now())
            .await?;
        let gone: HashSet<&ProfileId> = profiles.iter().collect();
        self.profiles.retain(|id, _| !gone.contains(id));
        self.identities.retain(|_, (p, _)| !gone.contains(p));
        self.timers.retain(|Reverse((_, p))| !gone.contains(p));
        Ok(self.store.events().erase_profiles(profiles).await?)
    }

    pub(super) async fn prepare(
        &mut self,
        lists: Vec<(Vec<Event>, Vec<LogPosition>)>,
    ) -> Result<(EventBatch, Vec<IngestOutcome>, usize), EngineError> {
        let current = self.progress.epoch.load(Ordering::SeqCst);
        if current != self.seen_epoch {
            // A commit failed: memory may hold changes that never reached the store. Let the
            // writers finish what they hold, then start over from the store's checkpoint and
            // the events stored after it.
            self.wait_for_writers().await;
            self.seen_epoch = current;
            let interrupted = self.backfill.take();
            if let Err(e) = self.recover().await {
                self.abandon(interrupted, &e);
                return Err(e);
            }
            if self.config.cluster {
                // Each partition's timers and unfinished backfills, as when it is taken on;
                // the caller of the backfill cut short is told (a follower of the saved
                // segments tries again).
                let e = EngineError::Store(StoreError::Task(
                    "a commit failed; the owned partitions were rebuilt from the store".into(),
                ));
                self.abandon(interrupted, &e);
                self.settle_partitions().await?;
            } else {
                if let Err(e) = self.load_timers().await {
                    self.abandon(interrupted, &e);
                    return Err(e);
                }
                self.resume_backfills(interrupted).await?;
            }
        }
        self.batch_seq += 1;
        self.evict_if_needed();
        self.run_due_timers(self.clock.now()).await?;
        // Cluster mode: a partition's backfill that could not start or go on is tried again.
        if self.backfill.is_none()
            && !self.queued_partitions.is_empty()
            && let Err(e) = self.next_backfill().await
        {
            tracing::warn!(error = %e, "cluster: a partition's segment backfill could not start; trying again with the next batch");
        }
        self.fold(lists).await
    }

    /// Waits until both writers have finished with every batch sent to them.
    pub(super) async fn wait_for_writers(&self) {
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
    #[tracing::instrument(level = "debug", name = "fold", skip_all, fields(requests = lists.len()))]
    pub(super) async fn fold(
        &mut self,
        lists: Vec<(Vec<Event>, Vec<LogPosition>)>,
    ) -> Result<(EventBatch, Vec<IngestOutcome>, usize), EngineError> {
        // 1. Deduplicate by message id: against recent ids, then the store, then within the
        // batch. In cluster mode every id goes to the store: other nodes write it too.
        let cluster = self.config.cluster;
        let unknown: Vec<MessageId> = lists
            .iter()
            .flat_map(|(events, _)| events)
            .filter(|e| {
                !self.recent_ids.contains(&e.message_id)
                    && (cluster || self.message_filter.may_contain(e.message_id.as_str().as_bytes()))
            })
            .map(|e| e.message_id.clone())
            .collect();
        let stored = self.store.events().existing_message_ids(unknown).await?;
        let fresh: Vec<&Event> = lists
            .iter()
            .flat_map(|(events, _)| events)
            .filter(|e| !stored.contains(&e.message_id) && !self.recent_ids.contains(&e.message_id))
            .collect();
        if cluster {
            self.load_routes(&fresh).await?;
            let placed: Vec<(&Event, u16)> = lists
                .iter()
                .flat_map(|(events, positions)| events.iter().zip(positions.iter().map(|at| at.partition)))
                .collect();
            self.refresh_routes_elsewhere(&placed).await?;
        }
        self.prefetch_identities(&fresh).await?;

        // 2. Fold.
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(lists.len());
        let mut total = 0;
        let mut applied = std::collections::BTreeMap::<u16, i64>::new();
        self.batch_partitions.clear();
        for (list, positions) in lists {
            let mut outcome = IngestOutcome::default();
            for (i, e) in list.into_iter().enumerate() {
                let position = positions.get(i).copied();
                if let Some(at) = position {
                    // Settled whatever becomes of the event: the next owner resumes after it.
                    let seq = applied.entry(at.partition).or_default();
                    *seq = (*seq).max(at.seq);
                }
                if stored.contains(&e.message_id) || self.recent_ids.contains(&e.message_id) {
                    outcome.duplicates += 1;
                    continue;
                }
                if !self.erased.is_empty()
                    && e.identity_keys()
                        .iter()
                        .any(|k| self.erased.contains(&identity_hash(&self.erasure_key, k)))
                {
                    outcome.erased.push(i);
                    continue;
                }
                if let Some(at) = position
                    && let Some(home) = self.home_elsewhere(&e, at.partition)
                {
                    // Its identities were moved by a merge since it was routed here.
                    self.outbound.push(crate::log::Outbound::Forward {
                        partition: home,
                        message_id: format!("f:{}:{}", at.partition, at.seq),
                        event: Box::new(e),
                    });
                    continue;
                }
                self.recent_ids.insert(e.message_id.clone());
                self.message_filter.insert(e.message_id.as_str().as_bytes());
                let mut e = e;
                let stripped = match position {
                    Some(at) => self.strip_foreign(&mut e, at.partition),
                    None => Vec::new(),
                };
                let merges_before = self.repoint.len();
                // Cluster mode: the joins this event may send name its user id.
                let user_id = position.and_then(|_| e.user_id.clone());
                // A profile this event creates takes an id derived from its place in the log,
                // so that folding it again (after a failed commit) creates the same one: the
                // joins already sent name it.
                let created_id = position.map(|at| {
                    let ms = u64::try_from(e.received_at.timestamp_millis()).unwrap_or(0);
                    ProfileId::from_log(ms, at.partition, at.seq)
                });
                let (target, e) = self.apply(e, created_id.as_ref()).await?;
                let seq = match position {
                    Some(at) => {
                        self.send_joins(stripped, &target, user_id.as_deref(), &e.message_id, at);
                        self.folded_in(at, &target, merges_before);
                        self.batch_partitions.push(at.partition);
                        at.seq
                    }
                    None => {
                        self.next_seq += 1;
                        self.next_seq - 1
                    }
                };
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
        let activity = crate::activity::tally(&events);
        let fences = if cluster {
            self.fences_for(applied.keys().copied())
        } else {
            Vec::new()
        };
        Ok((
            EventBatch {
                events,
                repoint,
                activity,
                fences,
                partitions: std::mem::take(&mut self.batch_partitions),
                applied: applied.into_iter().collect(),
            },
            outcomes,
            total,
        ))
    }

    /// Loads, in one pass, every identity the events name that is not in memory yet, and the
    /// profiles they point to.
    pub(super) async fn prefetch_identities(&mut self, events: &[&Event]) -> Result<(), EngineError> {
        let mut missing: Vec<IdentityKey> = Vec::new();
        let mut seen = HashSet::new();
        for e in events {
            for k in identity::lookup_keys(e) {
                if !self.identities.contains_key(&k)
                    && (self.config.cluster
                        || self
                            .identity_filter
                            .may_contain(&identity_bytes(&self.store.events().identity_index(&k))))
                    && seen.insert(k.clone())
                {
                    missing.push(k);
                }
            }
        }
        let resolved = self.store.events().resolve_identities(missing).await?;
        for (k, p) in resolved {
            self.identities.insert(k, (p, 0));
        }
        // The profiles the events' identities point to that are not cached (new identities,
        // and known ones whose profile was evicted): read at once, not one by one as the fold
        // would.
        let mut to_load = Vec::new();
        let mut queued = HashSet::new();
        for e in events {
            for k in e.identity_keys() {
                if let Some((p, _)) = self.identities.get(&k)
                    && !self.profiles.contains_key(p)
                    && queued.insert(p.clone())
                {
                    to_load.push(p.clone());
                }
            }
        }
        self.load_many_into_cache(to_load).await
    }
}

/// Sends `result` on `ack` once the checkpoint the returned sender is given to is committed
/// (or the commit's error, if it failed).
fn answer_when_durable(result: Result<u64, Arc<EngineError>>, ack: backfill::SegmentsAck) -> SyncAck {
    let (durable, committed) = oneshot::channel();
    tokio::spawn(async move {
        let answer = match committed.await {
            Ok(Ok(())) => result,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Arc::new(EngineError::ShuttingDown)),
        };
        let _ = ack.send(answer);
    });
    durable
}

pub(super) fn request_events(r: &Request) -> usize {
    match r {
        Request::Ingest { events, .. } => events.len(),
        Request::Sync { .. }
        | Request::Tick
        | Request::Segments { .. }
        | Request::Models { .. }
        | Request::Own { .. }
        | Request::Disown { .. }
        | Request::Control { .. }
        | Request::Settle { .. }
        | Request::Erase { .. } => 0,
    }
}

pub(super) fn event_cause(e: &Event) -> String {
    match e.kind {
        EventKind::Track => format!("track:{}", e.name),
        k => k.as_str().to_owned(),
    }
}
