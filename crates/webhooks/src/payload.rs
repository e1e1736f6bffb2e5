//! The JSON body of a delivery, in the shape the Standard Webhooks specification suggests:
//! `{"type", "timestamp", "data"}`. `data` holds the notice's ids and names and the profile id;
//! personal data (`data.profile`: e-mail, user id, chosen traits) is added only for an
//! endpoint marked for it, and only when the person's consent covers its purpose.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::endpoint::Endpoint;
use crate::event_type::EventType;

/// What is known about the person when the delivery is made (`None`: erased or unknown).
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub traits: Map<String, Value>,
    /// Whether the person's consent covers each purpose asked about.
    pub consents: bool,
}

/// The body for `endpoint` of a change of `kind` at `at`.
pub fn body(
    endpoint: &Endpoint,
    kind: EventType,
    at: DateTime<Utc>,
    profile_id: Option<&str>,
    data: &Value,
    person: Option<&Person>,
) -> Value {
    let mut out = data_of(profile_id, data);
    if let (Some(pd), Some(person)) = (&endpoint.personal_data, person)
        && person.consents
    {
        let traits: Map<String, Value> = pd
            .traits
            .iter()
            .filter_map(|t| person.traits.get(t).map(|v| (t.clone(), v.clone())))
            .collect();
        out.insert(
            "profile".into(),
            json!({"email": person.email, "user_id": person.user_id, "traits": traits}),
        );
    }
    envelope(kind, at, out)
}

/// The body of a change as missive's change stream carries it: the same shape, never with
/// personal data (the stream's consumers are not endpoints with a purpose and consent).
pub fn change(kind: EventType, at: DateTime<Utc>, profile_id: Option<&str>, data: &Value) -> Value {
    envelope(kind, at, data_of(profile_id, data))
}

fn data_of(profile_id: Option<&str>, data: &Value) -> Map<String, Value> {
    let mut out = match data {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(id) = profile_id {
        out.insert("profile_id".into(), json!(id));
    }
    out
}

fn envelope(kind: EventType, at: DateTime<Utc>, data: Map<String, Value>) -> Value {
    json!({
        "type": kind.as_str(),
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{EndpointIn, PersonalData};

    fn endpoint(personal: bool) -> Endpoint {
        EndpointIn {
            name: "crm".into(),
            url: "https://hooks.example.com/".into(),
            events: vec!["segment.entered".into()],
            segments: vec![],
            journeys: vec![],
            personal_data: personal.then(|| PersonalData {
                purpose: "third_party_enrichment".into(),
                traits: vec!["first_name".into()],
            }),
            rate_per_second: None,
            timeout_ms: None,
            secret: None,
        }
        .into_endpoint(Utc::now(), |_| true)
        .unwrap()
    }

    #[test]
    fn personal_data_needs_both_the_endpoint_and_the_consent() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .to_utc();
        let data = json!({"segment": "vip"});
        let mut person = Person {
            email: Some("ada@example.com".into()),
            user_id: Some("u1".into()),
            traits: json!({"first_name": "Ada", "birthday": "1815-12-10"})
                .as_object()
                .unwrap()
                .clone(),
            consents: true,
        };
        let b = body(
            &endpoint(true),
            EventType::SegmentEntered,
            at,
            Some("prf_1"),
            &data,
            Some(&person),
        );
        assert_eq!(
            b,
            json!({"type": "segment.entered", "timestamp": "2026-12-03T10:00:00.000Z", "data": {
                "segment": "vip", "profile_id": "prf_1",
                "profile": {"email": "ada@example.com", "user_id": "u1", "traits": {"first_name": "Ada"}}
            }})
        );
        // Not marked for personal data: ids only, whatever the consent.
        let b = body(
            &endpoint(false),
            EventType::SegmentEntered,
            at,
            Some("prf_1"),
            &data,
            Some(&person),
        );
        assert_eq!(b["data"], json!({"segment": "vip", "profile_id": "prf_1"}));
        // Marked, but the person's consent does not cover the purpose.
        person.consents = false;
        let b = body(
            &endpoint(true),
            EventType::SegmentEntered,
            at,
            Some("prf_1"),
            &data,
            Some(&person),
        );
        assert!(b["data"].get("profile").is_none());
        // Erased or unknown.
        let b = body(
            &endpoint(true),
            EventType::SegmentEntered,
            at,
            Some("prf_1"),
            &data,
            None,
        );
        assert!(b["data"].get("profile").is_none());
    }
}
