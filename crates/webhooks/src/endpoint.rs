//! An endpoint: where missive posts, what it subscribes to, what it may receive, and how it
//! is signed. Stored as a document (`webhook`); its secrets never leave the server except when
//! created or rotated.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::event_type::EventType;
use crate::signature::Secret;

/// The longest a retried delivery may wait between tries, and the default request timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
/// Deliveries per second to one endpoint, unless configured.
pub const DEFAULT_RATE_PER_SECOND: u32 = 50;
/// How long an old secret keeps signing after a rotation, unless the rotation says.
pub const DEFAULT_ROTATION_OVERLAP_HOURS: i64 = 24;

/// What an endpoint is sent about people beyond their profile id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookPersonalData)]
pub struct PersonalData {
    /// The consent purpose that must cover the person (`third_party_enrichment`, or another
    /// documented in docs/privacy.md); people without it are sent without personal data.
    pub purpose: String,
    /// Traits added to the payload under `profile.traits` (e-mail and user id are always
    /// included when personal data is).
    #[serde(default)]
    pub traits: Vec<String>,
}

/// A signing secret and, once rotated out, when it stops signing. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecret")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub events: Vec<EventType>,
    /// Only changes of these segments (segment events); empty: all.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Only these journeys (journey events and the messages they sent); empty: all.
    #[serde(default)]
    pub journeys: Vec<String>,
    #[serde(default)]
    pub personal_data: Option<PersonalData>,
    pub rate_per_second: u32,
    pub timeout_ms: u32,
    #[serde(default)]
    pub paused: bool,
    pub secrets: Vec<SigningSecret>,
    pub created_at: DateTime<Utc>,
}

/// What a client sends to create or replace an endpoint. `Debug` does not show the secret.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointIn)]
pub struct EndpointIn {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub journeys: Vec<String>,
    #[serde(default)]
    pub personal_data: Option<PersonalData>,
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// A secret to use (`whsec_…`); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

impl std::fmt::Debug for EndpointIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointIn")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Why an endpoint was refused: the field and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {why}")]
pub struct EndpointError {
    pub field: &'static str,
    pub why: String,
}

fn invalid(field: &'static str, why: impl Into<String>) -> EndpointError {
    EndpointError {
        field,
        why: why.into(),
    }
}

/// Names are path segments and metadata keys: short, lower-case, no surprises.
pub fn check_name(name: &str) -> Result<(), EndpointError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            "use 1 to 64 lower-case letters, digits, '-' or '_'",
        ))
    }
}

/// An endpoint's URL: http or https with a host, no credentials in it.
pub fn check_url(text: &str) -> Result<url::Url, EndpointError> {
    let url =
        url::Url::parse(text).map_err(|e| invalid("url", format!("{e}; write an absolute http(s) URL")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(invalid("url", "name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "url",
            "do not put credentials in the URL; receivers verify the signature instead",
        ));
    }
    Ok(url)
}

impl EndpointIn {
    /// Checks and completes the request into an endpoint; `known_purpose` says whether a
    /// consent purpose exists.
    pub fn into_endpoint(
        self,
        now: DateTime<Utc>,
        known_purpose: impl Fn(&str) -> bool,
    ) -> Result<Endpoint, EndpointError> {
        check_name(&self.name)?;
        check_url(&self.url)?;
        if self.events.is_empty() {
            return Err(invalid(
                "events",
                format!(
                    "subscribe to at least one of: {}",
                    EventType::ALL.map(|t| t.as_str()).join(", ")
                ),
            ));
        }
        let mut events = Vec::with_capacity(self.events.len());
        for e in &self.events {
            match EventType::parse(e) {
                Some(t) => events.push(t),
                None => {
                    return Err(invalid(
                        "events",
                        format!(
                            "unknown event type {e:?}; known: {}",
                            EventType::ALL.map(|t| t.as_str()).join(", ")
                        ),
                    ));
                }
            }
        }
        events.sort();
        events.dedup();
        if let Some(p) = &self.personal_data
            && !known_purpose(&p.purpose)
        {
            return Err(invalid(
                "personal_data.purpose",
                format!("unknown consent purpose {:?}", p.purpose),
            ));
        }
        let rate = self.rate_per_second.unwrap_or(DEFAULT_RATE_PER_SECOND);
        if !(1..=10_000).contains(&rate) {
            return Err(invalid("rate_per_second", "use 1 to 10000"));
        }
        let timeout = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(100..=30_000).contains(&timeout) {
            return Err(invalid("timeout_ms", "use 100 to 30000 milliseconds"));
        }
        let secret = match self.secret {
            Some(s) => {
                Secret::parse(&s).map_err(|e| invalid("secret", e.to_string()))?;
                s
            }
            None => Secret::generate().expose(),
        };
        Ok(Endpoint {
            name: self.name,
            url: self.url,
            events,
            segments: self.segments,
            journeys: self.journeys,
            personal_data: self.personal_data,
            rate_per_second: rate,
            timeout_ms: timeout,
            paused: false,
            secrets: vec![SigningSecret {
                secret,
                expires_at: None,
            }],
            created_at: now,
        })
    }
}

impl Endpoint {
    /// Whether a change of `kind` with `data` (a notice's ids and names) goes to this
    /// endpoint: subscribed, and within its segment and journey filters.
    pub fn wants(&self, kind: EventType, data: &serde_json::Value) -> bool {
        if kind == EventType::Test {
            return true;
        }
        if !self.events.contains(&kind) {
            return false;
        }
        let named = |key: &str, list: &[String]| {
            list.is_empty()
                || data
                    .get(key)
                    .and_then(|v| v.as_str())
                    .is_none_or(|v| list.iter().any(|x| x == v))
        };
        let journey_ok = self.journeys.is_empty()
            || match data.get("source").and_then(|v| v.as_str()) {
                Some(source) => source
                    .strip_prefix("journey:")
                    .is_some_and(|j| self.journeys.iter().any(|x| x == j)),
                None => named("journey", &self.journeys),
            };
        named("segment", &self.segments) && journey_ok
    }

    /// The secrets that sign at `now`: the current one and those rotated out but not expired.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<Secret> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now))
            .filter_map(|s| Secret::parse(&s.secret).ok())
            .collect()
    }

    /// Rotates to a new secret (given or generated); the old ones keep signing for
    /// `overlap`. Returns the new secret.
    pub fn rotate(
        &mut self,
        new: Option<String>,
        overlap: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, EndpointError> {
        let secret = match new {
            Some(s) => {
                Secret::parse(&s).map_err(|e| invalid("secret", e.to_string()))?;
                s
            }
            None => Secret::generate().expose(),
        };
        let until = now + overlap;
        for s in &mut self.secrets {
            s.expires_at = Some(s.expires_at.map_or(until, |at| at.min(until)));
        }
        self.secrets.retain(|s| s.expires_at.is_none_or(|at| at > now));
        self.secrets.push(SigningSecret {
            secret: secret.clone(),
            expires_at: None,
        });
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn request(events: &[&str]) -> EndpointIn {
        EndpointIn {
            name: "crm".into(),
            url: "https://hooks.example.com/missive".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            segments: vec![],
            journeys: vec![],
            personal_data: None,
            rate_per_second: None,
            timeout_ms: None,
            secret: None,
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let e = request(&["segment.entered", "message.sent", "segment.entered"])
            .into_endpoint(now(), |_| true)
            .unwrap();
        assert_eq!(e.events, [EventType::SegmentEntered, EventType::MessageSent]);
        assert_eq!(e.rate_per_second, DEFAULT_RATE_PER_SECOND);
        assert!(e.secrets[0].secret.starts_with("whsec_"));

        let field = |r: EndpointIn| {
            r.into_endpoint(now(), |p| p == "third_party_enrichment")
                .unwrap_err()
                .field
        };
        let mut r = request(&["segment.entered"]);
        r.name = "CRM!".into();
        assert_eq!(field(r), "name");
        for url in ["ftp://x.example/", "not a url", "https://user:pw@x.example/"] {
            let mut r = request(&["segment.entered"]);
            r.url = url.into();
            assert_eq!(field(r), "url", "{url}");
        }
        assert_eq!(field(request(&[])), "events");
        assert_eq!(field(request(&["segment.enter"])), "events");
        let mut r = request(&["segment.entered"]);
        r.personal_data = Some(PersonalData {
            purpose: "telepathy".into(),
            traits: vec![],
        });
        assert_eq!(field(r), "personal_data.purpose");
        let mut r = request(&["segment.entered"]);
        r.rate_per_second = Some(0);
        assert_eq!(field(r), "rate_per_second");
        let mut r = request(&["segment.entered"]);
        r.timeout_ms = Some(60_000);
        assert_eq!(field(r), "timeout_ms");
        let mut r = request(&["segment.entered"]);
        r.secret = Some("secret".into());
        assert_eq!(field(r), "secret");
    }

    #[test]
    fn subscriptions_and_filters_choose_what_is_sent() {
        let mut r = request(&["segment.entered", "message.sent", "journey.completed"]);
        r.segments = vec!["vip".into()];
        r.journeys = vec!["cart".into()];
        let e = r.into_endpoint(now(), |_| true).unwrap();
        let cases = [
            (EventType::SegmentEntered, json!({"segment": "vip"}), true),
            (EventType::SegmentEntered, json!({"segment": "lapsed"}), false),
            (EventType::SegmentExited, json!({"segment": "vip"}), false),
            (EventType::MessageSent, json!({"source": "journey:cart"}), true),
            (
                EventType::MessageSent,
                json!({"source": "journey:welcome"}),
                false,
            ),
            (EventType::MessageSent, json!({"source": "broadcast:b1"}), false),
            (EventType::JourneyCompleted, json!({"journey": "cart"}), true),
            (EventType::JourneyCompleted, json!({"journey": "welcome"}), false),
            (EventType::Test, json!({}), true),
        ];
        for (kind, data, expected) in cases {
            assert_eq!(e.wants(kind, &data), expected, "{kind} {data}");
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let mut r = request(&["segment.entered"]);
        r.secret = Some(Secret::generate().expose());
        let secret = r.secret.clone().unwrap();
        assert!(!format!("{r:?}").contains(&secret));
        let e = r.into_endpoint(now(), |_| true).unwrap();
        assert!(!format!("{e:?}").contains(&secret));
    }

    #[test]
    fn rotation_keeps_the_old_secret_signing_for_the_overlap() {
        let mut e = request(&["segment.entered"])
            .into_endpoint(now(), |_| true)
            .unwrap();
        let old = e.secrets[0].secret.clone();
        let new = e.rotate(None, Duration::hours(24), now()).unwrap();
        assert_ne!(old, new);
        assert_eq!(e.signing_secrets(now()).len(), 2);
        assert_eq!(e.signing_secrets(now() + Duration::hours(25)).len(), 1);
        assert_eq!(e.signing_secrets(now() + Duration::hours(25))[0].expose(), new);
        // A second rotation past the overlap drops the expired one.
        e.rotate(None, Duration::hours(1), now() + Duration::hours(30))
            .unwrap();
        assert_eq!(e.secrets.len(), 2);
        assert!(e.secrets.iter().all(|s| s.secret != old));
    }
}
