//! Encryption at rest: a [`Store`] that wraps another and encrypts personal data before it
//! reaches the backend.
//!
//! - Each profile has its own 256-bit **data key**, created with its first write, wrapped
//!   (AES-256-GCM) under the active master key of the key file and stored in the backend's
//!   data-key table (SQLite: a file of its own). Destroying it, as erasure does, makes every
//!   copy of the profile's data unreadable, backups included (crypto-shredding).
//! - Sealed under the data key, each ciphertext labelled with the key's owner and bound to its
//!   row: event bodies, profile documents, version diffs and snapshots, journey contexts,
//!   outbox contexts and recipients. Ids, times, event names and counts stay in clear, so the
//!   backends can index and page without seeing personal data.
//! - Identities (user ids, anonymous ids, e-mail addresses) are stored as a keyed **blind
//!   index** (HMAC-SHA256 under the key file's index key): a lookup works, the value is not
//!   stored (a user id is often an e-mail address or a customer number). Stores written when
//!   only addresses were indexed are upgraded in place by [`EncryptedStore::blind_index_clear_identities`].
//!
//! Rows written before encryption was turned on are read as they are. A row whose data key is
//! gone (a backup restored after an erasure) reads as absent.

mod delivery;
mod events;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use missive_core::{IdentityKey, IdentityKind, Profile, ProfileDiff, ProfileId};
use missive_privacy::{DataKey, Keyring, WrappedKey};

use crate::{
    DataKeyRecord, DataKeyStore, DeliveryStore, EventStore, JourneyInstance, OutboxMessage, ProfileVersion,
    Store, StoreError, StoredEvent,
};

/// Unwrapped data keys kept in memory at most (a bound: the store is the truth).
const KEY_CACHE_MAX: usize = 200_000;

/// The store's metadata key under which cluster mode keeps the data key its log's records are
/// sealed under, wrapped under a master key ([`WrappedKey`] as JSON; `missive_cluster::seal`).
pub const LOG_KEY_META: &str = "cluster_log_key";
/// What the log's data key is bound to when wrapped.
pub const LOG_KEY_CONTEXT: &str = "cluster-log";

/// The log's wrapped data key, if cluster mode made one.
pub async fn log_key(store: &Store) -> Result<Option<WrappedKey>, StoreError> {
    match store.documents().meta_get(LOG_KEY_META).await? {
        Some(text) => Ok(Some(
            serde_json::from_str(&text).map_err(|e| crypto("the cluster log's data key", e))?,
        )),
        None => Ok(None),
    }
}

/// Encryption at rest around a [`Store`]: its event and delivery areas are wrapped, the others
/// pass through untouched. [`EncryptedStore::store`] is the store to use.
pub struct EncryptedStore {
    inner: Store,
    sealer: Arc<Sealer>,
}

/// What the wrapped areas share: the key file and the profiles' data keys, cached.
struct Sealer {
    data_keys: Arc<dyn DataKeyStore>,
    keyring: Arc<Keyring>,
    keys: Mutex<HashMap<ProfileId, Arc<DataKey>>>,
}

/// The event area, sealing and opening personal data.
struct EncryptedEvents {
    inner: Arc<dyn EventStore>,
    sealer: Arc<Sealer>,
}

/// The delivery area, sealing and opening journey and outbox contexts and recipients.
struct EncryptedDelivery {
    inner: Arc<dyn DeliveryStore>,
    sealer: Arc<Sealer>,
}

/// The keyring does not open the store's data.
#[derive(Debug, thiserror::Error)]
pub enum KeyMismatch {
    #[error(
        "the key file does not match this store: its data is wrapped under master key {expected:?}, \
         and the key file holds {held} (or a different key under that id)"
    )]
    Wrong { expected: String, held: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn crypto(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl EncryptedStore {
    pub fn new(inner: Store, keyring: Arc<Keyring>) -> Self {
        let sealer = Arc::new(Sealer {
            data_keys: inner.data_keys().clone(),
            keyring,
            keys: Mutex::new(HashMap::new()),
        });
        Self { inner, sealer }
    }

    /// The key file this store seals under.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.sealer.keyring
    }

    /// Checks that the keyring opens this store's data: one stored data key must unwrap. A key
    /// file from another store (or an older copy, before a rotation) is refused here, at
    /// start, instead of as "corrupt data" at the first read of a profile.
    pub async fn check_keys(&self) -> Result<(), KeyMismatch> {
        let Some(rec) = self.inner.data_keys().data_keys_after(None, 1).await?.pop() else {
            return Ok(()); // nothing sealed yet
        };
        let wrapped = WrappedKey {
            master_key_id: rec.master_key_id.clone(),
            blob: rec.wrapped,
        };
        match self
            .sealer
            .keyring
            .unwrap_data_key(&wrapped, rec.profile_id.as_str())
        {
            Ok(_) => Ok(()),
            Err(_) => Err(KeyMismatch::Wrong {
                expected: rec.master_key_id,
                held: self.sealer.keyring.master_key_ids().join(", "),
            }),
        }
    }

    /// The store with personal data sealed on the way in and opened on the way out.
    pub fn store(&self) -> Store {
        self.inner
            .clone()
            .with_events(Arc::new(EncryptedEvents {
                inner: self.inner.events().clone(),
                sealer: self.sealer.clone(),
            }))
            .with_delivery(Arc::new(EncryptedDelivery {
                inner: self.inner.delivery().clone(),
                sealer: self.sealer.clone(),
            }))
    }

    /// Replaces user ids and anonymous ids stored in clear (by versions that blind-indexed only
    /// e-mail addresses) by their blind index; returns how many. Safe to run again: a value
    /// already in blind-index form (`bu_`/`ba_` and 32 hex digits) is left alone.
    pub async fn blind_index_clear_identities(&self) -> Result<u64, StoreError> {
        // Done once per store: the scan reads every identity, too much for every start.
        const DONE: &str = "privacy.identities_blind_indexed";
        if self.inner.documents().meta_get_or_init(DONE, "no".into()).await? == "yes" {
            return Ok(0);
        }
        let n = self.reindex_clear_identities().await?;
        self.inner.documents().meta_set(DONE, "yes".into()).await?;
        Ok(n)
    }

    async fn reindex_clear_identities(&self) -> Result<u64, StoreError> {
        let indexed = |v: &str, prefix: &str| {
            v.strip_prefix(prefix)
                .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        let mut after = None;
        let mut changes = Vec::new();
        loop {
            let page = self
                .inner
                .events()
                .identity_keys_after(after.clone(), 5_000)
                .await?;
            let Some(last) = page.last().cloned() else { break };
            for k in page {
                let clear = match k.kind {
                    IdentityKind::UserId => !indexed(&k.value, "bu_"),
                    IdentityKind::AnonymousId => !indexed(&k.value, "ba_"),
                    IdentityKind::Email => false,
                };
                if clear {
                    let new = self.sealer.index(&k).value;
                    changes.push((k, new));
                }
            }
            after = Some(last);
        }
        if changes.is_empty() {
            return Ok(0);
        }
        self.inner.events().reindex_identities(changes).await
    }

    /// Re-wraps every data key under the active master key; returns how many were re-wrapped.
    pub async fn rewrap_all_data_keys(&self) -> Result<u64, StoreError> {
        let active = self.sealer.keyring.active_key_id().to_owned();
        let mut after = None;
        let mut n = 0;
        loop {
            let page = self
                .inner
                .data_keys()
                .data_keys_after(after.clone(), 1000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.profile_id.clone());
            let mut rewrapped = Vec::new();
            for rec in page.into_iter().filter(|r| r.master_key_id != active) {
                let dk = self
                    .sealer
                    .keyring
                    .unwrap_data_key(
                        &WrappedKey {
                            master_key_id: rec.master_key_id.clone(),
                            blob: rec.wrapped.clone(),
                        },
                        rec.profile_id.as_str(),
                    )
                    .map_err(|e| crypto(&format!("the data key of {}", rec.profile_id), e))?;
                let w = self
                    .sealer
                    .keyring
                    .wrap_data_key(&dk, rec.profile_id.as_str())
                    .map_err(|e| crypto("wrapping a data key", e))?;
                rewrapped.push(DataKeyRecord {
                    master_key_id: w.master_key_id,
                    wrapped: w.blob,
                    ..rec
                });
            }
            n += rewrapped.len() as u64;
            if !rewrapped.is_empty() {
                self.inner.data_keys().rewrap_data_keys(rewrapped).await?;
            }
        }
        // Cluster mode's log key, like a profile's.
        if let Some(w) = log_key(&self.inner).await?
            && w.master_key_id != active
        {
            let dk = self
                .sealer
                .keyring
                .unwrap_data_key(&w, LOG_KEY_CONTEXT)
                .map_err(|e| crypto("the cluster log's data key", e))?;
            let w = self
                .sealer
                .keyring
                .wrap_data_key(&dk, LOG_KEY_CONTEXT)
                .map_err(|e| crypto("wrapping a data key", e))?;
            let text = serde_json::to_string(&w).map_err(|e| crypto("the cluster log's data key", e))?;
            self.inner.documents().meta_set(LOG_KEY_META, text).await?;
            n += 1;
        }
        Ok(n)
    }

    /// How many data keys each master key wraps.
    pub async fn data_keys_by_master(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut after = None;
        let mut out = HashMap::new();
        loop {
            let page = self
                .inner
                .data_keys()
                .data_keys_after(after.clone(), 5000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.profile_id.clone());
            for r in page {
                *out.entry(r.master_key_id).or_insert(0) += 1;
            }
        }
        if let Some(w) = log_key(&self.inner).await? {
            *out.entry(w.master_key_id).or_insert(0) += 1;
        }
        Ok(out)
    }
}

impl Sealer {
    fn cached(&self, id: &ProfileId) -> Option<Arc<DataKey>> {
        self.keys.lock().ok().and_then(|k| k.get(id).cloned())
    }

    fn remember(&self, found: &HashMap<ProfileId, Arc<DataKey>>) {
        if let Ok(mut k) = self.keys.lock() {
            if k.len() + found.len() > KEY_CACHE_MAX {
                k.clear();
            }
            k.extend(found.iter().map(|(id, dk)| (id.clone(), dk.clone())));
        }
    }

    fn forget(&self, ids: &[ProfileId]) {
        if let Ok(mut k) = self.keys.lock() {
            for id in ids {
                k.remove(id);
            }
        }
    }

    /// The data keys of `ids`; with `create`, a profile without one gets one (stored before
    /// anything is sealed under it).
    async fn keys_for(
        &self,
        ids: impl IntoIterator<Item = &ProfileId>,
        create: bool,
    ) -> Result<HashMap<ProfileId, Arc<DataKey>>, StoreError> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            match self.cached(id) {
                Some(k) => {
                    out.insert(id.clone(), k);
                }
                None => missing.push(id.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let mut found = self.unwrap_stored(missing.clone()).await?;
        if create {
            let now = Utc::now();
            let mut new = Vec::new();
            for id in missing.iter().filter(|id| !found.contains_key(*id)) {
                let wrapped = self
                    .keyring
                    .wrap_data_key(&DataKey::generate(), id.as_str())
                    .map_err(|e| crypto("wrapping a data key", e))?;
                new.push(DataKeyRecord {
                    profile_id: id.clone(),
                    master_key_id: wrapped.master_key_id,
                    wrapped: wrapped.blob,
                    created_at: now,
                });
            }
            if !new.is_empty() {
                let ids: Vec<ProfileId> = new.iter().map(|k| k.profile_id.clone()).collect();
                self.data_keys.put_data_keys(new).await?;
                // Another writer may have won the race: use what is stored.
                found.extend(self.unwrap_stored(ids).await?);
            }
        }
        self.remember(&found);
        out.extend(found);
        Ok(out)
    }

    async fn unwrap_stored(
        &self,
        ids: Vec<ProfileId>,
    ) -> Result<HashMap<ProfileId, Arc<DataKey>>, StoreError> {
        let stored = self.data_keys.data_keys(ids).await?;
        let mut out = HashMap::with_capacity(stored.len());
        for (id, rec) in stored {
            let wrapped = WrappedKey {
                master_key_id: rec.master_key_id,
                blob: rec.wrapped,
            };
            let dk = self
                .keyring
                .unwrap_data_key(&wrapped, id.as_str())
                .map_err(|e| crypto(&format!("the data key of {id}"), e))?;
            out.insert(id, Arc::new(dk));
        }
        Ok(out)
    }

    /// `owner`'s data key, which must have been fetched for the write.
    fn key_of<'k>(
        keys: &'k HashMap<ProfileId, Arc<DataKey>>,
        owner: &ProfileId,
    ) -> Result<&'k DataKey, StoreError> {
        keys.get(owner)
            .map(|k| &**k)
            .ok_or_else(|| crypto("sealing", format!("no data key for {owner}")))
    }

    /// The data key a sealed value names, with its owner; `Ok(None)` when the key is gone
    /// (erased).
    fn opener<'k>(
        keys: &'k HashMap<ProfileId, Arc<DataKey>>,
        sealed: &str,
        aad: &str,
    ) -> Result<Option<(&'k DataKey, ProfileId)>, StoreError> {
        let owner = sealed_owner(sealed).ok_or_else(|| crypto(aad, "not a sealed value"))?;
        Ok(keys.get(&owner).map(|k| (&**k, owner)))
    }

    fn seal_json(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        owner: &ProfileId,
        v: &serde_json::Value,
        aad: &str,
    ) -> Result<serde_json::Value, StoreError> {
        self.seal_serialized(keys, owner, v, aad)
            .map(serde_json::Value::String)
    }

    fn seal_text(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        owner: &ProfileId,
        s: &str,
        aad: &str,
    ) -> Result<String, StoreError> {
        Self::key_of(keys, owner)?
            .seal(owner.as_str(), s.as_bytes(), aad.as_bytes())
            .map_err(|e| crypto("sealing", e))
    }

    /// Opens a sealed JSON value; a value that is not sealed (written before encryption) is
    /// returned as it is; `Ok(None)` when its data key is gone (erased).
    fn open_json(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        v: serde_json::Value,
        aad: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        match &v {
            serde_json::Value::String(s) if sealed_owner(s).is_some() => self.open_serialized(keys, s, aad),
            _ => Ok(Some(v)),
        }
    }

    fn open_text(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        s: String,
        aad: &str,
    ) -> Result<Option<String>, StoreError> {
        if sealed_owner(&s).is_none() {
            return Ok(Some(s));
        }
        let Some((dk, owner)) = Self::opener(keys, &s, aad)? else {
            return Ok(None);
        };
        let bytes = dk
            .open(&s, aad.as_bytes())
            .map_err(|e| crypto(&format!("opening data of {owner}"), e))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| crypto("sealed text", e))
    }

    /// Seals the JSON serialization of `value` (no intermediate `Value` tree: profiles are
    /// sealed at every checkpoint).
    fn seal_serialized<T: serde::Serialize>(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        owner: &ProfileId,
        value: &T,
        aad: &str,
    ) -> Result<String, StoreError> {
        Self::key_of(keys, owner)?
            .seal_serialized(owner.as_str(), value, aad.as_bytes())
            .map_err(|e| crypto("sealing", e))
    }

    /// Opens what [`Self::seal_serialized`] sealed; `Ok(None)` when its data key is gone.
    fn open_serialized<T: serde::de::DeserializeOwned>(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        sealed: &str,
        aad: &str,
    ) -> Result<Option<T>, StoreError> {
        let Some((dk, owner)) = Self::opener(keys, sealed, aad)? else {
            return Ok(None);
        };
        dk.open_deserialized(sealed, aad.as_bytes())
            .map(Some)
            .map_err(|e| crypto(&format!("opening data of {owner}"), e))
    }

    fn seal_profile(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        p: &Profile,
    ) -> Result<Profile, StoreError> {
        let sealed = self.seal_serialized(keys, &p.id, p, &format!("profile:{}", p.id))?;
        let mut out = Profile::new(p.id.clone(), p.created_at);
        out.version = p.version;
        out.updated_at = p.updated_at;
        out.merged_into = p.merged_into.clone();
        out.sealed = Some(sealed);
        Ok(out)
    }

    fn open_profile(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        p: Profile,
    ) -> Result<Option<Profile>, StoreError> {
        let Some(sealed) = &p.sealed else {
            return Ok(Some(p));
        };
        self.open_serialized(keys, sealed, &format!("profile:{}", p.id))
    }

    fn seal_version(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        v: &ProfileVersion,
    ) -> Result<ProfileVersion, StoreError> {
        let aad = format!("version:{}:{}", v.profile_id, v.version);
        let sealed = self.seal_serialized(keys, &v.profile_id, &v.diff, &aad)?;
        Ok(ProfileVersion {
            profile_id: v.profile_id.clone(),
            version: v.version,
            recorded_at: v.recorded_at,
            cause: v.cause.clone(),
            diff: ProfileDiff {
                events_applied: v.diff.events_applied,
                sealed: Some(sealed),
                ..ProfileDiff::default()
            },
            snapshot: v
                .snapshot
                .as_ref()
                .map(|s| self.seal_profile(keys, s))
                .transpose()?,
        })
    }

    fn open_version(
        &self,
        keys: &HashMap<ProfileId, Arc<DataKey>>,
        mut v: ProfileVersion,
    ) -> Result<Option<ProfileVersion>, StoreError> {
        if let Some(sealed) = v.diff.sealed.take() {
            let aad = format!("version:{}:{}", v.profile_id, v.version);
            match self.open_serialized(keys, &sealed, &aad)? {
                None => return Ok(None),
                Some(d) => v.diff = d,
            }
        }
        if let Some(s) = v.snapshot.take() {
            match self.open_profile(keys, s)? {
                None => return Ok(None),
                Some(p) => v.snapshot = Some(p),
            }
        }
        Ok(Some(v))
    }

    async fn open_events(&self, events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        let owners: Vec<ProfileId> = events
            .iter()
            .filter_map(|e| e.body.as_str().and_then(sealed_owner))
            .collect();
        let keys = self.keys_for(&owners, false).await?;
        let mut out = Vec::with_capacity(events.len());
        for mut e in events {
            let aad = format!("event:{}", e.message_id);
            if let Some(body) = self.open_json(&keys, std::mem::take(&mut e.body), &aad)? {
                e.body = body;
                out.push(e);
            }
        }
        Ok(out)
    }

    async fn open_profiles(&self, profiles: Vec<Profile>) -> Result<Vec<Profile>, StoreError> {
        let owners: Vec<ProfileId> = profiles
            .iter()
            .filter(|p| p.sealed.is_some())
            .map(|p| p.id.clone())
            .collect();
        let keys = self.keys_for(&owners, false).await?;
        let mut out = Vec::with_capacity(profiles.len());
        for p in profiles {
            if let Some(p) = self.open_profile(&keys, p)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn open_versions(&self, versions: Vec<ProfileVersion>) -> Result<Vec<ProfileVersion>, StoreError> {
        let owners: Vec<ProfileId> = versions.iter().map(|v| v.profile_id.clone()).collect();
        let keys = self.keys_for(&owners, false).await?;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            if let Some(v) = self.open_version(&keys, v)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    async fn open_instances(
        &self,
        instances: Vec<JourneyInstance>,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        let owners: Vec<ProfileId> = instances.iter().map(|i| i.profile_id.clone()).collect();
        let keys = self.keys_for(&owners, false).await?;
        let mut out = Vec::with_capacity(instances.len());
        for mut i in instances {
            let aad = format!("instance:{}", i.id);
            if let Some(c) = self.open_json(&keys, std::mem::take(&mut i.context), &aad)? {
                i.context = c;
                out.push(i);
            }
        }
        Ok(out)
    }

    async fn open_messages(&self, messages: Vec<OutboxMessage>) -> Result<Vec<OutboxMessage>, StoreError> {
        let owners: Vec<ProfileId> = messages.iter().map(|m| m.profile_id.clone()).collect();
        let keys = self.keys_for(&owners, false).await?;
        let mut out = Vec::with_capacity(messages.len());
        for mut m in messages {
            let aad = format!("outbox:{}", m.id);
            let Some(c) = self.open_json(&keys, std::mem::take(&mut m.context), &aad)? else {
                continue;
            };
            m.context = c;
            if let Some(r) = m.recipient.take() {
                let Some(r) = self.open_text(&keys, r, &format!("recipient:{}", m.id))? else {
                    continue;
                };
                m.recipient = Some(r);
            }
            out.push(m);
        }
        Ok(out)
    }

    async fn seal_messages(&self, messages: Vec<OutboxMessage>) -> Result<Vec<OutboxMessage>, StoreError> {
        let owners: Vec<ProfileId> = messages.iter().map(|m| m.profile_id.clone()).collect();
        let keys = self.keys_for(&owners, true).await?;
        messages
            .into_iter()
            .map(|mut m| {
                m.context = self.seal_json(&keys, &m.profile_id, &m.context, &format!("outbox:{}", m.id))?;
                if let Some(r) = &m.recipient {
                    m.recipient =
                        Some(self.seal_text(&keys, &m.profile_id, r, &format!("recipient:{}", m.id))?);
                }
                Ok(m)
            })
            .collect()
    }

    fn index(&self, k: &IdentityKey) -> IdentityKey {
        IdentityKey {
            kind: k.kind,
            value: match k.kind {
                IdentityKind::Email => self.keyring.blind_index_email(&k.value),
                IdentityKind::UserId => self.keyring.blind_index_user_id(&k.value),
                IdentityKind::AnonymousId => self.keyring.blind_index_anonymous_id(&k.value),
            },
        }
    }
}

/// The profile whose data key sealed `s`, if `s` is sealed.
fn sealed_owner(s: &str) -> Option<ProfileId> {
    missive_privacy::sealed_key_label(s).and_then(|l| ProfileId::parse(l).ok())
}
