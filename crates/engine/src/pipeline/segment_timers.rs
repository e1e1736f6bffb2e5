//! Segment wiring: membership after each change, segment timers, switching definitions.

use super::*;

impl Applier {
    /// Re-evaluates a profile's segments after a change (`touched`; `None`: evaluate all),
    /// records entries and exits, and (re)arms its timer.
    pub(super) fn update_segments(
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
        // Segments deleted since: forget them.
        let (members, timers) = (state.segments.len(), state.timers.len());
        state.segments.retain(|n| set.get(n).is_some());
        state.timers.retain(|n, _| set.get(n).is_some());
        let mut changed = (members, timers) != (state.segments.len(), state.timers.len());
        let scores = p.model_scores();
        let changes: Vec<MembershipChange> = match touched {
            Some(t) => {
                // A score changed, or consent did (`profiling` decides whether scores are read).
                let extra = Extra {
                    scores_changed: t.scores || t.consent,
                };
                let r = set.on_change(&mut state, p, &p.window_events, scores, t, extra, now);
                changed |= r.timers_moved;
                r.changes
            }
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
                changed |= fresh.timers != state.timers;
                state = fresh;
                changes
            }
        };
        let changed = changed || !changes.is_empty();
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

    pub(super) fn record_segment_changes(&mut self, id: &ProfileId, changes: Vec<MembershipChange>) {
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
    pub(super) async fn run_due_timers(&mut self, now: DateTime<Utc>) -> Result<(), EngineError> {
        self.eval_now = self.eval_now.max(now);
        self.arm_loaded_timers().await;
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
            // Cluster mode: a profile merged into another partition's, or handed over since.
            if !self.adopt(&id, None).await? {
                continue;
            }
            self.backfill_ahead(&id, true).await?;
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
                changes.extend(set.on_due(&mut state, p, &p.window_events, scores, at).changes);
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

    /// Every live profile: those in the store, and those only in memory so far. In cluster
    /// mode, those of the partitions owned (or of `only`), with the partition of each.
    pub(super) async fn live_profile_ids(
        &self,
        only: Option<u16>,
    ) -> Result<(Vec<ProfileId>, HashMap<ProfileId, u16>), EngineError> {
        if self.config.cluster {
            let partitions: Vec<u16> = match only {
                Some(p) => vec![p],
                None => self.owned.keys().copied().collect(),
            };
            let mut homes: HashMap<ProfileId, u16> = self
                .profiles
                .iter()
                .filter(|(_, c)| c.profile.merged_into.is_none())
                .filter_map(|(id, _)| {
                    let p = self.partition_of.get(id)?;
                    partitions.contains(p).then(|| (id.clone(), *p))
                })
                .collect();
            let stored = self.store.events().profiles_in_partitions(partitions).await?;
            for (id, p) in stored {
                homes.entry(id).or_insert(p);
            }
            return Ok((homes.keys().cloned().collect(), homes));
        }
        let mut ids: Vec<ProfileId> = self
            .profiles
            .iter()
            .filter(|(_, c)| c.profile.merged_into.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut after = None;
        loop {
            let page = self.store.events().profile_ids_after(after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.clone());
            ids.extend(page.into_iter().filter(|id| !self.profiles.contains_key(id)));
        }
        Ok((ids, HashMap::new()))
    }

    /// Cluster mode: whether the cached profile `id` lives in a partition owned here,
    /// recording which (`home`, when the caller knows it, else its identities' routes). A
    /// profile read from the store by a timer, a backfill or a model is written back only
    /// under its partition's lease, and only by its owner. Always true in the embedded mode.
    pub(super) async fn adopt(&mut self, id: &ProfileId, home: Option<u16>) -> Result<bool, EngineError> {
        if !self.config.cluster {
            return Ok(true);
        }
        let home = match home {
            Some(p) => Some(p),
            None => self.profile_home(id).await?,
        };
        match home {
            Some(p) if self.owned.contains_key(&p) => {
                self.partition_of.insert(id.clone(), p);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Cluster mode: arms the segment timers the stored profiles of `partition` hold (a
    /// partition taken on, or rebuilt after a failed commit). They are read in the background
    /// (every profile of the partition is read, which takes a while for a large one), so
    /// that taking a partition on does not wait for them: they are armed as soon as they are
    /// read ([`Applier::arm_loaded_timers`]), and one already due fires then.
    pub(super) fn load_partition_timers(&mut self, partition: u16, after: Duration) {
        let Some(fence) = self.owned.get(&partition).cloned() else {
            return;
        };
        if self.segments.is_empty() {
            return;
        }
        let store = self.store.clone();
        let load = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let stored = store.events().profiles_in_partitions(vec![partition]).await?;
            let ids: Vec<ProfileId> = stored.into_iter().map(|(id, _)| id).collect();
            let mut timers = Vec::new();
            for chunk in ids.chunks(5_000) {
                for p in store.events().load_profiles(chunk.to_vec()).await? {
                    if let (Some(due), None) = (p.segments.next_due(), &p.merged_into) {
                        timers.push((due, p.id));
                    }
                }
            }
            Ok(timers)
        });
        self.timer_loads.push((fence, load));
    }

    /// Cluster mode: arms the timers read for partitions taken on (those still owned under
    /// the same lease). A profile in memory may have moved on since: a stale timer finds its
    /// profile's next one later and changes nothing.
    pub(super) async fn arm_loaded_timers(&mut self) {
        if !self.timer_loads.iter().any(|(_, load)| load.is_finished()) {
            return;
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timer_loads)
            .into_iter()
            .partition(|(_, load)| load.is_finished());
        self.timer_loads = waiting;
        for (fence, load) in done {
            let partition = fence.partition;
            match load.await {
                Ok(Ok(timers)) if self.owned.get(&partition) == Some(&fence) => {
                    tracing::debug!(
                        partition,
                        timers = timers.len(),
                        "armed the partition's segment timers"
                    );
                    for (due, id) in timers {
                        self.timers.push(Reverse((due, id)));
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    // Read again: the partition's timers must not be lost to a failed read.
                    tracing::warn!(partition, error = %e, "reading the partition's segment timers failed; reading them again in a second");
                    self.load_partition_timers(partition, Duration::from_secs(1));
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    tracing::error!(partition, error = %e, "the task reading the partition's segment timers failed; reading them again in a second");
                    self.load_partition_timers(partition, Duration::from_secs(1));
                }
            }
        }
    }

    /// Re-arms the segment timers the stored profiles hold (after a restart).
    pub(super) async fn load_timers(&mut self) -> Result<(), EngineError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        let mut after = None;
        loop {
            let page = self.store.events().profiles_after(after, 5_000).await?;
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
}

/// The saved segments, compiled. They were type-checked when saved; a definition that no
/// longer compiles (an upgrade changed the language) is left out, loudly.
/// The saved segments that compile. One that no longer does (saved by an older version) is
/// disabled, loudly: it must neither stop the server nor block changes to the others.
pub(crate) fn compile_saved(records: Vec<missive_store::SegmentRecord>) -> Vec<(String, Segment)> {
    records
        .into_iter()
        .filter_map(|rec| match Segment::compile(&rec.expression, &Schema::default()) {
            Ok(seg) => Some((rec.name, seg)),
            Err(e) => {
                tracing::error!(segment = %rec.name, error = %e, "saved segment does not compile; disabled");
                None
            }
        })
        .collect()
}

pub(crate) async fn load_segments(store: &Store) -> Result<SegmentSet, StoreError> {
    let compiled = compile_saved(store.documents().list_segments().await?);
    match SegmentSet::new(compiled) {
        Ok(set) => Ok(set),
        Err(e) => {
            tracing::error!(error = %e, "saved segments are inconsistent; none evaluated");
            Ok(SegmentSet::default())
        }
    }
}
