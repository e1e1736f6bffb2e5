//! Workspace bootstrap and API keys: the first start mints a write key and an admin key;
//! only their SHA-256 hashes are stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use missive_core::{ApiKeyId, WorkspaceId};
use missive_store::{ApiKeyRecord, Role, Store, StoreError, Workspace};
use rand::Rng;
use sha2::{Digest, Sha256};

/// A secret key. Its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    fn generate(prefix: &str) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let body: String = (0..32)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        Self(format!("{prefix}{body}"))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn from_plain(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The keys minted at first start, to be shown to the operator once.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InitialKeys {
    pub write_key: Secret,
    pub admin_key: Secret,
}

/// Returns the workspace, creating it with a fresh write key and admin key on first start.
pub async fn ensure_workspace(store: &dyn Store) -> Result<(Workspace, Option<InitialKeys>), StoreError> {
    if let Some(ws) = store.workspace().await? {
        return Ok((ws, None));
    }
    let now = Utc::now();
    let ws = Workspace {
        id: WorkspaceId::generate(),
        name: "default".into(),
        created_at: now,
    };
    let keys = InitialKeys {
        write_key: Secret::generate("wk_"),
        admin_key: Secret::generate("ak_"),
    };
    let records = vec![
        ApiKeyRecord {
            id: ApiKeyId::generate(),
            role: Role::Write,
            secret_hash: hash_secret(keys.write_key.expose()),
            label: "initial write key".into(),
            created_at: now,
        },
        ApiKeyRecord {
            id: ApiKeyId::generate(),
            role: Role::Admin,
            secret_hash: hash_secret(keys.admin_key.expose()),
            label: "initial admin key".into(),
            created_at: now,
        },
    ];
    match store.bootstrap_workspace(ws.clone(), records).await {
        Ok(()) => Ok((ws, Some(keys))),
        // Another process bootstrapped between our read and our write: use theirs.
        Err(StoreError::Conflict(_)) => {
            let ws = store
                .workspace()
                .await?
                .ok_or_else(|| StoreError::Corrupt("workspace vanished".into()))?;
            Ok((ws, None))
        }
        Err(e) => Err(e),
    }
}

/// Checks API keys, caching what the store said.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: Arc<RwLock<HashMap<String, Option<Role>>>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The role of a presented secret, or `None` when no live key matches.
    pub async fn role_of(&self, secret: &str) -> Result<Option<Role>, StoreError> {
        let hash = hash_secret(secret);
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(&hash).copied()) {
            return Ok(hit);
        }
        let role = self.store.api_key_by_hash(&hash).await?.map(|k| k.role);
        // Only hits are cached: a key created later must work at once, and a flood of wrong
        // keys must not grow memory.
        if let (Some(r), Ok(mut c)) = (role, self.cache.write()) {
            c.insert(hash, Some(r));
        }
        Ok(role)
    }
}
