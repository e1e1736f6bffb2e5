//! Identity resolution: the profile an event belongs to, merges, and the profile cache.

use super::*;

/// The identities an event may resolve through: its own, and an alias's `previousId` as a
/// user id or an anonymous id.
pub(super) fn lookup_keys(e: &Event) -> Vec<IdentityKey> {
    let mut keys = e.identity_keys();
    if let Some(prev) = &e.previous_id {
        keys.push(IdentityKey::user_id(prev.clone()));
        keys.push(IdentityKey::anonymous_id(prev.clone()));
    }
    keys
}

impl Applier {
    pub(super) async fn load_into_cache(&mut self, id: &ProfileId) -> Result<Option<ProfileId>, EngineError> {
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
            let Some(mut p) = self.store.events().load_profile(&id).await? else {
                return Ok(None);
            };
            if let Some(next) = p.merged_into.clone() {
                self.profiles.insert(
                    id.clone(),
                    CachedProfile {
                        profile: Box::new(p),
                        last_batch: 0,
                    },
                );
                id = next;
                continue;
            }
            let history = self
                .store
                .events()
                .profile_events(EventQuery {
                    profile_id: id.clone(),
                    received_before: None,
                    cursor: None,
                    limit: self.config.history_len as u32,
                })
                .await?;
            p.history = self.history_of(&history);
            self.profiles.insert(
                id.clone(),
                CachedProfile {
                    profile: Box::new(p),
                    last_batch: 0,
                },
            );
            return Ok(Some(id));
        }
        Err(EngineError::Store(StoreError::Corrupt(format!(
            "merge chain from {id} is longer than 16"
        ))))
    }

    /// [`Self::load_into_cache`] for many profiles, none of them cached: one read of the
    /// profiles and one of their newest events for all of them. Merged ones are followed one by
    /// one (rare).
    pub(super) async fn load_many_into_cache(&mut self, ids: Vec<ProfileId>) -> Result<(), EngineError> {
        if ids.len() < 2 {
            for id in ids {
                self.load_into_cache(&id).await?;
            }
            return Ok(());
        }
        let mut live = Vec::with_capacity(ids.len());
        let mut merged = Vec::new();
        for p in self.store.events().load_profiles(ids).await? {
            if p.merged_into.is_some() {
                merged.push(p.id);
            } else {
                live.push(p);
            }
        }
        let mut history = if self.config.history_len > 0 && !live.is_empty() {
            let ids = live.iter().map(|p| p.id.clone()).collect();
            self.store
                .events()
                .recent_events(ids, self.config.history_len as u32)
                .await?
        } else {
            HashMap::new()
        };
        for mut p in live {
            let events = history.remove(&p.id).unwrap_or_default();
            p.history = self.history_of(&events);
            self.profiles.insert(
                p.id.clone(),
                CachedProfile {
                    profile: Box::new(p),
                    last_batch: 0,
                },
            );
        }
        for id in merged {
            self.load_into_cache(&id).await?;
        }
        Ok(())
    }

    /// A cached profile's history from its newest stored events (newest first): oldest first,
    /// without events a replay has not folded yet.
    pub(super) fn history_of(
        &self,
        newest_first: &[StoredEvent],
    ) -> VecDeque<missive_core::profile::RecentEvent> {
        let through = self.history_through.unwrap_or(i64::MAX);
        newest_first
            .iter()
            .rev()
            .filter(|e| e.seq <= through)
            .map(crate::profiles::recent_event)
            .collect()
    }

    pub(super) fn evict_if_needed(&mut self) {
        metrics::gauge!("missive_profile_cache_profiles").set(self.profiles.len() as f64);
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
        self.partition_of.retain(|id, _| profiles.contains_key(id));
    }

    /// The live profile an identity points to, if any.
    pub(super) async fn profile_of(&mut self, key: &IdentityKey) -> Result<Option<ProfileId>, EngineError> {
        let Some((id, _)) = self.identities.get(key).cloned() else {
            return Ok(None);
        };
        self.load_into_cache(&id).await
    }

    /// A new profile; on replay it takes the id its first event was stored under.
    pub(super) async fn new_profile(
        &mut self,
        replay_id: Option<&ProfileId>,
        at: DateTime<Utc>,
    ) -> Result<ProfileId, EngineError> {
        // On replay, recreate the profile under the id its event was stored with, unless that
        // id exists (replay went another way): never overwrite a stored profile.
        let id = match replay_id {
            Some(id)
                if !self.profiles.contains_key(id)
                    && self.store.events().load_profile(id).await?.is_none() =>
            {
                id.clone()
            }
            _ => ProfileId::generate(),
        };
        let p = Profile::new(id.clone(), at);
        self.profiles.insert(
            id.clone(),
            CachedProfile {
                profile: Box::new(p),
                last_batch: self.batch_seq,
            },
        );
        metrics::gauge!("missive_profiles").increment(1.0);
        Ok(id)
    }

    pub(super) fn user_ids_compatible(&self, candidate: &ProfileId, user_id: Option<&str>) -> bool {
        let Some(u) = user_id else { return true };
        self.profiles.get(candidate).is_none_or(|c| {
            c.profile.identities.user_ids.is_empty() || c.profile.identities.user_ids.contains(u)
        })
    }

    /// A client event (public write key) may give a known person their first address, never
    /// change it: otherwise anyone who knows a user id could divert that person's mail. The
    /// address is taken out of the event (stored as sent) and the refusal is noted on the profile.
    pub(super) fn refuse_client_email_change(&self, e: &mut Event, existing: Option<&ProfileId>) -> bool {
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

    pub(super) fn map_identity(&mut self, key: IdentityKey, to: &ProfileId) {
        let unchanged = self.identities.get(&key).is_some_and(|(p, _)| p == to);
        if !unchanged {
            self.identity_filter
                .insert(&identity_bytes(&self.store.events().identity_index(&key)));
            self.identities.insert(key.clone(), (to.clone(), self.batch_seq));
            self.pending.identities.push((key, to.clone()));
        }
    }

    /// Resolves the event's profile (merging as identities dictate) and folds it in. Returns
    /// the profile it went to, and the event for storage.
    pub(super) async fn apply(
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
        // A segment backfill under way judges these profiles first, with what they counted
        // before this event.
        if self.backfill.is_some() {
            for from in &absorb {
                self.backfill_ahead(from, false).await?;
            }
            self.backfill_ahead(&target, true).await?;
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
        let scorers = self.scorers.clone();
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
        // Third-party traits the profile refused for lack of consent are not recorded.
        let traits_taken = e.provenance.party != missive_core::TraitParty::Third
            || entry
                .profile
                .consents(missive_core::Purpose::ThirdPartyEnrichment);
        self.schema.observe(&e, traits_taken);
        if self.segments.keeps(&e.name) {
            entry
                .profile
                .push_window_event(missive_core::profile::HistoryEntry::of(&e));
            self.segments.prune(&mut entry.profile.window_events, now);
        }
        // Live models score the changed profile before its segments are checked, so that
        // "scores.NAME > 0.7" segments (and the journeys on them) react to this very event.
        // Without `profiling` consent, scores are removed instead.
        if (scorers.has_live() || !entry.profile.scores.is_empty())
            && scorers.score(&mut entry.profile, now, true, None)
        {
            local.scores = true;
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
    pub(super) fn mergeable(&self, from: &ProfileId, into: &ProfileId, user_id: Option<&str>) -> bool {
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

    pub(super) fn merge(&mut self, from: &ProfileId, into: &ProfileId, cause: &MessageId, at: DateTime<Utc>) {
        let Some(source) = self.profiles.remove(from) else {
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
        self.tombstone(from, source, into, at);
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

impl Applier {
    /// Makes `source` (the cached profile `from`) a tombstone merged into `into`, kept in the
    /// cache: it leaves its segments (the profile it joined carries on), and its next version
    /// records the merge. Both merges here and profiles shipped to another partition end so.
    pub(super) fn tombstone(
        &mut self,
        from: &ProfileId,
        mut source: CachedProfile,
        into: &ProfileId,
        at: DateTime<Utc>,
    ) {
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
        source.profile.merged_into = Some(into.clone());
        source.last_batch = self.batch_seq;
        self.pending.touched.entry(from.clone()).or_default().merged_into = Some(into.clone());
        self.pending
            .causes
            .insert(from.clone(), format!("merged into {into}"));
        self.profiles.insert(from.clone(), source);
    }
}

pub(super) fn identity_bytes(k: &IdentityKey) -> Vec<u8> {
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
