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
    let keyring = std::sync::Arc::new(load_or_create_keyring(&cfg.key_file())?);
    let store = open_bare_store(cfg).await?;
    check_encryption_mode(&store, cfg.privacy.encrypt).await?;
    if cfg.privacy.encrypt {
        let encrypted = missive_store::EncryptedStore::new(store, keyring.clone());
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
    missive_store::open(&url).await.map_err(|e| match e {
        missive_store::StoreError::Locked(_) => anyhow::anyhow!(
            "{e}: another missive process (a running `missive serve`?) owns this store; stop it, or send the events to it over HTTP"
        ),
        e => anyhow::Error::new(e).context(format!("opening the {} store", if url.starts_with("sqlite:") { "SQLite" } else { "PostgreSQL" })),
    })
}
