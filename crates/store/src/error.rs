//! The one error of the store. It names no backend type: a database's own error becomes
//! [`StoreError::Database`] with the backend's name and the database's words, so callers
//! never depend on rusqlite or tokio-postgres.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement, or its connection is gone.
    #[error("{backend}: {message}")]
    Database { backend: &'static str, message: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store is locked by another missive process ({0})")]
    Locked(String),
    #[error("cannot open store: {0}")]
    Open(String),
    #[error("store task failed: {0}")]
    Task(String),
    /// Cluster mode: the write was made under a lease the node no longer holds (it was paused
    /// or cut off past its lease); nothing was written.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The backend does not do this (cluster mode needs PostgreSQL).
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database {
            backend: "sqlite",
            message: e.to_string(),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database {
            backend: "postgres",
            message: postgres_message(&e),
        }
    }
}

/// tokio-postgres prints only "db error"; the server's own words are in the source.
fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}
