//! Any JSON webhook, mapped by paths written in the configuration: who the person is, the
//! event's name, its properties and traits.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{SourceError, id_text, path};

/// How a signature header encodes the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// Where each field of a Segment message is found in the payload (dotted paths).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The header with the HMAC-SHA256 of the body.
    pub signature_header: String,
    #[serde(default)]
    pub signature_encoding: Encoding,
    /// A header with the delivery's id, for deduplicating retries.
    #[serde(default)]
    pub id_header: Option<String>,
    /// The event's name, fixed (`event`) or read (`event_path`); neither: only traits are
    /// recorded (an `identify`).
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub event_path: Option<String>,
    /// The person: a user id and/or an e-mail address.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// An object whose fields become the event's properties.
    #[serde(default)]
    pub properties: Option<String>,
    /// An object whose fields become traits.
    #[serde(default)]
    pub traits: Option<String>,
    /// The event's time (ISO 8601); default: when it is received.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The payload's own id (for deduplication when there is no id header).
    #[serde(default)]
    pub id: Option<String>,
}

impl Mapping {
    pub fn map(&self, payload: &Value) -> Result<Vec<Value>, SourceError> {
        let required = |p: &String| {
            path::get(payload, p)
                .filter(|v| !v.is_null())
                .ok_or_else(|| SourceError::map(p.clone(), "absent from the payload"))
        };
        let user = self.user_id.as_ref().map(required).transpose()?.and_then(id_text);
        let email = match &self.email {
            Some(p) => Some(
                required(p)?
                    .as_str()
                    .filter(|e| e.contains('@'))
                    .ok_or_else(|| SourceError::map(p.clone(), "not an e-mail address"))?
                    .to_owned(),
            ),
            None => None,
        };
        let object = |p: &String| -> Result<Map<String, Value>, SourceError> {
            match required(p)? {
                Value::Object(o) => Ok(o.clone()),
                _ => Err(SourceError::map(p.clone(), "not an object")),
            }
        };
        let mut traits = self.traits.as_ref().map(object).transpose()?.unwrap_or_default();
        // Consent comes only from the person or a consent source, never with other data.
        traits.remove("consent");
        if let Some(e) = &email {
            traits.insert("email".into(), json!(e));
        }
        let anon = match (&user, &email) {
            (None, Some(e)) => Some(format!("email:{}", e.to_ascii_lowercase())),
            (None, None) => {
                return Err(SourceError::map(
                    self.user_id
                        .clone()
                        .or(self.email.clone())
                        .unwrap_or_else(|| "user_id".into()),
                    "no user id or e-mail address to know the person by",
                ));
            }
            _ => None,
        };
        let who = |mut m: Value| {
            if let Some(u) = &user {
                m["userId"] = json!(u);
            }
            if let Some(a) = &anon {
                m["anonymousId"] = json!(a);
            }
            if let Some(id) = self
                .id
                .as_ref()
                .and_then(|p| path::get(payload, p))
                .and_then(id_text)
            {
                m["messageId"] = json!(id);
            }
            m
        };
        let event = match (&self.event, &self.event_path) {
            (Some(name), _) => Some(name.clone()),
            (None, Some(p)) => Some(
                required(p)?
                    .as_str()
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| SourceError::map(p.clone(), "not an event name"))?
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let timestamp = match &self.timestamp {
            Some(p) => Some(
                required(p)?
                    .as_str()
                    .ok_or_else(|| SourceError::map(p.clone(), "not a time"))?
                    .to_owned(),
            ),
            None => None,
        };
        let mut out = Vec::new();
        if !traits.is_empty() {
            out.push(who(json!({"type": "identify", "traits": traits})));
        }
        if let Some(name) = event {
            let properties = self
                .properties
                .as_ref()
                .map(object)
                .transpose()?
                .unwrap_or_default();
            let mut m = json!({"type": "track", "event": name, "properties": properties});
            if let Some(t) = &timestamp {
                m["timestamp"] = json!(t);
            }
            out.push(who(m));
        }
        if out.is_empty() {
            return Err(SourceError::map(
                "",
                "the mapping records nothing: give it an event or traits",
            ));
        }
        Ok(out)
    }
}
