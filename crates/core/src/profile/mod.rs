//! The customer profile: identities, traits with provenance, aggregates, recent history, and
//! the diffs that make its versions.
//!
//! Folding an event into a profile records what it touched in a [`Touched`]; at commit the
//! engine turns that into a [`ProfileDiff`] holding the new values of exactly those parts.
//! Replaying diffs over a snapshot rebuilds the profile as it was at any version.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::consent::{ConsentChange, Purpose, PurposeConsent, REFUSALS_MAX, Refusal};
use crate::{EmailAddress, Event, EventKind, IdentityKey, IdentityKind, ProfileId};

mod aggregates;
mod history;

pub use aggregates::{EventAggregate, EventAggregates, OrderAggregate, Rfm, WINDOW_DAYS, order_revenue};
pub use history::{CompactProperties, HISTORY_PROPERTIES_MAX_BYTES, HistoryEntry, RecentEvent, fits};

/// The event whose properties feed the order aggregates (Segment's e-commerce spec).
pub const ORDER_COMPLETED: &str = "Order Completed";

/// Whether a trait was collected by the retailer itself or bought/enriched from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraitParty {
    #[default]
    First,
    Third,
}

/// One trait value with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trait {
    pub value: Value,
    /// The call and library it came from (`identify:analytics-python`), or the sender's source.
    pub source: String,
    pub party: TraitParty,
    /// Event time of the message that set it.
    pub at: DateTime<Utc>,
    /// The lawful basis claimed for it; enforced by the privacy layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_basis: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identities {
    #[serde(default)]
    pub user_ids: BTreeSet<String>,
    #[serde(default)]
    pub anonymous_ids: BTreeSet<String>,
    #[serde(default)]
    pub emails: BTreeSet<String>,
}

impl Identities {
    pub fn insert(&mut self, key: &IdentityKey) -> bool {
        let set = match key.kind {
            IdentityKind::UserId => &mut self.user_ids,
            IdentityKind::AnonymousId => &mut self.anonymous_ids,
            IdentityKind::Email => &mut self.emails,
        };
        set.insert(key.value.clone())
    }

    pub fn keys(&self) -> Vec<IdentityKey> {
        let u = self.user_ids.iter().map(|v| IdentityKey::user_id(v.clone()));
        let e = self.emails.iter().map(|v| IdentityKey {
            kind: IdentityKind::Email,
            value: v.clone(),
        });
        let a = self
            .anonymous_ids
            .iter()
            .map(|v| IdentityKey::anonymous_id(v.clone()));
        u.chain(e).chain(a).collect()
    }
}

/// The segments a profile is in, and when each time-dependent one must be looked at again.
/// The segment engine computes it; the profile keeps it so that it is checkpointed, versioned
/// and replayed with everything else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub segments: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timers: BTreeMap<String, DateTime<Utc>>,
}

impl Membership {
    /// The earliest timer.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.timers.values().min().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.timers.is_empty()
    }
}

/// What folding touched, so that the diff holds exactly the changed parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Touched {
    pub traits: BTreeSet<String>,
    pub events: BTreeSet<String>,
    pub orders: bool,
    pub seen: bool,
    /// `last_seen` before the first event of the change (`None`: never seen, or not known):
    /// a segment that reads only `last_seen after …` need not be re-checked when that
    /// predicate was true already.
    pub seen_from: Option<DateTime<Utc>>,
    pub identities: Vec<IdentityKey>,
    pub merged_from: Vec<ProfileId>,
    pub merged_into: Option<ProfileId>,
    pub events_applied: u32,
    /// Segment membership or timers changed.
    pub segments: bool,
    pub consent: bool,
    pub refusals: bool,
    /// Model scores changed.
    pub scores: bool,
}

impl Touched {
    /// Adds what `other` touched.
    pub fn merge(&mut self, other: Touched) {
        self.traits.extend(other.traits);
        self.events.extend(other.events);
        self.orders |= other.orders;
        if !self.seen {
            self.seen_from = other.seen_from;
        }
        self.seen |= other.seen;
        self.identities.extend(other.identities);
        self.merged_from.extend(other.merged_from);
        if other.merged_into.is_some() {
            self.merged_into = other.merged_into;
        }
        self.events_applied += other.events_applied;
        self.segments |= other.segments;
        self.consent |= other.consent;
        self.refusals |= other.refusals;
        self.scores |= other.scores;
    }

    pub fn is_empty(&self) -> bool {
        self.traits.is_empty()
            && self.events.is_empty()
            && !self.orders
            && !self.seen
            && self.identities.is_empty()
            && self.merged_from.is_empty()
            && self.merged_into.is_none()
            && !self.segments
            && !self.consent
            && !self.refusals
            && !self.scores
    }
}

/// A profile's traits in the order they were first set: templates iterate them as written
/// (`{% for t in customer %}`), as Shopify and every JSON user expect.
pub type Traits = indexmap::IndexMap<String, Trait>;

/// The new values of the parts of a profile one version changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileDiff {
    #[serde(default, skip_serializing_if = "Traits::is_empty")]
    pub traits: Traits,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub events: BTreeMap<String, EventAggregate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<OrderAggregate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities_added: Vec<IdentityKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<ProfileId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<ProfileId>,
    #[serde(default)]
    pub events_applied: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Membership>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<BTreeMap<Purpose, PurposeConsent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusals: Option<Vec<Refusal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<BTreeMap<String, Value>>,
    /// Set only in storage, by the encrypting store: every other field is inside this
    /// ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// One person, as missive knows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: ProfileId,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when this profile was merged into another; lookups follow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<ProfileId>,
    #[serde(default)]
    pub identities: Identities,
    #[serde(default)]
    pub traits: Traits,
    #[serde(default)]
    pub events: EventAggregates,
    #[serde(default)]
    pub orders: OrderAggregate,
    #[serde(default)]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    /// Segments the profile is in, with their timers.
    #[serde(default, skip_serializing_if = "Membership::is_empty")]
    pub segments: Membership,
    /// The events saved segments count in their windows, oldest first: every event of the
    /// names they read, back to their longest window. Kept by the engine, stored with the
    /// profile, so that windows are exact however long the history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window_events: Vec<HistoryEntry>,
    /// Model outputs (`cluster`, propensity and value scores): written by the models, read by
    /// segments as `scores.NAME` and `model.cluster`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, Value>,
    /// Consent per purpose with its evidence (see [`crate::consent`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consent: BTreeMap<Purpose, PurposeConsent>,
    /// Traits and consent refused (third-party data without consent), newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    /// Set only in storage, by the encrypting store: every field but the id, version, times
    /// and `merged_into` is inside this ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// Most recent events, newest last. Not stored with the profile: it is rebuilt from the
    /// event log on load, which already holds it.
    #[serde(skip)]
    pub history: VecDeque<RecentEvent>,
}

impl Profile {
    pub fn new(id: ProfileId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            version: 0,
            created_at: now,
            updated_at: now,
            merged_into: None,
            identities: Identities::default(),
            traits: Traits::new(),
            events: EventAggregates::new(),
            orders: OrderAggregate::default(),
            first_seen: None,
            last_seen: None,
            segments: Membership::default(),
            window_events: Vec::new(),
            scores: BTreeMap::new(),
            consent: BTreeMap::new(),
            refusals: Vec::new(),
            sealed: None,
            history: VecDeque::new(),
        }
    }

    pub fn add_identity(&mut self, key: &IdentityKey, touched: &mut Touched) {
        if self.identities.insert(key) {
            touched.identities.push(key.clone());
        }
    }

    /// Folds one event: traits, identities, aggregates, orders, seen times and history.
    pub fn apply_event(&mut self, e: &Event, history_len: usize, touched: &mut Touched) {
        for key in e.identity_keys() {
            self.add_identity(&key, touched);
        }
        if let Some(c) = e.traits.get("consent") {
            self.apply_consent(c, e, touched);
        }
        for (name, value) in &e.traits {
            if name == "consent" {
                continue;
            }
            if e.provenance.party == TraitParty::Third && !self.consents(Purpose::ThirdPartyEnrichment) {
                self.refuse(name, e, "no third_party_enrichment consent", touched);
                continue;
            }
            self.set_trait(name, value, e, touched);
            if e.provenance.party == TraitParty::Third
                && let Some(t) = self.traits.get_mut(name)
                && t.consent_basis.is_none()
            {
                // The opt-in it rests on.
                t.consent_basis = Some("consent:third_party_enrichment".into());
            }
        }

        self.events
            .entry(e.name.clone())
            .or_insert_with(|| EventAggregate::new(e.timestamp))
            .add(e.timestamp, 1);
        touched.events.insert(e.name.clone());

        if e.kind == EventKind::Track && e.name == ORDER_COMPLETED {
            let o = &mut self.orders;
            o.count += 1;
            o.revenue = o.revenue + order_revenue(&e.properties);
            o.first_at = Some(o.first_at.map_or(e.timestamp, |t| t.min(e.timestamp)));
            o.last_at = Some(o.last_at.map_or(e.timestamp, |t| t.max(e.timestamp)));
            o.add_categories(&e.properties);
            touched.orders = true;
        }

        if !touched.seen {
            touched.seen_from = self.last_seen;
        }
        self.first_seen = Some(self.first_seen.map_or(e.timestamp, |t| t.min(e.timestamp)));
        self.last_seen = Some(self.last_seen.map_or(e.timestamp, |t| t.max(e.timestamp)));
        touched.seen = true;
        touched.events_applied += 1;

        self.push_history(RecentEvent::of(e), history_len);
    }

    /// The model outputs that may be used for this person: none without `profiling` consent,
    /// so that segments, journeys and templates never act on a score of someone who refused
    /// profiling (models must also leave them out of training: see [`Purpose::Profiling`]).
    pub fn model_scores(&self) -> &BTreeMap<String, Value> {
        static NONE: BTreeMap<String, Value> = BTreeMap::new();
        if self.consents(Purpose::Profiling) {
            &self.scores
        } else {
            &NONE
        }
    }

    /// Whether the person has granted `purpose` (and not withdrawn it since).
    pub fn consents(&self, purpose: Purpose) -> bool {
        self.consent.get(&purpose).is_some_and(|c| c.current.granted)
    }

    fn apply_consent(&mut self, v: &Value, e: &Event, touched: &mut Touched) {
        // Validation refused malformed consent at ingest; anything else here is ignored.
        let Ok(changes) = crate::consent::parse_consent_object(v) else {
            return;
        };
        if e.provenance.party == TraitParty::Third {
            self.refuse("consent", e, "consent cannot come from a third party", touched);
            return;
        }
        let context = e.body.get("context");
        let text = |k: &str| {
            context
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        for (purpose, granted) in changes {
            // A withdrawal made on missive's own pages is the person's word: a client key, which
            // anyone can use, cannot grant it back (the person can, there, or a server key).
            if e.trust == crate::Trust::Client
                && granted
                && self
                    .consent
                    .get(&purpose)
                    .is_some_and(|c| !c.current.granted && c.current.is_missives_own())
            {
                self.refuse(
                    &format!("consent.{}", purpose.as_str()),
                    e,
                    "withdrawn on missive's own pages: only the person there, or a server key, can grant it again",
                    touched,
                );
                continue;
            }
            let change = ConsentChange {
                granted,
                at: e.timestamp,
                source: e.provenance.source.clone(),
                policy_version: e.provenance.policy_version.clone(),
                ip: text("ip"),
                user_agent: text("userAgent"),
                message_id: e.message_id.clone(),
                trust: Some(e.trust),
            };
            match self.consent.get_mut(&purpose) {
                Some(c) => c.record(change),
                None => {
                    self.consent.insert(
                        purpose,
                        PurposeConsent {
                            current: change,
                            history: Vec::new(),
                        },
                    );
                }
            }
        }
        touched.consent = true;
    }

    fn refuse(&mut self, name: &str, e: &Event, reason: &str, touched: &mut Touched) {
        self.refusals.push(Refusal {
            name: name.to_owned(),
            source: e.provenance.source.clone(),
            at: e.timestamp,
            reason: reason.to_owned(),
            message_id: e.message_id.clone(),
        });
        if self.refusals.len() > REFUSALS_MAX {
            let excess = self.refusals.len() - REFUSALS_MAX;
            self.refusals.drain(..excess);
        }
        touched.refusals = true;
    }

    fn set_trait(&mut self, name: &str, value: &Value, e: &Event, touched: &mut Touched) {
        if let Some(old) = self.traits.get(name) {
            // An out-of-order older message never overwrites a newer value.
            if old.at > e.timestamp {
                return;
            }
            if &old.value == value && old.source == e.provenance.source && old.party == e.provenance.party {
                return;
            }
        }
        self.traits.insert(
            name.to_owned(),
            Trait {
                value: value.clone(),
                source: e.provenance.source.clone(),
                party: e.provenance.party,
                at: e.timestamp,
                consent_basis: e.provenance.consent_basis.clone(),
            },
        );
        touched.traits.insert(name.to_owned());
    }

    fn push_history(&mut self, entry: RecentEvent, history_len: usize) {
        if history_len == 0 {
            return;
        }
        // Keep the history ordered by event time even when events arrive late.
        let pos = self.history.partition_point(|h| h.at <= entry.at);
        if pos == 0 && self.history.len() >= history_len {
            return;
        }
        self.history.insert(pos, entry);
        while self.history.len() > history_len {
            self.history.pop_front();
        }
    }

    /// Merges `other` (an anonymous or aliased profile) into this one: identities, traits
    /// (the newer value wins), aggregates, orders, seen times and history.
    pub fn absorb(&mut self, other: &Profile, history_len: usize, touched: &mut Touched) {
        for key in other.identities.keys() {
            self.add_identity(&key, touched);
        }
        for (name, t) in &other.traits {
            // A merge never changes where a known person's mail goes: the absorbed profile's
            // address stays as an identity, the mailing address stays this profile's.
            if name == "email" && self.traits.contains_key("email") {
                continue;
            }
            let newer = self.traits.get(name).is_none_or(|mine| t.at > mine.at);
            if newer {
                self.traits.insert(name.clone(), t.clone());
                touched.traits.insert(name.clone());
            }
        }
        for (name, agg) in &other.events {
            match self.events.get_mut(name) {
                Some(mine) => mine.absorb(agg),
                None => {
                    self.events.insert(name.clone(), agg.clone());
                }
            }
            touched.events.insert(name.clone());
        }
        if other.orders.count > 0 {
            let o = &mut self.orders;
            o.count += other.orders.count;
            o.revenue = o.revenue + other.orders.revenue;
            o.first_at = min_opt(o.first_at, other.orders.first_at);
            o.last_at = max_opt(o.last_at, other.orders.last_at);
            for (c, n) in &other.orders.categories {
                o.add_category(c, *n);
            }
            touched.orders = true;
        }
        if !touched.seen {
            touched.seen_from = self.last_seen;
        }
        self.first_seen = min_opt(self.first_seen, other.first_seen);
        self.last_seen = max_opt(self.last_seen, other.last_seen);
        touched.seen = true;
        for h in &other.history {
            self.push_history(h.clone(), history_len);
        }
        if !other.window_events.is_empty() {
            self.window_events.extend(other.window_events.iter().cloned());
            self.window_events
                .sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message_id.cmp(&b.message_id)));
            self.window_events.dedup_by(|a, b| a.message_id == b.message_id);
        }
        for (purpose, theirs) in &other.consent {
            match self.consent.get_mut(purpose) {
                Some(mine) => {
                    for c in theirs.history.iter().chain([&theirs.current]) {
                        mine.record(c.clone());
                    }
                }
                None => {
                    self.consent.insert(*purpose, theirs.clone());
                }
            }
            touched.consent = true;
        }
        if !other.refusals.is_empty() {
            self.refusals.extend(other.refusals.iter().cloned());
            self.refusals.sort_by_key(|r| r.at);
            let excess = self.refusals.len().saturating_sub(REFUSALS_MAX);
            self.refusals.drain(..excess);
            touched.refusals = true;
        }
        // Scores this profile lacks are taken from the absorbed one until the models score
        // the merged profile afresh.
        for (name, v) in &other.scores {
            if !self.scores.contains_key(name) {
                self.scores.insert(name.clone(), v.clone());
                touched.scores = true;
            }
        }
        self.created_at = self.created_at.min(other.created_at);
        touched.merged_from.push(other.id.clone());
    }

    /// The diff holding the current values of what `touched` names.
    pub fn diff_for(&self, touched: &Touched) -> ProfileDiff {
        ProfileDiff {
            // In the profile's order, so that a profile rebuilt from versions has it too.
            traits: self
                .traits
                .iter()
                .filter(|(k, _)| touched.traits.contains(k.as_str()))
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect(),
            events: touched
                .events
                .iter()
                .filter_map(|k| self.events.get(k).map(|a| (k.clone(), a.clone())))
                .collect(),
            orders: touched.orders.then(|| self.orders.clone()),
            first_seen: if touched.seen { self.first_seen } else { None },
            last_seen: if touched.seen { self.last_seen } else { None },
            identities_added: touched.identities.clone(),
            merged_from: touched.merged_from.clone(),
            merged_into: touched.merged_into.clone(),
            events_applied: touched.events_applied,
            segments: touched.segments.then(|| self.segments.clone()),
            consent: touched.consent.then(|| self.consent.clone()),
            refusals: touched.refusals.then(|| self.refusals.clone()),
            scores: touched.scores.then(|| self.scores.clone()),
            sealed: None,
        }
    }

    /// Replays one version's diff (used to rebuild the profile as of a past time).
    pub fn apply_diff(&mut self, d: &ProfileDiff, version: u64, at: DateTime<Utc>) {
        for (k, t) in &d.traits {
            self.traits.insert(k.clone(), t.clone());
        }
        for (k, a) in &d.events {
            self.events.insert(k.clone(), a.clone());
        }
        if let Some(o) = &d.orders {
            self.orders = o.clone();
        }
        if d.first_seen.is_some() {
            self.first_seen = d.first_seen;
        }
        if d.last_seen.is_some() {
            self.last_seen = d.last_seen;
        }
        for key in &d.identities_added {
            self.identities.insert(key);
        }
        if d.merged_into.is_some() {
            self.merged_into = d.merged_into.clone();
        }
        if let Some(m) = &d.segments {
            self.segments = m.clone();
        }
        if let Some(c) = &d.consent {
            self.consent = c.clone();
        }
        if let Some(r) = &d.refusals {
            self.refusals = r.clone();
        }
        if let Some(s) = &d.scores {
            self.scores = s.clone();
        }
        self.version = version;
        self.updated_at = at;
    }

    pub fn rfm(&self, now: DateTime<Utc>) -> Rfm {
        Rfm {
            recency_days: self
                .orders
                .last_at
                .map(|t| (now - t).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 86_400e6),
            frequency: self.orders.count,
            monetary: self.orders.revenue,
        }
    }

    /// Adds an event to the window events, keeping them in time order.
    pub fn push_window_event(&mut self, entry: HistoryEntry) {
        let pos = self.window_events.partition_point(|h| h.at <= entry.at);
        self.window_events.insert(pos, entry);
    }

    /// The address this person's mail goes to: the `email` trait when it is one of the
    /// profile's addresses, else the first address known. A profile may hold several (merges,
    /// changes); which one is mailed must not depend on their alphabetical order.
    pub fn email(&self) -> Option<&str> {
        let from_trait = self
            .traits
            .get("email")
            .and_then(|t| t.value.as_str())
            .and_then(|s| EmailAddress::parse(s).ok())
            .and_then(|m| self.identities.emails.get(m.as_str()));
        from_trait
            .or_else(|| self.identities.emails.iter().next())
            .map(String::as_str)
    }

    /// Records that `name` from `e` was not stored, and why (shown with the profile).
    pub fn note_refusal(&mut self, name: &str, e: &Event, reason: &str, touched: &mut Touched) {
        self.refuse(name, e, reason, touched);
    }
}

pub(crate) fn min_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn max_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Money;
    use crate::message::{parse_time, validate_message};
    use serde_json::json;

    fn ev(v: Value) -> Event {
        let at = parse_time("2026-03-01T12:00:00Z").unwrap();
        validate_message(v, None, None, at).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn orders_revenue_and_average_order_value_come_from_order_completed() {
        let mut p = Profile::new(ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        let mut touched = Touched::default();
        for (i, rev) in [json!(10.5), json!("20")].into_iter().enumerate() {
            p.apply_event(
                &ev(json!({"type": "track", "userId": "u", "event": "Order Completed",
                           "messageId": format!("m{i}"), "timestamp": "2026-02-01T00:00:00Z",
                           "properties": {"revenue": rev}})),
                10,
                &mut touched,
            );
        }
        p.apply_event(
            &ev(
                json!({"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m3",
                       "timestamp": "2026-02-02T00:00:00Z",
                       "properties": {"products": [{"price": 5, "quantity": 2}, {"price": 1.25}]}}),
            ),
            10,
            &mut touched,
        );
        assert_eq!(p.orders.count, 3);
        assert_eq!(p.orders.revenue, Money(4175));
        assert_eq!(p.orders.average_order_value(), Some(Money(1391)));
        let rfm = p.rfm(t("2026-02-12T00:00:00Z"));
        assert_eq!(rfm.recency_days, Some(10.0));
        assert_eq!(rfm.frequency, 3);
    }

    #[test]
    fn rolling_window_counts_drop_events_as_time_passes() {
        let mut agg = EventAggregate::new(t("2026-01-01T00:00:00Z"));
        agg.add(t("2026-01-01T00:30:00Z"), 1);
        agg.add(t("2026-01-05T10:00:00Z"), 1);
        agg.add(t("2026-01-05T10:59:00Z"), 1);
        let now = t("2026-01-05T12:00:00Z");
        assert_eq!(agg.count_within(now, 1), 2);
        assert_eq!(agg.count_within(now, 7), 3);
        assert_eq!(agg.count_within(t("2026-01-12T10:30:00Z"), 7), 0);
        assert_eq!(agg.count_within(t("2026-01-12T09:30:00Z"), 7), 2);
    }

    #[test]
    fn hourly_buckets_older_than_ninety_days_are_dropped() {
        let mut agg = EventAggregate::new(t("2025-01-01T00:00:00Z"));
        agg.add(t("2025-01-01T00:00:00Z"), 1);
        agg.add(t("2026-01-01T00:00:00Z"), 1);
        assert_eq!(agg.hourly.len(), 1);
        assert_eq!(agg.count, 2);
    }

    #[test]
    fn an_older_message_does_not_overwrite_a_newer_trait() {
        let mut p = Profile::new(ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        let mut touched = Touched::default();
        p.apply_event(&ev(json!({"type": "identify", "userId": "u", "traits": {"plan": "pro"}, "timestamp": "2026-02-02T00:00:00Z"})), 5, &mut touched);
        p.apply_event(&ev(json!({"type": "identify", "userId": "u", "traits": {"plan": "free"}, "timestamp": "2026-02-01T00:00:00Z"})), 5, &mut touched);
        assert_eq!(p.traits["plan"].value, json!("pro"));
    }

    #[test]
    fn consent_is_kept_per_purpose_with_its_evidence_and_history() {
        let mut p = Profile::new(ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        let mut touched = Touched::default();
        p.apply_event(
            &ev(json!({"type": "identify", "userId": "u", "messageId": "m1",
                "timestamp": "2026-03-01T10:00:00Z",
                "traits": {"consent": {"email_marketing": true, "personalization": true}},
                "context": {"ip": "203.0.113.9", "userAgent": "Firefox/140",
                            "missive": {"source": "signup-form", "policy_version": "2026-01"}}})),
            5,
            &mut touched,
        );
        p.apply_event(
            &ev(json!({"type": "identify", "userId": "u", "messageId": "m2",
                "timestamp": "2026-03-01T11:00:00Z", "traits": {"consent": {"email_marketing": false}}})),
            5,
            &mut touched,
        );
        assert!(touched.consent);
        assert!(!p.traits.contains_key("consent"), "consent is not a trait");
        assert!(!p.consents(Purpose::EmailMarketing));
        assert!(p.consents(Purpose::Personalization));
        assert!(!p.consents(Purpose::Profiling));
        let m = &p.consent[&Purpose::EmailMarketing];
        assert_eq!(m.current.message_id.as_str(), "m2");
        let first = &m.history[0];
        assert!(first.granted);
        assert_eq!(first.source, "signup-form");
        assert_eq!(first.policy_version.as_deref(), Some("2026-01"));
        assert_eq!(first.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(first.user_agent.as_deref(), Some("Firefox/140"));
        assert_eq!(first.at, t("2026-03-01T10:00:00Z"));
    }

    #[test]
    fn third_party_traits_need_enrichment_consent_and_third_parties_cannot_give_consent() {
        let mut p = Profile::new(ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        let broker = |traits: Value| {
            ev(json!({"type": "identify", "userId": "u", "traits": traits,
                      "context": {"missive": {"source": "acme-broker", "party": "third"}}}))
        };
        let mut touched = Touched::default();
        p.apply_event(&broker(json!({"income": 50000})), 5, &mut touched);
        assert!(!p.traits.contains_key("income"));
        assert_eq!(p.refusals[0].name, "income");
        assert_eq!(p.refusals[0].reason, "no third_party_enrichment consent");
        p.apply_event(
            &broker(json!({"consent": {"third_party_enrichment": true}})),
            5,
            &mut touched,
        );
        assert!(!p.consents(Purpose::ThirdPartyEnrichment));
        assert_eq!(p.refusals[1].name, "consent");

        let grant = json!({"type": "identify", "userId": "u",
                           "traits": {"consent": {"third_party_enrichment": true}}});
        p.apply_event(&ev(grant), 5, &mut touched);
        p.apply_event(&broker(json!({"income": 50000})), 5, &mut touched);
        assert_eq!(p.traits["income"].value, json!(50000));
        assert_eq!(p.traits["income"].party, TraitParty::Third);
        assert_eq!(p.traits["income"].source, "acme-broker");
        assert_eq!(
            p.traits["income"].consent_basis.as_deref(),
            Some("consent:third_party_enrichment")
        );
    }

    #[test]
    fn model_scores_are_withheld_without_profiling_consent() {
        let mut p = Profile::new(ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        p.scores.insert("churn".into(), json!(0.8));
        assert!(p.model_scores().is_empty());
        let mut touched = Touched::default();
        let grant = json!({"type": "identify", "userId": "u", "traits": {"consent": {"profiling": true}}});
        p.apply_event(&ev(grant), 5, &mut touched);
        assert_eq!(p.model_scores()["churn"], json!(0.8));
    }

    #[test]
    fn replaying_diffs_over_a_snapshot_rebuilds_the_profile() {
        let start = t("2026-03-01T00:00:00Z");
        let mut live = Profile::new(ProfileId::generate(), start);
        let snapshot = live.clone();
        let mut diffs = Vec::new();
        for (i, v) in [
            json!({"type": "identify", "userId": "u", "traits": {"email": "a@b.co", "plan": "pro"}}),
            json!({"type": "track", "userId": "u", "event": "Order Completed", "properties": {"total": 12}}),
            json!({"type": "identify", "userId": "u", "traits": {"plan": "team"}, "timestamp": "2026-03-01T12:00:01Z"}),
            json!({"type": "identify", "userId": "u", "traits": {"consent": {"profiling": true}}}),
            json!({"type": "identify", "userId": "u", "traits": {"income": 9},
                   "context": {"missive": {"source": "broker", "party": "third"}}}),
        ]
        .into_iter()
        .enumerate()
        {
            let mut touched = Touched::default();
            live.apply_event(&ev(v), 5, &mut touched);
            live.version = i as u64 + 1;
            diffs.push(live.diff_for(&touched));
        }
        let mut rebuilt = snapshot;
        for (i, d) in diffs.iter().enumerate() {
            rebuilt.apply_diff(d, i as u64 + 1, live.updated_at);
        }
        rebuilt.history = live.history.clone();
        assert_eq!(rebuilt, live);
    }

    #[test]
    fn absorb_sums_aggregates_and_keeps_the_newest_traits() {
        let now = t("2026-03-01T00:00:00Z");
        let mut anon = Profile::new(ProfileId::generate(), now);
        let mut known = Profile::new(ProfileId::generate(), now);
        let mut touched = Touched::default();
        anon.apply_event(&ev(json!({"type": "track", "anonymousId": "a", "event": "Product Viewed", "timestamp": "2026-02-01T00:00:00Z", "context": {"traits": {"city": "Paris"}}})), 5, &mut touched);
        known.apply_event(&ev(json!({"type": "track", "userId": "u", "event": "Product Viewed", "timestamp": "2026-02-03T00:00:00Z", "context": {"traits": {"city": "Lyon"}}})), 5, &mut touched);
        let mut touched = Touched::default();
        known.absorb(&anon, 5, &mut touched);
        assert_eq!(known.events.get("Product Viewed").map(|a| a.count), Some(2));
        assert_eq!(known.traits["city"].value, json!("Lyon"));
        assert_eq!(known.first_seen, Some(t("2026-02-01T00:00:00Z")));
        assert!(known.identities.anonymous_ids.contains("a"));
        assert_eq!(known.history.len(), 2);
        assert_eq!(touched.merged_from, vec![anon.id.clone()]);
    }

    #[test]
    fn size_estimate_tracks_the_serialized_size() {
        let small = json!({"sku": "A-1", "price": 19.99, "tags": ["a", "b"], "nested": {"x": true}});
        let Value::Object(small) = small else {
            unreachable!()
        };
        let real = serde_json::to_vec(&small).unwrap().len();
        assert!(fits(&small, real + 16) && !fits(&small, real / 2), "{real}");
        let big = json!({"blob": "x".repeat(5000)});
        let Value::Object(big) = big else { unreachable!() };
        assert!(!fits(&big, 4096));
    }

    #[test]
    fn counts_per_event_name_serialize_as_an_object_even_when_empty() {
        // Older binaries (a `BTreeMap`) read only an object; litemap alone writes `[]` for none.
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut p = Profile::new(ProfileId::generate(), at);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["events"], serde_json::json!({}));
        p.events.insert("B".into(), EventAggregate::new(at));
        p.events.insert("A".into(), EventAggregate::new(at));
        let json = serde_json::to_value(&p).unwrap();
        let names: Vec<_> = json["events"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(names, ["A", "B"]);
        let back: Profile = serde_json::from_value(json).unwrap();
        assert_eq!(back.events, p.events);
    }

    #[test]
    fn history_is_bounded_and_ordered_by_event_time() {
        let mut p = Profile::new(ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        let mut touched = Touched::default();
        for i in 0..5 {
            p.apply_event(
                &ev(json!({"type": "track", "userId": "u", "event": format!("e{i}"),
                "timestamp": format!("2026-02-0{}T00:00:00Z", 5 - i)})),
                3,
                &mut touched,
            );
        }
        let names: Vec<_> = p.history.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["e2", "e1", "e0"]);
    }
}
