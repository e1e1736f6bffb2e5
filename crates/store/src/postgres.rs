//! The PostgreSQL backend: the same tables as the SQLite backend, in one schema of one
//! database, with times as microseconds since the epoch (`BIGINT`) and documents as `JSON` (the text as written, so object keys keep their order).
//!
//! It owns its connections (no pool): two writers, each behind its own lock, and a few readers
//! taken in turn, each of which pipelines the queries issued on it concurrently. One writer
//! commits events, the other checkpoints (profiles, identities, versions, merges) and the
//! workspace, so that a group commit of events never waits for a checkpoint: their tables are
//! disjoint, and so are their row locks. Every statement is prepared once per connection, at
//! start-up. The checkpoint writer holds a session advisory lock keyed by the schema, so that
//! one missive process writes a schema at a time; the lock goes when that connection does.
//!
//! A commit is one transaction of a handful of statements, sent pipelined, each writing all
//! its rows at once from arrays (`UNNEST`), whatever the size of the batch.
//!
//! It does not reconnect: when a connection is lost, its calls fail with
//! [`StoreError::Postgres`] and the process is expected to restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::{
    ApiKeyId, EventKind, IdentityKey, IdentityKind, MessageId, Profile, ProfileId, WorkspaceId,
};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement, Transaction};

use crate::types::{from_micros, micros};
use crate::{
    ApiKeyRecord, AuditEntry, AuditQuery, Checkpoint, DataKeyRecord, DocumentKind, DocumentRecord,
    ErasureCounts, EventBatch, EventQuery, InstanceStatus, JourneyCommit, JourneyInstance, MergeRecord,
    OutboxCounts, OutboxMessage, OutboxStatus, ProfileVersion, Role, SegmentChange, SegmentRecord, Store,
    StoreError, StoreStats, StoredEvent, Suppression, Workspace,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT
);
CREATE TABLE profiles (
    id TEXT PRIMARY KEY, version BIGINT NOT NULL, merged_into TEXT,
    updated_at BIGINT NOT NULL, body JSONB NOT NULL
);
CREATE TABLE identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_by_profile ON identities (profile_id);
-- seq is assigned by the engine (arrival order), not by the database.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
    profile_id TEXT NOT NULL, origin_profile_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    ts BIGINT NOT NULL, received_at BIGINT NOT NULL, body JSONB NOT NULL
);
CREATE INDEX events_by_profile_time ON events (profile_id, ts, seq);
CREATE TABLE profile_versions (
    profile_id TEXT NOT NULL, version BIGINT NOT NULL, recorded_at BIGINT NOT NULL,
    cause TEXT NOT NULL, diff JSONB NOT NULL, snapshot JSONB,
    PRIMARY KEY (profile_id, version)
);
-- seq stands in for SQLite's rowid: merges of the same instant list in the order recorded.
CREATE TABLE merges (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id TEXT NOT NULL, into_id TEXT NOT NULL, at BIGINT NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX merges_from ON merges (from_id);
CREATE INDEX merges_into ON merges (into_id);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE segments (
    name TEXT PRIMARY KEY, expression TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
);
CREATE TABLE segment_members (
    segment TEXT NOT NULL, profile_id TEXT NOT NULL, since BIGINT NOT NULL,
    PRIMARY KEY (segment, profile_id)
);
CREATE TABLE segment_changes (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    profile_id TEXT NOT NULL, segment TEXT NOT NULL, entered BOOLEAN NOT NULL, at BIGINT NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX segment_changes_by_profile ON segment_changes (profile_id, at);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE documents (
    kind TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL, body JSONB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
"#,
    ),
    (
        4,
        r#"
CREATE TABLE journey_instances (
    id TEXT PRIMARY KEY, journey TEXT NOT NULL, journey_version BIGINT NOT NULL,
    profile_id TEXT NOT NULL, key TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,
    wake_at BIGINT, waiting_for TEXT, context JSONB NOT NULL,
    entered_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
);
CREATE INDEX journey_instances_by_profile ON journey_instances (profile_id, status);
CREATE INDEX journey_instances_due ON journey_instances (wake_at) WHERE status = 'active';
CREATE INDEX journey_instances_by_journey ON journey_instances (journey, entered_at);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL,
    template TEXT NOT NULL, class TEXT NOT NULL, source TEXT NOT NULL, context JSONB NOT NULL,
    status TEXT NOT NULL, attempts BIGINT NOT NULL, next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL, sent_at BIGINT, recipient TEXT, detail TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_by_profile ON outbox (profile_id, created_at);
CREATE TABLE suppressions (
    address_hash TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL
);
"#,
    ),
    (
        5,
        r#"
CREATE INDEX outbox_by_source ON outbox (source, status);
CREATE TABLE soft_bounces (
    address_hash TEXT PRIMARY KEY, count BIGINT NOT NULL, last_at BIGINT NOT NULL
);
"#,
    ),
    (
        6,
        r#"
CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, status INTEGER NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX audit_by_target ON audit_log (target, seq);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE FUNCTION missive_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION missive_audit_log_append_only();
CREATE TABLE erased_identities (hash TEXT PRIMARY KEY, at BIGINT NOT NULL);
-- Data keys: exclude this table from long-lived dumps and back it up on its own, with a
-- short retention (crypto-shredding; see docs/privacy.md).
CREATE TABLE data_keys (
    profile_id TEXT PRIMARY KEY, master_key_id TEXT NOT NULL, wrapped TEXT NOT NULL, created_at BIGINT NOT NULL
);
CREATE INDEX events_by_time ON events (ts);
"#,
    ),
    (
        7,
        r#"
-- JSON keeps the text as written, key order included (Liquid iterates objects in the order
-- the client wrote them); JSONB reorders keys. Rows stored before keep JSONB's order.
ALTER TABLE events ALTER COLUMN body TYPE JSON USING body::json;
ALTER TABLE profiles ALTER COLUMN body TYPE JSON USING body::json;
ALTER TABLE profile_versions ALTER COLUMN diff TYPE JSON USING diff::json,
    ALTER COLUMN snapshot TYPE JSON USING snapshot::json;
ALTER TABLE documents ALTER COLUMN body TYPE JSON USING body::json;
ALTER TABLE journey_instances ALTER COLUMN context TYPE JSON USING context::json;
ALTER TABLE outbox ALTER COLUMN context TYPE JSON USING context::json;
"#,
    ),
];

const READERS: usize = 3;

/// Without one, an unreachable host would hang start-up for as long as TCP retries.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port/dbname`, for messages: never the whole URL, which may hold a password.
    target: String,
    /// Commits events; never waits for `checkpoint_writer`.
    event_writer: tokio::sync::Mutex<Writer<EventStatements>>,
    /// Commits checkpoints and bootstraps the workspace; holds the advisory writer lock.
    checkpoint_writer: tokio::sync::Mutex<Writer<CheckpointStatements>>,
    readers: Vec<Reader>,
    next_reader: AtomicUsize,
}

struct Writer<S> {
    client: Client,
    statements: S,
}

struct Reader {
    client: Client,
    statements: ReadStatements,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://…`), creating `schema` when given and
    /// missing and working in it, applies migrations and takes the writer lock.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("invalid postgres url: {}", with_causes(&e))))?;
        let target = describe_target(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("missive");
        }
        if let Some(schema) = schema {
            validate_schema_name(schema)?;
            let first = connect_one(&config, &target, "setup").await?;
            create_schema_if_missing(&first, schema)
                .await
                .map_err(|e| open_error(&target, "creating the schema", &e))?;
            // Every later connection works in the schema, whatever the server's default.
            let options = match config.get_options() {
                Some(existing) => format!("{existing} -c search_path=\"{schema}\""),
                None => format!("-c search_path=\"{schema}\""),
            };
            config.options(options);
        }

        // The lock first, then the migrations: only the process that holds it migrates.
        let mut checkpoint_writer = connect_one(&config, &target, "checkpoint writer").await?;
        take_writer_lock(&checkpoint_writer, &target).await?;
        migrate(&mut checkpoint_writer)
            .await
            .map_err(|e| open_error(&target, "migrating", &e))?;
        let statements = CheckpointStatements::prepare(&checkpoint_writer)
            .await
            .map_err(|e| open_error(&target, "preparing statements", &e))?;
        let checkpoint_writer = Writer {
            client: checkpoint_writer,
            statements,
        };

        let event_writer = connect_one(&config, &target, "event writer").await?;
        let statements = EventStatements::prepare(&event_writer)
            .await
            .map_err(|e| open_error(&target, "preparing statements", &e))?;
        let event_writer = Writer {
            client: event_writer,
            statements,
        };

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let client = connect_one(&config, &target, "reader").await?;
            let statements = ReadStatements::prepare(&client)
                .await
                .map_err(|e| open_error(&target, "preparing statements", &e))?;
            readers.push(Reader { client, statements });
        }
        tracing::info!(postgres = %target, "postgres store open");
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                event_writer: tokio::sync::Mutex::new(event_writer),
                checkpoint_writer: tokio::sync::Mutex::new(checkpoint_writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// Drops `schema` and everything in it (benchmarks clean up after themselves with it).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        validate_schema_name(schema)?;
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("invalid postgres url: {}", with_causes(&e))))?;
        let target = describe_target(&config);
        let client = connect_one(&config, &target, "cleanup").await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await?;
        Ok(())
    }

    /// Where the store is, as `host:port/dbname` (without credentials).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    fn reader(&self) -> &Reader {
        let i = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % self.inner.readers.len();
        &self.inner.readers[i]
    }
}

fn describe_target(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    match config.get_dbname() {
        Some(db) => format!("{hosts}/{db}"),
        None => hosts,
    }
}

/// The name goes unescaped into `search_path` and DDL, so only plain lowercase names pass.
fn validate_schema_name(schema: &str) -> Result<(), StoreError> {
    let plain = schema
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    // PostgreSQL would silently truncate a longer name.
    if schema.is_empty() || schema.len() > 63 || !plain {
        return Err(StoreError::Open(format!(
            "invalid postgres schema name {schema:?}: use 1 to 63 characters among a-z, 0-9 and _"
        )));
    }
    Ok(())
}

fn open_error(target: &str, step: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Open(format!("postgres at {target}: {step}: {}", with_causes(e)))
}

/// tokio-postgres keeps the detail (the refused connection, the server's message, the bad
/// option) in the error's sources, not in its `Display`.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

async fn connect_one(config: &Config, target: &str, role: &'static str) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| open_error(target, "connecting", &e))?;
    let target = target.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, connection = role, postgres = %target, "postgres connection failed");
        }
    });
    Ok(client)
}

async fn create_schema_if_missing(client: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    // Checked first so that a role without CREATE on the database can use a schema made for it.
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .try_get(0)?;
    if exists {
        return Ok(());
    }
    match client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await
    {
        Ok(()) => Ok(()),
        // Another process created it between the check and here.
        Err(e) if matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_SCHEMA) => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Takes the session advisory lock of the current schema on the checkpoint writer connection.
/// A stable key (md5, not a Rust hasher) so that every missive version agrees on it.
async fn take_writer_lock(writer: &Client, target: &str) -> Result<(), StoreError> {
    let row = writer
        .query_one(
            "SELECT current_schema(), pg_try_advisory_lock(
                 ('x' || substr(md5('missive.store.writer:' || current_schema()), 1, 16))::bit(64)::bigint)",
            &[],
        )
        .await
        .map_err(|e| open_error(target, "taking the writer lock", &e))?;
    let schema: Option<String> = row.try_get(0)?;
    let Some(schema) = schema else {
        return Err(StoreError::Open(format!(
            "postgres at {target}: no schema of the search_path exists"
        )));
    };
    let locked: bool = row.try_get(1)?;
    if !locked {
        return Err(StoreError::Locked(format!(
            "postgres schema {schema} at {target}"
        )));
    }
    Ok(())
}

async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
    let applied: i64 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await?
        .try_get(0)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &micros(Utc::now())],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "postgres migration applied");
    }
    Ok(())
}

/// The statements of a group commit of events, prepared once on the event writer connection.
/// Each takes its rows as parallel arrays, one per column.
struct EventStatements {
    insert_events: Statement,
    repoint_events: Statement,
}

impl EventStatements {
    async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        // ORDER BY ord: of two events with the same message id, the first is the one kept.
        let (insert_events, repoint_events) = tokio::try_join!(
            c.prepare(
                "INSERT INTO events (seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body)
                 SELECT seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body::json
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::bigint[], $8::bigint[], $9::text[])
                      WITH ORDINALITY AS e(seq, message_id, profile_id, origin_profile_id, kind, name, ts,
                                           received_at, body, ord)
                 ORDER BY ord
                 ON CONFLICT (message_id) DO NOTHING",
            ),
            c.prepare(
                "UPDATE events SET profile_id = m.into_id
                 FROM UNNEST($1::text[], $2::text[]) AS m(from_id, into_id)
                 WHERE events.profile_id = m.from_id",
            ),
        )?;
        Ok(Self {
            insert_events,
            repoint_events,
        })
    }
}

/// The statements of a checkpoint, prepared once on the checkpoint writer connection. Each
/// takes its rows as parallel arrays, one per column.
struct CheckpointStatements {
    repoint_identities: Statement,
    insert_merges: Statement,
    upsert_identities: Statement,
    upsert_profiles: Statement,
    insert_versions: Statement,
    set_through_seq: Statement,
}

impl CheckpointStatements {
    async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        let (
            repoint_identities,
            insert_merges,
            upsert_identities,
            upsert_profiles,
            insert_versions,
            set_through_seq,
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
        )?;
        Ok(Self {
            repoint_identities,
            insert_merges,
            upsert_identities,
            upsert_profiles,
            insert_versions,
            set_through_seq,
        })
    }
}

/// The columns every event query selects, in this order (see [`event_from_row`]).
const EVENT_COLUMNS: &str =
    "seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body";

const VERSION_COLUMNS: &str = "profile_id, version, recorded_at, cause, diff::text, snapshot::text";

/// The read statements, prepared once on each reader connection.
struct ReadStatements {
    workspace: Statement,
    api_key_by_hash: Statement,
    existing_message_ids: Statement,
    last_event_seq: Statement,
    events_after: Statement,
    resolve_identities: Statement,
    load_profile: Statement,
    profile_events: Statement,
    profile_versions: Statement,
    versions_for_as_of: Statement,
    merges_of: Statement,
    stats: Statement,
}

impl ReadStatements {
    async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
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

const INSTANCE_COLUMNS: &str = "id, journey, journey_version, profile_id, key, step, status, wake_at, waiting_for, context, entered_at, updated_at";

fn instance_from_row(row: &Row) -> Result<JourneyInstance, StoreError> {
    let profile: &str = row.try_get(3)?;
    let status: &str = row.try_get(6)?;
    let wake_at: Option<i64> = row.try_get(7)?;
    Ok(JourneyInstance {
        id: row.try_get(0)?,
        journey: row.try_get(1)?,
        journey_version: row.try_get(2)?,
        profile_id: ProfileId::parse(profile).map_err(|e| corrupt("instance profile id", e))?,
        key: row.try_get(4)?,
        step: row.try_get(5)?,
        status: InstanceStatus::parse(status).ok_or_else(|| corrupt("instance status", status))?,
        wake_at: wake_at.map(from_micros),
        waiting_for: row.try_get(8)?,
        context: row.try_get(9)?,
        entered_at: from_micros(row.try_get(10)?),
        updated_at: from_micros(row.try_get(11)?),
    })
}

const OUTBOX_COLUMNS: &str = "id, idempotency_key, profile_id, template, class, source, context, status, attempts, next_attempt_at, created_at, sent_at, recipient, detail";

fn outbox_from_row(row: &Row) -> Result<OutboxMessage, StoreError> {
    let profile: &str = row.try_get(2)?;
    let status: &str = row.try_get(7)?;
    let attempts: i64 = row.try_get(8)?;
    let sent_at: Option<i64> = row.try_get(11)?;
    Ok(OutboxMessage {
        id: row.try_get(0)?,
        idempotency_key: row.try_get(1)?,
        profile_id: ProfileId::parse(profile).map_err(|e| corrupt("outbox profile id", e))?,
        template: row.try_get(3)?,
        class: row.try_get(4)?,
        source: row.try_get(5)?,
        context: row.try_get(6)?,
        status: OutboxStatus::parse(status).ok_or_else(|| corrupt("outbox status", status))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: from_micros(row.try_get(9)?),
        created_at: from_micros(row.try_get(10)?),
        sent_at: sent_at.map(from_micros),
        recipient: row.try_get(12)?,
        detail: row.try_get(13)?,
    })
}

fn document_from_row(kind: DocumentKind, row: &Row) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        kind,
        name: row.try_get(0)?,
        version: row.try_get(1)?,
        body: row.try_get(2)?,
        updated_at: from_micros(row.try_get(3)?),
    })
}

fn api_key_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let role: &str = row.try_get(1)?;
    let revoked: Option<i64> = row.try_get(5)?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::parse(row.try_get(0)?).map_err(|e| corrupt("api key id", e))?,
        role: Role::parse(role).ok_or_else(|| corrupt("api key role", role))?,
        secret_hash: row.try_get(2)?,
        label: row.try_get(3)?,
        created_at: from_micros(row.try_get(4)?),
        revoked_at: revoked.map(from_micros),
    })
}

fn data_key_row(row: &Row) -> Result<DataKeyRecord, StoreError> {
    Ok(DataKeyRecord {
        profile_id: ProfileId::parse(row.try_get(0)?).map_err(|e| corrupt("data key profile id", e))?,
        master_key_id: row.try_get(1)?,
        wrapped: row.try_get(2)?,
        created_at: from_micros(row.try_get(3)?),
    })
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// An event from a row of [`EVENT_COLUMNS`].
fn event_from_row(row: &Row) -> Result<StoredEvent, StoreError> {
    let kind: &str = row.try_get(4)?;
    Ok(StoredEvent {
        seq: row.try_get(0)?,
        message_id: MessageId::parse(row.try_get(1)?).map_err(|e| corrupt("event message id", e))?,
        profile_id: ProfileId::parse(row.try_get(2)?).map_err(|e| corrupt("event profile id", e))?,
        origin_profile_id: ProfileId::parse(row.try_get(3)?)
            .map_err(|e| corrupt("event origin profile id", e))?,
        kind: EventKind::parse(kind).ok_or_else(|| corrupt("event kind", kind))?,
        name: row.try_get(5)?,
        timestamp: from_micros(row.try_get(6)?),
        received_at: from_micros(row.try_get(7)?),
        body: row.try_get(8)?,
    })
}

fn version_from_row(row: &Row) -> Result<ProfileVersion, StoreError> {
    let version: i64 = row.try_get(1)?;
    let diff: &str = row.try_get(4)?;
    let snapshot: Option<&str> = row.try_get(5)?;
    Ok(ProfileVersion {
        profile_id: ProfileId::parse(row.try_get(0)?).map_err(|e| corrupt("version profile id", e))?,
        version: version as u64,
        recorded_at: from_micros(row.try_get(2)?),
        cause: row.try_get(3)?,
        diff: serde_json::from_str(diff)?,
        snapshot: snapshot.map(serde_json::from_str).transpose()?,
    })
}

/// The re-pointing that applying `merges` (`(from, into)` pairs) one after another amounts to,
/// as (from, to) columns: every profile some merge moves rows away from, with the profile its
/// rows end up in. One UPDATE per table with these pairs does what one UPDATE per merge, in
/// order, does, chains (a→b then b→c) included.
fn net_repointing<'a, I>(merges: I) -> (Vec<&'a str>, Vec<&'a str>)
where
    I: IntoIterator<Item = (&'a ProfileId, &'a ProfileId)>,
    I::IntoIter: DoubleEndedIterator,
{
    // Built from the last merge back: `dest[x]` is where the merges after the current one
    // take rows of x (x absent: they stay).
    let mut dest: BTreeMap<&str, &str> = BTreeMap::new();
    for (from, into) in merges.into_iter().rev() {
        let into = into.as_str();
        let end = dest.get(into).copied().unwrap_or(into);
        dest.insert(from.as_str(), end);
    }
    dest.into_iter().filter(|(from, to)| from != to).unzip()
}

/// The items whose key does not come again later, in order. Upserting them in one statement
/// leaves what upserting all the items one by one would (the last write wins), where
/// PostgreSQL refuses to upsert the same row twice in one statement.
fn last_per_key<'a, T, K: Eq + Hash>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let last: HashMap<K, usize> = items.iter().enumerate().map(|(i, item)| (key(item), i)).collect();
    items
        .iter()
        .enumerate()
        .filter(|(i, item)| last.get(&key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

/// Runs `statement` in `tx` unless it has no rows to write. Sends on first poll, so that
/// polling several of these together pipelines them in the order they are listed.
async fn execute_unless_empty(
    tx: &Transaction<'_>,
    statement: &Statement,
    empty: bool,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if empty {
        return Ok(0);
    }
    tx.execute(statement, params).await
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn workspace(&self) -> Result<Option<Workspace>, StoreError> {
        let r = self.reader();
        let Some(row) = r.client.query_opt(&r.statements.workspace, &[]).await? else {
            return Ok(None);
        };
        Ok(Some(Workspace {
            id: WorkspaceId::parse(row.try_get(0)?).map_err(|e| corrupt("workspace id", e))?,
            name: row.try_get(1)?,
            created_at: from_micros(row.try_get(2)?),
        }))
    }

    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError> {
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        let roles: Vec<&str> = keys.iter().map(|k| k.role.as_str()).collect();
        let hashes: Vec<&str> = keys.iter().map(|k| k.secret_hash.as_str()).collect();
        let labels: Vec<&str> = keys.iter().map(|k| k.label.as_str()).collect();
        let created: Vec<i64> = keys.iter().map(|k| micros(k.created_at)).collect();

        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        // The writer lock makes this check and the insert atomic: no other process writes.
        let exists: i64 = tx
            .query_one("SELECT COUNT(*) FROM workspaces", &[])
            .await?
            .try_get(0)?;
        if exists > 0 {
            return Err(StoreError::Conflict("a workspace exists already".into()));
        }
        tx.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)",
            &[&ws.id.as_str(), &ws.name, &micros(ws.created_at)],
        )
        .await?;
        tx.execute(
            "INSERT INTO api_keys (id, role, secret_hash, label, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])",
            &[&ids, &roles, &hashes, &labels, &created],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let r = self.reader();
        let Some(row) = r
            .client
            .query_opt(&r.statements.api_key_by_hash, &[&secret_hash])
            .await?
        else {
            return Ok(None);
        };
        api_key_row(&row).map(Some)
    }

    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        row.as_ref().map(api_key_row).transpose()
    }

    async fn create_api_key(&self, k: ApiKeyRecord) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &k.id.as_str(),
                    &k.role.as_str(),
                    &k.secret_hash,
                    &k.label,
                    &micros(k.created_at),
                ],
            )
            .await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
                &[],
            )
            .await?;
        rows.iter().map(api_key_row).collect()
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        let n = writer
            .client
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id.as_str(), &micros(at)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let at: Vec<i64> = entries.iter().map(|e| micros(e.at)).collect();
        let actor: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
        let role: Vec<&str> = entries.iter().map(|e| e.role.as_str()).collect();
        let action: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        let target: Vec<&str> = entries.iter().map(|e| e.target.as_str()).collect();
        let status: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
        let detail: Vec<&str> = entries.iter().map(|e| e.detail.as_str()).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO audit_log (at, actor, role, action, target, status, detail)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[])",
                &[&at, &actor, &role, &action, &target, &status, &detail],
            )
            .await?;
        Ok(())
    }

    async fn audit_entries(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT seq, at, actor, role, action, target, status, detail FROM audit_log
                 WHERE seq < $1 AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR target = $3)
                   AND ($4::text IS NULL OR action = $4)
                 ORDER BY seq DESC LIMIT $5",
                &[
                    &q.before_seq.unwrap_or(i64::MAX),
                    &q.actor,
                    &q.target,
                    &q.action,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let status: i32 = row.try_get(6)?;
                Ok(AuditEntry {
                    seq: row.try_get(0)?,
                    at: from_micros(row.try_get(1)?),
                    actor: row.try_get(2)?,
                    role: row.try_get(3)?,
                    action: row.try_get(4)?,
                    target: row.try_get(5)?,
                    status: u16::try_from(status).unwrap_or(0),
                    detail: row.try_get(7)?,
                })
            })
            .collect()
    }

    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = keys.iter().map(|k| k.profile_id.as_str()).collect();
        let masters: Vec<&str> = keys.iter().map(|k| k.master_key_id.as_str()).collect();
        let wrapped: Vec<&str> = keys.iter().map(|k| k.wrapped.as_str()).collect();
        let at: Vec<i64> = keys.iter().map(|k| micros(k.created_at)).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO data_keys (profile_id, master_key_id, wrapped, created_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (profile_id) DO NOTHING",
                &[&ids, &masters, &wrapped, &at],
            )
            .await?;
        Ok(())
    }

    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id = ANY($1::text[])",
                &[&ids],
            )
            .await?;
        rows.iter()
            .map(|row| data_key_row(row).map(|k| (k.profile_id.clone(), k)))
            .collect()
    }

    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError> {
        let after = after.map(|a| a.as_str().to_owned()).unwrap_or_default();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id COLLATE \"C\" > $1
                 ORDER BY profile_id COLLATE \"C\" LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(data_key_row).collect()
    }

    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        let ids: Vec<&str> = keys.iter().map(|k| k.profile_id.as_str()).collect();
        let masters: Vec<&str> = keys.iter().map(|k| k.master_key_id.as_str()).collect();
        let wrapped: Vec<&str> = keys.iter().map(|k| k.wrapped.as_str()).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "UPDATE data_keys d SET master_key_id = u.m, wrapped = u.w
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(p, m, w) WHERE d.profile_id = u.p",
                &[&ids, &masters, &wrapped],
            )
            .await?;
        Ok(())
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

    async fn commit_events(&self, batch: EventBatch) -> Result<(), StoreError> {
        if batch.events.is_empty() && batch.repoint.is_empty() {
            return Ok(());
        }
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

        let event_params: [&(dyn ToSql + Sync); 9] = [
            &ev_seqs,
            &ev_message_ids,
            &ev_profile_ids,
            &ev_origins,
            &ev_kinds,
            &ev_names,
            &ev_ts,
            &ev_received,
            &ev_bodies,
        ];
        let repoint_params: [&(dyn ToSql + Sync); 2] = [&repoint_from, &repoint_to];

        let mut writer = self.inner.event_writer.lock().await;
        let Writer {
            client,
            statements: s,
        } = &mut *writer;
        let tx = client.transaction().await?;
        // One round trip for both; PostgreSQL still runs them one after the other, inserts
        // first. On an error the transaction rolls back as `tx` drops.
        tokio::try_join!(
            execute_unless_empty(&tx, &s.insert_events, events.is_empty(), &event_params),
            execute_unless_empty(&tx, &s.repoint_events, repoint_from.is_empty(), &repoint_params),
        )?;
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

        let mut writer = self.inner.checkpoint_writer.lock().await;
        let Writer {
            client,
            statements: s,
        } = &mut *writer;
        let tx = client.transaction().await?;
        // One round trip for all of them; PostgreSQL still runs them one after another, in
        // the order the trait documents. On an error the transaction rolls back as `tx` drops.
        tokio::try_join!(
            execute_unless_empty(
                &tx,
                &s.repoint_identities,
                repoint_from.is_empty(),
                &repoint_params
            ),
            execute_unless_empty(&tx, &s.insert_merges, merges.is_empty(), &merge_params),
            execute_unless_empty(&tx, &s.upsert_identities, identities.is_empty(), &identity_params),
            execute_unless_empty(&tx, &s.upsert_profiles, profiles.is_empty(), &profile_params),
            execute_unless_empty(&tx, &s.insert_versions, versions.is_empty(), &version_params),
            execute_unless_empty(&tx, &s.set_through_seq, false, &through_params),
        )?;
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
        tx.commit().await?;
        Ok(())
    }

    async fn save_segment(&self, seg: SegmentRecord) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO segments (name, expression, created_at, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET expression = excluded.expression, updated_at = excluded.updated_at",
                &[&seg.name, &seg.expression, &micros(seg.created_at), &micros(seg.updated_at)],
            )
            .await?;
        Ok(())
    }

    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let n = tx
            .execute("DELETE FROM segments WHERE name = $1", &[&name])
            .await?;
        tx.execute("DELETE FROM segment_members WHERE segment = $1", &[&name])
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT name, expression, created_at, updated_at FROM segments ORDER BY name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SegmentRecord {
                    name: row.try_get(0)?,
                    expression: row.try_get(1)?,
                    created_at: from_micros(row.try_get(2)?),
                    updated_at: from_micros(row.try_get(3)?),
                })
            })
            .collect()
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

    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError> {
        // One statement for the whole batch; a name given twice keeps its last body, as if
        // saved in order.
        let mut last: BTreeMap<(&str, &str), &DocumentRecord> = BTreeMap::new();
        for d in &docs {
            last.insert((d.kind.as_str(), d.name.as_str()), d);
        }
        let (mut kinds, mut names, mut bodies, mut times) = (vec![], vec![], vec![], vec![]);
        for d in last.values() {
            kinds.push(d.kind.as_str());
            names.push(d.name.as_str());
            bodies.push(&d.body);
            times.push(micros(d.updated_at));
        }
        let writer = self.inner.checkpoint_writer.lock().await;
        let rows = writer
            .client
            .query(
                "INSERT INTO documents (kind, name, version, body, updated_at)
                 SELECT k, n, 1, b, t FROM UNNEST($1::text[], $2::text[], $3::json[], $4::bigint[]) AS u(k, n, b, t)
                 ON CONFLICT (kind, name) DO UPDATE SET version = documents.version + 1,
                     body = excluded.body, updated_at = excluded.updated_at
                 RETURNING kind, name, version",
                &[&kinds, &names, &bodies, &times],
            )
            .await?;
        drop(writer);
        let mut versions: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            versions.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
        docs.iter()
            .map(|d| {
                versions
                    .get(&(d.kind.as_str().to_string(), d.name.clone()))
                    .copied()
                    .ok_or_else(|| corrupt("document version", "not returned"))
            })
            .collect()
    }

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = $1 AND name = $2",
                &[&kind.as_str(), &name],
            )
            .await?;
        row.map(|row| document_from_row(kind, &row)).transpose()
    }

    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = $1 AND name COLLATE \"C\" > $2
                 ORDER BY name COLLATE \"C\" LIMIT $3",
                &[&kind.as_str(), &after.unwrap_or_default(), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(|row| document_from_row(kind, row)).collect()
    }

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        let n = writer
            .client
            .execute(
                "DELETE FROM documents WHERE kind = $1 AND name = $2",
                &[&kind.as_str(), &name],
            )
            .await?;
        Ok(n > 0)
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

    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &init],
            )
            .await?;
        let row = writer
            .client
            .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }

    async fn commit_journey(&self, commit: JourneyCommit) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        if !commit.instances.is_empty() {
            let upsert = tx
                .prepare(
                    "INSERT INTO journey_instances (id, journey, journey_version, profile_id, key, step, status,
                         wake_at, waiting_for, context, entered_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status,
                         wake_at = excluded.wake_at, waiting_for = excluded.waiting_for,
                         context = excluded.context, updated_at = excluded.updated_at",
                )
                .await?;
            for i in &commit.instances {
                tx.execute(
                    &upsert,
                    &[
                        &i.id,
                        &i.journey,
                        &i.journey_version,
                        &i.profile_id.as_str(),
                        &i.key,
                        &i.step,
                        &i.status.as_str(),
                        &i.wake_at.map(micros),
                        &i.waiting_for,
                        &i.context,
                        &micros(i.entered_at),
                        &micros(i.updated_at),
                    ],
                )
                .await?;
            }
        }
        if !commit.outbox.is_empty() {
            let insert = tx
                .prepare(
                    "INSERT INTO outbox (id, idempotency_key, profile_id, template, class, source, context, status,
                         attempts, next_attempt_at, created_at, sent_at, recipient, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            for m in &commit.outbox {
                tx.execute(
                    &insert,
                    &[
                        &m.id,
                        &m.idempotency_key,
                        &m.profile_id.as_str(),
                        &m.template,
                        &m.class,
                        &m.source,
                        &m.context,
                        &m.status.as_str(),
                        &i64::from(m.attempts),
                        &micros(m.next_attempt_at),
                        &micros(m.created_at),
                        &m.sent_at.map(micros),
                        &m.recipient,
                        &m.detail,
                    ],
                )
                .await?;
            }
        }
        if let Some(seq) = commit.events_through {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('journeys_through_seq', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&seq.to_string()],
            )
            .await?;
        }
        if let Some(seq) = commit.segments_through {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('journeys_segments_through', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&seq.to_string()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn journey_events_through(&self) -> Result<i64, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt("SELECT value FROM meta WHERE key = 'journeys_through_seq'", &[])
            .await?;
        match row {
            Some(row) => {
                let v: String = row.try_get(0)?;
                v.parse().map_err(|e| corrupt("journeys_through_seq", e))
            }
            None => Ok(0),
        }
    }

    async fn journey_segments_through(&self) -> Result<i64, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT value FROM meta WHERE key = 'journeys_segments_through'",
                &[],
            )
            .await?;
        match row {
            Some(row) => {
                let v: String = row.try_get(0)?;
                v.parse().map_err(|e| corrupt("journeys_segments_through", e))
            }
            None => Ok(0),
        }
    }

    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE profile_id = $1 AND status = 'active'
                     ORDER BY entered_at, id COLLATE \"C\""
                ),
                &[&profile.as_str()],
            )
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn due_instances(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM journey_instances
                     WHERE status = 'active' AND wake_at IS NOT NULL AND wake_at <= $1
                     ORDER BY wake_at, id COLLATE \"C\" LIMIT $2"
                ),
                &[&micros(now), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_one(
                "SELECT MIN(wake_at) FROM journey_instances WHERE status = 'active' AND wake_at IS NOT NULL",
                &[],
            )
            .await?;
        let v: Option<i64> = row.try_get(0)?;
        Ok(v.map(from_micros))
    }

    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE journey = $1
                     ORDER BY entered_at DESC, id COLLATE \"C\" DESC LIMIT $2"
                ),
                &[&journey, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn due_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1
                     ORDER BY next_attempt_at, id COLLATE \"C\" LIMIT $2"
                ),
                &[&micros(now), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let stmt = tx
            .prepare(
                "UPDATE outbox SET status = $2, attempts = $3, next_attempt_at = $4, sent_at = $5,
                     recipient = $6, detail = $7 WHERE id = $1 AND status = 'queued'",
            )
            .await?;
        for m in &messages {
            tx.execute(
                &stmt,
                &[
                    &m.id,
                    &m.status.as_str(),
                    &i64::from(m.attempts),
                    &micros(m.next_attempt_at),
                    &m.sent_at.map(micros),
                    &m.recipient,
                    &m.detail,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(outbox_from_row).transpose()
    }

    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE profile_id = $1
                     ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $2"
                ),
                &[&profile.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn marketing_sent_since(
        &self,
        profile: &ProfileId,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_one(
                "SELECT COUNT(*) FROM outbox WHERE profile_id = $1 AND class = 'marketing' AND status = 'sent'
                 AND sent_at >= $2",
                &[&profile.as_str(), &micros(since)],
            )
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn suppress(&self, s: Suppression) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO suppressions (address_hash, reason, detail, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (address_hash) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, at = excluded.at",
                &[&s.address_hash, &s.reason, &s.detail, &micros(s.at)],
            )
            .await?;
        Ok(())
    }

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT address_hash, reason, detail, at FROM suppressions WHERE address_hash = $1",
                &[&address_hash],
            )
            .await?;
        row.map(|row| {
            Ok(Suppression {
                address_hash: row.try_get(0)?,
                reason: row.try_get(1)?,
                detail: row.try_get(2)?,
                at: from_micros(row.try_get(3)?),
            })
        })
        .transpose()
    }

    async fn outbox_counts(&self, source: &str) -> Result<OutboxCounts, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT status, COUNT(*) FROM outbox WHERE source = $1 GROUP BY status",
                &[&source],
            )
            .await?;
        let mut counts = OutboxCounts::default();
        for row in &rows {
            let status: &str = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            counts.add(status, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    async fn skip_queued(&self, source: &str, detail: &str) -> Result<u64, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        Ok(writer
            .client
            .execute(
                "UPDATE outbox SET status = 'skipped', detail = $2 WHERE source = $1 AND status = 'queued'",
                &[&source, &detail],
            )
            .await?)
    }

    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        let row = writer
            .client
            .query_one(
                "INSERT INTO soft_bounces (address_hash, count, last_at) VALUES ($1, 1, $2)
                 ON CONFLICT (address_hash) DO UPDATE SET count = soft_bounces.count + 1, last_at = excluded.last_at
                 RETURNING count",
                &[&address_hash, &micros(at)],
            )
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let r = self.reader();
        let row = r.client.query_one(&r.statements.last_event_seq, &[]).await?;
        Ok(row.try_get(0)?)
    }

    async fn profile_checkpoint(&self) -> Result<i64, StoreError> {
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
                let kind: &str = row.try_get(0)?;
                let key = IdentityKey {
                    kind: IdentityKind::parse(kind).ok_or_else(|| corrupt("identity kind", kind))?,
                    value: row.try_get(1)?,
                };
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
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use missive_core::ProfileId;

    use super::*;

    fn merge(from: &ProfileId, into: &ProfileId) -> MergeRecord {
        MergeRecord {
            from: from.clone(),
            into: into.clone(),
            at: DateTime::<Utc>::UNIX_EPOCH,
            cause: "test".into(),
        }
    }

    fn pairs(merges: &[MergeRecord]) -> Vec<(String, String)> {
        let (from, to) = net_repointing(merges.iter().map(|m| (&m.from, &m.into)));
        let mut pairs: Vec<_> = from
            .into_iter()
            .zip(to)
            .map(|(f, t)| (f.to_owned(), t.to_owned()))
            .collect();
        pairs.sort();
        pairs
    }

    fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
        v.sort();
        v
    }

    #[test]
    fn a_chain_of_merges_in_one_batch_repoints_every_source_to_the_end() {
        let (a, b, c) = (
            ProfileId::generate(),
            ProfileId::generate(),
            ProfileId::generate(),
        );
        let s = |p: &ProfileId| p.as_str().to_owned();
        assert_eq!(
            pairs(&[merge(&a, &b), merge(&b, &c)]),
            sorted(vec![(s(&a), s(&c)), (s(&b), s(&c))])
        );
        // The other way round, a's rows moved to b after b's rows had left: they stay in b.
        assert_eq!(
            pairs(&[merge(&b, &c), merge(&a, &b)]),
            sorted(vec![(s(&a), s(&b)), (s(&b), s(&c))])
        );
    }

    #[test]
    fn merges_that_come_back_leave_the_returning_profile_in_place() {
        let (a, b) = (ProfileId::generate(), ProfileId::generate());
        let s = |p: &ProfileId| p.as_str().to_owned();
        // a→b then b→a: a's rows end in a (no update), b's rows end in a.
        assert_eq!(pairs(&[merge(&a, &b), merge(&b, &a)]), vec![(s(&b), s(&a))]);
    }

    #[test]
    fn last_per_key_keeps_the_last_write_of_each_key_in_order() {
        let items = [("x", 1), ("y", 2), ("x", 3), ("z", 4)];
        assert_eq!(
            last_per_key(&items, |(k, _)| *k),
            [&("y", 2), &("x", 3), &("z", 4)]
        );
    }

    #[test]
    fn schema_names_are_plain_lowercase() {
        assert!(validate_schema_name("test_0a").is_ok());
        for bad in ["", "Test", "a-b", "a;drop", "a\"b", &"a".repeat(64)] {
            assert!(
                matches!(validate_schema_name(bad), Err(StoreError::Open(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_target_names_host_port_and_database_without_the_password() {
        let config: Config = "postgres://alice:s3cret@db.example:6543/missive".parse().unwrap();
        assert_eq!(describe_target(&config), "db.example:6543/missive");
    }

    /// Runs only when `MISSIVE_TEST_POSTGRES_URL` names a server, as the conformance suite does.
    #[tokio::test]
    async fn a_second_writer_on_the_same_schema_is_refused() {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            return;
        };
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let first = PostgresStore::connect(&url, Some(&schema)).await.unwrap();
        let second = PostgresStore::connect(&url, Some(&schema)).await;
        assert!(matches!(second, Err(StoreError::Locked(_))), "{:?}", second.err());
        // Another schema of the same database has its own lock.
        let other = PostgresStore::connect(&url, Some(&format!("{schema}_b"))).await;
        assert!(other.is_ok(), "{:?}", other.err());
        drop(first);
    }

    /// Runs only when `MISSIVE_TEST_POSTGRES_URL` names a server, as the conformance suite does.
    #[tokio::test]
    async fn events_commit_while_a_checkpoint_transaction_is_open() {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            return;
        };
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let store = PostgresStore::connect(&url, Some(&schema)).await.unwrap();
        let (a, b) = (ProfileId::generate(), ProfileId::generate());
        let now = Utc::now();
        let event = |seq: i64, id: &str, profile: &ProfileId| StoredEvent {
            seq,
            message_id: MessageId::parse(id).unwrap(),
            profile_id: profile.clone(),
            origin_profile_id: profile.clone(),
            kind: EventKind::Track,
            name: "Signed Up".into(),
            timestamp: now,
            received_at: now,
            body: serde_json::json!({"messageId": id}),
        };

        // A checkpoint in progress: its writer is busy, in a transaction that has written.
        let mut checkpoint = store.inner.checkpoint_writer.lock().await;
        let tx = checkpoint.client.transaction().await.unwrap();
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('profiles_through_seq', '1')",
            &[],
        )
        .await
        .unwrap();

        let batch = EventBatch {
            events: vec![event(1, "m-1", &a), event(2, "m-2", &b)],
            repoint: vec![(b.clone(), a.clone())],
        };
        tokio::time::timeout(Duration::from_secs(5), store.commit_events(batch))
            .await
            .expect("commit_events waited for the checkpoint writer")
            .unwrap();
        assert_eq!(store.last_event_seq().await.unwrap(), 2);
        assert_eq!(store.profile_checkpoint().await.unwrap(), 0);
        let stored = store.events_after(0, 10).await.unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|e| (e.profile_id.clone(), e.origin_profile_id.clone()))
                .collect::<Vec<_>>(),
            [(a.clone(), a.clone()), (a.clone(), b.clone())]
        );

        tx.commit().await.unwrap();
        drop(checkpoint);
        assert_eq!(store.profile_checkpoint().await.unwrap(), 1);
        drop(store);
        PostgresStore::drop_schema(&url, &schema).await.unwrap();
    }
}
