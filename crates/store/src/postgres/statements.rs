//! The prepared statements of the postgres backend: group commits, checkpoints and reads,
//! prepared once per connection at start-up.

use super::*;

/// The statements of a group commit of events, prepared once on the event writer connection.
/// Each takes its rows as parallel arrays, one per column.
pub(super) struct EventStatements {
    pub(super) insert_events: Statement,
    pub(super) repoint_events: Statement,
    pub(super) add_activity: Statement,
    pub(super) check_fences: Statement,
    pub(super) mark_applied: Statement,
}

impl EventStatements {
    pub(super) async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        // ORDER BY ord: of two events with the same message id, the first is the one kept.
        // The partitions ($10) are empty in the embedded mode: UNNEST pads them with NULL.
        let (insert_events, repoint_events, add_activity, check_fences, mark_applied) = tokio::try_join!(
            c.prepare(
                "INSERT INTO events (seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body,
                                     partition)
                 SELECT seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body::json,
                        partition
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::bigint[], $8::bigint[], $9::text[], $10::smallint[])
                      WITH ORDINALITY AS e(seq, message_id, profile_id, origin_profile_id, kind, name, ts,
                                           received_at, body, partition, ord)
                 ORDER BY ord
                 ON CONFLICT (message_id) DO NOTHING",
            ),
            c.prepare(
                "UPDATE events SET profile_id = m.into_id
                 FROM UNNEST($1::text[], $2::text[]) AS m(from_id, into_id)
                 WHERE events.profile_id = m.from_id",
            ),
            c.prepare(
                "INSERT INTO activity (hour, metric, value)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[])
                 ON CONFLICT (hour, metric) DO UPDATE SET value = GREATEST(LEAST(
                     activity.value::numeric + EXCLUDED.value, 9223372036854775807), -9223372036854775807)::bigint",
            ),
            c.prepare(CHECK_FENCES),
            c.prepare(
                "INSERT INTO partition_log (partition, applied_seq)
                 SELECT * FROM UNNEST($1::smallint[], $2::bigint[])
                 ON CONFLICT (partition) DO UPDATE SET
                     applied_seq = GREATEST(partition_log.applied_seq, excluded.applied_seq)",
            ),
        )?;
        Ok(Self {
            insert_events,
            repoint_events,
            add_activity,
            check_fences,
            mark_applied,
        })
    }
}

/// The statements of a checkpoint, prepared once on the checkpoint writer connection. Each
/// takes its rows as parallel arrays, one per column.
pub(super) struct CheckpointStatements {
    pub(super) repoint_identities: Statement,
    pub(super) insert_merges: Statement,
    pub(super) upsert_identities: Statement,
    pub(super) upsert_profiles: Statement,
    pub(super) insert_versions: Statement,
    pub(super) set_through_seq: Statement,
    pub(super) upsert_schema_fields: Statement,
    pub(super) check_fences: Statement,
    pub(super) mark_checkpoint: Statement,
    pub(super) move_routes: Statement,
    pub(super) order_followed_logs: Statement,
}

impl CheckpointStatements {
    pub(super) async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        let (
            repoint_identities,
            insert_merges,
            upsert_identities,
            upsert_profiles,
            insert_versions,
            set_through_seq,
            upsert_schema_fields,
            check_fences,
            mark_checkpoint,
            move_routes,
            order_followed_logs,
        ) = tokio::try_join!(
            c.prepare(
                "UPDATE identities SET profile_id = m.into_id
                 FROM UNNEST($1::text[], $2::text[]) AS m(from_id, into_id)
                 WHERE identities.profile_id = m.from_id",
            ),
            // ORDER BY ord: merges take their seq (listing order) in the order of the batch.
            c.prepare(
                "INSERT INTO merges (from_id, into_id, at, cause)
                 SELECT from_id, into_id, at, cause
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[])
                      WITH ORDINALITY AS m(from_id, into_id, at, cause, ord)
                 ORDER BY ord",
            ),
            c.prepare(
                "INSERT INTO identities (kind, value, profile_id)
                 SELECT kind, value, profile_id FROM UNNEST($1::text[], $2::text[], $3::text[]) AS i(kind, value, profile_id)
                 ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
            ),
            c.prepare(
                "INSERT INTO profiles (id, version, merged_into, updated_at, body)
                 SELECT id, version, merged_into, updated_at, body::json
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[])
                      AS p(id, version, merged_into, updated_at, body)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, merged_into = excluded.merged_into,
                     updated_at = excluded.updated_at, body = excluded.body",
            ),
            c.prepare(
                "INSERT INTO profile_versions (profile_id, version, recorded_at, cause, diff, snapshot)
                 SELECT profile_id, version, recorded_at, cause, diff::json, snapshot::json
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                      AS v(profile_id, version, recorded_at, cause, diff, snapshot)",
            ),
            c.prepare(
                "INSERT INTO meta (key, value) VALUES ('profiles_through_seq', $1::text)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            ),
            // Types and seen times merge with what is stored (never losing what an earlier
            // writer saw); the examples are the writer's, which merged the stored ones in.
            c.prepare(
                "INSERT INTO schema_fields (kind, event, name, types, examples, first_seen, last_seen)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                                      $6::bigint[], $7::bigint[])
                 ON CONFLICT (kind, event, name) DO UPDATE SET
                     types = coalesce(schema_fields.types, 0) | excluded.types,
                     examples = excluded.examples,
                     first_seen = LEAST(schema_fields.first_seen, excluded.first_seen),
                     last_seen = GREATEST(schema_fields.last_seen, excluded.last_seen)",
            ),
            c.prepare(CHECK_FENCES),
            // applied_seq never trails checkpoint_seq: a control record of the log (a merge
            // across partitions) is settled by the checkpoint it causes.
            c.prepare(
                "INSERT INTO partition_log (partition, checkpoint_seq, applied_seq)
                 SELECT p, s, s FROM UNNEST($1::smallint[], $2::bigint[]) AS m(p, s)
                 ON CONFLICT (partition) DO UPDATE SET
                     checkpoint_seq = GREATEST(partition_log.checkpoint_seq, excluded.checkpoint_seq),
                     applied_seq = GREATEST(partition_log.applied_seq, excluded.checkpoint_seq)",
            ),
            // Only a route still pointing where the merge found it moves.
            c.prepare(
                "UPDATE identity_routes r SET partition = m.to_p
                 FROM UNNEST($1::text[], $2::text[], $3::smallint[], $4::smallint[]) AS m(kind, value, from_p, to_p)
                 WHERE r.kind = m.kind AND r.value = m.value AND r.partition = m.from_p",
            ),
            // Held to the commit: one cluster checkpoint at a time numbers merges and segment
            // changes (a lock per schema).
            c.prepare("SELECT pg_advisory_xact_lock(hashtext('missive.followed_logs.' || current_schema()))"),
        )?;
        Ok(Self {
            repoint_identities,
            insert_merges,
            upsert_identities,
            upsert_profiles,
            insert_versions,
            set_through_seq,
            upsert_schema_fields,
            check_fences,
            mark_checkpoint,
            move_routes,
            order_followed_logs,
        })
    }
}

/// Cluster mode: how many of the fences (node, partition, token as parallel arrays) are still
/// current by the database's clock. It locks their lease rows `FOR KEY SHARE` until the
/// transaction ends, so a take-over (which locks the row `FOR UPDATE`) waits for the write
/// while the owner's renewals (plain updates) do not, and it runs first in a commit:
/// a count short of the fences rolls the commit back (`missive_cluster::leases::verify` is
/// the same check for a single fence).
const CHECK_FENCES: &str = "SELECT count(*) FROM (
         SELECT 1 FROM partition_leases l
         JOIN UNNEST($1::text[], $2::integer[], $3::bigint[]) AS f(node, partition, token)
           ON l.partition = f.partition AND l.owner = f.node AND l.token = f.token
         WHERE l.expires_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
         FOR KEY SHARE OF l) AS current";

/// The columns every event query selects, in this order (see [`event_from_row`]).
pub(super) const EVENT_COLUMNS: &str =
    "seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body";

pub(super) const VERSION_COLUMNS: &str =
    "profile_id, version, recorded_at, cause, diff::text, snapshot::text";

/// The read statements, prepared once on each reader connection.
pub(super) struct ReadStatements {
    pub(super) workspace: Statement,
    pub(super) api_key_by_hash: Statement,
    pub(super) existing_message_ids: Statement,
    pub(super) last_event_seq: Statement,
    pub(super) events_after: Statement,
    pub(super) resolve_identities: Statement,
    pub(super) load_profile: Statement,
    pub(super) profile_events: Statement,
    pub(super) profile_versions: Statement,
    pub(super) versions_for_as_of: Statement,
    pub(super) merges_of: Statement,
    pub(super) stats: Statement,
}

impl ReadStatements {
    pub(super) async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        let profile_versions_sql = format!(
            "SELECT {VERSION_COLUMNS} FROM profile_versions WHERE profile_id = $1 AND version < $2
             ORDER BY version DESC LIMIT $3"
        );
        // No snapshot at or before $2: replay from the first version over an empty profile.
        let versions_for_as_of_sql = format!(
            "SELECT {VERSION_COLUMNS} FROM profile_versions
             WHERE profile_id = $1 AND recorded_at <= $2 AND version >= COALESCE((
                 SELECT MAX(version) FROM profile_versions
                 WHERE profile_id = $1 AND recorded_at <= $2 AND snapshot IS NOT NULL), 1)
             ORDER BY version"
        );
        // The row comparison is SQLite's `ts < ?3 OR (ts = ?3 AND seq < ?4)`, in a form that
        // walks the (profile_id, ts, seq) index.
        let profile_events_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE profile_id = $1 AND received_at <= $2 AND (ts, seq) < ($3, $4)
             ORDER BY ts DESC, seq DESC LIMIT $5"
        );
        let events_after_sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let (
            workspace,
            api_key_by_hash,
            existing_message_ids,
            last_event_seq,
            events_after,
            resolve_identities,
            load_profile,
            profile_events,
            profile_versions,
            versions_for_as_of,
            merges_of,
            stats,
        ) = tokio::try_join!(
            c.prepare("SELECT id, name, created_at FROM workspaces LIMIT 1"),
            c.prepare(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys
                 WHERE secret_hash = $1 AND revoked_at IS NULL",
            ),
            c.prepare("SELECT message_id FROM events WHERE message_id = ANY($1::text[])"),
            c.prepare("SELECT COALESCE(MAX(seq), 0) FROM events"),
            c.prepare(&events_after_sql),
            c.prepare(
                "SELECT i.kind, i.value, i.profile_id
                 FROM identities i JOIN UNNEST($1::text[], $2::text[]) AS k(kind, value)
                 ON i.kind = k.kind AND i.value = k.value",
            ),
            c.prepare("SELECT body::text FROM profiles WHERE id = $1"),
            c.prepare(&profile_events_sql),
            c.prepare(&profile_versions_sql),
            c.prepare(&versions_for_as_of_sql),
            c.prepare(
                "SELECT from_id, into_id, at, cause FROM merges WHERE from_id = $1 OR into_id = $1 ORDER BY at, seq",
            ),
            c.prepare(
                "SELECT (SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL), (SELECT COUNT(*) FROM events)",
            ),
        )?;
        Ok(Self {
            workspace,
            api_key_by_hash,
            existing_message_ids,
            last_event_seq,
            events_after,
            resolve_identities,
            load_profile,
            profile_events,
            profile_versions,
            versions_for_as_of,
            merges_of,
            stats,
        })
    }
}
