//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, so that a committed
//! transaction survives a crash of the process or of the machine.
//!
//! Two database files, so that their writers never wait for each other: `missive.db` holds
//! the workspace, keys, profiles, identities, versions and merges; `missive.events.db` holds
//! the event log. Events are committed at every group commit, profiles at checkpoints, and
//! both run at once. rusqlite is synchronous; every call runs on tokio's blocking pool, with
//! one writer connection per file and a few reader connections, which WAL lets read while
//! the writer writes.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::{
    ApiKeyId, EventKind, IdentityKey, IdentityKind, MessageId, Profile, ProfileId, WorkspaceId,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

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
CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER
);
CREATE TABLE profiles (
    id TEXT PRIMARY KEY, version INTEGER NOT NULL, merged_into TEXT,
    updated_at INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX identities_by_profile ON identities (profile_id);
-- A rowid table: versions are appended in commit order; the index finds a profile's.
CREATE TABLE profile_versions (
    profile_id TEXT NOT NULL, version INTEGER NOT NULL, recorded_at INTEGER NOT NULL,
    cause TEXT NOT NULL, diff TEXT NOT NULL, snapshot TEXT
);
CREATE UNIQUE INDEX profile_versions_by_profile ON profile_versions (profile_id, version);
CREATE TABLE merges (
    from_id TEXT NOT NULL, into_id TEXT NOT NULL, at INTEGER NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX merges_from ON merges (from_id);
CREATE INDEX merges_into ON merges (into_id);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE segments (
    name TEXT PRIMARY KEY, expression TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
);
CREATE TABLE segment_members (
    segment TEXT NOT NULL, profile_id TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (segment, profile_id)
) WITHOUT ROWID;
CREATE TABLE segment_changes (
    profile_id TEXT NOT NULL, segment TEXT NOT NULL, entered INTEGER NOT NULL, at INTEGER NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX segment_changes_by_profile ON segment_changes (profile_id, at);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE documents (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
"#,
    ),
    (
        4,
        r#"
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, status INTEGER NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX audit_by_target ON audit_log (target, seq);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE erased_identities (hash TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
"#,
    ),
];

/// Data keys live in a file of their own: back it up separately and keep its backups short,
/// so that an erased person's key is gone from every copy soon after the erasure
/// (crypto-shredding; see docs/privacy.md).
const KEY_MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
CREATE TABLE data_keys (
    profile_id TEXT PRIMARY KEY, master_key_id TEXT NOT NULL, wrapped TEXT NOT NULL, created_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
)];

/// Journeys and delivery live in a third file, so that their small, latency-sensitive commits
/// never queue behind a large profile checkpoint on the main file's writer.
const DELIVERY_MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE journey_instances (
    id TEXT PRIMARY KEY, journey TEXT NOT NULL, journey_version INTEGER NOT NULL,
    profile_id TEXT NOT NULL, key TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,
    wake_at INTEGER, waiting_for TEXT, context TEXT NOT NULL,
    entered_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
);
CREATE INDEX journey_instances_by_profile ON journey_instances (profile_id, status);
CREATE INDEX journey_instances_due ON journey_instances (wake_at) WHERE status = 'active';
CREATE INDEX journey_instances_by_journey ON journey_instances (journey, entered_at);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL,
    template TEXT NOT NULL, class TEXT NOT NULL, source TEXT NOT NULL, context TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL, sent_at INTEGER, recipient TEXT, detail TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_by_profile ON outbox (profile_id, created_at);
CREATE TABLE suppressions (
    address_hash TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL, at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX outbox_by_source ON outbox (source, status);
CREATE TABLE soft_bounces (
    address_hash TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
)];

const EVENT_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL,
    origin_profile_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX events_by_profile_time ON events (profile_id, ts, seq);
"#,
    ),
    (
        2,
        r#"
CREATE INDEX events_by_time ON events (ts);
"#,
    ),
];

const READERS: usize = 4;

/// The SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// Which of the two files.
#[derive(Clone, Copy)]
enum Db {
    Main,
    Events,
    Delivery,
    Keys,
}

struct Files {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

struct Inner {
    main: Files,
    events: Files,
    delivery: Files,
    keys: Files,
    // Held for the store's lifetime: a second process opening the same file fails fast.
    _lock: File,
}

impl Inner {
    fn files(&self, db: Db) -> &Files {
        match db {
            Db::Main => &self.main,
            Db::Events => &self.events,
            Db::Delivery => &self.delivery,
            Db::Keys => &self.keys,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its event log beside it
    /// (`NAME.events.db`), applies migrations and takes the writer lock (`PATH.lock`).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = private_file(&lock_path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", lock_path.display())))?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(lock_path.display().to_string()))?;

        let events_path = path.with_extension("events.db");
        let delivery_path = path.with_extension("delivery.db");
        let keys_path = path.with_extension("keys.db");
        let inner = Arc::new(Inner {
            main: open_files(path, MIGRATIONS)?,
            events: open_files(events_path, EVENT_MIGRATIONS)?,
            delivery: open_files(delivery_path, DELIVERY_MIGRATIONS)?,
            keys: open_files(keys_path, KEY_MIGRATIONS)?,
            _lock: lock,
        });
        spawn_checkpointer(&inner, Db::Main)?;
        spawn_checkpointer(&inner, Db::Events)?;
        spawn_checkpointer(&inner, Db::Delivery)?;
        spawn_checkpointer(&inner, Db::Keys)?;
        Ok(Self { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.main.path
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read_on(Db::Main, f).await
    }

    async fn read_on<T: Send + 'static>(
        &self,
        db: Db,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let files = inner.files(db);
            let conn = files.readers.lock().map_err(|_| poisoned())?.pop();
            let conn = match conn {
                Some(c) => c,
                None => open_reader(&files.path)?,
            };
            let out = f(&conn);
            let mut pool = files.readers.lock().map_err(|_| poisoned())?;
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn write_on<T: Send + 'static>(
        &self,
        db: Db,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.files(db).writer.lock().map_err(|_| poisoned())?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Creates `dir` (and its parents) readable by the owner only; an existing one is left as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens (creating) `path` readable and writable by the owner only (0600), and takes away
/// any access others had to an existing one: the files hold personal data.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

fn open_files(path: PathBuf, migrations: &[(i64, &str)]) -> Result<Files, StoreError> {
    // SQLite gives its -wal and -shm files the database file's permissions.
    private_file(&path).map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            private_file(&side).map_err(|e| StoreError::Open(format!("{}: {e}", side.display())))?;
        }
    }
    let mut writer = Connection::open(&path)?;
    configure(&writer)?;
    migrate(&mut writer, migrations)?;
    let readers = (0..READERS)
        .map(|_| open_reader(&path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Files {
        path,
        writer: Mutex::new(writer),
        readers: Mutex::new(readers),
    })
}

/// Copies the WAL back into the database on its own connection and thread, so that commits
/// never pay for it. PASSIVE never blocks the writer; it stops with the store.
fn spawn_checkpointer(inner: &Arc<Inner>, db: Db) -> Result<(), StoreError> {
    let conn = Connection::open(&inner.files(db).path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if weak.strong_count() == 0 {
                    break;
                }
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "wal checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Open(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

fn poisoned() -> StoreError {
    StoreError::Task("a store connection lock was poisoned by a panic".into())
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged event survives power loss,
    // not only a killed process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten, not left in free pages: an erased person must not be
    // readable from the file afterwards.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    // Checkpoints run on a background connection (see `spawn_checkpointer`), not in commits.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let applied: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in migrations.iter().filter(|(v, _)| *v > applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, micros(Utc::now())],
        )?;
        tx.commit()?;
        tracing::info!(version, "sqlite migration applied");
    }
    Ok(())
}

/// Checkpoints the whole WAL into the database and truncates it, retrying while readers hold
/// old snapshots.
fn truncate_wal(c: &mut Connection) -> Result<(), StoreError> {
    for _ in 0..50 {
        let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(StoreError::Task(
        "the write-ahead log stayed busy after an erasure".into(),
    ))
}

fn api_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let (id, role): (String, String) = (r.get(0)?, r.get(1)?);
    let revoked: Option<i64> = r.get(5)?;
    let (secret_hash, label, at) = (r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?);
    Ok((|| {
        Ok(ApiKeyRecord {
            id: ApiKeyId::parse(&id).map_err(|e| corrupt("api key id", e))?,
            role: Role::parse(&role).ok_or_else(|| corrupt("api key role", &role))?,
            secret_hash,
            label,
            created_at: from_micros(at),
            revoked_at: revoked.map(from_micros),
        })
    })())
}

fn data_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<DataKeyRecord, StoreError>> {
    let id: String = r.get(0)?;
    let (master_key_id, wrapped, at) = (r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?);
    Ok(ProfileId::parse(&id)
        .map_err(|e| corrupt("data key profile id", e))
        .map(|profile_id| DataKeyRecord {
            profile_id,
            master_key_id,
            wrapped,
            created_at: from_micros(at),
        }))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

const INSTANCE_COLUMNS: &str = "id, journey, journey_version, profile_id, key, step, status, wake_at, waiting_for, context, entered_at, updated_at";

fn instance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JourneyInstance, StoreError>> {
    let profile: String = r.get(3)?;
    let status: String = r.get(6)?;
    let context: String = r.get(9)?;
    let wake_at: Option<i64> = r.get(7)?;
    let partial = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(4)?,
        r.get(5)?,
        r.get(8)?,
        r.get::<_, i64>(10)?,
        r.get::<_, i64>(11)?,
    );
    Ok((|| {
        let (id, journey, journey_version, key, step, waiting_for, entered_at, updated_at) = partial;
        Ok(JourneyInstance {
            id,
            journey,
            journey_version,
            profile_id: ProfileId::parse(&profile).map_err(|e| corrupt("instance profile id", e))?,
            key,
            step,
            status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("instance status", &status))?,
            wake_at: wake_at.map(from_micros),
            waiting_for,
            context: serde_json::from_str(&context).map_err(|e| corrupt("instance context", e))?,
            entered_at: from_micros(entered_at),
            updated_at: from_micros(updated_at),
        })
    })())
}

const OUTBOX_COLUMNS: &str = "id, idempotency_key, profile_id, template, class, source, context, status, attempts, next_attempt_at, created_at, sent_at, recipient, detail";

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<OutboxMessage, StoreError>> {
    let profile: String = r.get(2)?;
    let context: String = r.get(6)?;
    let status: String = r.get(7)?;
    let sent_at: Option<i64> = r.get(11)?;
    let (id, key, template, class, source): (String, String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?, r.get(5)?);
    let (attempts, next_at, created_at, recipient, detail): (u32, i64, i64, Option<String>, Option<String>) =
        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(12)?, r.get(13)?);
    Ok((|| {
        Ok(OutboxMessage {
            id,
            idempotency_key: key,
            profile_id: ProfileId::parse(&profile).map_err(|e| corrupt("outbox profile id", e))?,
            template,
            class,
            source,
            context: serde_json::from_str(&context).map_err(|e| corrupt("outbox context", e))?,
            status: OutboxStatus::parse(&status).ok_or_else(|| corrupt("outbox status", &status))?,
            attempts,
            next_attempt_at: from_micros(next_at),
            created_at: from_micros(created_at),
            sent_at: sent_at.map(from_micros),
            recipient,
            detail,
        })
    })())
}

type DocumentRow = (String, i64, String, i64);

fn document_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn document_from(
    kind: DocumentKind,
    (name, version, body, updated_at): DocumentRow,
) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        kind,
        name,
        version,
        body: serde_json::from_str(&body).map_err(|e| corrupt("document body", e))?,
        updated_at: from_micros(updated_at),
    })
}

/// The columns every event query selects, in this order.
const EVENT_COLUMNS: &str =
    "seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEvent, StoreError>> {
    let (seq, message_id, profile_id, origin, kind, name, ts, received_at, body): (
        i64,
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
        String,
    ) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    );
    Ok((|| {
        Ok(StoredEvent {
            seq,
            message_id: MessageId::parse(&message_id).map_err(|e| corrupt("event message id", e))?,
            profile_id: ProfileId::parse(&profile_id).map_err(|e| corrupt("event profile id", e))?,
            origin_profile_id: ProfileId::parse(&origin)
                .map_err(|e| corrupt("event origin profile id", e))?,
            kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
            name,
            timestamp: from_micros(ts),
            received_at: from_micros(received_at),
            body: serde_json::from_str(&body)?,
        })
    })())
}

fn collect_events(
    rows: impl Iterator<Item = rusqlite::Result<Result<StoredEvent, StoreError>>>,
) -> Result<Vec<StoredEvent>, StoreError> {
    rows.map(|r| r?).collect()
}

type VersionRow = (String, i64, i64, String, String, Option<String>);

fn version_from_row(row: VersionRow) -> Result<ProfileVersion, StoreError> {
    let (profile_id, version, recorded_at, cause, diff, snapshot) = row;
    Ok(ProfileVersion {
        profile_id: ProfileId::parse(&profile_id).map_err(|e| corrupt("version profile id", e))?,
        version: version as u64,
        recorded_at: from_micros(recorded_at),
        cause,
        diff: serde_json::from_str(&diff)?,
        snapshot: snapshot.map(|s| serde_json::from_str(&s)).transpose()?,
    })
}

const VERSION_COLUMNS: &str = "profile_id, version, recorded_at, cause, diff, snapshot";

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn workspace(&self) -> Result<Option<Workspace>, StoreError> {
        self.read(|c| {
            let row = c
                .query_row("SELECT id, name, created_at FROM workspaces LIMIT 1", [], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            row.map(|(id, name, at)| {
                Ok(Workspace {
                    id: WorkspaceId::parse(&id).map_err(|e| corrupt("workspace id", e))?,
                    name,
                    created_at: from_micros(at),
                })
            })
            .transpose()
        })
        .await
    }

    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let exists: i64 = tx.query_row("SELECT COUNT(*) FROM workspaces", [], |r| r.get(0))?;
            if exists > 0 {
                return Err(StoreError::Conflict("a workspace exists already".into()));
            }
            tx.execute(
                "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![ws.id.as_str(), ws.name, micros(ws.created_at)],
            )?;
            for k in &keys {
                tx.execute(
                    "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![k.id.as_str(), k.role.as_str(), k.secret_hash, k.label, micros(k.created_at)],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = secret_hash.to_owned();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys WHERE secret_hash = ?1 AND revoked_at IS NULL",
                )?
                .query_row([&hash], api_key_row)
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys WHERE id = ?1",
            )?
            .query_row([&id], api_key_row)
            .optional()?
            .transpose()
        })
        .await
    }

    async fn create_api_key(&self, k: ApiKeyRecord) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    k.id.as_str(),
                    k.role.as_str(),
                    k.secret_hash,
                    k.label,
                    micros(k.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], api_key_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.write_on(Db::Main, move |c| {
            let n = c.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, micros(at)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO audit_log (at, actor, role, action, target, status, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for e in &entries {
                    stmt.execute(params![micros(e.at), e.actor, e.role, e.action, e.target, e.status, e.detail])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn audit_entries(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor, role, action, target, status, detail FROM audit_log
                 WHERE seq < ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR target = ?3)
                   AND (?4 IS NULL OR action = ?4)
                 ORDER BY seq DESC LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![
                    q.before_seq.unwrap_or(i64::MAX),
                    q.actor,
                    q.target,
                    q.action,
                    q.limit
                ],
                |r| {
                    Ok(AuditEntry {
                        seq: r.get(0)?,
                        at: from_micros(r.get(1)?),
                        actor: r.get(2)?,
                        role: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        status: r.get(6)?,
                        detail: r.get(7)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.write_on(Db::Keys, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO data_keys (profile_id, master_key_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (profile_id) DO NOTHING",
                )?;
                for k in &keys {
                    stmt.execute(params![k.profile_id.as_str(), k.master_key_id, k.wrapped, micros(k.created_at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read_on(Db::Keys, move |c| {
            let mut out = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id IN ({placeholders})"
                ))?;
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(chunk.iter().map(|i| i.as_str())),
                    data_key_row,
                )?;
                for r in rows {
                    let k = r??;
                    out.insert(k.profile_id.clone(), k);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError> {
        let after = after.map(|a| a.as_str().to_owned()).unwrap_or_default();
        self.read_on(Db::Keys, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id > ?1
                 ORDER BY profile_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], data_key_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        self.write_on(Db::Keys, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE data_keys SET master_key_id = ?2, wrapped = ?3 WHERE profile_id = ?1",
                )?;
                for k in &keys {
                    stmt.execute(params![k.profile_id.as_str(), k.master_key_id, k.wrapped])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
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

    async fn commit_events(&self, batch: EventBatch) -> Result<(), StoreError> {
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
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn commit_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
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
        let (merges, identities, through_seq, changes) =
            (cp.merges, cp.identities, cp.through_seq, cp.segment_changes);
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
                .map(|(f, i, at, cause)| {
                    Ok(MergeRecord {
                        from: ProfileId::parse(&f).map_err(|e| corrupt("merge from", e))?,
                        into: ProfileId::parse(&i).map_err(|e| corrupt("merge into", e))?,
                        at: from_micros(at),
                        cause,
                    })
                })
                .collect()
        })
        .await
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

    async fn save_segment(&self, seg: SegmentRecord) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO segments (name, expression, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET expression = excluded.expression, updated_at = excluded.updated_at",
                params![seg.name, seg.expression, micros(seg.created_at), micros(seg.updated_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM segments WHERE name = ?1", [&name])?;
            tx.execute("DELETE FROM segment_members WHERE segment = ?1", [&name])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, expression, created_at, updated_at FROM segments ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SegmentRecord {
                    name: r.get(0)?,
                    expression: r.get(1)?,
                    created_at: from_micros(r.get(2)?),
                    updated_at: from_micros(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
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

    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError> {
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let mut versions = Vec::with_capacity(docs.len());
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO documents (kind, name, version, body, updated_at) VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (kind, name) DO UPDATE SET version = documents.version + 1,
                         body = excluded.body, updated_at = excluded.updated_at
                     RETURNING version",
                )?;
                // A name given twice keeps its last body and one new version, as in PostgreSQL.
                let mut last: HashMap<(&str, &str), usize> = HashMap::new();
                for (i, d) in docs.iter().enumerate() {
                    last.insert((d.kind.as_str(), d.name.as_str()), i);
                }
                let mut saved: HashMap<(&str, &str), i64> = HashMap::new();
                for (i, d) in docs.iter().enumerate() {
                    let key = (d.kind.as_str(), d.name.as_str());
                    if last.get(&key) != Some(&i) {
                        continue;
                    }
                    let body = serde_json::to_string(&d.body).map_err(|e| corrupt("document body", e))?;
                    let v: i64 = stmt.query_row(
                        params![d.kind.as_str(), d.name, body, micros(d.updated_at)],
                        |r| r.get(0),
                    )?;
                    saved.insert(key, v);
                }
                for d in &docs {
                    versions.push(
                        saved
                            .get(&(d.kind.as_str(), d.name.as_str()))
                            .copied()
                            .unwrap_or_default(),
                    );
                }
            }
            tx.commit()?;
            Ok(versions)
        })
        .await
    }

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = ?1 AND name = ?2",
            )?;
            let row = stmt
                .query_row(params![kind.as_str(), name], document_columns)
                .optional()?;
            row.map(|r| document_from(kind, r)).transpose()
        })
        .await
    }

    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = ?1 AND name > ?2
                 ORDER BY name LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![kind.as_str(), after.unwrap_or_default(), limit],
                document_columns,
            )?;
            rows.map(|r| document_from(kind, r?)).collect()
        })
        .await
    }

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_on(Db::Main, move |c| {
            Ok(c.execute(
                "DELETE FROM documents WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
            )? > 0)
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

    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError> {
        let key = key.to_owned();
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, init],
            )?;
            Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))?)
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }

    async fn commit_journey(&self, commit: JourneyCommit) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO journey_instances (id, journey, journey_version, profile_id, key, step, status,
                         wake_at, waiting_for, context, entered_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status,
                         wake_at = excluded.wake_at, waiting_for = excluded.waiting_for,
                         context = excluded.context, updated_at = excluded.updated_at",
                )?;
                for i in &commit.instances {
                    upsert.execute(params![
                        i.id,
                        i.journey,
                        i.journey_version,
                        i.profile_id.as_str(),
                        i.key,
                        i.step,
                        i.status.as_str(),
                        i.wake_at.map(micros),
                        i.waiting_for,
                        i.context.to_string(),
                        micros(i.entered_at),
                        micros(i.updated_at),
                    ])?;
                }
                let mut insert = tx.prepare_cached(
                    "INSERT INTO outbox (id, idempotency_key, profile_id, template, class, source, context, status,
                         attempts, next_attempt_at, created_at, sent_at, recipient, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT DO NOTHING",
                )?;
                for m in &commit.outbox {
                    insert.execute(params![
                        m.id,
                        m.idempotency_key,
                        m.profile_id.as_str(),
                        m.template,
                        m.class,
                        m.source,
                        m.context.to_string(),
                        m.status.as_str(),
                        m.attempts,
                        micros(m.next_attempt_at),
                        micros(m.created_at),
                        m.sent_at.map(micros),
                        m.recipient,
                        m.detail,
                    ])?;
                }
                if let Some(seq) = commit.events_through {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('journeys_through_seq', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [seq.to_string()],
                    )?;
                }
                if let Some(seq) = commit.segments_through {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('journeys_segments_through', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [seq.to_string()],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn journey_events_through(&self) -> Result<i64, StoreError> {
        self.read_on(Db::Delivery, |c| {
            let v: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'journeys_through_seq'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            v.map_or(Ok(0), |v| {
                v.parse().map_err(|e| corrupt("journeys_through_seq", e))
            })
        })
        .await
    }

    async fn journey_segments_through(&self) -> Result<i64, StoreError> {
        self.read_on(Db::Delivery, |c| {
            let v: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'journeys_segments_through'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            v.map_or(Ok(0), |v| {
                v.parse().map_err(|e| corrupt("journeys_segments_through", e))
            })
        })
        .await
    }

    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError> {
        let profile = profile.as_str().to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE profile_id = ?1 AND status = 'active'
                 ORDER BY entered_at, id"
            ))?;
            let rows = stmt.query_map([profile], instance_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn due_instances(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM journey_instances
                 WHERE status = 'active' AND wake_at IS NOT NULL AND wake_at <= ?1 ORDER BY wake_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![micros(now), limit], instance_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_on(Db::Delivery, |c| {
            let v: Option<i64> = c.query_row(
                "SELECT MIN(wake_at) FROM journey_instances WHERE status = 'active' AND wake_at IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            Ok(v.map(from_micros))
        })
        .await
    }

    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError> {
        let journey = journey.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE journey = ?1
                 ORDER BY entered_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![journey, limit], instance_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn due_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![micros(now), limit], outbox_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, sent_at = ?5,
                         recipient = ?6, detail = ?7 WHERE id = ?1 AND status = 'queued'",
                )?;
                for m in &messages {
                    stmt.execute(params![
                        m.id,
                        m.status.as_str(),
                        m.attempts,
                        micros(m.next_attempt_at),
                        m.sent_at.map(micros),
                        m.recipient,
                        m.detail,
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let id = id.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1"))?;
            stmt.query_row([id], outbox_row).optional()?.transpose()
        })
        .await
    }

    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let profile = profile.as_str().to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE profile_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![profile, limit], outbox_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn marketing_sent_since(
        &self,
        profile: &ProfileId,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let profile = profile.as_str().to_owned();
        self.read_on(Db::Delivery, move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM outbox WHERE profile_id = ?1 AND class = 'marketing' AND status = 'sent'
                 AND sent_at >= ?2",
                params![profile, micros(since)],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn suppress(&self, s: Suppression) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            c.execute(
                "INSERT INTO suppressions (address_hash, reason, detail, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (address_hash) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, at = excluded.at",
                params![s.address_hash, s.reason, s.detail, micros(s.at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError> {
        let h = address_hash.to_owned();
        self.read_on(Db::Delivery, move |c| {
            Ok(c.query_row(
                "SELECT address_hash, reason, detail, at FROM suppressions WHERE address_hash = ?1",
                [h],
                |r| {
                    Ok(Suppression {
                        address_hash: r.get(0)?,
                        reason: r.get(1)?,
                        detail: r.get(2)?,
                        at: from_micros(r.get(3)?),
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn outbox_counts(&self, source: &str) -> Result<OutboxCounts, StoreError> {
        let source = source.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt =
                c.prepare_cached("SELECT status, COUNT(*) FROM outbox WHERE source = ?1 GROUP BY status")?;
            let mut counts = OutboxCounts::default();
            let rows = stmt.query_map([source], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                counts.add(&status, u64::try_from(n).unwrap_or(0));
            }
            Ok(counts)
        })
        .await
    }

    async fn skip_queued(&self, source: &str, detail: &str) -> Result<u64, StoreError> {
        let (source, detail) = (source.to_owned(), detail.to_owned());
        self.write_on(Db::Delivery, move |c| {
            let n = c.execute(
                "UPDATE outbox SET status = 'skipped', detail = ?2 WHERE source = ?1 AND status = 'queued'",
                params![source, detail],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError> {
        let h = address_hash.to_owned();
        self.write_on(Db::Delivery, move |c| {
            Ok(c.query_row(
                "INSERT INTO soft_bounces (address_hash, count, last_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (address_hash) DO UPDATE SET count = soft_bounces.count + 1, last_at = excluded.last_at
                 RETURNING count",
                params![h, micros(at)],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
