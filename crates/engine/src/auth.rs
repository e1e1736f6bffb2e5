//! Workspace bootstrap and API keys.
//!
//! A key reads `PREFIX` + the key id's 32 hex digits + `_` + 40 random characters
//! (`mk_0193…_Xy…`): the prefix says the role, the id finds the stored record, and only an
//! argon2id hash of the whole key is stored. A key is shown once, when it is created. Keys
//! minted before argon2 (`wk_` + 32 characters, stored as SHA-256) still work until revoked.
//!
//! Checking an argon2 hash costs tens of milliseconds and about 19 MiB on purpose, so a
//! verified key is kept in memory: for [`CACHE_TTL`] it is trusted as it is, after that its
//! record is read again (is it still live?) without hashing again; revoking through this
//! process forgets it at once, and another process's revocation counts within the TTL. The
//! requests that present one unverified key at the same time (a client opening many
//! connections at once) wait for one verification instead of each hashing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use missive_core::{ApiKeyId, WorkspaceId};
use missive_store::{ApiKeyRecord, Role, Store, StoreError, Workspace};
use sha2::{Digest, Sha256};

/// How long a verified key is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Verified keys remembered at most (a bound, not a tuning knob).
const CACHE_MAX: usize = 10_000;

/// A secret key. Its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
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

/// SHA-256 hex of a secret: how keys minted before argon2 are stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot hash the key: {0}")]
    Hashing(String),
}

/// The keys minted at first start, to be shown to the operator once.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InitialKeys {
    pub write_key: Secret,
    pub admin_key: Secret,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: ApiKeyId,
    pub role: Role,
}

impl Caller {
    /// How the audit log names the caller.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

/// Mints a key for `role`: the record to store (argon2id hash) and the secret to show once.
pub async fn mint_key(
    role: Role,
    label: &str,
    now: DateTime<Utc>,
) -> Result<(ApiKeyRecord, Secret), AuthError> {
    let id = ApiKeyId::generate();
    let hex = id.as_str().trim_start_matches(ApiKeyId::PREFIX);
    let secret = Secret(format!(
        "{}{hex}_{}",
        role.key_prefix(),
        missive_privacy::generate_api_secret("")
    ));
    let to_hash = secret.clone();
    let secret_hash = tokio::task::spawn_blocking(move || missive_privacy::hash_api_secret(to_hash.expose()))
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))?
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
    let record = ApiKeyRecord {
        id,
        role,
        secret_hash,
        label: label.to_owned(),
        created_at: now,
        revoked_at: None,
    };
    Ok((record, secret))
}

/// The key id a presented key names, when it has the current form.
fn key_id_of(presented: &str) -> Option<ApiKeyId> {
    let rest = presented.get(3..)?;
    let (hex, secret) = rest.split_once('_')?;
    if hex.len() != 32 || secret.is_empty() {
        return None;
    }
    ApiKeyId::parse(&format!("{}{hex}", ApiKeyId::PREFIX)).ok()
}

/// Returns the workspace, creating it with a fresh write key and admin key on first start.
pub async fn ensure_workspace(store: &Store) -> Result<(Workspace, Option<InitialKeys>), AuthError> {
    if let Some(ws) = store.access().workspace().await? {
        return Ok((ws, None));
    }
    let now = Utc::now();
    let ws = Workspace {
        id: WorkspaceId::generate(),
        name: "default".into(),
        created_at: now,
    };
    let (write, write_key) = mint_key(Role::Write, "initial write key", now).await?;
    let (admin, admin_key) = mint_key(Role::Admin, "initial admin key", now).await?;
    match store
        .access()
        .bootstrap_workspace(ws.clone(), vec![write, admin])
        .await
    {
        Ok(()) => Ok((ws, Some(InitialKeys { write_key, admin_key }))),
        // Another process bootstrapped between our read and our write: use theirs.
        Err(StoreError::Conflict(_)) => {
            let ws = store
                .access()
                .workspace()
                .await?
                .ok_or_else(|| StoreError::Corrupt("workspace vanished".into()))?;
            Ok((ws, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks, creates and revokes API keys.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    /// SHA-256 of a verified key → who it is, and since when it is trusted.
    cache: Arc<RwLock<VerifiedKeys>>,
    /// SHA-256 of a key being verified → the turn its verifications take one at a time.
    verifying: Arc<Mutex<Turns>>,
    /// How long a verified key is trusted without reading its record ([`CACHE_TTL`]).
    ttl: Duration,
    /// Keys revoked through this checker since start: a check that began before one does
    /// not cache its answer.
    revocations: Arc<std::sync::atomic::AtomicU64>,
    /// Secrets checked against their stored hash since start (argon2 for current keys).
    hashed: Arc<std::sync::atomic::AtomicU64>,
}

/// SHA-256 of a presented key → the caller and when the key was verified.
type VerifiedKeys = HashMap<[u8; 32], (Caller, Instant)>;

/// SHA-256 of a presented key → the lock its verifications queue on.
type Turns = HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>;

/// Removes a key's entry from the turns when the verification that made or joined it ends,
/// unless a newer one has replaced it.
struct LeaveTurn<'a> {
    turns: &'a Mutex<Turns>,
    digest: [u8; 32],
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LeaveTurn<'_> {
    fn drop(&mut self) {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        if turns
            .get(&self.digest)
            .is_some_and(|t| Arc::ptr_eq(t, &self.turn))
        {
            turns.remove(&self.digest);
        }
    }
}

impl Authenticator {
    /// The key checker of an engine's workspace.
    pub fn for_engine(engine: &crate::Engine) -> Self {
        Self::new(engine.store().clone())
    }

    /// The workspace, once bootstrapped (a cheap read the health check uses).
    pub async fn workspace(&self) -> Result<Option<missive_store::Workspace>, StoreError> {
        self.store.access().workspace().await
    }

    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Arc::new(RwLock::new(HashMap::new())),
            verifying: Arc::new(Mutex::new(HashMap::new())),
            hashed: Arc::default(),
            revocations: Arc::default(),
            ttl: CACHE_TTL,
        }
    }

    /// The same checker trusting a verified key for `ttl` before reading its record again
    /// (tests; [`CACHE_TTL`] otherwise).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Whether a presented key was verified recently (no store or argon2 work to check it).
    pub fn is_verified(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.cached(&digest)
            .is_some_and(|(_, since)| since.elapsed() < self.ttl)
    }

    /// Who a presented key belongs to, or `None` when no live key matches.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Caller>, StoreError> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // A revocation made while this check reads the store must not be undone by it.
        let revocations = self.revocations.load(std::sync::atomic::Ordering::SeqCst);
        if let Some((caller, since)) = self.cached(&digest) {
            if since.elapsed() < self.ttl {
                return Ok(Some(caller));
            }
            // Verified before, so the secret is right: only whether the key is still live
            // needs asking (a read, no second argon2 hash).
            let live = match self.store.access().api_key(&caller.key_id).await? {
                Some(record) => record.revoked_at.is_none(),
                None => false,
            };
            return Ok(if live {
                self.remember(digest, &caller, revocations);
                Some(caller)
            } else {
                self.forget(|c| c.key_id == caller.key_id);
                None
            });
        }
        // One verification at a time per presented key: the others wait for its answer.
        let turn = {
            let mut verifying = self.verifying.lock().unwrap_or_else(|p| p.into_inner());
            verifying.entry(digest).or_default().clone()
        };
        // The entry goes when this call ends, however it ends (a client that hangs up
        // cancels it): the map holds only keys being verified.
        let _leave = LeaveTurn {
            turns: &self.verifying,
            digest,
            turn: turn.clone(),
        };
        let _turn = turn.lock().await;
        if let Some((caller, since)) = self.cached(&digest)
            && since.elapsed() < self.ttl
        {
            return Ok(Some(caller));
        }
        let caller = self.verify(presented).await?;
        // Only hits are cached: a flood of wrong keys must not grow memory.
        if let Some(c) = &caller {
            self.remember(digest, c, revocations);
        }
        Ok(caller)
    }

    /// Reads the key's record and checks the presented secret against its hash.
    async fn verify(&self, presented: &str) -> Result<Option<Caller>, StoreError> {
        Ok(match key_id_of(presented) {
            Some(id) => match self.store.access().api_key(&id).await? {
                Some(record) if record.revoked_at.is_none() => {
                    self.hashed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    metrics::counter!("missive_api_key_hashes_total").increment(1);
                    let (key, hash) = (presented.to_owned(), record.secret_hash.clone());
                    let ok =
                        tokio::task::spawn_blocking(move || missive_privacy::verify_api_secret(&key, &hash))
                            .await
                            .unwrap_or(false);
                    ok.then_some(Caller {
                        key_id: record.id,
                        role: record.role,
                    })
                }
                _ => None,
            },
            None => self
                .store
                .access()
                .api_key_by_hash(&hash_secret(presented))
                .await?
                .map(|k| Caller {
                    key_id: k.id,
                    role: k.role,
                }),
        })
    }

    /// How many presented secrets were checked against their stored hash since start (the
    /// expensive step the cache and the one-at-a-time turns save).
    pub fn hashes_checked(&self) -> u64 {
        self.hashed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<(Caller, Instant)> {
        self.cache.read().ok().and_then(|c| c.get(digest).cloned())
    }

    /// Caches a verified key, unless a key was revoked since the check began (`revocations`
    /// then): the answer stands, the next request checks again.
    fn remember(&self, digest: [u8; 32], caller: &Caller, revocations: u64) {
        if let Ok(mut cache) = self.cache.write() {
            if self.revocations.load(std::sync::atomic::Ordering::SeqCst) != revocations {
                return;
            }
            if cache.len() >= CACHE_MAX && !cache.contains_key(&digest) {
                cache.clear();
            }
            cache.insert(digest, (caller.clone(), Instant::now()));
        }
    }

    fn forget(&self, which: impl Fn(&Caller) -> bool) {
        if let Ok(mut cache) = self.cache.write() {
            cache.retain(|_, (c, _)| !which(c));
        }
    }

    /// Creates a key; the secret is in the answer and nowhere else.
    pub async fn create_key(
        &self,
        role: Role,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyRecord, Secret), AuthError> {
        let (record, secret) = mint_key(role, label, now).await?;
        self.store.access().create_api_key(record.clone()).await?;
        Ok((record, secret))
    }

    /// Revokes a key; false when there is no such live key.
    pub async fn revoke_key(&self, id: &ApiKeyId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let revoked = self.store.access().revoke_api_key(id, now).await?;
        self.revocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.forget(|c| &c.key_id == id);
        Ok(revoked)
    }

    /// Whether the key `id` exists and is not revoked (read from the store, not the cache, so
    /// that a revocation by another process counts at once).
    pub async fn key_is_live(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        Ok(self
            .store
            .access()
            .list_api_keys()
            .await?
            .iter()
            .any(|k| &k.id == id && k.revoked_at.is_none()))
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.store.access().list_api_keys().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_id_is_read_from_a_current_key_and_not_from_a_legacy_one() {
        let id = ApiKeyId::generate();
        let hex = id.as_str().trim_start_matches(ApiKeyId::PREFIX);
        assert_eq!(key_id_of(&format!("mk_{hex}_abcdef")), Some(id.clone()));
        assert_eq!(key_id_of("wk_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"), None);
        assert_eq!(key_id_of(&format!("mk_{hex}_")), None);
        assert_eq!(key_id_of("mk_"), None);
    }
}
