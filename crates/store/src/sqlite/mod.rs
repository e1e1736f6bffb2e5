//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, so that a committed
//! transaction survives a crash of the process or of the machine.
//!
//! Two database files, so that their writers never wait for each other: `missive.db` holds
//! the workspace, keys, profiles, identities, versions and merges; `missive.events.db` holds
//! the event log. Events are committed at every group commit, profiles at checkpoints, and
//! both run at once. rusqlite is synchronous; every call runs on tokio's blocking pool, with
//! one writer connection per file and a few reader connections, which WAL lets read while
//! the writer writes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use missive_core::{
    ApiKeyId, EventKind, IdentityKey, IdentityKind, MessageId, Profile, ProfileId, WorkspaceId,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

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
    migration!(1, "sqlite/main/0001.sql"),
    migration!(2, "sqlite/main/0002.sql"),
    migration!(3, "sqlite/main/0003.sql"),
    migration!(4, "sqlite/main/0004.sql"),
    migration!(5, "sqlite/main/0005.sql"),
    migration!(6, "sqlite/main/0006.sql"),
    migration!(7, "sqlite/main/0007.sql"),
    migration!(8, "sqlite/main/0008.sql"),
    migration!(9, "sqlite/main/0009.sql"),
    migration!(10, "sqlite/main/0010.sql"),
];

/// Data keys live in a file of their own: back it up separately and keep its backups short,
/// so that an erased person's key is gone from every copy soon after the erasure
/// (crypto-shredding; see docs/privacy.md).
const KEY_MIGRATIONS: &[Migration] = &[migration!(1, "sqlite/keys/0001.sql")];

/// Journeys and delivery live in a third file, so that their small, latency-sensitive commits
/// never queue behind a large profile checkpoint on the main file's writer.
const DELIVERY_MIGRATIONS: &[Migration] = &[
    migration!(1, "sqlite/delivery/0001.sql"),
    migration!(2, "sqlite/delivery/0002.sql"),
    migration!(3, "sqlite/delivery/0003.sql"),
    migration!(4, "sqlite/delivery/0004.sql"),
    migration!(5, "sqlite/delivery/0005.sql"),
    migration!(6, "sqlite/delivery/0006.sql"),
    migration!(7, "sqlite/delivery/0007.sql"),
];

const EVENT_MIGRATIONS: &[Migration] = &[
    migration!(1, "sqlite/events/0001.sql"),
    migration!(2, "sqlite/events/0002.sql"),
    migration!(3, "sqlite/events/0003.sql"),
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

fn open_files(path: PathBuf, migrations: &'static [Migration]) -> Result<Files, StoreError> {
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

fn migrate(conn: &mut Connection, migrations: &'static [Migration]) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let applied: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for m in pending(migrations, applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![m.version, micros(Utc::now())],
        )?;
        tx.commit()?;
        tracing::info!(version = m.version, "sqlite migration applied");
    }
    Ok(())
}

/// Every migration list of this backend, by database, for the numbering check.
#[cfg(test)]
pub(crate) fn migration_lists() -> Vec<(&'static str, &'static [Migration])> {
    vec![
        ("sqlite main", MIGRATIONS),
        ("sqlite events", EVENT_MIGRATIONS),
        ("sqlite delivery", DELIVERY_MIGRATIONS),
        ("sqlite keys", KEY_MIGRATIONS),
    ]
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

mod access;
mod data_keys;
mod delivery;
mod documents;
mod events;
mod rows;
mod webhooks;

impl crate::Backend for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }
}
