//! Data-subject rights and consent: export everything about a person, erase them, record
//! consent given through the API or the preference centre, and purge events past retention.
//!
//! Consent changes are ingested as `identify` messages carrying `traits.consent`, so that they
//! are ordered, durable and versioned like every other change (see [`missive_core::consent`]).
//! Erasure goes through the pipeline ([`Engine::erase`]): it is ordered after everything
//! accepted before it, and every later event naming the person is dropped.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::message::validate_message;
use missive_core::{IdentityKey, Profile, ProfileId, Purpose};
use missive_store::{ErasureCounts, StoreError, Suppression};
use serde::Serialize;
use serde_json::{Value, json};

use crate::pipeline::{Engine, EngineError, identity_hash};
use crate::profiles::{ProfileKey, find_profile, resolve_key};

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("profile not found")]
    NotFound,
    #[error("invalid consent: {0}")]
    InvalidConsent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] std::sync::Arc<EngineError>),
}

/// A consent change with its evidence, as the consent API and the preference centre submit it.
#[derive(Debug, Clone, Default)]
pub struct ConsentUpdate {
    pub purposes: Vec<(Purpose, bool)>,
    /// Where it was given: `preference-centre`, `api:crm-sync`, …
    pub source: String,
    pub policy_version: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Makes a resubmitted change count once.
    pub message_id: Option<String>,
    /// Other traits set in the same change (the preference centre's frequency and topics).
    pub traits: serde_json::Map<String, Value>,
}

/// What an erasure did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErasureReport {
    /// The profile and every profile merged into it.
    pub profiles: Vec<ProfileId>,
    pub deleted: ErasureCounts,
    /// Identities remembered only as keyed hashes, so that a re-import is dropped.
    pub identities_blocked: usize,
    /// The e-mail addresses put on the suppression list (as keyed hashes).
    pub addresses_suppressed: usize,
    /// Copies of the person's sent messages deleted from the local maildir.
    pub mail_copies_deleted: usize,
}

/// Privacy settings.
#[derive(Debug, Clone)]
pub struct PrivacyConfig {
    /// Traits that identify a person: left out of pseudonymized analytics, shown first in the
    /// preference centre. Values that are e-mail addresses or phone numbers are left out of
    /// analytics whatever their name.
    pub personal_traits: BTreeSet<String>,
    /// Traits declared not personal (`privacy.analytics_traits`): the only traits pseudonymized
    /// analytics shows. An allow-list: a trait nobody declared could be anything (`surname`,
    /// `iban`, `contact.email`), so it is left out.
    pub analytics_traits: BTreeSet<String>,
    /// Events older than this are purged (`None`: kept).
    pub event_retention: Option<TimeDelta>,
    /// The topics people can decline in the preference centre.
    pub topics: Vec<Topic>,
    /// The privacy-policy version consent given in the preference centre is recorded under.
    pub policy_version: Option<String>,
}

impl PrivacyConfig {
    /// Refuses a journey's or broadcast's `topic` that is not a configured topic: people
    /// who declined the topic they meant would otherwise still be sent it.
    pub fn check_topic(&self, topic: Option<&str>) -> Result<(), String> {
        let Some(topic) = topic else { return Ok(()) };
        if self.topics.iter().any(|t| t.id == topic) {
            return Ok(());
        }
        if self.topics.is_empty() {
            return Err(format!(
                "topic {topic:?} is not configured: no topics are ([[privacy.topics]] in the configuration)"
            ));
        }
        let known: Vec<&str> = self.topics.iter().map(|t| t.id.as_str()).collect();
        Err(format!(
            "topic {topic:?} is not configured; configured topics: {}",
            known.join(", ")
        ))
    }
}

impl PrivacyConfig {
    /// The traits of `p` an analyst may see: only those declared in `analytics_traits`, and
    /// within them only values that cannot name or reach a person (see [`analytics_value`]).
    pub fn analytics_traits_of(&self, p: &Profile) -> BTreeMap<String, Value> {
        p.traits
            .iter()
            .filter(|(name, _)| self.analytics_traits.contains(name.as_str()))
            .filter_map(|(name, t)| Some((name.clone(), analytics_value(&t.value)?)))
            .collect()
    }
}

/// A value as pseudonymized analytics may show it: numbers and booleans as they are; strings
/// unless they hold an e-mail address, a phone number or an IBAN (anywhere in them:
/// `"Ann <ann@example.com>"`); arrays and objects with such values (and object keys that name
/// personal fields) removed at every depth. `None` when nothing is left.
pub fn analytics_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => Some(v.clone()),
        Value::String(s) => (!looks_personal(s)).then(|| v.clone()),
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(analytics_value).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(m) => {
            let kept: serde_json::Map<String, Value> = m
                .iter()
                .filter(|(k, _)| !names_personal_field(k))
                .filter_map(|(k, v)| Some((k.clone(), analytics_value(v)?)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
    }
}

/// Field names that hold personal data whatever their value looks like (compared without case
/// or separators: `Full_Name`, `surName`, `e-mail`).
fn names_personal_field(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const CONTAINING: [&str; 13] = [
        "email", "phone", "mobile", "address", "street", "postcode", "zipcode", "iban", "birth", "passport",
        "surname", "fullname", "username",
    ];
    const EXACTLY: [&str; 10] = [
        "name",
        "firstname",
        "lastname",
        "mail",
        "zip",
        "ip",
        "gender",
        "sex",
        "ssn",
        "dob",
    ];
    CONTAINING.iter().any(|w| k.contains(w)) || EXACTLY.contains(&k.as_str())
}

/// Whether a string holds an e-mail address, a phone number or an IBAN anywhere in it.
fn looks_personal(s: &str) -> bool {
    let words = s.split(|c: char| c.is_whitespace() || "<>,;:()[]\"'".contains(c));
    if words
        .filter(|w| w.contains('@'))
        .any(|w| missive_core::EmailAddress::parse(w).is_ok())
    {
        return true;
    }
    // IBANs, written with or without spaces: two letters, two check digits, 11–30 more.
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let b = compact.as_bytes();
    if (15..=34).contains(&b.len())
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b[..2].iter().all(u8::is_ascii_alphabetic)
        && b[2..4].iter().all(u8::is_ascii_digit)
    {
        return true;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 7 && s.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// Deletes the messages in the maildir at `root` (`new/`, `cur/`, `tmp/`) delivered to one of
/// `addresses` (lowercase), as the maildir transport's `Delivered-To:` trace line names them;
/// returns how many.
fn delete_mail_copies(root: &std::path::Path, addresses: &BTreeSet<String>) -> std::io::Result<usize> {
    use std::io::BufRead;
    let mut deleted = 0;
    for sub in ["new", "cur", "tmp"] {
        let dir = match std::fs::read_dir(root.join(sub)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in dir {
            let path = entry?.path();
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            // The trace lines come first; stop at the end of the header.
            let mut to_them = false;
            for line in std::io::BufReader::new(file).lines().take(200) {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Delivered-To:")
                    && addresses.contains(&v.trim().to_ascii_lowercase())
                {
                    to_them = true;
                    break;
                }
            }
            if to_them {
                std::fs::remove_file(&path)?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// A kind of e-mail people can opt out of on its own (`offers`, `restock alerts`, …).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// What journeys and broadcasts name in their `topic`.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        let personal = [
            "email",
            "name",
            "first_name",
            "last_name",
            "firstName",
            "lastName",
            "phone",
            "phone_number",
            "mobile",
            "address",
            "street",
            "city",
            "postal_code",
            "postcode",
            "zip",
            "birthday",
            "date_of_birth",
            "ip",
            "username",
        ];
        Self {
            personal_traits: personal.iter().map(|s| s.to_string()).collect(),
            analytics_traits: BTreeSet::new(),
            event_retention: None,
            topics: Vec::new(),
            policy_version: None,
        }
    }
}

/// Consent, export, erasure and retention over the engine's store.
#[derive(Clone)]
pub struct Privacy {
    engine: Engine,
    /// The local maildir sent e-mail is written to (the embedded transport), whose copies of a
    /// person's messages erasure deletes.
    maildir: Option<std::path::PathBuf>,
}

impl Privacy {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            maildir: None,
        }
    }

    /// Erasure also deletes the copies of a person's messages in this maildir.
    pub fn with_maildir(mut self, root: impl Into<std::path::PathBuf>) -> Self {
        self.maildir = Some(root.into());
        self
    }

    /// The key of the suppression list's address hashes (the sender's).
    async fn address_key(&self) -> Result<Vec<u8>, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        Ok(self
            .engine
            .store()
            .documents()
            .meta_get_or_init("secret.address_hash", fresh)
            .await?
            .into_bytes())
    }

    /// Records a consent change for the profile `key` names, and answers the profile as it
    /// reads after it.
    pub async fn set_consent(
        &self,
        key: &ProfileKey,
        update: ConsentUpdate,
    ) -> Result<Profile, PrivacyError> {
        if update.purposes.is_empty() && update.traits.is_empty() {
            return Err(PrivacyError::InvalidConsent("name at least one purpose".into()));
        }
        let store = &self.engine.store();
        self.engine.sync().await?;
        let profile = find_profile(store, key, 0).await?.ok_or(PrivacyError::NotFound)?;
        let mut consent = serde_json::Map::new();
        for (p, granted) in &update.purposes {
            consent.insert(p.as_str().into(), Value::Bool(*granted));
        }
        let mut context = json!({"missive": {"source": update.source}});
        if let Some(v) = &update.policy_version {
            context["missive"]["policy_version"] = json!(v);
        }
        if let Some(ip) = &update.ip {
            context["ip"] = json!(ip);
        }
        if let Some(ua) = &update.user_agent {
            context["userAgent"] = json!(ua);
        }
        let mut traits = update.traits.clone();
        if !consent.is_empty() {
            traits.insert("consent".into(), Value::Object(consent));
        }
        let mut message = json!({"type": "identify", "traits": traits, "context": context});
        if let Some(id) = &update.message_id {
            message["messageId"] = json!(id);
        }
        identify_as(&profile, &mut message);
        let now = self.engine.clock().now();
        let mut event = validate_message(message, None, None, now)
            .map_err(|r| PrivacyError::InvalidConsent(r.message))?;
        // The preference centre and the consent API are missive's own: authoritative, ordered
        // by receipt (a message dated later by a client's clock cannot outrank them).
        event.set_trust(missive_core::Trust::Missive);
        self.engine.ingest(vec![event]).await?;
        // The caller checks what it reads (a cluster node waits for the owner's fold first).
        let id = ProfileKey::Id(profile.id.clone());
        self.engine
            .read_back(
                || async { find_profile(store, &id, 0).await?.ok_or(PrivacyError::NotFound) },
                |after: &Profile| match update.purposes.is_empty() {
                    true => after.version > profile.version,
                    false => update.purposes.iter().all(|(p, g)| after.consents(*p) == *g),
                },
            )
            .await
    }

    /// Everything stored about a person, as one JSON document.
    pub async fn export(&self, key: &ProfileKey) -> Result<Value, PrivacyError> {
        let store = &self.engine.store();
        self.engine.sync().await?;
        let profile = find_profile(store, key, 0).await?.ok_or(PrivacyError::NotFound)?;
        let ids = self.profile_family(&profile.id).await?;
        let mut events = Vec::new();
        for id in &ids {
            let page = crate::profiles::all_events(store, id).await?;
            events.extend(page.into_iter().map(|e| e.body));
        }
        let mut versions = Vec::new();
        let mut before = None;
        loop {
            let page = store.events().profile_versions(&profile.id, before, 500).await?;
            let Some(last) = page.last() else { break };
            before = Some(last.version);
            versions.extend(page.into_iter().map(|v| {
                json!({"version": v.version, "recorded_at": v.recorded_at, "cause": v.cause, "changes": v.diff})
            }));
        }
        let messages: Vec<Value> = store
            .delivery()
            .outbox_of(&profile.id, 10_000)
            .await?
            .into_iter()
            .map(|m| {
                json!({"id": m.id, "template": m.template, "class": m.class, "source": m.source,
                       "status": m.status.as_str(), "created_at": m.created_at, "sent_at": m.sent_at})
            })
            .collect();
        let segments: Vec<Value> = store
            .events()
            .segment_changes_of(&profile.id, 10_000)
            .await?
            .into_iter()
            .map(|c| json!({"segment": c.segment, "entered": c.entered, "at": c.at, "cause": c.cause}))
            .collect();
        let address_key = self.address_key().await?;
        let suppressed = match profile.email() {
            Some(a) => store
                .delivery()
                .suppression(&missive_privacy::address_hash(&address_key, a))
                .await?
                .map(|s| json!({"reason": s.reason, "at": s.at})),
            None => None,
        };
        Ok(json!({
            "format": "missive-export/1",
            "exported_at": self.engine.clock().now(),
            "profile": {
                "id": profile.id,
                "profiles_merged_into_it": ids.iter().filter(|i| **i != profile.id).collect::<Vec<_>>(),
                "created_at": profile.created_at,
                "updated_at": profile.updated_at,
                "identities": profile.identities,
                "traits": profile.traits,
                "consent": profile.consent,
                "refused": profile.refusals,
                "events_by_name": profile.events,
                "orders": profile.orders,
                "first_seen": profile.first_seen,
                "last_seen": profile.last_seen,
                "segments": profile.segments.segments,
                "scores": profile.scores,
            },
            "segment_history": segments,
            "events": events,
            "versions": versions,
            "messages": messages,
            "suppressed": suppressed,
        }))
    }

    /// Erases a person: see [`Engine::erase`]. The e-mail addresses go on the suppression list
    /// as keyed hashes, so that nothing is sent to them even if they come back by another way.
    pub async fn erase(&self, key: &ProfileKey) -> Result<ErasureReport, PrivacyError> {
        let store = &self.engine.store();
        self.engine.sync().await?;
        let id = resolve_key(store, key).await?.ok_or(PrivacyError::NotFound)?;
        let ids = self.profile_family(&id).await?;
        let mut identities: BTreeSet<IdentityKey> = BTreeSet::new();
        for pid in &ids {
            if let Some(p) = store.events().load_profile(pid).await? {
                identities.extend(p.identities.keys());
            }
        }
        let erasure_key = self.engine.erasure_key().await?;
        let hashes: Vec<String> = identities
            .iter()
            .map(|k| identity_hash(&erasure_key, k))
            .collect();
        let now = self.engine.clock().now();
        let address_key = self.address_key().await?;
        let mut suppressed = 0;
        for k in identities
            .iter()
            .filter(|k| k.kind == missive_core::IdentityKind::Email)
        {
            store
                .delivery()
                .suppress(Suppression {
                    address_hash: missive_privacy::address_hash(&address_key, &k.value),
                    reason: "erased".into(),
                    detail: "the person asked to be erased".into(),
                    at: now,
                })
                .await?;
            suppressed += 1;
        }
        let deleted = self.engine.erase(ids.clone(), hashes.clone()).await?;
        // Outbound webhooks hear of it once it is done (a crash between the erasure and this
        // line loses the notice, not the erasure; the audit log still records it). What was
        // queued about them goes first.
        store.webhooks().erase_webhook_profiles(ids.clone()).await?;
        store
            .webhooks()
            .enqueue_webhooks(
                ids.iter()
                    .map(|p| missive_store::profile_erased(p, now))
                    .collect(),
                vec![],
            )
            .await?;
        let mail_copies_deleted = match &self.maildir {
            Some(root) => {
                let addresses: BTreeSet<String> = identities
                    .iter()
                    .filter(|k| k.kind == missive_core::IdentityKind::Email)
                    .map(|k| k.value.to_ascii_lowercase())
                    .collect();
                let root = root.clone();
                tokio::task::spawn_blocking(move || delete_mail_copies(&root, &addresses))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))?
                    .map_err(|e| StoreError::Task(format!("deleting maildir copies: {e}")))?
            }
            None => 0,
        };
        Ok(ErasureReport {
            profiles: ids,
            deleted,
            identities_blocked: hashes.len(),
            addresses_suppressed: suppressed,
            mail_copies_deleted,
        })
    }

    /// Deletes events older than `retention`, in chunks; returns how many.
    pub async fn purge_expired_events(
        &self,
        retention: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let cutoff = now - retention;
        let mut total = 0;
        loop {
            let n = self
                .engine
                .store()
                .events()
                .purge_events_before(cutoff, 10_000)
                .await?;
            total += n;
            if n < 10_000 {
                return Ok(total);
            }
        }
    }

    /// The profile and every profile merged into it, transitively.
    async fn profile_family(&self, id: &ProfileId) -> Result<Vec<ProfileId>, StoreError> {
        let store = &self.engine.store();
        let mut out = vec![id.clone()];
        let mut i = 0;
        while i < out.len() {
            for m in store.events().merges_of(&out[i]).await? {
                if m.into == out[i] && !out.contains(&m.from) {
                    out.push(m.from);
                }
            }
            i += 1;
        }
        Ok(out)
    }
}

/// Addresses a message to the profile by its strongest identity: the user id, else an
/// anonymous id, else its e-mail address (with the profile id as the anonymous id Segment
/// requires).
pub fn identify_as(p: &Profile, message: &mut Value) {
    if let Some(u) = p.identities.user_ids.iter().next() {
        message["userId"] = json!(u);
    } else if let Some(a) = p.identities.anonymous_ids.iter().next() {
        message["anonymousId"] = json!(a);
    } else {
        message["anonymousId"] = json!(p.id.to_string());
        if let Some(e) = p.identities.emails.iter().next() {
            message["traits"]["email"] = json!(e);
        }
    }
}

#[cfg(test)]
mod analytics_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_values_are_removed_at_every_depth() {
        let cases = [
            (json!("gold"), Some(json!("gold"))),
            (json!(42), Some(json!(42))),
            (json!("ann@example.com"), None),
            (json!("Ann Smith <ann@example.com>"), None),
            (json!("+44 20 7946 0958"), None),
            (json!("GB82 WEST 1234 5698 7654 32"), None),
            (json!("GB82WEST12345698765432"), None),
            (json!(["a@b.co", "x"]), Some(json!(["x"]))),
            (json!(["a@b.co"]), None),
            (
                json!({"contact": {"email": "a@b.co", "city_count": 3}, "Full_Name": "Ann", "n": 1}),
                Some(json!({"contact": {"city_count": 3}, "n": 1})),
            ),
            (
                json!({"description": "ok", "shipping": "fast"}),
                Some(json!({"description": "ok", "shipping": "fast"})),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(analytics_value(&input), want, "{input}");
        }
    }
}
