//! A validated, normalized event: what the engine folds into a profile and the store keeps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{EmailAddress, MessageId};

/// The six calls of Segment's tracking spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => Self::Track,
            "identify" => Self::Identify,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }

    /// The name a non-track call is counted under in the profile's aggregates
    /// (`$page`, `$identify`, …); track calls are counted under their event name.
    pub fn aggregate_name(self) -> &'static str {
        match self {
            Self::Track => "$track",
            Self::Identify => "$identify",
            Self::Page => "$page",
            Self::Screen => "$screen",
            Self::Group => "$group",
            Self::Alias => "$alias",
        }
    }
}

/// Which kind of identifier an [`IdentityKey`] holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    UserId,
    AnonymousId,
    Email,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserId => "user_id",
            Self::AnonymousId => "anonymous_id",
            Self::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user_id" => Self::UserId,
            "anonymous_id" => Self::AnonymousId,
            "email" => Self::Email,
            _ => return None,
        })
    }
}

/// One identifier of a person: a user id, an anonymous id or an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdentityKey {
    pub kind: IdentityKind,
    pub value: String,
}

impl IdentityKey {
    pub fn user_id(v: impl Into<String>) -> Self {
        Self {
            kind: IdentityKind::UserId,
            value: v.into(),
        }
    }
    pub fn anonymous_id(v: impl Into<String>) -> Self {
        Self {
            kind: IdentityKind::AnonymousId,
            value: v.into(),
        }
    }
    pub fn email(e: &EmailAddress) -> Self {
        Self {
            kind: IdentityKind::Email,
            value: e.as_str().to_owned(),
        }
    }
}

/// A validated event, with its time corrected for client clock skew.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub message_id: MessageId,
    pub kind: EventKind,
    /// The track event name, or the kind's aggregate name (`$page`, …).
    pub name: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `alias`: the identity being merged into `user_id`.
    pub previous_id: Option<String>,
    pub group_id: Option<String>,
    /// From `traits.email` or `context.traits.email`, when it is a valid address.
    pub email: Option<EmailAddress>,
    /// `traits` merged over `context.traits` (identify's own traits win).
    pub traits: Map<String, Value>,
    pub properties: Map<String, Value>,
    /// Trait provenance requested by the sender (`context.missive`).
    pub provenance: Provenance,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// Who vouches for the event: decides what it may change (see [`Trust`]).
    pub trust: Trust,
    /// The message as received, with `messageId`, `receivedAt`, `timestamp` and
    /// `originalTimestamp` stamped as Segment does.
    pub body: Value,
}

/// Who vouches for an event, which decides what it may change. Write keys of the client kind
/// ship in web pages, so anyone can send a client event naming anyone: such an event may not
/// change the address a known person's mail goes to, nor reverse a withdrawal of consent made
/// on missive's own pages (docs/security.md, "Trust per source").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// A public (client) write key: web pages and apps.
    Client,
    /// A secret server write key, an admin key, or the operator's import.
    Server,
    /// missive itself: the unsubscribe link, the preference centre, the consent API, tracking.
    Missive,
}

impl Trust {
    /// The body field that records the trust of a stored event, so that replay decides as
    /// ingest did. Ingest always overwrites it: a client cannot claim more than its key.
    pub const FIELD: &'static str = "missiveTrust";

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Client => "client",
            Trust::Server => "server",
            Trust::Missive => "missive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Trust::Client, Trust::Server, Trust::Missive]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// The trust a stored body records in its [`Trust::FIELD`]; [`Trust::Server`] when absent
    /// (events stored before trust was kept, and the operator's imports).
    pub fn recorded(field: Option<&Value>) -> Self {
        field
            .and_then(Value::as_str)
            .and_then(Self::parse)
            .unwrap_or(Trust::Server)
    }
}

impl Event {
    /// Sets who vouches for the event, in the event and in its stored body.
    pub fn set_trust(&mut self, trust: Trust) {
        self.trust = trust;
        if let Value::Object(o) = &mut self.body {
            o.insert(Trust::FIELD.into(), Value::String(trust.as_str().into()));
        }
    }

    /// The identities this event names, strongest first.
    pub fn identity_keys(&self) -> Vec<IdentityKey> {
        let mut keys = Vec::with_capacity(3);
        if let Some(u) = &self.user_id {
            keys.push(IdentityKey::user_id(u.clone()));
        }
        if let Some(e) = &self.email {
            keys.push(IdentityKey::email(e));
        }
        if let Some(a) = &self.anonymous_id {
            keys.push(IdentityKey::anonymous_id(a.clone()));
        }
        keys
    }
}

/// Where traits in an event come from, and on what consent they rest. Senders of third-party
/// data set `context.missive = {"source": "...", "party": "third", "consent_basis": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub source: String,
    pub party: crate::TraitParty,
    pub consent_basis: Option<String>,
    /// The privacy-policy version the person saw when giving consent in this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}
