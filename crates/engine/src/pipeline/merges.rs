//! Cluster mode: identity merges across partitions (docs/ARCHITECTURE.md, "Identity merges
//! across partitions"). Only a partition's owner changes its profiles, so a merge of two
//! profiles in different partitions travels through the log in steps, each a record read by
//! the owner it concerns:
//!
//! 1. **The fold** of an event naming identities routed to another partition folds it without
//!    them (`strip_foreign`) and sends that partition a [`Control::Join`] with the profile
//!    the event went to.
//! 2. **The join** is read by the other partition's owner. A known user's profile survives
//!    an anonymous one, else the older survives (ids are time-ordered; `survives`): when the
//!    local one survives, the join goes back the other way; otherwise the local profile is *shipped*: its tombstone (`merged_into`) is
//!    written, its identities and their routes are moved to the survivor's partition, and its
//!    state goes there as a [`Control::Absorb`].
//! 3. **The absorb** is read by the survivor's owner, which folds the state in, records the
//!    merge and re-points the events. A profile already absorbed is not absorbed again.
//!
//! An event read by a partition after its identities moved away is forwarded to where they
//! are now. What a step sends out is acknowledged by the log before the commit that settles
//! the step (the fold's events commit, a control's checkpoint, which also raises the
//! partition's `applied_seq`), so a node that dies in between reads the step again and sends
//! the same records again, under the same message ids.
//!
//! Two profiles of different known users are never merged, as in the embedded mode.

use super::*;
use crate::log::{Control, JoinSide, Outbound};
use missive_store::RouteMove;

/// How long an absorb waits for a profile that does not exist (erased while its merge was
/// under way) before it is dropped.
const ABSORB_GIVE_UP: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl Applier {
    /// Cluster mode: the partition other than `here` that the event's strongest routed
    /// identity is routed to, if any: the event belongs there now (its identities were moved
    /// by a merge after it was routed).
    pub(super) fn home_elsewhere(&self, e: &Event, here: u16) -> Option<u16> {
        identity::lookup_keys(e)
            .iter()
            .find_map(|k| self.routes.get(k).copied())
            .filter(|home| *home != here)
    }

    /// Reads again from the store the routes of the events that the routes in memory would
    /// forward: a forward must follow where the identities are now, not where a stale memory
    /// says (only the owner a route points to moves it, so a route to `here` is never stale).
    pub(super) async fn refresh_routes_elsewhere(
        &mut self,
        events: &[(&Event, u16)],
    ) -> Result<(), EngineError> {
        let mut keys = Vec::new();
        for (e, here) in events {
            if self.home_elsewhere(e, *here).is_some() {
                keys.extend(identity::lookup_keys(e));
            }
        }
        self.reload_routes(keys).await
    }

    /// Overwrites the routes of `keys` in memory with the store's.
    async fn reload_routes(&mut self, keys: Vec<IdentityKey>) -> Result<(), EngineError> {
        if keys.is_empty() {
            return Ok(());
        }
        let found = self.store.events().identity_routes(keys).await?;
        self.routes.extend(found);
        Ok(())
    }

    /// Step 1: asks the partitions the fold took identities out of (`stripped`) to join their
    /// profiles with `target`, the profile of `partition` the event went to.
    pub(super) fn send_joins(
        &mut self,
        stripped: Vec<(IdentityKey, u16)>,
        target: &ProfileId,
        user_id: Option<&str>,
        cause: &MessageId,
        at: LogPosition,
    ) {
        if stripped.is_empty() {
            return;
        }
        let mut with_users: Vec<String> = self
            .profiles
            .get(target)
            .map(|c| c.profile.identities.user_ids.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(u) = user_id
            && !with_users.iter().any(|w| w == u)
        {
            with_users.push(u.to_owned());
        }
        for (i, (key, partition)) in stripped.into_iter().enumerate() {
            self.outbound.push(Outbound::Control {
                partition,
                message_id: format!("j:{}:{}:{i}", at.partition, at.seq),
                control: Control::Join {
                    local: JoinSide::Identity(key),
                    with: target.clone(),
                    with_partition: at.partition,
                    with_users: with_users.clone(),
                    cause: cause.to_string(),
                },
            });
        }
        metrics::counter!("missive_cluster_merge_steps_total", "step" => "join_sent").increment(1);
    }

    /// Steps 2 and 3: a control record read from the log at `at`. Its effects are pending
    /// for the next checkpoint, which settles the record; what it sends is in `outbound`.
    pub(super) async fn apply_control(
        &mut self,
        control: Control,
        at: LogPosition,
    ) -> Result<(), EngineError> {
        match control.clone() {
            Control::Join {
                local,
                with,
                with_partition,
                with_users,
                cause,
            } => {
                if let Some(local) = self.join_side(&local, &control, at).await? {
                    self.join(local, with, with_partition, with_users, cause, at)
                        .await?;
                }
            }
            Control::Absorb {
                into,
                state,
                cause,
                at: when,
            } => {
                self.absorb_shipped(*state, into, cause, when, &control, at)
                    .await?
            }
            Control::Erase {
                profiles,
                identity_hashes,
            } => {
                self.erased.extend(identity_hashes);
                self.backfill_skip(&profiles);
                let gone: HashSet<ProfileId> = profiles.into_iter().collect();
                // Identities folded here since the last checkpoint are not among the hashes the
                // node that took the request read from the store: blocked here too.
                let mut keys: HashSet<IdentityKey> = self
                    .identities
                    .iter()
                    .filter(|(_, (id, _))| gone.contains(id))
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in &gone {
                    if let Some(c) = self.profiles.get(id) {
                        keys.extend(c.profile.identities.keys());
                    }
                }
                let fresh: Vec<String> = keys
                    .iter()
                    .map(|k| identity_hash(&self.erasure_key, k))
                    .filter(|h| !self.erased.contains(h))
                    .collect();
                if !fresh.is_empty() {
                    self.store
                        .events()
                        .add_erased_identities(fresh.clone(), self.clock.now())
                        .await?;
                    self.erased.extend(fresh);
                }
                self.forget_profiles(&gone);
                metrics::counter!("missive_cluster_merge_steps_total", "step" => "erased").increment(1);
            }
        }
        let through = self.pending.partitions.entry(at.partition).or_default();
        *through = (*through).max(at.seq);
        Ok(())
    }

    /// The live profile of this partition a join is about; `None` when there is none here
    /// (forwarded when it is in another partition now).
    async fn join_side(
        &mut self,
        side: &JoinSide,
        control: &Control,
        at: LogPosition,
    ) -> Result<Option<ProfileId>, EngineError> {
        let here = at.partition;
        let found = match side {
            JoinSide::Identity(key) => {
                if self.routes.get(key) != Some(&here) {
                    self.reload_routes(vec![key.clone()]).await?;
                }
                match self.routes.get(key).copied() {
                    Some(p) if p == here => {
                        if !self.identities.contains_key(key) {
                            let resolved = self.store.events().resolve_identities(vec![key.clone()]).await?;
                            for (k, p) in resolved {
                                self.identities.insert(k, (p, 0));
                            }
                        }
                        self.profile_of(key).await?
                    }
                    Some(elsewhere) => {
                        self.forward_control(control, elsewhere, at);
                        return Ok(None);
                    }
                    None => None,
                }
            }
            JoinSide::Profile(id) => match self.load_into_cache(id).await? {
                Some(id) => match self.profile_home(&id).await? {
                    Some(p) if p == here => Some(id),
                    Some(elsewhere) => {
                        self.forward_control(control, elsewhere, at);
                        return Ok(None);
                    }
                    None => None,
                },
                None => None,
            },
        };
        if found.is_none() {
            tracing::warn!(
                partition = here,
                seq = at.seq,
                "cluster: a merge names no profile of this partition; skipped"
            );
            metrics::counter!("missive_cluster_merge_steps_total", "step" => "skipped").increment(1);
        }
        Ok(found)
    }

    /// The partition a profile lives in: where its identities are routed.
    pub(super) async fn profile_home(&mut self, id: &ProfileId) -> Result<Option<u16>, EngineError> {
        if let Some(p) = self.partition_of.get(id)
            && self.owned.contains_key(p)
        {
            return Ok(Some(*p));
        }
        let keys = self
            .profiles
            .get(id)
            .map(|c| c.profile.identities.keys())
            .unwrap_or_default();
        self.reload_routes(keys.clone()).await?;
        Ok(keys.iter().find_map(|k| self.routes.get(k).copied()))
    }

    /// Sends a control on to the partition that holds its profile now.
    fn forward_control(&mut self, control: &Control, partition: u16, at: LogPosition) {
        self.outbound.push(Outbound::Control {
            partition,
            message_id: format!("f:{}:{}", at.partition, at.seq),
            control: control.clone(),
        });
        metrics::counter!("missive_cluster_merge_steps_total", "step" => "forwarded").increment(1);
    }

    /// Step 2: `local` (of this partition) and `with` (of `with_partition`) are one person.
    async fn join(
        &mut self,
        local: ProfileId,
        with: ProfileId,
        with_partition: u16,
        with_users: Vec<String>,
        cause: String,
        at: LogPosition,
    ) -> Result<(), EngineError> {
        if local == with {
            return Ok(());
        }
        let local_users: Vec<String> = self
            .profiles
            .get(&local)
            .map(|c| c.profile.identities.user_ids.iter().cloned().collect())
            .unwrap_or_default();
        if !local_users.is_empty()
            && !with_users.is_empty()
            && !with_users.iter().any(|u| local_users.contains(u))
        {
            // Two known users (a shared device or address): never one profile.
            metrics::counter!("missive_cluster_merge_steps_total", "step" => "refused").increment(1);
            return Ok(());
        }
        if survives(&local, !local_users.is_empty(), &with, !with_users.is_empty()) {
            // The local profile survives, so the other comes here.
            self.outbound.push(Outbound::Control {
                partition: with_partition,
                message_id: format!("b:{}:{}", at.partition, at.seq),
                control: Control::Join {
                    local: JoinSide::Profile(with),
                    with: local,
                    with_partition: at.partition,
                    with_users: local_users,
                    cause,
                },
            });
            metrics::counter!("missive_cluster_merge_steps_total", "step" => "join_returned").increment(1);
            return Ok(());
        }
        self.ship(local, with, with_partition, cause, at.partition).await
    }

    /// Step 2, the surviving profile being elsewhere: writes `from`'s tombstone, moves its
    /// identities and their routes to `into`'s partition, and sends its state there.
    async fn ship(
        &mut self,
        from: ProfileId,
        into: ProfileId,
        to: u16,
        cause: String,
        here: u16,
    ) -> Result<(), EngineError> {
        let keys = self
            .profiles
            .get(&from)
            .map(|c| c.profile.identities.keys())
            .unwrap_or_default();
        // Every identity of the profile in memory, so that each one is re-pointed.
        let unknown: Vec<IdentityKey> = keys
            .iter()
            .filter(|k| !self.identities.contains_key(*k))
            .cloned()
            .collect();
        for (k, p) in self.store.events().resolve_identities(unknown).await? {
            self.identities.insert(k, (p, 0));
        }
        self.reload_routes(keys.clone()).await?;
        let Some(entry) = self.profiles.remove(&from) else {
            return Ok(());
        };
        let now = self.clock.now();
        let state = entry.profile.clone();
        self.tombstone(&from, entry, &into, now);
        self.partition_of.insert(from.clone(), here);
        for key in keys {
            if self.identities.get(&key).is_some_and(|(owner, _)| owner == &from) {
                self.map_identity(key.clone(), &into);
            }
            if self.routes.get(&key) == Some(&here) {
                self.routes.insert(key.clone(), to);
                self.pending.routes.push(RouteMove { key, from: here, to });
            }
        }
        self.timers.retain(|Reverse((_, id))| id != &from);
        self.outbound.push(Outbound::Control {
            partition: to,
            message_id: format!("a:{from}"),
            control: Control::Absorb {
                into,
                state,
                cause,
                at: now,
            },
        });
        metrics::gauge!("missive_profiles").decrement(1.0);
        metrics::counter!("missive_cluster_merge_steps_total", "step" => "shipped").increment(1);
        Ok(())
    }

    /// Step 3: folds `state`, a profile shipped here by its former partition, into `into`
    /// (or what `into` has been merged into since).
    async fn absorb_shipped(
        &mut self,
        state: Profile,
        into: ProfileId,
        cause: String,
        when: DateTime<Utc>,
        control: &Control,
        at: LogPosition,
    ) -> Result<(), EngineError> {
        let here = at.partition;
        let from = state.id.clone();
        let done_here = self.pending.merges.iter().any(|m| m.from == from);
        if done_here
            || self
                .store
                .events()
                .merges_of(&from)
                .await?
                .iter()
                .any(|m| m.from == from)
        {
            metrics::counter!("missive_cluster_merge_steps_total", "step" => "repeat").increment(1);
            return Ok(());
        }
        // The profile's former partition writes its tombstone, moves its identities and
        // routes (a checkpoint) only after it sent this record: wait for that commit, or a
        // crash of its owner before it would leave the join half done there (its owner, reading
        // the join again, would find the identities already pointing here).
        let erased = state
            .identities
            .keys()
            .iter()
            .any(|k| self.erased.contains(&identity_hash(&self.erasure_key, k)));
        if erased {
            // The person asked to be erased while the merge was under way.
            metrics::counter!("missive_cluster_merge_steps_total", "step" => "skipped").increment(1);
            return Ok(());
        }
        let tombstone = self.store.events().load_profile(&from).await?;
        if tombstone.is_none() && self.clock.now() - when > ABSORB_GIVE_UP {
            // Gone for good (erased meanwhile): the partition's log must not stall on it.
            tracing::warn!(profile = %from, "cluster: a merged profile that no longer exists; its merge is dropped");
            metrics::counter!("missive_cluster_merge_steps_total", "step" => "skipped").increment(1);
            return Ok(());
        }
        let version = match tombstone {
            Some(t) if t.merged_into.is_some() => t.version,
            _ => {
                metrics::counter!("missive_cluster_merge_steps_total", "step" => "waiting").increment(1);
                return Err(EngineError::NotYet(format!(
                    "profile {from} is not yet merged away by its partition"
                )));
            }
        };
        let Some(target) = self.load_into_cache(&into).await? else {
            self.keep_apart(state, version, here, "the profile it joined does not exist");
            return Ok(());
        };
        match self.profile_home(&target).await? {
            Some(p) if p == here => {}
            Some(elsewhere) => {
                self.forward_control(control, elsewhere, at);
                return Ok(());
            }
            None => {
                self.keep_apart(state, version, here, "the profile it joined has no route");
                return Ok(());
            }
        }
        let target_users = self
            .profiles
            .get(&target)
            .map(|c| c.profile.identities.user_ids.clone())
            .unwrap_or_default();
        let users = &state.identities.user_ids;
        if !users.is_empty() && !target_users.is_empty() && users.is_disjoint(&target_users) {
            // The survivor became another known user's since the join was checked.
            self.keep_apart(state, version, here, "another known user's profile");
            return Ok(());
        }
        let history_len = self.config.history_len;
        {
            let touched = self.pending.touched.entry(target.clone()).or_default();
            let Some(entry) = self.profiles.get_mut(&target) else {
                return Ok(());
            };
            entry.profile.absorb(&state, history_len, touched);
            entry.last_batch = self.batch_seq;
        }
        self.pending.causes.insert(target.clone(), "merge".into());
        self.partition_of.insert(target.clone(), here);
        for key in state.identities.keys() {
            let moves = self
                .identities
                .get(&key)
                .is_none_or(|(owner, _)| owner == &from || owner == &into);
            if moves {
                self.map_identity(key.clone(), &target);
            }
            self.routes.insert(key, here);
        }
        // The shipped profile is a tombstone here too: lookups through it follow to `target`.
        let mut tombstone = state;
        tombstone.merged_into = Some(target.clone());
        tombstone.segments = Default::default();
        self.profiles.insert(
            from.clone(),
            CachedProfile {
                profile: Box::new(tombstone),
                last_batch: 0,
            },
        );
        self.repoint.push((from.clone(), target.clone()));
        self.pending.merges.push(MergeRecord {
            from,
            into: target.clone(),
            at: when,
            cause,
        });
        let now = when.max(self.eval_now);
        self.eval_now = now;
        if !self.segments.is_empty() {
            self.update_segments(&target, None, now, "merge");
        }
        metrics::counter!("missive_profile_merges_total").increment(1);
        metrics::counter!("missive_cluster_merge_steps_total", "step" => "absorbed").increment(1);
        Ok(())
    }

    /// An absorb that cannot be folded into its survivor: the shipped profile lives on in this
    /// partition (its identities and routes were moved here), its tombstone undone, rather
    /// than be lost or fused with another known user's.
    fn keep_apart(&mut self, state: Profile, tombstone_version: u64, here: u16, why: &str) {
        tracing::warn!(profile = %state.id, why, "cluster: a merge across partitions is not made; the profile is kept apart");
        metrics::counter!("missive_cluster_merge_steps_total", "step" => "kept_apart").increment(1);
        let id = state.id.clone();
        let keys = state.identities.keys();
        let mut live = state;
        live.merged_into = None;
        live.version = tombstone_version;
        self.profiles.insert(
            id.clone(),
            CachedProfile {
                profile: Box::new(live),
                last_batch: self.batch_seq,
            },
        );
        self.partition_of.insert(id.clone(), here);
        for key in &keys {
            self.map_identity(key.clone(), &id);
            self.routes.insert(key.clone(), here);
        }
        let touched = self.pending.touched.entry(id.clone()).or_default();
        touched.identities.extend(keys);
        touched.segments = true;
        self.pending
            .causes
            .insert(id.clone(), format!("kept apart: {why}"));
        let now = self.clock.now().max(self.eval_now);
        if !self.segments.is_empty() {
            self.update_segments(&id, None, now, "merge not made");
        }
        metrics::gauge!("missive_profiles").increment(1.0);
    }

    /// Sends what the fold or a control produced for other partitions, and answers once the
    /// log has acknowledged all of it (before the commit that settles their cause).
    pub(super) async fn send_outbound(&mut self) -> Result<(), EngineError> {
        let out = std::mem::take(&mut self.outbound);
        if out.is_empty() {
            return Ok(());
        }
        let Some(log) = self.log.get() else {
            return Err(EngineError::Log(
                "no log to send merges across partitions through".into(),
            ));
        };
        log.send(out).await.map(|_| ()).map_err(EngineError::Log)
    }
}

/// Of two profiles of one person in different partitions, whether `a` survives the join of
/// `b`: a known user's profile survives an anonymous one (as the embedded mode's fold merges
/// an anonymous or e-mail profile into the known user's: the user's mailing address and
/// history stay the profile's), and otherwise the older one does (profile ids are UUIDv7).
/// Both sides answer alike for the same facts. A join carries its sender's user ids as they
/// were when sent, so a profile that became a known user's meanwhile may send a join back once
/// more; user ids only grow, so that ends at the next step.
fn survives(a: &ProfileId, a_known: bool, b: &ProfileId, b_known: bool) -> bool {
    (!a_known, a) < (!b_known, b)
}

#[cfg(test)]
mod tests {
    use super::survives;
    use missive_core::ProfileId;

    #[test]
    fn a_known_user_survives_else_the_older() {
        let older = ProfileId::from_log(1_000, 0, 1);
        let newer = ProfileId::from_log(2_000, 0, 2);
        for (a, a_known, b, b_known, a_survives) in [
            (&older, false, &newer, false, true),
            (&newer, false, &older, false, false),
            (&newer, true, &older, false, true),
            (&older, false, &newer, true, false),
            (&older, true, &newer, true, true),
            (&newer, true, &older, true, false),
        ] {
            assert_eq!(
                survives(a, a_known, b, b_known),
                a_survives,
                "{a} {a_known} {b} {b_known}"
            );
            assert_eq!(
                survives(b, b_known, a, a_known),
                !a_survives,
                "one answer both ways"
            );
        }
    }
}
