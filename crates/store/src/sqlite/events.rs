//! The events area on sqlite (see [`crate::EventStore`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::rows::*;
use super::*;

/// Adds an observation to a field's row: types and seen times merge with what is stored, so
/// that the row never loses what an earlier writer saw; the examples are the writer's (it
/// merged the stored ones in at start-up).
const UPSERT_OBSERVED_FIELD: &str =
    "INSERT INTO schema_fields (kind, event, name, types, examples, first_seen, last_seen)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (kind, event, name) DO UPDATE SET
     types = coalesce(schema_fields.types, 0) | excluded.types,
     examples = excluded.examples,
     first_seen = min(coalesce(schema_fields.first_seen, excluded.first_seen), excluded.first_seen),
     last_seen = max(coalesce(schema_fields.last_seen, excluded.last_seen), excluded.last_seen)";

#[async_trait]
impl crate::EventStore for SqliteStore {
    /// The backend stores identities as it is given them.
    fn identity_index(&self, key: &IdentityKey) -> IdentityKey {
        key.clone()
    }

    async fn erase_profiles(&self, ids: Vec<ProfileId>) -> Result<ErasureCounts, StoreError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let mut counts = ErasureCounts::default();
        // Messages and journeys first: nothing more is sent while the rest is deleted.
        let for_delivery = ids.clone();
        let (instances, messages) = self
            .write_on(Db::Delivery, move |c| {
                let tx = c.transaction()?;
                let (mut i, mut m) = (0u64, 0u64);
                for id in &for_delivery {
                    i += tx.execute("DELETE FROM journey_instances WHERE profile_id = ?1", [id])? as u64;
                    m += tx.execute("DELETE FROM outbox WHERE profile_id = ?1", [id])? as u64;
                }
                tx.commit()?;
                Ok((i, m))
            })
            .await?;
        counts.journey_instances = instances;
        counts.messages = messages;
        let for_events = ids.clone();
        counts.events = self
            .write_on(Db::Events, move |c| {
                let tx = c.transaction()?;
                let mut n = 0u64;
                for id in &for_events {
                    // Merges re-point events to the surviving profile, and the caller passes
                    // every profile merged into the person: the current owner finds them all.
                    n += tx.execute("DELETE FROM events WHERE profile_id = ?1", [id])? as u64;
                }
                tx.commit()?;
                Ok(n)
            })
            .await?;
        let for_main = ids.clone();
        let main = self
            .write_on(Db::Main, move |c| {
                let tx = c.transaction()?;
                let mut n = ErasureCounts::default();
                for id in &for_main {
                    n.profiles += tx.execute("DELETE FROM profiles WHERE id = ?1", [id])? as u64;
                    n.versions +=
                        tx.execute("DELETE FROM profile_versions WHERE profile_id = ?1", [id])? as u64;
                    n.identities += tx.execute("DELETE FROM identities WHERE profile_id = ?1", [id])? as u64;
                    tx.execute("DELETE FROM merges WHERE from_id = ?1 OR into_id = ?1", [id])?;
                    n.segment_memberships +=
                        tx.execute("DELETE FROM segment_members WHERE profile_id = ?1", [id])? as u64;
                    tx.execute("DELETE FROM segment_changes WHERE profile_id = ?1", [id])?;
                }
                tx.commit()?;
                Ok(n)
            })
            .await?;
        counts.profiles = main.profiles;
        counts.versions = main.versions;
        counts.identities = main.identities;
        counts.segment_memberships = main.segment_memberships;
        let keys = self
            .write_on(Db::Keys, move |c| {
                let tx = c.transaction()?;
                let mut n = 0u64;
                for id in &ids {
                    n += tx.execute("DELETE FROM data_keys WHERE profile_id = ?1", [id])? as u64;
                }
                tx.commit()?;
                Ok(n)
            })
            .await?;
        counts.data_keys = keys;
        // The write-ahead logs still hold the pages as they were before the deletes: copy them
        // back and empty the logs, so that nothing deleted stays in any file.
        for db in [Db::Delivery, Db::Events, Db::Main, Db::Keys] {
            self.write_on(db, truncate_wal).await?;
        }
        Ok(counts)
    }

    async fn add_erased_identities(&self, hashes: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO erased_identities (hash, at) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
                )?;
                for h in &hashes {
                    stmt.execute(params![h, micros(at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn schema_fields(&self) -> Result<Vec<StoredField>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT kind, event, name, types, examples, first_seen, last_seen, declared, declared_type,
                 declared_at FROM schema_fields ORDER BY kind, event, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SchemaRow {
                    kind: r.get(0)?,
                    event: r.get(1)?,
                    name: r.get(2)?,
                    types: r.get(3)?,
                    examples: r.get(4)?,
                    first_seen: r.get(5)?,
                    last_seen: r.get(6)?,
                    declared: r.get(7)?,
                    declared_type: r.get(8)?,
                    declared_at: r.get(9)?,
                })
            })?;
            rows.map(|r| r?.into_field()).collect()
        })
        .await
    }

    async fn declare_schema_field(
        &self,
        key: FieldKey,
        declared: Option<Declared>,
    ) -> Result<bool, StoreError> {
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let before: bool = tx
                .query_row(
                    "SELECT declared FROM schema_fields WHERE kind = ?1 AND event = ?2 AND name = ?3",
                    params![key.kind.as_str(), key.event, key.name],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            match &declared {
                Some(d) => tx.execute(
                    "INSERT INTO schema_fields (kind, event, name, declared, declared_type, declared_at)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5)
                     ON CONFLICT (kind, event, name) DO UPDATE SET declared = 1,
                     declared_type = excluded.declared_type, declared_at = excluded.declared_at",
                    params![key.kind.as_str(), key.event, key.name, d.ty.map(|t| t.as_str()), micros(d.at)],
                )?,
                None => {
                    tx.execute(
                        "DELETE FROM schema_fields WHERE kind = ?1 AND event = ?2 AND name = ?3 AND types IS NULL",
                        params![key.kind.as_str(), key.event, key.name],
                    )?;
                    tx.execute(
                        "UPDATE schema_fields SET declared = 0, declared_type = NULL, declared_at = NULL
                         WHERE kind = ?1 AND event = ?2 AND name = ?3",
                        params![key.kind.as_str(), key.event, key.name],
                    )?
                }
            };
            tx.commit()?;
            Ok(before)
        })
        .await
    }

    async fn erased_identities(&self) -> Result<HashSet<String>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT hash FROM erased_identities")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<HashSet<_>, _>>()?)
        })
        .await
    }

    async fn purge_events_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.write_on(Db::Events, move |c| {
            let n = c.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts < ?1 ORDER BY ts LIMIT ?2)",
                params![micros(before), limit],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn reindex_identities(&self, changes: Vec<(IdentityKey, String)>) -> Result<u64, StoreError> {
        let n = self
            .write_on(Db::Main, move |c| {
                let tx = c.transaction()?;
                let mut n = 0;
                {
                    let mut stmt =
                        tx.prepare_cached("UPDATE identities SET value = ?3 WHERE kind = ?1 AND value = ?2")?;
                    for (old, new) in &changes {
                        n += stmt.execute(params![old.kind.as_str(), old.value, new])? as u64;
                    }
                }
                tx.commit()?;
                Ok(n)
            })
            .await?;
        // secure_delete zeroed the old values in the database; empty the log of them too.
        self.write_on(Db::Main, truncate_wal).await?;
        Ok(n)
    }

    async fn commit_events(&self, batch: EventBatch) -> Result<(), StoreError> {
        if !batch.fences.is_empty() {
            return Err(crate::events::cluster_unsupported());
        }
        if batch.events.is_empty() && batch.repoint.is_empty() {
            return Ok(());
        }
        // Serialize before taking the writer.
        let events = batch
            .events
            .iter()
            .map(|e| {
                Ok((
                    e.seq,
                    e.message_id.as_str().to_owned(),
                    e.profile_id.as_str().to_owned(),
                    e.origin_profile_id.as_str().to_owned(),
                    e.kind.as_str(),
                    e.name.clone(),
                    micros(e.timestamp),
                    micros(e.received_at),
                    serde_json::to_string(&e.body)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let repoint = batch.repoint;
        let activity: Vec<(i64, &'static str, i64)> = batch
            .activity
            .iter()
            .map(|a| (micros(a.hour), a.metric.as_str(), a.value))
            .collect();
        self.write_on(Db::Events, move |c| {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO events (seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (message_id) DO NOTHING",
                )?;
                for e in &events {
                    ins.execute(params![e.0, e.1, e.2, e.3, e.4, e.5, e.6, e.7, e.8])?;
                }
                let mut up = tx.prepare_cached("UPDATE events SET profile_id = ?2 WHERE profile_id = ?1")?;
                for (from, into) in &repoint {
                    up.execute(params![from.as_str(), into.as_str()])?;
                }
                let mut add = tx.prepare_cached(
                    "INSERT INTO activity (hour, metric, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (hour, metric) DO UPDATE SET value = CASE
                         WHEN excluded.value > 0 AND value > 9223372036854775807 - excluded.value THEN 9223372036854775807
                         WHEN excluded.value < 0 AND value < -9223372036854775807 - excluded.value THEN -9223372036854775807
                         ELSE value + excluded.value END",
                )?;
                for (hour, metric, value) in &activity {
                    add.execute(params![hour, metric, value])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn commit_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        if !cp.fences.is_empty() || !cp.routes.is_empty() {
            return Err(crate::events::cluster_unsupported());
        }
        let serialize_started = std::time::Instant::now();
        let profiles = cp
            .profiles
            .iter()
            .map(|p| {
                Ok((
                    p.id.as_str().to_owned(),
                    p.version as i64,
                    p.merged_into.as_ref().map(|m| m.as_str().to_owned()),
                    micros(p.updated_at),
                    serde_json::to_string(p)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let versions = cp
            .versions
            .iter()
            .map(|v| {
                Ok((
                    v.profile_id.as_str().to_owned(),
                    v.version as i64,
                    micros(v.recorded_at),
                    v.cause.clone(),
                    serde_json::to_string(&v.diff)?,
                    v.snapshot.as_ref().map(serde_json::to_string).transpose()?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let serialize_ms = serialize_started.elapsed().as_secs_f64() * 1e3;
        let (merges, identities, through_seq, changes, backfills) = (
            cp.merges,
            cp.identities,
            cp.through_seq,
            cp.segment_changes,
            cp.backfills,
        );
        let schema = cp
            .schema
            .iter()
            .map(|(k, o)| observed_columns(k, o))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_on(Db::Main, move |c| {
            let write_started = std::time::Instant::now();
            let tx = c.transaction()?;
            {
                let mut ids = tx.prepare_cached("UPDATE identities SET profile_id = ?2 WHERE profile_id = ?1")?;
                let mut rec =
                    tx.prepare_cached("INSERT INTO merges (from_id, into_id, at, cause) VALUES (?1, ?2, ?3, ?4)")?;
                for m in &merges {
                    ids.execute(params![m.from.as_str(), m.into.as_str()])?;
                    rec.execute(params![m.from.as_str(), m.into.as_str(), micros(m.at), m.cause])?;
                }
                let mut idn = tx.prepare_cached(
                    "INSERT INTO identities (kind, value, profile_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
                )?;
                for (k, p) in &identities {
                    idn.execute(params![k.kind.as_str(), k.value, p.as_str()])?;
                }
                let mut prof = tx.prepare_cached(
                    "INSERT INTO profiles (id, version, merged_into, updated_at, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, merged_into = excluded.merged_into,
                     updated_at = excluded.updated_at, body = excluded.body",
                )?;
                for p in &profiles {
                    prof.execute(params![p.0, p.1, p.2, p.3, p.4])?;
                }
                let mut ver = tx.prepare_cached(
                    "INSERT INTO profile_versions (profile_id, version, recorded_at, cause, diff, snapshot)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for v in &versions {
                    ver.execute(params![v.0, v.1, v.2, v.3, v.4, v.5])?;
                }
                let mut enter = tx.prepare_cached(
                                        // A change for a segment deleted meanwhile adds no member.
                    "INSERT INTO segment_members (segment, profile_id, since)
                     SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM segments WHERE name = ?1)
                     ON CONFLICT (segment, profile_id) DO NOTHING",
                )?;
                let mut exit = tx.prepare_cached("DELETE FROM segment_members WHERE segment = ?1 AND profile_id = ?2")?;
                let mut log = tx.prepare_cached(
                    "INSERT INTO segment_changes (profile_id, segment, entered, at, cause) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for ch in &changes {
                    if ch.entered {
                        enter.execute(params![ch.segment, ch.profile_id.as_str(), micros(ch.at)])?;
                    } else {
                        exit.execute(params![ch.segment, ch.profile_id.as_str()])?;
                    }
                    log.execute(params![ch.profile_id.as_str(), ch.segment, ch.entered, micros(ch.at), ch.cause])?;
                }
                // A merged profile's memberships go with it.
                let mut gone = tx.prepare_cached("DELETE FROM segment_members WHERE profile_id = ?1")?;
                for m in &merges {
                    gone.execute([m.from.as_str()])?;
                }
                let mut field = tx.prepare_cached(UPSERT_OBSERVED_FIELD)?;
                for f in &schema {
                    field.execute(params![f.kind, f.event, f.name, f.types, f.examples, f.first_seen, f.last_seen])?;
                }
                for update in &backfills {
                    match update {
                    crate::BackfillUpdate::Progress(m) => {
                        tx.prepare_cached(
                            "INSERT INTO segment_backfills (segment, is_new, after) VALUES (?1, ?2, ?3)
                             ON CONFLICT (segment) DO UPDATE SET is_new = excluded.is_new, after = excluded.after",
                        )?
                        .execute(params![m.segment, m.is_new, m.after.as_ref().map(|a| a.as_str())])?;
                    }
                    crate::BackfillUpdate::Finished { segment } => {
                        tx.prepare_cached("DELETE FROM segment_backfills WHERE segment = ?1")?
                            .execute([segment])?;
                    }
                }
                }
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('profiles_through_seq', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute([through_seq.to_string()])?;
            }
            tx.commit()?;
            tracing::debug!(
                serialize_ms,
                write_ms = write_started.elapsed().as_secs_f64() * 1e3,
                profiles = profiles.len(),
                "sqlite checkpoint"
            );
            Ok(())
        })
        .await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.read_on(Db::Events, |c| {
            Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
        })
        .await
    }

    async fn unfinished_backfills(&self) -> Result<Vec<crate::BackfillMark>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT segment, is_new, after FROM segment_backfills ORDER BY segment")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (segment, is_new, after) = row?;
                let after = after
                    .map(|a| ProfileId::parse(&a).map_err(|e| corrupt("segment backfill position", e)))
                    .transpose()?;
                out.push(crate::BackfillMark {
                    segment,
                    is_new,
                    after,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn profile_checkpoint(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            let v: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'profiles_through_seq'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            v.map_or(Ok(0), |v| v.parse().map_err(|e| corrupt("profile checkpoint", e)))
        })
        .await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_on(Db::Events, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit], event_from_row)?;
            collect_events(rows)
        })
        .await
    }

    async fn message_ids_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MessageId)>, StoreError> {
        self.read_on(Db::Events, move |c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, message_id FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|r| {
                let (seq, id) = r?;
                Ok((seq, MessageId::parse(&id).map_err(|e| corrupt("message id", e))?))
            })
            .collect()
        })
        .await
    }

    async fn identity_keys_after(
        &self,
        after: Option<IdentityKey>,
        limit: u32,
    ) -> Result<Vec<IdentityKey>, StoreError> {
        self.read(move |c| {
            let (kind, value) = after.map_or((String::new(), String::new()), |k| (k.kind.as_str().to_owned(), k.value));
            let mut stmt = c.prepare_cached(
                "SELECT kind, value FROM identities WHERE (kind, value) > (?1, ?2) ORDER BY kind, value LIMIT ?3",
            )?;
            let rows =
                stmt.query_map(params![kind, value, limit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.map(|r| {
                let (kind, value) = r?;
                let kind = IdentityKind::parse(&kind).ok_or_else(|| corrupt("identity kind", &kind))?;
                Ok(IdentityKey { kind, value })
            })
            .collect()
        })
        .await
    }

    async fn existing_message_ids(&self, ids: Vec<MessageId>) -> Result<HashSet<MessageId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        self.read_on(Db::Events, move |c| {
            let mut found = HashSet::new();
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT message_id FROM events WHERE message_id IN ({placeholders})"
                ))?;
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(chunk.iter().map(|m| m.as_str())),
                    |r| r.get::<_, String>(0),
                )?;
                for r in rows {
                    found.insert(MessageId::parse(&r?).map_err(|e| corrupt("message id", e))?);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn resolve_identities(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, ProfileId>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(move |c| {
            let mut out = HashMap::new();
            // One IN query per kind and chunk: unknown keys (every new customer) are the common case.
            for kind in [IdentityKind::UserId, IdentityKind::AnonymousId, IdentityKind::Email] {
                let values: Vec<&str> =
                    keys.iter().filter(|k| k.kind == kind).map(|k| k.value.as_str()).collect();
                for chunk in values.chunks(500) {
                    let placeholders = vec!["?"; chunk.len()].join(",");
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT value, profile_id FROM identities WHERE kind = '{}' AND value IN ({placeholders})",
                        kind.as_str()
                    ))?;
                    let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?;
                    for row in rows {
                        let (value, profile) = row?;
                        let id = ProfileId::parse(&profile).map_err(|e| corrupt("identity profile id", e))?;
                        out.insert(IdentityKey { kind, value }, id);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load_profile(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM profiles WHERE id = ?1")?
                .query_row([id.as_str()], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn load_profiles(&self, ids: Vec<ProfileId>) -> Result<Vec<Profile>, StoreError> {
        self.read(move |c| {
            // One prepared lookup per id inside one read: as fast as an `IN` list on SQLite,
            // without a statement per batch size.
            let mut stmt = c.prepare_cached("SELECT body FROM profiles WHERE id = ?1")?;
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                let body: Option<String> = stmt.query_row([id.as_str()], |r| r.get(0)).optional()?;
                if let Some(b) = body {
                    out.push(serde_json::from_str(&b)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn recent_events(
        &self,
        ids: Vec<ProfileId>,
        limit: u32,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        self.read_on(Db::Events, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE profile_id = ?1 ORDER BY ts DESC, seq DESC LIMIT ?2"
            ))?;
            per_profile(&mut stmt, ids, i64::from(limit))
        })
        .await
    }

    async fn events_since(
        &self,
        ids: Vec<ProfileId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        let since = since.map_or(i64::MIN, micros);
        self.read_on(Db::Events, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE profile_id = ?1 AND ts >= ?2 ORDER BY ts DESC, seq DESC"
            ))?;
            per_profile(&mut stmt, ids, since)
        })
        .await
    }

    async fn profile_ids_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.read(move |c| {
            let after = after.map(String::from).unwrap_or_default();
            let mut stmt = c.prepare_cached(
                "SELECT id FROM profiles WHERE merged_into IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| r.get::<_, String>(0))?;
            rows.map(|r| ProfileId::parse(&r?).map_err(|e| StoreError::Corrupt(format!("profile id: {e}"))))
                .collect()
        })
        .await
    }

    async fn profiles_after(&self, after: Option<ProfileId>, limit: u32) -> Result<Vec<Profile>, StoreError> {
        self.read(move |c| {
            let after = after.map(String::from).unwrap_or_default();
            let mut stmt = c.prepare_cached(
                "SELECT body FROM profiles WHERE merged_into IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| r.get::<_, String>(0))?;
            rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
        })
        .await
    }

    async fn profile_events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_on(Db::Events, move |c| {
            let (cur_ts, cur_seq) = q
                .cursor
                .map_or((i64::MAX, i64::MAX), |cur| (cur.timestamp_micros, cur.seq));
            let received_before = q.received_before.map_or(i64::MAX, micros);
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE profile_id = ?1 AND received_at <= ?2 AND (ts < ?3 OR (ts = ?3 AND seq < ?4))
                 ORDER BY ts DESC, seq DESC LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                params![q.profile_id.as_str(), received_before, cur_ts, cur_seq, q.limit],
                event_from_row,
            )?;
            collect_events(rows)
        })
        .await
    }

    async fn profile_versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let before = before.map_or(i64::MAX, |b| b as i64);
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM profile_versions WHERE profile_id = ?1 AND version < ?2
                 ORDER BY version DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![id.as_str(), before, limit], version_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(version_from_row).collect()
        })
        .await
    }

    async fn versions_for_as_of(
        &self,
        id: &ProfileId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let base: Option<i64> = c
                .prepare_cached(
                    "SELECT MAX(version) FROM profile_versions
                     WHERE profile_id = ?1 AND recorded_at <= ?2 AND snapshot IS NOT NULL",
                )?
                .query_row(params![id.as_str(), micros(at)], |r| r.get(0))?;
            // No snapshot yet: replay from the first version over an empty profile.
            let base = base.unwrap_or(1);
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM profile_versions
                 WHERE profile_id = ?1 AND version >= ?2 AND recorded_at <= ?3 ORDER BY version"
            ))?;
            let rows = stmt
                .query_map(params![id.as_str(), base, micros(at)], version_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(version_from_row).collect()
        })
        .await
    }

    async fn merges_of(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT from_id, into_id, at, cause FROM merges WHERE from_id = ?1 OR into_id = ?1 ORDER BY at, rowid",
            )?;
            let rows = stmt
                .query_map([id.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(f, i, at, cause)| merge_record(&f, &i, at, cause))
                .collect()
        })
        .await
    }

    async fn merges_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MergeRecord)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, from_id, into_id, at, cause FROM merges WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(seq, f, i, at, cause)| Ok((seq, merge_record(&f, &i, at, cause)?)))
                .collect()
        })
        .await
    }

    async fn activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.read_on(Db::Events, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT hour, metric, value FROM activity WHERE hour >= ?1 AND hour < ?2 ORDER BY hour, metric",
            )?;
            let rows = stmt.query_map(params![micros(since), micros(until)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (hour, metric, value) = row?;
                // A metric this version does not know (written by a newer one) is skipped.
                if let Some(metric) = ActivityMetric::parse(&metric) {
                    out.push(ActivityCount { hour: from_micros(hour), metric, value });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn profile_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let profiles: i64 = self
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await?;
        let events: i64 = self
            .read_on(Db::Events, |c| {
                Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
            })
            .await?;
        Ok(StoreStats {
            profiles: profiles as u64,
            events: events as u64,
        })
    }

    async fn segment_members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| {
            let after = after.map(String::from).unwrap_or_default();
            let mut stmt = c.prepare_cached(
                "SELECT profile_id FROM segment_members WHERE segment = ?1 AND profile_id > ?2 ORDER BY profile_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![name, after, limit], |r| r.get::<_, String>(0))?;
            rows.map(|r| ProfileId::parse(&r?).map_err(|e| corrupt("member id", e))).collect()
        })
        .await
    }

    async fn segment_sizes(&self, since: DateTime<Utc>) -> Result<Vec<SegmentSize>, StoreError> {
        self.read(move |c| {
            let mut by: std::collections::BTreeMap<String, SegmentSize> = Default::default();
            let mut members =
                c.prepare_cached("SELECT segment, COUNT(*) FROM segment_members GROUP BY segment")?;
            for row in members.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (segment, n) = row?;
                by.entry(segment.clone()).or_insert_with(|| SegmentSize { segment, ..Default::default() }).members = n as u64;
            }
            let mut changes = c.prepare_cached(
                "SELECT segment, entered, COUNT(*) FROM segment_changes WHERE at >= ?1 GROUP BY segment, entered",
            )?;
            let rows = changes.query_map(params![micros(since)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?))
            })?;
            for row in rows {
                let (segment, entered, n) = row?;
                let s = by.entry(segment.clone()).or_insert_with(|| SegmentSize { segment, ..Default::default() });
                if entered { s.entered = n as u64 } else { s.exited = n as u64 }
            }
            Ok(by.into_values().collect())
        })
        .await
    }

    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT segment, entered, at, cause FROM segment_changes WHERE profile_id = ?1
                 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id.as_str(), limit], |r| {
                Ok(SegmentChange {
                    profile_id: id.clone(),
                    segment: r.get(0)?,
                    entered: r.get(1)?,
                    at: from_micros(r.get(2)?),
                    cause: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT rowid, profile_id, segment, entered, at, cause FROM segment_changes WHERE rowid > ?1
                 ORDER BY rowid LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (seq, profile, segment, entered, at, cause) = row?;
                let profile_id =
                    ProfileId::parse(&profile).map_err(|e| corrupt("segment change profile id", e))?;
                Ok((
                    seq,
                    SegmentChange {
                        profile_id,
                        segment,
                        entered,
                        at: from_micros(at),
                        cause,
                    },
                ))
            })
            .collect()
        })
        .await
    }

    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let names = serde_json::to_string(&names).map_err(|e| corrupt("event names", e))?;
        self.read_on(Db::Events, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE seq > ?1 AND kind = 'track' AND ts >= ?2 AND name IN (SELECT value FROM json_each(?3))
                 ORDER BY seq LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![after_seq, micros(since), names, limit], event_from_row)?;
            collect_events(rows)
        })
        .await
    }
}

/// A merge row as stored.
fn merge_record(from: &str, into: &str, at: i64, cause: String) -> Result<MergeRecord, StoreError> {
    Ok(MergeRecord {
        from: ProfileId::parse(from).map_err(|e| corrupt("merge from", e))?,
        into: ProfileId::parse(into).map_err(|e| corrupt("merge into", e))?,
        at: from_micros(at),
        cause,
    })
}

/// Runs an event query taking (profile id, `arg`) once per id, inside one read: as fast as an
/// `IN` list on SQLite, without a statement per batch size. Profiles without events are left
/// out.
fn per_profile(
    stmt: &mut rusqlite::CachedStatement<'_>,
    ids: Vec<ProfileId>,
    arg: i64,
) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        let events = collect_events(stmt.query_map(params![id.as_str(), arg], event_from_row)?)?;
        if !events.is_empty() {
            out.insert(id, events);
        }
    }
    Ok(out)
}
