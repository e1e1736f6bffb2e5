//! Opening the configured store: SQLite or PostgreSQL, behind the encrypting store unless
//! `privacy.encrypt` is off, refusing to open a store the other way it was written.

use anyhow::bail;

use crate::config::Config;
use crate::keyfile::load_or_create_keyring;

/// Opens the store, explaining the usual failures.
pub async fn open_store(cfg: &Config) -> anyhow::Result<missive_store::Store> {
    Ok(open_store_with_keys(cfg).await?.0)
}

/// The store (behind the encrypting store unless `privacy.encrypt` is off) and the keyring.
pub async fn open_store_with_keys(
    cfg: &Config,
) -> anyhow::Result<(missive_store::Store, std::sync::Arc<missive_privacy::Keyring>)> {
    // The store first: a store that does not open (a missing PostgreSQL database) must not
    // leave a new key file behind.
    let store = open_bare_store(cfg).await?;
    let key_file = cfg.key_file();
    let keyring = std::sync::Arc::new(load_or_create_keyring(&key_file)?);
    check_encryption_mode(&store, cfg.privacy.encrypt).await?;
    if cfg.privacy.encrypt {
        let encrypted = missive_store::EncryptedStore::new(store, keyring.clone());
        encrypted.check_keys().await.map_err(|e| match e {
            missive_store::KeyMismatch::Wrong { .. } => anyhow::anyhow!(
                "{e}. The key file was read from {}: point privacy.key_file (MISSIVE_PRIVACY__KEY_FILE) \
                 at the key file this store was created with",
                key_file.display()
            ),
            missive_store::KeyMismatch::Store(e) => {
                anyhow::Error::new(e).context("reading the store's data keys")
            }
        })?;
        let upgraded = encrypted.blind_index_clear_identities().await?;
        if upgraded > 0 {
            tracing::info!(
                identities = upgraded,
                "user and anonymous ids stored in clear are now blind-indexed"
            );
        }
        Ok((encrypted.store(), keyring))
    } else {
        Ok((store, keyring))
    }
}

/// The store remembers whether it was written encrypted (`privacy.encryption` in its metadata;
/// for a store from before that, its first profile or event says). Opening it the other way
/// is refused: a plain store read through encryption would miss every e-mail lookup (its
/// identities are not blind-indexed) and create a second profile for each person, and an
/// encrypted store read without it would hand out ciphertext.
async fn check_encryption_mode(store: &missive_store::Store, encrypt: bool) -> anyhow::Result<()> {
    let want = if encrypt { "on" } else { "off" };
    let sealed = |v: &serde_json::Value| v.as_str().is_some_and(missive_privacy::is_sealed);
    let written = match store.events().profiles_after(None, 1).await?.first() {
        Some(p) => Some(p.sealed.is_some()),
        None => store
            .events()
            .events_after(0, 1)
            .await?
            .first()
            .map(|e| sealed(&e.body)),
    };
    let found = match written {
        Some(true) => "on",
        Some(false) => "off",
        None => want,
    };
    let recorded = store
        .documents()
        .meta_get_or_init("privacy.encryption", found.to_owned())
        .await?;
    match (recorded.as_str(), encrypt) {
        ("off", true) => bail!(
            "this store was written without encryption at rest, and privacy.encrypt is on: \
             encrypting an existing store in place is not supported yet. Set privacy.encrypt = false \
             (MISSIVE_PRIVACY__ENCRYPT=false) to keep using it, or start a new data directory"
        ),
        ("on", false) => bail!(
            "this store is encrypted at rest, and privacy.encrypt is off: set privacy.encrypt = true \
             and keep privacy.key_file pointing at its key file"
        ),
        _ => Ok(()),
    }
}

async fn open_bare_store(cfg: &Config) -> anyhow::Result<missive_store::Store> {
    let url = cfg.store_url();
    let opened = if cfg.cluster.enabled {
        missive_store::open_cluster(&url).await
    } else {
        missive_store::open(&url).await
    };
    opened.map_err(|e| match e {
        missive_store::StoreError::Locked(_) => anyhow::anyhow!(
            "{e}: another missive process (a running `missive serve`?) owns this store; stop it, or send the events to it over HTTP"
        ),
        e if !url.starts_with("sqlite:") && missing_database(&e.to_string()) => {
            let name = database_name(&url);
            anyhow::anyhow!(
                "the PostgreSQL database {name:?} does not exist: create it (`createdb {name}`, or \
                 `CREATE DATABASE \"{name}\";` in psql as a user who may), then start missive again; \
                 nothing was created"
            )
        }
        e => anyhow::Error::new(e).context(format!("opening the {} store", if url.starts_with("sqlite:") { "SQLite" } else { "PostgreSQL" })),
    })
}

/// PostgreSQL's answer to a connection to a database that does not exist (SQLSTATE 3D000).
fn missing_database(message: &str) -> bool {
    message.contains("3D000") || (message.contains("database") && message.contains("does not exist"))
}

/// The database a PostgreSQL URL names (`postgres://u@host:5432/NAME?…`), without the rest,
/// which may hold a password.
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let after_host = path.split_once("://").map_or(path, |(_, rest)| rest);
    after_host
        .split_once('/')
        .map_or("postgres", |(_, name)| name)
        .to_owned()
}
