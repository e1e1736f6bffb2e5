//! The events area on postgres (see [`crate::EventStore`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::cluster::RouteColumns;
use super::rows::*;
use super::*;

#[async_trait]
impl crate::EventStore for PostgresStore {
    /// The backend stores identities as it is given them.
    fn identity_index(&self, key: &IdentityKey) -> IdentityKey {
        key.clone()
    }

    async fn erase_profiles(&self, ids: Vec<ProfileId>) -> Result<ErasureCounts, StoreError> {
        let ids: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        // Both writers, in the order every other path takes them, so that no event of the
        // person is committed halfway: one transaction deletes everything.
        let mut events_writer = self.inner.event_writer.lock().await;
        let _checkpoints = self.inner.checkpoint_writer.lock().await;
        let tx = events_writer.client.transaction().await?;
        let del = |sql: &'static str| {
            let tx = &tx;
            let ids = &ids;
            async move { Ok::<u64, StoreError>(tx.execute(sql, &[ids]).await?) }
        };
        let counts = ErasureCounts {
            journey_instances: del("DELETE FROM journey_instances WHERE profile_id = ANY($1::text[])")
                .await?,
            messages: del("DELETE FROM outbox WHERE profile_id = ANY($1::text[])").await?,
            events: del("DELETE FROM events WHERE profile_id = ANY($1::text[])").await?,
            profiles: del("DELETE FROM profiles WHERE id = ANY($1::text[])").await?,
            versions: del("DELETE FROM profile_versions WHERE profile_id = ANY($1::text[])").await?,
            identities: del("DELETE FROM identities WHERE profile_id = ANY($1::text[])").await?,
            segment_memberships: del("DELETE FROM segment_members WHERE profile_id = ANY($1::text[])")
                .await?,
            data_keys: {
                del("DELETE FROM merges WHERE from_id = ANY($1::text[]) OR into_id = ANY($1::text[])")
                    .await?;
                del("DELETE FROM segment_changes WHERE profile_id = ANY($1::text[])").await?;
                del("DELETE FROM data_keys WHERE profile_id = ANY($1::text[])").await?
            },
        };
        tx.commit().await?;
        Ok(counts)
    }

    async fn add_erased_identities(&self, hashes: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO erased_identities (hash, at) SELECT h, $2 FROM UNNEST($1::text[]) AS h
                 ON CONFLICT (hash) DO NOTHING",
                &[&hashes, &micros(at)],
            )
            .await?;
        Ok(())
    }

    async fn schema_fields(&self) -> Result<Vec<StoredField>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT kind, event, name, types, examples, first_seen, last_seen, declared, declared_type,
                 declared_at FROM schema_fields ORDER BY kind, event COLLATE \"C\", name COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                SchemaRow {
                    kind: row.try_get(0)?,
                    event: row.try_get(1)?,
                    name: row.try_get(2)?,
                    types: row.try_get(3)?,
                    examples: row.try_get(4)?,
                    first_seen: row.try_get(5)?,
                    last_seen: row.try_get(6)?,
                    declared: row.try_get(7)?,
                    declared_type: row.try_get(8)?,
                    declared_at: row.try_get(9)?,
                }
                .into_field()
            })
            .collect()
    }

    async fn declare_schema_field(
        &self,
        key: FieldKey,
        declared: Option<Declared>,
    ) -> Result<bool, StoreError> {
        // The checkpoint writer's connection: declarations and observations of a field are
        // written one after the other, never racing on the same row.
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let kind = key.kind.as_str();
        let before = tx
            .query_opt(
                "SELECT declared FROM schema_fields WHERE kind = $1 AND event = $2 AND name = $3 FOR UPDATE",
                &[&kind, &key.event, &key.name],
            )
            .await?
            .map(|r| r.try_get::<_, bool>(0))
            .transpose()?
            .unwrap_or(false);
        match &declared {
            Some(d) => {
                tx.execute(
                    "INSERT INTO schema_fields (kind, event, name, declared, declared_type, declared_at)
                     VALUES ($1, $2, $3, true, $4, $5)
                     ON CONFLICT (kind, event, name) DO UPDATE SET declared = true,
                     declared_type = excluded.declared_type, declared_at = excluded.declared_at",
                    &[
                        &kind,
                        &key.event,
                        &key.name,
                        &d.ty.map(|t| t.as_str()),
                        &micros(d.at),
                    ],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM schema_fields WHERE kind = $1 AND event = $2 AND name = $3 AND types IS NULL",
                    &[&kind, &key.event, &key.name],
                )
                .await?;
                tx.execute(
                    "UPDATE schema_fields SET declared = false, declared_type = NULL, declared_at = NULL
                     WHERE kind = $1 AND event = $2 AND name = $3",
                    &[&kind, &key.event, &key.name],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(before)
    }

    async fn erased_identities(&self) -> Result<HashSet<String>, StoreError> {
        let r = self.reader();
        let rows = r.client.query("SELECT hash FROM erased_identities", &[]).await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    async fn purge_events_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let writer = self.inner.event_writer.lock().await;
        let n = writer
            .client
            .execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts < $1 ORDER BY ts LIMIT $2)",
                &[&micros(before), &i64::from(limit)],
            )
            .await?;
        Ok(n)
    }

    async fn reindex_identities(&self, changes: Vec<(IdentityKey, String)>) -> Result<u64, StoreError> {
        let kinds: Vec<&str> = changes.iter().map(|(k, _)| k.kind.as_str()).collect();
        let olds: Vec<&str> = changes.iter().map(|(k, _)| k.value.as_str()).collect();
        let news: Vec<&str> = changes.iter().map(|(_, v)| v.as_str()).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        let n = writer
            .client
            .execute(
                "UPDATE identities SET value = c.new FROM UNNEST($1::text[], $2::text[], $3::text[]) AS c(kind, old, new)
                 WHERE identities.kind = c.kind AND identities.value = c.old",
                &[&kinds, &olds, &news],
            )
            .await?;
        Ok(n)
    }

    async fn commit_events(&self, batch: EventBatch) -> Result<(), StoreError> {
        if batch.events.is_empty() && batch.repoint.is_empty() && batch.applied.is_empty() {
            return Ok(());
        }
        if !batch.partitions.is_empty() && batch.partitions.len() != batch.events.len() {
            return Err(StoreError::Corrupt(format!(
                "{} partitions for {} events in one commit",
                batch.partitions.len(),
                batch.events.len()
            )));
        }
        let ev_partitions: Vec<i16> = batch.partitions.iter().map(|p| partition_column(*p)).collect();
        let fences = FenceColumns::new(&batch.fences);
        let (applied_partitions, applied_seqs) = mark_columns(&batch.applied);
        let applied_params: [&(dyn ToSql + Sync); 2] = [&applied_partitions, &applied_seqs];
        // Columns are built, and documents serialized, before taking the writer lock.
        let events = &batch.events;
        let ev_seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let ev_message_ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
        let ev_profile_ids: Vec<&str> = events.iter().map(|e| e.profile_id.as_str()).collect();
        let ev_origins: Vec<&str> = events.iter().map(|e| e.origin_profile_id.as_str()).collect();
        let ev_kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let ev_names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let ev_ts: Vec<i64> = events.iter().map(|e| micros(e.timestamp)).collect();
        let ev_received: Vec<i64> = events.iter().map(|e| micros(e.received_at)).collect();
        let ev_bodies: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(&e.body))
            .collect::<Result<_, _>>()?;
        let (repoint_from, repoint_to) = net_repointing(batch.repoint.iter().map(|(f, i)| (f, i)));

        let event_params: [&(dyn ToSql + Sync); 10] = [
            &ev_seqs,
            &ev_message_ids,
            &ev_profile_ids,
            &ev_origins,
            &ev_kinds,
            &ev_names,
            &ev_ts,
            &ev_received,
            &ev_bodies,
            &ev_partitions,
        ];
        let repoint_params: [&(dyn ToSql + Sync); 2] = [&repoint_from, &repoint_to];
        let act_hours: Vec<i64> = batch.activity.iter().map(|a| micros(a.hour)).collect();
        let act_metrics: Vec<&str> = batch.activity.iter().map(|a| a.metric.as_str()).collect();
        let act_values: Vec<i64> = batch.activity.iter().map(|a| a.value).collect();
        let activity_params: [&(dyn ToSql + Sync); 3] = [&act_hours, &act_metrics, &act_values];

        let mut writer = self.inner.event_writer.lock().await;
        let Writer {
            client,
            statements: s,
        } = &mut *writer;
        let tx = client.transaction().await?;
        // One round trip for both; PostgreSQL still runs them one after the other, inserts
        // first. On an error the transaction rolls back as `tx` drops.
        // The fences first: in cluster mode, a former owner's writes are rolled back.
        let (current, ..) = tokio::try_join!(
            fences.count(&tx, &s.check_fences),
            execute_unless_empty(&tx, &s.insert_events, events.is_empty(), &event_params),
            execute_unless_empty(&tx, &s.repoint_events, repoint_from.is_empty(), &repoint_params),
            execute_unless_empty(&tx, &s.add_activity, act_hours.is_empty(), &activity_params),
            execute_unless_empty(&tx, &s.mark_applied, applied_seqs.is_empty(), &applied_params),
        )?;
        fences.require(current)?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        // Columns are built, and documents serialized, before taking the writer lock.
        let merges = &cp.merges;
        let (repoint_from, repoint_to) = net_repointing(merges.iter().map(|m| (&m.from, &m.into)));
        let mg_from: Vec<&str> = merges.iter().map(|m| m.from.as_str()).collect();
        let mg_into: Vec<&str> = merges.iter().map(|m| m.into.as_str()).collect();
        let mg_at: Vec<i64> = merges.iter().map(|m| micros(m.at)).collect();
        let mg_cause: Vec<&str> = merges.iter().map(|m| m.cause.as_str()).collect();

        let identities = last_per_key(&cp.identities, |(k, _)| k);
        let id_kinds: Vec<&str> = identities.iter().map(|(k, _)| k.kind.as_str()).collect();
        let id_values: Vec<&str> = identities.iter().map(|(k, _)| k.value.as_str()).collect();
        let id_profiles: Vec<&str> = identities.iter().map(|(_, p)| p.as_str()).collect();

        let profiles = last_per_key(&cp.profiles, |p| &p.id);
        let pr_ids: Vec<&str> = profiles.iter().map(|p| p.id.as_str()).collect();
        let pr_versions: Vec<i64> = profiles.iter().map(|p| p.version as i64).collect();
        let pr_merged_into: Vec<Option<&str>> = profiles
            .iter()
            .map(|p| p.merged_into.as_ref().map(|m| m.as_str()))
            .collect();
        let pr_updated: Vec<i64> = profiles.iter().map(|p| micros(p.updated_at)).collect();
        let pr_bodies: Vec<String> = profiles
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;

        let versions = &cp.versions;
        let vs_profiles: Vec<&str> = versions.iter().map(|v| v.profile_id.as_str()).collect();
        let vs_versions: Vec<i64> = versions.iter().map(|v| v.version as i64).collect();
        let vs_recorded: Vec<i64> = versions.iter().map(|v| micros(v.recorded_at)).collect();
        let vs_causes: Vec<&str> = versions.iter().map(|v| v.cause.as_str()).collect();
        let vs_diffs: Vec<String> = versions
            .iter()
            .map(|v| serde_json::to_string(&v.diff))
            .collect::<Result<_, _>>()?;
        let vs_snapshots: Vec<Option<String>> = versions
            .iter()
            .map(|v| v.snapshot.as_ref().map(serde_json::to_string).transpose())
            .collect::<Result<_, _>>()?;
        let through_seq = cp.through_seq.to_string();

        let fields = cp
            .schema
            .iter()
            .map(|(k, o)| observed_columns(k, o))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sf_kinds: Vec<&str> = fields.iter().map(|f| f.kind).collect();
        let sf_events: Vec<&str> = fields.iter().map(|f| f.event.as_str()).collect();
        let sf_names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        let sf_types: Vec<i64> = fields.iter().map(|f| f.types).collect();
        let sf_examples: Vec<&str> = fields.iter().map(|f| f.examples.as_str()).collect();
        let sf_first: Vec<i64> = fields.iter().map(|f| f.first_seen).collect();
        let sf_last: Vec<i64> = fields.iter().map(|f| f.last_seen).collect();
        let field_params: [&(dyn ToSql + Sync); 7] = [
            &sf_kinds,
            &sf_events,
            &sf_names,
            &sf_types,
            &sf_examples,
            &sf_first,
            &sf_last,
        ];

        let repoint_params: [&(dyn ToSql + Sync); 2] = [&repoint_from, &repoint_to];
        let merge_params: [&(dyn ToSql + Sync); 4] = [&mg_from, &mg_into, &mg_at, &mg_cause];
        let identity_params: [&(dyn ToSql + Sync); 3] = [&id_kinds, &id_values, &id_profiles];
        let profile_params: [&(dyn ToSql + Sync); 5] =
            [&pr_ids, &pr_versions, &pr_merged_into, &pr_updated, &pr_bodies];
        let version_params: [&(dyn ToSql + Sync); 6] = [
            &vs_profiles,
            &vs_versions,
            &vs_recorded,
            &vs_causes,
            &vs_diffs,
            &vs_snapshots,
        ];
        let through_params: [&(dyn ToSql + Sync); 1] = [&through_seq];
        let fences = FenceColumns::new(&cp.fences);
        let (mark_partitions, mark_seqs) = mark_columns(&cp.partitions);
        let mark_params: [&(dyn ToSql + Sync); 2] = [&mark_partitions, &mark_seqs];
        let routes = RouteColumns::new(&cp.routes);
        let route_params = routes.params();
        // The single owner's position; a cluster's owners record theirs per partition.
        let clustered = !cp.partitions.is_empty() || !cp.fences.is_empty();

        let mut writer = self.inner.checkpoint_writer.lock().await;
        let Writer {
            client,
            statements: s,
        } = &mut *writer;
        let tx = client.transaction().await?;
        // Cluster nodes checkpoint concurrently: the merges and segment changes (read by
        // followers in `seq` order) are numbered and committed one node at a time, so that
        // no follower sees a later number before an earlier one commits. They are written
        // last, under a lock taken just before them.
        let ordered = clustered && !(merges.is_empty() && cp.segment_changes.is_empty());
        // One round trip for all of them; PostgreSQL still runs them one after another, in
        // the order the trait documents. On an error the transaction rolls back as `tx` drops.
        let (current, ..) = tokio::try_join!(
            fences.count(&tx, &s.check_fences),
            execute_unless_empty(
                &tx,
                &s.repoint_identities,
                repoint_from.is_empty(),
                &repoint_params
            ),
            execute_unless_empty(&tx, &s.upsert_identities, identities.is_empty(), &identity_params),
            execute_unless_empty(&tx, &s.upsert_profiles, profiles.is_empty(), &profile_params),
            execute_unless_empty(&tx, &s.insert_versions, versions.is_empty(), &version_params),
            // (A cluster node's checkpoint with nothing of a partition in it has no fences
            // either: its `through_seq` is 0, never the single owner's.)
            execute_unless_empty(
                &tx,
                &s.set_through_seq,
                clustered || cp.through_seq <= 0,
                &through_params
            ),
            execute_unless_empty(&tx, &s.upsert_schema_fields, fields.is_empty(), &field_params),
            execute_unless_empty(&tx, &s.mark_checkpoint, mark_seqs.is_empty(), &mark_params),
            execute_unless_empty(&tx, &s.move_routes, routes.is_empty(), &route_params),
            // Last, so that the lock is held only from here to the commit.
            execute_unless_empty(&tx, &s.order_followed_logs, !ordered, &[]),
            execute_unless_empty(&tx, &s.insert_merges, merges.is_empty(), &merge_params),
        )?;
        fences.require(current)?;
        // Segment changes, in order (few per checkpoint next to profiles).
        for ch in &cp.segment_changes {
            if ch.entered {
                tx.execute(
                                        "INSERT INTO segment_members (segment, profile_id, since)
                     SELECT $1::text, $2::text, $3::bigint WHERE EXISTS (SELECT 1 FROM segments WHERE name = $1)
                     ON CONFLICT (segment, profile_id) DO NOTHING",
                    &[&ch.segment, &ch.profile_id.as_str(), &micros(ch.at)],
                )
                .await?;
            } else {
                tx.execute(
                    "DELETE FROM segment_members WHERE segment = $1 AND profile_id = $2",
                    &[&ch.segment, &ch.profile_id.as_str()],
                )
                .await?;
            }
            tx.execute(
                "INSERT INTO segment_changes (profile_id, segment, entered, at, cause) VALUES ($1, $2, $3, $4, $5)",
                &[&ch.profile_id.as_str(), &ch.segment, &ch.entered, &micros(ch.at), &ch.cause],
            )
            .await?;
        }
        for m in &cp.merges {
            tx.execute(
                "DELETE FROM segment_members WHERE profile_id = $1",
                &[&m.from.as_str()],
            )
            .await?;
        }
        super::backfills::write_partition_backfills(&tx, &cp.partition_backfills).await?;
        super::backfills::write_backfills(&tx, &cp.backfills).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let r = self.reader();
        let row = r.client.query_one(&r.statements.last_event_seq, &[]).await?;
        Ok(row.try_get(0)?)
    }

    async fn unfinished_backfills(&self) -> Result<Vec<crate::BackfillMark>, StoreError> {
        self.read_unfinished_backfills().await
    }

    async fn profile_checkpoint(&self) -> Result<i64, StoreError> {
        if self.inner.clustered {
            return self.cluster_watermark().await;
        }
        let r = self.reader();
        let row = r
            .client
            .query_opt("SELECT value FROM meta WHERE key = 'profiles_through_seq'", &[])
            .await?;
        match row {
            None => Ok(0),
            Some(row) => {
                let v: &str = row.try_get(0)?;
                v.parse().map_err(|e| corrupt("profile checkpoint", e))
            }
        }
    }

    async fn partition_marks(&self, partitions: Vec<u16>) -> Result<Vec<crate::PartitionMark>, StoreError> {
        self.cluster_partition_marks(partitions).await
    }

    async fn partition_events_after(
        &self,
        partition: u16,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.cluster_partition_events_after(partition, after, limit).await
    }

    async fn identity_routes(&self, keys: Vec<IdentityKey>) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        self.cluster_identity_routes(keys).await
    }

    async fn profiles_in_partitions(
        &self,
        partitions: Vec<u16>,
    ) -> Result<Vec<(ProfileId, u16)>, StoreError> {
        self.cluster_profiles_in_partitions(partitions).await
    }

    async fn partition_backfills(
        &self,
        partition: u16,
    ) -> Result<HashMap<(crate::BackfillKind, String), String>, StoreError> {
        self.read_partition_backfills(partition).await
    }

    async fn claim_routes(
        &self,
        claims: Vec<(IdentityKey, u16)>,
    ) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        self.cluster_claim_routes(claims).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(&r.statements.events_after, &[&after, &i64::from(limit)])
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn message_ids_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MessageId)>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT seq, message_id FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id: &str = row.try_get(1)?;
                Ok((
                    row.try_get(0)?,
                    MessageId::parse(id).map_err(|e| corrupt("message id", e))?,
                ))
            })
            .collect()
    }

    async fn identity_keys_after(
        &self,
        after: Option<IdentityKey>,
        limit: u32,
    ) -> Result<Vec<IdentityKey>, StoreError> {
        let (kind, value) = after.map_or((String::new(), String::new()), |k| {
            (k.kind.as_str().to_owned(), k.value)
        });
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT kind, value FROM identities WHERE (kind, value) > ($1, $2)
                 ORDER BY kind, value LIMIT $3",
                &[&kind, &value, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kind: &str = row.try_get(0)?;
                Ok(IdentityKey {
                    kind: IdentityKind::parse(kind).ok_or_else(|| corrupt("identity kind", kind))?,
                    value: row.try_get(1)?,
                })
            })
            .collect()
    }

    async fn existing_message_ids(&self, ids: Vec<MessageId>) -> Result<HashSet<MessageId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = ids.iter().map(|m| m.as_str()).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(&r.statements.existing_message_ids, &[&ids])
            .await?;
        rows.iter()
            .map(|row| MessageId::parse(row.try_get(0)?).map_err(|e| corrupt("message id", e)))
            .collect()
    }

    async fn resolve_identities(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, ProfileId>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        let values: Vec<&str> = keys.iter().map(|k| k.value.as_str()).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(&r.statements.resolve_identities, &[&kinds, &values])
            .await?;
        rows.iter()
            .map(|row| {
                let key = identity_key_from_row(row)?;
                let profile =
                    ProfileId::parse(row.try_get(2)?).map_err(|e| corrupt("identity profile id", e))?;
                Ok((key, profile))
            })
            .collect()
    }

    async fn load_profile(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        let r = self.reader();
        let Some(row) = r
            .client
            .query_opt(&r.statements.load_profile, &[&id.as_str()])
            .await?
        else {
            return Ok(None);
        };
        let body: &str = row.try_get(0)?;
        Ok(Some(serde_json::from_str(body)?))
    }

    async fn load_profiles(&self, ids: Vec<ProfileId>) -> Result<Vec<Profile>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(ProfileId::as_str).collect();
        let r = self.reader();
        let rows = r
            .client
            .query("SELECT body::text FROM profiles WHERE id = ANY($1)", &[&ids])
            .await?;
        rows.iter()
            .map(|row| {
                let body: &str = row.try_get(0)?;
                Ok(serde_json::from_str(body)?)
            })
            .collect()
    }

    async fn recent_events(
        &self,
        ids: Vec<ProfileId>,
        limit: u32,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        let names: Vec<&str> = ids.iter().map(ProfileId::as_str).collect();
        let r = self.reader();
        // Each profile's newest events through the (profile_id, ts, seq) index, in one query.
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT e.* FROM (SELECT DISTINCT unnest($1::text[]) AS id) AS p CROSS JOIN LATERAL (
                         SELECT {EVENT_COLUMNS} FROM events WHERE profile_id = p.id
                         ORDER BY ts DESC, seq DESC LIMIT $2) e"
                ),
                &[&names, &i64::from(limit)],
            )
            .await?;
        by_profile(&rows, ids.len())
    }

    async fn events_since(
        &self,
        ids: Vec<ProfileId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        let names: Vec<&str> = ids.iter().map(ProfileId::as_str).collect();
        let since = since.map_or(i64::MIN, micros);
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE profile_id = ANY($1) AND ts >= $2
                     ORDER BY profile_id, ts DESC, seq DESC"
                ),
                &[&names, &since],
            )
            .await?;
        by_profile(&rows, ids.len())
    }

    async fn profile_ids_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        let after = after.map(String::from).unwrap_or_default();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT id FROM profiles WHERE merged_into IS NULL AND id > $1 ORDER BY id LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| ProfileId::parse(row.try_get::<_, &str>(0)?).map_err(|e| corrupt("profile id", e)))
            .collect()
    }

    async fn profiles_after(&self, after: Option<ProfileId>, limit: u32) -> Result<Vec<Profile>, StoreError> {
        let after = after.map(String::from).unwrap_or_default();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT body::text FROM profiles WHERE merged_into IS NULL AND id > $1 ORDER BY id LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let body: &str = row.try_get(0)?;
                Ok(serde_json::from_str(body)?)
            })
            .collect()
    }

    async fn profile_events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (cur_ts, cur_seq) = q
            .cursor
            .map_or((i64::MAX, i64::MAX), |cur| (cur.timestamp_micros, cur.seq));
        let received_before = q.received_before.map_or(i64::MAX, micros);
        let r = self.reader();
        let rows = r
            .client
            .query(
                &r.statements.profile_events,
                &[
                    &q.profile_id.as_str(),
                    &received_before,
                    &cur_ts,
                    &cur_seq,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn profile_versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let before = before.map_or(i64::MAX, |b| b as i64);
        let r = self.reader();
        let rows = r
            .client
            .query(
                &r.statements.profile_versions,
                &[&id.as_str(), &before, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn versions_for_as_of(
        &self,
        id: &ProfileId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(&r.statements.versions_for_as_of, &[&id.as_str(), &micros(at)])
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn merges_of(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
        let r = self.reader();
        let rows = r.client.query(&r.statements.merges_of, &[&id.as_str()]).await?;
        rows.iter()
            .map(|row| {
                Ok(MergeRecord {
                    from: ProfileId::parse(row.try_get(0)?).map_err(|e| corrupt("merge from", e))?,
                    into: ProfileId::parse(row.try_get(1)?).map_err(|e| corrupt("merge into", e))?,
                    at: from_micros(row.try_get(2)?),
                    cause: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn merges_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MergeRecord)>, StoreError> {
        let rows = self
            .reader()
            .client
            .query(
                "SELECT seq, from_id, into_id, at, cause FROM merges WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    MergeRecord {
                        from: ProfileId::parse(row.try_get(1)?).map_err(|e| corrupt("merge from", e))?,
                        into: ProfileId::parse(row.try_get(2)?).map_err(|e| corrupt("merge into", e))?,
                        at: from_micros(row.try_get(3)?),
                        cause: row.try_get(4)?,
                    },
                ))
            })
            .collect()
    }

    async fn activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT hour, metric, value FROM activity WHERE hour >= $1 AND hour < $2 ORDER BY hour, metric",
                &[&micros(since), &micros(until)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let metric: &str = row.try_get(1)?;
            // A metric this version does not know (written by a newer one) is skipped.
            if let Some(metric) = ActivityMetric::parse(metric) {
                out.push(ActivityCount {
                    hour: from_micros(row.try_get(0)?),
                    metric,
                    value: row.try_get(2)?,
                });
            }
        }
        Ok(out)
    }

    async fn profile_count(&self) -> Result<u64, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_one("SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL", &[])
            .await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let r = self.reader();
        let row = r.client.query_one(&r.statements.stats, &[]).await?;
        let profiles: i64 = row.try_get(0)?;
        let events: i64 = row.try_get(1)?;
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
        let after = after.map(String::from).unwrap_or_default();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT profile_id FROM segment_members WHERE segment = $1 AND profile_id > $2
                 ORDER BY profile_id LIMIT $3",
                &[&name, &after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| ProfileId::parse(row.try_get(0)?).map_err(|e| corrupt("member id", e)))
            .collect()
    }

    async fn segment_sizes(&self, since: DateTime<Utc>) -> Result<Vec<SegmentSize>, StoreError> {
        let r = self.reader();
        let since = micros(since);
        let params: [&(dyn ToSql + Sync); 1] = [&since];
        let (members, changes) = tokio::try_join!(
            r.client
                .query("SELECT segment, COUNT(*) FROM segment_members GROUP BY segment", &[]),
            r.client.query(
                "SELECT segment, entered, COUNT(*) FROM segment_changes WHERE at >= $1 GROUP BY segment, entered",
                &params,
            ),
        )?;
        let mut by: std::collections::BTreeMap<String, SegmentSize> = Default::default();
        for row in members {
            let segment: String = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            by.entry(segment.clone())
                .or_insert_with(|| SegmentSize {
                    segment,
                    ..Default::default()
                })
                .members = n as u64;
        }
        for row in changes {
            let segment: String = row.try_get(0)?;
            let entered: bool = row.try_get(1)?;
            let n: i64 = row.try_get(2)?;
            let s = by.entry(segment.clone()).or_insert_with(|| SegmentSize {
                segment,
                ..Default::default()
            });
            if entered {
                s.entered = n as u64
            } else {
                s.exited = n as u64
            }
        }
        Ok(by.into_values().collect())
    }

    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT segment, entered, at, cause FROM segment_changes WHERE profile_id = $1
                 ORDER BY at DESC, seq DESC LIMIT $2",
                &[&id.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SegmentChange {
                    profile_id: id.clone(),
                    segment: row.try_get(0)?,
                    entered: row.try_get(1)?,
                    at: from_micros(row.try_get(2)?),
                    cause: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT seq, profile_id, segment, entered, at, cause FROM segment_changes WHERE seq > $1
                 ORDER BY seq LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let profile: &str = row.try_get(1)?;
                Ok((
                    row.try_get(0)?,
                    SegmentChange {
                        profile_id: ProfileId::parse(profile)
                            .map_err(|e| corrupt("segment change profile id", e))?,
                        segment: row.try_get(2)?,
                        entered: row.try_get(3)?,
                        at: from_micros(row.try_get(4)?),
                        cause: row.try_get(5)?,
                    },
                ))
            })
            .collect()
    }

    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE seq > $1 AND kind = 'track' AND ts >= $2 AND name = ANY($3)
                     ORDER BY seq LIMIT $4"
                ),
                &[&after_seq, &micros(since), &names, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Event rows grouped by profile, in the rows' order.
fn by_profile(
    rows: &[tokio_postgres::Row],
    profiles: usize,
) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
    let mut out: HashMap<ProfileId, Vec<StoredEvent>> = HashMap::with_capacity(profiles);
    for row in rows {
        let e = event_from_row(row)?;
        out.entry(e.profile_id.clone()).or_default().push(e);
    }
    Ok(out)
}
