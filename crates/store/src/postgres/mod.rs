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
//! [`StoreError::Database`] and the process is expected to restart.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use missive_core::{
    ApiKeyId, EventKind, IdentityKey, IdentityKind, MessageId, Profile, ProfileId, WorkspaceId,
};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement, Transaction};

use crate::migrations::{Migration, pending};
use crate::types::{SchemaRow, from_micros, micros, observed_columns};
use crate::{
    ActivityCount, ActivityMetric, ApiKeyRecord, AuditEntry, AuditQuery, Checkpoint, DataKeyRecord,
    DocumentKind, DocumentRecord, ErasureCounts, EventBatch, EventQuery, InstanceStatus, JourneyCommit,
    JourneyInstance, MergeRecord, OutboxCounts, OutboxMessage, OutboxStatus, ProfileVersion, Role,
    SegmentChange, SegmentRecord, SegmentSize, StoreError, StoreStats, StoredEvent, Suppression, Workspace,
};
use missive_core::schema::{Declared, FieldKey, StoredField};

const MIGRATIONS: &[Migration] = &[
    migration!(1, "postgres/0001.sql"),
    migration!(2, "postgres/0002.sql"),
    migration!(3, "postgres/0003.sql"),
    migration!(4, "postgres/0004.sql"),
    migration!(5, "postgres/0005.sql"),
    migration!(6, "postgres/0006.sql"),
    migration!(7, "postgres/0007.sql"),
    migration!(8, "postgres/0008.sql"),
    migration!(9, "postgres/0009.sql"),
    migration!(10, "postgres/0010.sql"),
    migration!(11, "postgres/0011.sql"),
    migration!(12, "postgres/0012.sql"),
    migration!(13, "postgres/0013.sql"),
    migration!(14, "postgres/0014.sql"),
    migration!(15, "postgres/0015.sql"),
    migration!(16, "postgres/0016.sql"),
    migration!(17, "postgres/0017.sql"),
    migration!(18, "postgres/0018.sql"),
    migration!(19, "postgres/0019.sql"),
    migration!(20, "postgres/0020.sql"),
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
    /// Opened as a cluster node ([`PostgresStore::connect_cluster`]).
    clustered: bool,
    /// Cluster mode: the service lease this node's journey and outbox writes are made under
    /// (`None`: this node does not hold it, and they are refused).
    leader: std::sync::RwLock<Option<crate::LeaderFence>>,
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
        Self::open(url, schema, Sharing::SingleWriter).await
    }

    /// [`Self::connect`] for a cluster node (docs/ARCHITECTURE.md, "Cluster mode"): several
    /// processes write the schema at once, each only under its partitions' fences, so no
    /// writer lock is held. It is refused while an embedded-mode process holds the schema, and
    /// migrations run under a lock of their own.
    pub async fn connect_cluster(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        Self::open(url, schema, Sharing::Cluster).await
    }

    async fn open(url: &str, schema: Option<&str>, sharing: Sharing) -> Result<Self, StoreError> {
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
        take_writer_lock(&checkpoint_writer, &target, sharing).await?;
        if sharing == Sharing::Cluster {
            checkpoint_writer
                .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .await
                .map_err(|e| open_error(&target, "taking the migration lock", &e))?;
        }
        let migrated = migrate(&mut checkpoint_writer)
            .await
            .map_err(|e| open_error(&target, "migrating", &e));
        if sharing == Sharing::Cluster {
            checkpoint_writer
                .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .await
                .map_err(|e| open_error(&target, "releasing the migration lock", &e))?;
        }
        migrated?;
        check_cluster_use(&checkpoint_writer, &target, sharing).await?;
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
                clustered: sharing == Sharing::Cluster,
                leader: std::sync::RwLock::new(None),
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

/// Whether a process is the schema's only writer (the embedded mode) or one node of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    SingleWriter,
    Cluster,
}

/// The key of the advisory lock cluster nodes migrate under (one at a time), per schema.
const MIGRATION_LOCK: &str =
    "('x' || substr(md5('missive.store.migrate:' || current_schema()), 1, 16))::bit(64)::bigint";

/// A schema is written either by one embedded-mode process or by a cluster's nodes, never
/// both: a single writer refuses a schema a cluster has used, whose profiles are folded by
/// partition owners it would not fence against.
async fn check_cluster_use(client: &Client, target: &str, sharing: Sharing) -> Result<(), StoreError> {
    if sharing == Sharing::Cluster {
        // The other way round: events the embedded mode numbered would collide with the
        // log's sequence numbers, and their identities have no routes.
        let embedded: bool = client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM cluster_meta WHERE key = 'partitions')
                    AND EXISTS (SELECT 1 FROM events)",
                &[],
            )
            .await
            .map_err(|e| open_error(target, "checking for embedded-mode data", &e))?
            .try_get(0)?;
        if embedded {
            return Err(StoreError::Open(format!(
                "postgres at {target}: this schema holds events written in the embedded mode; a \
                 cluster starts on an empty schema (docs/operations.md: replay the events into it)"
            )));
        }
        return Ok(());
    }
    let used: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM cluster_meta WHERE key = 'partitions')",
            &[],
        )
        .await
        .map_err(|e| open_error(target, "checking for a cluster", &e))?
        .try_get(0)?;
    if used {
        return Err(StoreError::Open(format!(
            "postgres at {target}: this schema belongs to a cluster (cluster_meta); start the \
             nodes with `missive serve --cluster`, or use another schema"
        )));
    }
    Ok(())
}

/// Takes the session advisory lock of the current schema on the checkpoint writer connection.
/// A stable key (md5, not a Rust hasher) so that every missive version agrees on it.
/// A cluster node takes it shared: nodes hold it together, and an embedded-mode process,
/// which takes it alone, cannot start beside them (nor they beside it).
async fn take_writer_lock(writer: &Client, target: &str, sharing: Sharing) -> Result<(), StoreError> {
    let lock = match sharing {
        Sharing::SingleWriter => "pg_try_advisory_lock",
        Sharing::Cluster => "pg_try_advisory_lock_shared",
    };
    let row = writer
        .query_one(
            &format!(
                "SELECT current_schema(), {lock}(
                 ('x' || substr(md5('missive.store.writer:' || current_schema()), 1, 16))::bit(64)::bigint)"
            ),
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
    for m in pending(MIGRATIONS, applied) {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&m.version, &micros(Utc::now())],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, "postgres migration applied");
    }
    Ok(())
}

/// The migration list of this backend, for the numbering check.
#[cfg(test)]
pub(crate) fn migration_lists() -> Vec<(&'static str, &'static [Migration])> {
    vec![("postgres", MIGRATIONS)]
}

mod access;
mod backfills;
mod cluster;
mod data_keys;
mod delivery;
mod documents;
mod events;
mod rows;
mod statements;
mod webhooks;

use statements::*;

impl crate::Backend for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::rows::{last_per_key, net_repointing};
    use crate::EventStore;
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
            ..EventBatch::default()
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
