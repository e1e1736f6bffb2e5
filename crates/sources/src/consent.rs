//! A consent-management platform's receipts: each grant or withdrawal of a purpose, with when,
//! under which policy version, from which source, and the IP address and user agent when given,
//! recorded as missive consent with that evidence (docs/privacy.md).
//!
//! A receipt (the shape consent platforms' receipt webhooks share; field names are fixed here
//! and documented in docs/integrations.md):
//!
//! ```json
//! {"id": "rcpt_1", "subject": {"user_id": "u-1", "email": "ann@example.com"},
//!  "purposes": [{"purpose": "newsletter", "granted": true}],
//!  "at": "2026-11-30T12:00:00Z", "policy_version": "2026-05", "source": "cmp-banner",
//!  "ip": "203.0.113.9", "user_agent": "Mozilla/5.0 …"}
//! ```
//!
//! The platform's purpose ids are mapped to missive's purposes by the source's `purposes`
//! table; a purpose the table does not name is refused (its path), never guessed.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{Encoding, SourceError, id_text};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentMapping {
    /// The header with the HMAC-SHA256 of the body.
    #[serde(default = "default_header")]
    pub signature_header: String,
    #[serde(default)]
    pub signature_encoding: Encoding,
    /// The platform's purpose id → missive's purpose (`email_marketing`, `personalization`,
    /// `profiling`, `third_party_enrichment`, `advertising`).
    pub purposes: BTreeMap<String, String>,
}

fn default_header() -> String {
    "x-signature".into()
}

/// missive's purposes, as consent traits name them.
const PURPOSES: [&str; 5] = [
    "email_marketing",
    "personalization",
    "profiling",
    "third_party_enrichment",
    "advertising",
];

impl ConsentMapping {
    /// Checks the table: every target is one of missive's purposes.
    pub fn check(&self) -> Result<(), String> {
        match self
            .purposes
            .iter()
            .find(|(_, to)| !PURPOSES.contains(&to.as_str()))
        {
            Some((from, to)) => Err(format!(
                "purposes.{from}: {to:?} is not one of {}",
                PURPOSES.join(", ")
            )),
            None if self.purposes.is_empty() => Err("purposes: map at least one purpose".into()),
            None => Ok(()),
        }
    }

    pub fn map(&self, payload: &Value) -> Result<Vec<Value>, SourceError> {
        let subject = &payload["subject"];
        let user = id_text(&subject["user_id"]);
        let email = subject["email"].as_str().filter(|e| e.contains('@'));
        if user.is_none() && email.is_none() {
            return Err(SourceError::map(
                "subject",
                "a receipt names its person: user_id or email",
            ));
        }
        let Some(list) = payload["purposes"].as_array().filter(|l| !l.is_empty()) else {
            return Err(SourceError::map(
                "purposes",
                "a receipt lists the purposes it grants or withdraws",
            ));
        };
        let mut consent = Map::new();
        for (i, p) in list.iter().enumerate() {
            let id = p["purpose"]
                .as_str()
                .ok_or_else(|| SourceError::map(format!("purposes.{i}.purpose"), "not a purpose id"))?;
            let ours = self.purposes.get(id).ok_or_else(|| {
                SourceError::map(
                    format!("purposes.{i}.purpose"),
                    format!("{id:?} is not in the source's purposes table"),
                )
            })?;
            let granted = p["granted"]
                .as_bool()
                .ok_or_else(|| SourceError::map(format!("purposes.{i}.granted"), "true or false"))?;
            consent.insert(ours.clone(), json!(granted));
        }
        let at = payload["at"]
            .as_str()
            .ok_or_else(|| SourceError::map("at", "a receipt says when (ISO 8601)"))?;
        let mut traits = Map::new();
        traits.insert("consent".into(), Value::Object(consent));
        if let Some(e) = email {
            traits.insert("email".into(), json!(e));
        }
        let mut missive = Map::new();
        missive.insert(
            "source".into(),
            json!(payload["source"].as_str().unwrap_or("consent-platform")),
        );
        if let Some(v) = payload["policy_version"].as_str() {
            missive.insert("policy_version".into(), json!(v));
        }
        let mut context = json!({"missive": missive});
        if let Some(ip) = payload["ip"].as_str() {
            context["ip"] = json!(ip);
        }
        if let Some(ua) = payload["user_agent"].as_str() {
            context["userAgent"] = json!(ua);
        }
        let mut msg = json!({"type": "identify", "traits": traits, "timestamp": at, "context": context});
        match (&user, email) {
            (Some(u), _) => msg["userId"] = json!(u),
            (None, Some(e)) => msg["anonymousId"] = json!(format!("email:{}", e.to_ascii_lowercase())),
            (None, None) => {}
        }
        if let Some(id) = id_text(&payload["id"]) {
            msg["messageId"] = json!(id);
        }
        Ok(vec![msg])
    }
}
