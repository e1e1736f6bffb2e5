//! Start-up: the lookup filters, and the replay of events stored after the last checkpoint.

use super::*;

impl Applier {
    /// Fills the filters from the store: every message id and identity key.
    pub(super) async fn load_filters(&mut self) -> Result<(), EngineError> {
        let started = Instant::now();
        let (mut messages, mut after) = (0usize, 0i64);
        loop {
            let page = self.store.events().message_ids_after(after, 50_000).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            messages += page.len();
            for (_, id) in &page {
                self.message_filter.insert(id.as_str().as_bytes());
            }
        }
        let (mut identities, mut after) = (0usize, None);
        loop {
            let page = self.store.events().identity_keys_after(after, 50_000).await?;
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
    pub(super) async fn recover(&mut self) -> Result<u64, EngineError> {
        if self.config.cluster {
            return self.recover_partitions().await;
        }
        self.forget_memory();
        // What was observed of the schema, as stored: observations of events a failed commit
        // never stored are forgotten, and replay observes the rest again.
        self.schema = load_schema(&self.store).await?;
        let checkpoint = self.store.events().profile_checkpoint().await?;
        // Never reuse a number, even one a failed batch took and a checkpoint already counted.
        self.next_seq = self
            .next_seq
            .max(self.store.events().last_event_seq().await?.max(checkpoint) + 1);
        // The writers are drained: batches refused never will be stored, and a checkpoint
        // must not wait for them.
        self.progress.events_committed.send_replace(self.sent_events);
        // Histories loaded while replaying must not already hold the events being replayed.
        self.history_through = Some(checkpoint);
        let mut after = checkpoint;
        let mut replayed = 0u64;
        loop {
            let stored = self.store.events().events_after(after, 5_000).await?;
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
}

impl Applier {
    /// Drops everything folded in memory (a failed commit's recovery starts over from the
    /// store).
    pub(super) fn forget_memory(&mut self) {
        self.profiles.clear();
        self.identities.clear();
        self.recent_ids.clear();
        self.timers.clear();
        for (_, load) in self.timer_loads.drain(..) {
            load.abort();
        }
        self.pending = Pending::default();
        self.repoint.clear();
        self.partition_of.clear();
        self.routes.clear();
    }
}

/// The schema's observations as stored, for the applier.
pub(super) async fn load_schema(store: &Store) -> Result<SchemaRegistry, StoreError> {
    let stored = store.events().schema_fields().await?;
    Ok(SchemaRegistry::load(
        stored.into_iter().filter_map(|f| Some((f.key, f.observed?))),
    ))
}

/// The metadata key set once the event log stored before the schema existed was observed.
const SCHEMA_BACKFILLED: &str = "schema_backfilled";

impl Applier {
    /// Once per store: observes the schema of the events stored before missive kept one (a
    /// store from an older version), so that segments can name what its data already holds.
    /// Events after the profile checkpoint are left to replay, which observes them.
    pub(super) async fn backfill_schema(&mut self) -> Result<(), EngineError> {
        let meta = self.store.documents();
        if meta.meta_get_or_init(SCHEMA_BACKFILLED, "no".into()).await? == "yes" {
            return Ok(());
        }
        let through = self.store.events().profile_checkpoint().await?;
        let mut registry = load_schema(&self.store).await?;
        let (mut after, mut read) = (0, 0u64);
        while after < through {
            let stored = self.store.events().events_after(after, 5_000).await?;
            let Some(last) = stored.last() else { break };
            after = last.seq;
            for s in stored.iter().filter(|s| s.seq <= through) {
                let e = event_from_stored(s);
                // Whether the profile took a third-party trait then is not known: leave them out.
                registry.observe(&e, e.provenance.party != missive_core::TraitParty::Third);
                read += 1;
            }
            if read % 100_000 < 5_000 {
                tracing::info!(events = read, "reading the event log once for the schema");
            }
        }
        let schema = registry.take_changes();
        let fields = schema.len();
        self.store
            .events()
            .commit_checkpoint(Checkpoint {
                schema,
                through_seq: through,
                ..Checkpoint::default()
            })
            .await?;
        meta.meta_set(SCHEMA_BACKFILLED, "yes".into()).await?;
        if read > 0 {
            tracing::info!(
                events = read,
                fields,
                "the schema now holds what the stored events carry"
            );
        }
        Ok(())
    }
}

pub(super) async fn erasure_key(store: &Store) -> Result<Vec<u8>, StoreError> {
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    let key = store
        .documents()
        .meta_get_or_init("secret.erasure_hash", fresh)
        .await?;
    Ok(key.into_bytes())
}

/// The event an accepted one was recorded as (its kind, stored body and times), as the
/// cluster's log carries it and replay reads it: the body validates as it did, and the
/// recorded (already skew-corrected) time is kept. `None` if the body no longer validates.
pub fn logged_event(
    kind: EventKind,
    body: serde_json::Value,
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> Option<Event> {
    // Validation adds what it derives (`originalTimestamp`, `receivedAt`); the body stays as
    // it was recorded, so that the cluster stores what the embedded mode would.
    let mut e = validate_message(body.clone(), Some(kind), None, received_at).ok()?;
    e.timestamp = timestamp;
    e.body = body;
    Some(e)
}

/// The event a stored one was made from, for replay: the stored body validates as it did,
/// and the stored (already skew-corrected) time is kept. A body that no longer passes today's
/// rules (an upgrade tightened them) is still replayed, from what it holds: it was accepted.
pub(crate) fn event_from_stored(s: &StoredEvent) -> Event {
    if let Some(e) = logged_event(s.kind, s.body.clone(), s.timestamp, s.received_at) {
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
        trust: missive_core::Trust::recorded(s.body.get(missive_core::Trust::FIELD)),
        body: s.body.clone(),
    }
}
