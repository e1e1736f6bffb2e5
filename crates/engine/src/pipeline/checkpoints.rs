//! What a checkpoint holds: the profiles, versions, identities and merges changed since the last.

use super::*;

impl Applier {
    /// Takes everything pending as a checkpoint: one new version per changed profile, with
    /// its diff, including every event folded so far.
    pub(super) fn take_checkpoint(&mut self) -> Checkpoint {
        let pending = std::mem::take(&mut self.pending);
        let now = self.clock.now();
        let refused = self.schema.take_refused();
        if refused > 0 {
            tracing::warn!(
                names = refused,
                max_name_bytes = missive_core::schema::MAX_NAME_BYTES,
                max_fields = missive_core::schema::MAX_FIELDS,
                "names not recorded in the schema: too long, with control characters, or past \
                 the most fields (their events are stored; declare a field to use it)"
            );
        }
        let mut cp = Checkpoint {
            identities: pending.identities,
            merges: pending.merges,
            segment_changes: pending.segment_changes,
            through_seq: self.next_seq - 1,
            schema: self.schema.take_changes(),
            // A cluster node's backfill covers only the partitions it owns: it records no
            // workspace-wide progress (docs/ARCHITECTURE.md, "Definitions are followed").
            backfills: match self.config.cluster {
                true => Vec::new(),
                false => pending.backfills,
            },
            ..Checkpoint::default()
        };
        if self.config.cluster {
            cp.fences = self.fences_for(
                pending
                    .partitions
                    .keys()
                    .copied()
                    .chain(
                        pending
                            .touched
                            .keys()
                            .filter_map(|id| self.partition_of.get(id).copied()),
                    )
                    .chain(pending.partition_backfills.iter().map(|b| b.partition)),
            );
            cp.partitions = pending.partitions.into_iter().collect();
            cp.routes = pending.routes;
            // Only under the partition's lease: a former owner's record would be refused.
            cp.partition_backfills = pending
                .partition_backfills
                .into_iter()
                .filter(|b| self.owned.contains_key(&b.partition))
                .collect();
        }
        let mut causes = pending.causes;
        let cluster = self.config.cluster;
        let mut ids: Vec<_> = pending
            .touched
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            // A cluster node writes only profiles of partitions it owns, under their fences.
            .filter(|(id, _)| {
                !cluster
                    || self
                        .partition_of
                        .get(id)
                        .is_some_and(|p| self.owned.contains_key(p))
            })
            .collect();
        // Sorted ids write the profile and version indexes in order.
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, touched) in ids {
            let Some(entry) = self.profiles.get_mut(&id) else {
                continue;
            };
            let p: &mut Profile = &mut entry.profile;
            p.version += 1;
            p.updated_at = now;
            entry.last_batch = self.batch_seq;
            // The history is not stored with the profile: leave it out of the copies.
            let history = std::mem::take(&mut p.history);
            let snapshot = p
                .version
                .is_multiple_of(self.config.snapshot_every)
                .then(|| p.clone());
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
}
