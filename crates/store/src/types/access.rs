//! The workspace, API keys and the audit log.

use chrono::{DateTime, Utc};
use missive_core::{ApiKeyId, WorkspaceId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// What an API key (or a console session) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Segments, content, journeys and broadcasts; reads profiles.
    Marketer,
    /// Reports and pseudonymized profiles only.
    Analyst,
    /// Consent, export, erasure and the audit log.
    PrivacyOfficer,
    /// Ingest only, from web pages and apps: Segment's write key, public by design. Its events
    /// are client events (see `missive_core::Trust`).
    Write,
    /// Ingest only, from the retailer's own servers: a secret key, trusted to change what a
    /// client key may not (a known person's address).
    ServerWrite,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Marketer,
        Role::Analyst,
        Role::PrivacyOfficer,
        Role::Write,
        Role::ServerWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Write => "write",
            Role::ServerWrite => "server_write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The prefix of this role's keys, so that a leaked key says what it can do.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Role::Admin => "ak_",
            Role::Marketer => "mk_",
            Role::Analyst => "nk_",
            Role::PrivacyOfficer => "pk_",
            Role::Write => "wk_",
            Role::ServerWrite => "sk_",
        }
    }
}

/// An API key as stored: only a hash of the secret (argon2id in PHC form; SHA-256 hex for keys
/// minted before argon2).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub role: Role,
    pub secret_hash: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One line of the append-only audit log: who did what to what, when, with what outcome.
/// It never holds personal data: targets are profile ids, names of documents, key ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Assigned by the store, increasing.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// `key:key_…`, `session:key_…`, `link:preference-centre`, `cli`, or `anonymous`.
    pub actor: String,
    /// The actor's role (`admin`, …), or empty.
    pub role: String,
    /// `profile.read`, `profile.erase`, `template.save`, `auth.denied`, …
    pub action: String,
    /// What it was done to: `profile:prf_…`, `template:cart`, `key:key_…`, a route.
    pub target: String,
    /// The HTTP status of the outcome (0 outside HTTP).
    pub status: u16,
    pub detail: String,
}

/// What to read from the audit log: newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries with `seq` below this (the next page).
    pub before_seq: Option<i64>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    pub limit: u32,
}
