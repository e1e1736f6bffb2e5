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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::{ApiKeyId, IdentityKey, IdentityKind, MessageId, Profile, ProfileDiff, ProfileId};
use missive_privacy::{DataKey, Keyring, WrappedKey};

use crate::{
    ApiKeyRecord, AuditEntry, AuditQuery, Checkpoint, DataKeyRecord, DocumentKind, DocumentRecord,
    ErasureCounts, EventBatch, EventQuery, JourneyCommit, JourneyInstance, MergeRecord, OutboxCounts,
    OutboxMessage, ProfileVersion, SegmentChange, SegmentRecord, Store, StoreError, StoreStats, StoredEvent,
    Suppression, Workspace,
};

/// Unwrapped data keys kept in memory at most (a bound: the store is the truth).
const KEY_CACHE_MAX: usize = 200_000;

pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    keys: Mutex<HashMap<ProfileId, Arc<DataKey>>>,
}

fn crypto(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Store>, keyring: Arc<Keyring>) -> Self {
        Self {
            inner,
            keyring,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

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
                self.inner.put_data_keys(new).await?;
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
        let stored = self.inner.data_keys(ids).await?;
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

    /// Replaces user ids and anonymous ids stored in clear (by versions that blind-indexed only
    /// e-mail addresses) by their blind index; returns how many. Safe to run again: a value
    /// already in blind-index form (`bu_`/`ba_` and 32 hex digits) is left alone.
    pub async fn blind_index_clear_identities(&self) -> Result<u64, StoreError> {
        // Done once per store: the scan reads every identity, too much for every start.
        const DONE: &str = "privacy.identities_blind_indexed";
        if self.inner.meta_get_or_init(DONE, "no".into()).await? == "yes" {
            return Ok(0);
        }
        let n = self.reindex_clear_identities().await?;
        self.inner.meta_set(DONE, "yes".into()).await?;
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
            let page = self.inner.identity_keys_after(after.clone(), 5_000).await?;
            let Some(last) = page.last().cloned() else { break };
            for k in page {
                let clear = match k.kind {
                    IdentityKind::UserId => !indexed(&k.value, "bu_"),
                    IdentityKind::AnonymousId => !indexed(&k.value, "ba_"),
                    IdentityKind::Email => false,
                };
                if clear {
                    let new = self.index(&k).value;
                    changes.push((k, new));
                }
            }
            after = Some(last);
        }
        if changes.is_empty() {
            return Ok(0);
        }
        self.inner.reindex_identities(changes).await
    }

    /// Re-wraps every data key under the active master key; returns how many were re-wrapped.
    pub async fn rewrap_all_data_keys(&self) -> Result<u64, StoreError> {
        let active = self.keyring.active_key_id().to_owned();
        let mut after = None;
        let mut n = 0;
        loop {
            let page = self.inner.data_keys_after(after.clone(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.profile_id.clone());
            let mut rewrapped = Vec::new();
            for rec in page.into_iter().filter(|r| r.master_key_id != active) {
                let dk = self
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
                self.inner.rewrap_data_keys(rewrapped).await?;
            }
        }
        Ok(n)
    }

    /// How many data keys each master key wraps.
    pub async fn data_keys_by_master(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut after = None;
        let mut out = HashMap::new();
        loop {
            let page = self.inner.data_keys_after(after.clone(), 5000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.profile_id.clone());
            for r in page {
                *out.entry(r.master_key_id).or_insert(0) += 1;
            }
        }
        Ok(out)
    }
}

/// The profile whose data key sealed `s`, if `s` is sealed.
fn sealed_owner(s: &str) -> Option<ProfileId> {
    missive_privacy::sealed_key_label(s).and_then(|l| ProfileId::parse(l).ok())
}

#[async_trait]
impl Store for EncryptedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn workspace(&self) -> Result<Option<Workspace>, StoreError> {
        self.inner.workspace().await
    }

    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError> {
        self.inner.bootstrap_workspace(ws, keys).await
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.api_key_by_hash(secret_hash).await
    }

    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.api_key(id).await
    }

    async fn create_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        self.inner.create_api_key(key).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.inner.list_api_keys().await
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.revoke_api_key(id, at).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.inner.append_audit(entries).await
    }

    async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_entries(query).await
    }

    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        self.inner.put_data_keys(keys).await
    }

    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError> {
        self.inner.data_keys(ids).await
    }

    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError> {
        self.inner.data_keys_after(after, limit).await
    }

    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        self.inner.rewrap_data_keys(keys).await
    }

    async fn erase_profiles(&self, ids: Vec<ProfileId>) -> Result<ErasureCounts, StoreError> {
        self.forget(&ids);
        let counts = self.inner.erase_profiles(ids.clone()).await?;
        self.forget(&ids);
        Ok(counts)
    }

    async fn add_erased_identities(&self, hashes: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.add_erased_identities(hashes, at).await
    }

    async fn erased_identities(&self) -> Result<HashSet<String>, StoreError> {
        self.inner.erased_identities().await
    }

    async fn purge_events_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.inner.purge_events_before(before, limit).await
    }

    fn identity_index(&self, key: &IdentityKey) -> IdentityKey {
        self.index(key)
    }

    async fn reindex_identities(&self, changes: Vec<(IdentityKey, String)>) -> Result<u64, StoreError> {
        let indexed = changes
            .iter()
            .map(|(old, new)| {
                let new = IdentityKey {
                    kind: old.kind,
                    value: new.clone(),
                };
                (self.index(old), self.index(&new).value)
            })
            .collect();
        self.inner.reindex_identities(indexed).await
    }

    async fn commit_events(&self, mut batch: EventBatch) -> Result<(), StoreError> {
        let keys = self
            .keys_for(batch.events.iter().map(|e| &e.origin_profile_id), true)
            .await?;
        for e in &mut batch.events {
            let aad = format!("event:{}", e.message_id);
            e.body = self.seal_json(&keys, &e.origin_profile_id, &e.body, &aad)?;
        }
        self.inner.commit_events(batch).await
    }

    async fn commit_checkpoint(&self, mut cp: Checkpoint) -> Result<(), StoreError> {
        let owners = cp
            .profiles
            .iter()
            .map(|p| &p.id)
            .chain(cp.versions.iter().map(|v| &v.profile_id));
        let keys = self.keys_for(owners, true).await?;
        cp.profiles = cp
            .profiles
            .iter()
            .map(|p| self.seal_profile(&keys, p))
            .collect::<Result<_, _>>()?;
        cp.versions = cp
            .versions
            .iter()
            .map(|v| self.seal_version(&keys, v))
            .collect::<Result<_, _>>()?;
        cp.identities = cp
            .identities
            .iter()
            .map(|(k, p)| (self.index(k), p.clone()))
            .collect();
        self.inner.commit_checkpoint(cp).await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_event_seq().await
    }

    async fn profile_checkpoint(&self) -> Result<i64, StoreError> {
        self.inner.profile_checkpoint().await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.inner.events_after(after, limit).await?;
        self.open_events(events).await
    }

    async fn message_ids_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MessageId)>, StoreError> {
        self.inner.message_ids_after(after, limit).await
    }

    async fn identity_keys_after(
        &self,
        after: Option<IdentityKey>,
        limit: u32,
    ) -> Result<Vec<IdentityKey>, StoreError> {
        // The keys come back as stored (e-mail addresses as their blind index), and so does
        // the cursor: the engine's filter holds `identity_index` forms.
        self.inner.identity_keys_after(after, limit).await
    }

    async fn existing_message_ids(&self, ids: Vec<MessageId>) -> Result<HashSet<MessageId>, StoreError> {
        self.inner.existing_message_ids(ids).await
    }

    async fn resolve_identities(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, ProfileId>, StoreError> {
        let indexed: Vec<(IdentityKey, IdentityKey)> =
            keys.into_iter().map(|k| (self.index(&k), k)).collect();
        let found = self
            .inner
            .resolve_identities(indexed.iter().map(|(i, _)| i.clone()).collect())
            .await?;
        Ok(indexed
            .into_iter()
            .filter_map(|(i, k)| found.get(&i).map(|p| (k, p.clone())))
            .collect())
    }

    async fn load_profile(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        match self.inner.load_profile(id).await? {
            None => Ok(None),
            Some(p) => Ok(self.open_profiles(vec![p]).await?.pop()),
        }
    }

    async fn profiles_after(&self, after: Option<ProfileId>, limit: u32) -> Result<Vec<Profile>, StoreError> {
        let page = self.inner.profiles_after(after, limit).await?;
        self.open_profiles(page).await
    }

    async fn profile_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.inner.profile_events(query).await?;
        self.open_events(events).await
    }

    async fn profile_versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let versions = self.inner.profile_versions(id, before, limit).await?;
        self.open_versions(versions).await
    }

    async fn versions_for_as_of(
        &self,
        id: &ProfileId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let versions = self.inner.versions_for_as_of(id, at).await?;
        self.open_versions(versions).await
    }

    async fn merges_of(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
        self.inner.merges_of(id).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }

    async fn save_segment(&self, segment: SegmentRecord) -> Result<(), StoreError> {
        self.inner.save_segment(segment).await
    }

    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_segment(name).await
    }

    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.inner.list_segments().await
    }

    async fn segment_members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.inner.segment_members(name, after, limit).await
    }

    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError> {
        self.inner.segment_changes_of(id, limit).await
    }

    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError> {
        self.inner.segment_changes_after(after, limit).await
    }

    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError> {
        self.inner.put_documents(docs).await
    }

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        self.inner.get_document(kind, name).await
    }

    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        self.inner.list_documents(kind, after, limit).await
    }

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_document(kind, name).await
    }

    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self
            .inner
            .track_events_since(names, since, after_seq, limit)
            .await?;
        self.open_events(events).await
    }

    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError> {
        self.inner.meta_get_or_init(key, init).await
    }

    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError> {
        self.inner.meta_set(key, value).await
    }

    async fn commit_journey(&self, mut commit: JourneyCommit) -> Result<(), StoreError> {
        let keys = self
            .keys_for(commit.instances.iter().map(|i| &i.profile_id), true)
            .await?;
        for i in &mut commit.instances {
            i.context = self.seal_json(&keys, &i.profile_id, &i.context, &format!("instance:{}", i.id))?;
        }
        commit.outbox = self.seal_messages(std::mem::take(&mut commit.outbox)).await?;
        self.inner.commit_journey(commit).await
    }

    async fn journey_events_through(&self) -> Result<i64, StoreError> {
        self.inner.journey_events_through().await
    }

    async fn journey_segments_through(&self) -> Result<i64, StoreError> {
        self.inner.journey_segments_through().await
    }

    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError> {
        let i = self.inner.active_instances(profile).await?;
        self.open_instances(i).await
    }

    async fn due_instances(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        let i = self.inner.due_instances(now, limit).await?;
        self.open_instances(i).await
    }

    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_instance_wake().await
    }

    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError> {
        let i = self.inner.journey_instances(journey, limit).await?;
        self.open_instances(i).await
    }

    async fn due_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let m = self.inner.due_outbox(now, limit).await?;
        self.open_messages(m).await
    }

    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError> {
        let sealed = self.seal_messages(messages).await?;
        self.inner.update_outbox(sealed).await
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        match self.inner.outbox_message(id).await? {
            None => Ok(None),
            Some(m) => Ok(self.open_messages(vec![m]).await?.pop()),
        }
    }

    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let m = self.inner.outbox_of(profile, limit).await?;
        self.open_messages(m).await
    }

    async fn marketing_sent_since(
        &self,
        profile: &ProfileId,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        self.inner.marketing_sent_since(profile, since).await
    }

    async fn suppress(&self, suppression: Suppression) -> Result<(), StoreError> {
        self.inner.suppress(suppression).await
    }

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError> {
        self.inner.suppression(address_hash).await
    }

    async fn outbox_counts(&self, source: &str) -> Result<OutboxCounts, StoreError> {
        self.inner.outbox_counts(source).await
    }

    async fn skip_queued(&self, source: &str, detail: &str) -> Result<u64, StoreError> {
        self.inner.skip_queued(source, detail).await
    }

    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError> {
        self.inner.record_soft_bounce(address_hash, at).await
    }
}
