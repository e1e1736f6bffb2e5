//! Validation of Segment tracking-API messages into [`Event`]s.
//!
//! The rules follow Segment's HTTP Tracking API: a `userId` or an `anonymousId` is required,
//! `track` needs `event`, `alias` needs `previousId`, `group` needs `groupId`; `traits`,
//! `properties` and `context` are objects; times are ISO-8601. Every refusal names the field.

use crate::ErrorCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::Provenance;
use crate::{EmailAddress, Event, EventKind, MessageId, TraitParty};

/// Segment's limit on one message.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Segment's limit on one batch request.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// How far ahead of missive's clock an event's own time may be (a client clock running fast).
/// Later times are clamped to the receipt time plus this, for ordering and conflicts.
pub const ALLOWED_FUTURE_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why a message was refused, in the API's error catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub code: ErrorCode,
    /// The offending field as a dotted path (`userId`, `context.traits`), empty for the
    /// message as a whole.
    pub field: String,
    pub message: String,
}

impl Rejection {
    fn new(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Turns one JSON message into an [`Event`].
///
/// `implied_kind` is the kind of the endpoint (`/v1/track` implies track); for a batch item it
/// is `None` and the message's own `type` decides. `batch_sent_at` is the batch's `sentAt`,
/// used when the message has none of its own.
pub fn validate_message(
    value: Value,
    implied_kind: Option<EventKind>,
    batch_sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
) -> Result<Event, Rejection> {
    let Value::Object(mut obj) = value else {
        return Err(Rejection::new(
            ErrorCode::InvalidMessage,
            "",
            "a message must be a JSON object",
        ));
    };
    // PostgreSQL cannot store NUL in text or JSONB; refuse the message, not the whole batch.
    if let Some(path) = nul_path(&obj) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            &path,
            "strings must not contain NUL characters",
        ));
    }

    let kind = match (implied_kind, obj.get("type")) {
        (Some(k), _) => k,
        (None, Some(Value::String(t))) => EventKind::parse(t).ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidType,
                "type",
                format!("unknown type {t:?}: expected track, identify, page, screen, group or alias"),
            )
        })?,
        (None, Some(Value::Null) | None) => {
            return Err(Rejection::new(
                ErrorCode::MissingField,
                "type",
                "type is required in a batch",
            ));
        }
        (None, Some(_)) => {
            return Err(Rejection::new(
                ErrorCode::InvalidType,
                "type",
                "type must be a string",
            ));
        }
    };

    let user_id = id_field(&obj, "userId")?;
    let anonymous_id = id_field(&obj, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(Rejection::new(
            ErrorCode::MissingIdentity,
            "userId",
            "userId or anonymousId is required",
        ));
    }

    let message_id = match obj.get("messageId") {
        None | Some(Value::Null) => MessageId::generate(),
        Some(Value::String(s)) => MessageId::parse(s)
            .map_err(|e| Rejection::new(ErrorCode::InvalidValue, "messageId", e.to_string()))?,
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidType,
                "messageId",
                "messageId must be a string",
            ));
        }
    };

    let name = match kind {
        EventKind::Track => match obj.get("event") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if s.len() > 200 {
                    return Err(Rejection::new(
                        ErrorCode::InvalidValue,
                        "event",
                        "event must be at most 200 bytes",
                    ));
                }
                s.clone()
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(Rejection::new(
                    ErrorCode::MissingField,
                    "event",
                    "track needs a non-empty event name",
                ));
            }
            Some(_) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidType,
                    "event",
                    "event must be a string",
                ));
            }
        },
        other => other.aggregate_name().to_owned(),
    };

    let previous_id = id_field(&obj, "previousId")?;
    if kind == EventKind::Alias && previous_id.is_none() {
        return Err(Rejection::new(
            ErrorCode::MissingField,
            "previousId",
            "alias needs previousId",
        ));
    }
    if kind == EventKind::Alias && user_id.is_none() {
        return Err(Rejection::new(
            ErrorCode::MissingField,
            "userId",
            "alias needs userId",
        ));
    }
    let group_id = id_field(&obj, "groupId")?;
    if kind == EventKind::Group && group_id.is_none() {
        return Err(Rejection::new(
            ErrorCode::MissingField,
            "groupId",
            "group needs groupId",
        ));
    }

    for field in ["traits", "properties", "context", "integrations"] {
        match obj.get(field) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidType,
                    field,
                    format!("{field} must be an object"),
                ));
            }
        }
    }
    let context_traits = match obj.get("context").and_then(|c| c.get("traits")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidType,
                "context.traits",
                "context.traits must be an object",
            ));
        }
    };

    let timestamp = time_field(&obj, "timestamp")?.or(time_field(&obj, "originalTimestamp")?);
    let sent_at = time_field(&obj, "sentAt")?.or(batch_sent_at);
    // Segment's skew correction: the client's clock is off by (sentAt - receivedAt), so the
    // event happened at timestamp - (sentAt - receivedAt).
    let corrected = match (timestamp, sent_at) {
        (Some(ts), Some(sent)) => ts.checked_add_signed(received_at - sent).unwrap_or(ts),
        (Some(ts), None) => ts,
        (None, _) => received_at,
    };
    // Times a person's events can have. Anything else is a client's unset or broken clock
    // (Go and .NET send year 1 for "unset"), and would overflow the date arithmetic of windows
    // and timers: the event is taken as happening when it was received, and the client's time
    // is kept as `originalTimestamp`.
    let plausible = |t: DateTime<Utc>| (1900..3000).contains(&chrono::Datelike::year(&t));
    let corrected = if plausible(corrected) {
        corrected
    } else {
        received_at
    };
    // Nothing happens after missive received it. A time further ahead than a client clock can
    // plausibly be wrong by would otherwise win every "newest wins" conflict for ever (an
    // `identify` dated 2999 could never be undone): it is clamped for ordering, and the claimed
    // time stays in the body as `originalTimestamp`.
    let corrected = corrected.min(received_at + ALLOWED_FUTURE_SKEW);
    // Stored events carry the trust ingest gave them; anything else is the operator's.
    let trust = crate::event::Trust::recorded(obj.get(crate::event::Trust::FIELD));

    // Group traits describe the group, not the person.
    let own_traits = if kind == EventKind::Group {
        Map::new()
    } else {
        match obj.get("traits") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    };
    let mut traits = context_traits;
    traits.extend(own_traits);

    if let Some(c) = traits.get("consent") {
        crate::consent::parse_consent_object(c)
            .map_err(|(field, message)| Rejection::new(ErrorCode::InvalidValue, &field, message))?;
    }

    let email = traits
        .get("email")
        .and_then(Value::as_str)
        .and_then(|s| EmailAddress::parse(s).ok());

    let properties = match obj.get("properties") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if kind == EventKind::Track && name == crate::profile::ORDER_COMPLETED {
        check_order_amounts(&properties)?;
    }

    let provenance = provenance_of(&obj, kind)?;

    obj.insert("type".into(), Value::String(kind.as_str().into()));
    obj.insert("messageId".into(), Value::String(message_id.as_str().into()));
    if let Some(ts) = timestamp {
        obj.insert("originalTimestamp".into(), Value::String(ts.to_rfc3339()));
    }
    obj.insert("timestamp".into(), Value::String(corrected.to_rfc3339()));
    obj.insert("receivedAt".into(), Value::String(received_at.to_rfc3339()));
    obj.remove("writeKey");

    Ok(Event {
        message_id,
        kind,
        name,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        email,
        traits,
        properties,
        provenance,
        timestamp: corrected,
        received_at,
        trust,
        body: Value::Object(obj),
    })
}

/// The largest amount an order field may hold, in major units (a trillion): beyond it a value
/// is a mistake or an attack, and would overflow the revenue totals.
pub const MAX_ORDER_AMOUNT: f64 = 1e12;

/// An `Order Completed` counts towards revenue, RFM and lifetime value, so its amounts must be
/// real: a finite, non-negative number (or numeric string) within [`MAX_ORDER_AMOUNT`], and so
/// must each product's price × quantity. Anything else is refused, naming the field, rather
/// than counted as a $0 order. A refund is its own event (`Order Refunded`), not a negative order.
fn check_order_amounts(props: &Map<String, Value>) -> Result<(), Rejection> {
    let amount = |v: &Value, field: &str| -> Result<Option<f64>, Rejection> {
        let x = match v {
            Value::Null => return Ok(None),
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let Some(x) = x.filter(|x| x.is_finite()) else {
            return Err(Rejection::new(
                ErrorCode::InvalidAmount,
                field,
                format!("{field} must be a finite number, like 89.90"),
            ));
        };
        if x < 0.0 {
            return Err(Rejection::new(
                ErrorCode::InvalidAmount,
                field,
                format!("{field} is negative: send a refund as its own event, `Order Refunded`"),
            ));
        }
        if x > MAX_ORDER_AMOUNT {
            return Err(Rejection::new(
                ErrorCode::InvalidAmount,
                field,
                format!("{field} is larger than {MAX_ORDER_AMOUNT:e}"),
            ));
        }
        Ok(Some(x))
    };
    for key in [
        "revenue", "total", "subtotal", "value", "tax", "shipping", "discount",
    ] {
        if let Some(v) = props.get(key) {
            amount(v, &format!("properties.{key}"))?;
        }
    }
    if let Some(Value::Array(products)) = props.get("products") {
        for (i, p) in products.iter().enumerate() {
            let price = match p.get("price") {
                Some(v) => amount(v, &format!("properties.products.{i}.price"))?,
                None => None,
            };
            let quantity = match p.get("quantity") {
                Some(v) => amount(v, &format!("properties.products.{i}.quantity"))?,
                None => None,
            };
            if price.unwrap_or(0.0) * quantity.unwrap_or(1.0) > MAX_ORDER_AMOUNT {
                return Err(Rejection::new(
                    ErrorCode::InvalidAmount,
                    &format!("properties.products.{i}"),
                    format!("price × quantity of product {i} is larger than {MAX_ORDER_AMOUNT:e}"),
                ));
            }
        }
    }
    Ok(())
}

/// The dotted path of the first key or string containing NUL, if any.
fn nul_path(obj: &Map<String, Value>) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(|i| walk(i, path)),
            Value::Object(m) => m.iter().any(|(k, v)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                if k.contains('\0') || walk(v, path) {
                    return true;
                }
                path.truncate(len);
                false
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    let found = obj.iter().any(|(k, v)| {
        path.clear();
        path.push_str(k);
        k.contains('\0') || walk(v, &mut path)
    });
    found.then_some(path)
}

fn id_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > 256 => Err(Rejection::new(
            ErrorCode::InvalidValue,
            field,
            format!("{field} must be at most 256 bytes"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Segment's libraries coerce numeric ids to strings; so do we.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Rejection::new(
            ErrorCode::InvalidType,
            field,
            format!("{field} must be a string or a number"),
        )),
    }
}

fn time_field(obj: &Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s).map(Some).ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidTimestamp,
                field,
                format!("{field} must be an ISO-8601 date-time"),
            )
        }),
        Some(_) => Err(Rejection::new(
            ErrorCode::InvalidType,
            field,
            format!("{field} must be an ISO-8601 string"),
        )),
    }
}

/// RFC 3339, plus the forms Segment's libraries send (no `T`, no offset meaning UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.to_utc());
        }
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn provenance_of(obj: &Map<String, Value>, kind: EventKind) -> Result<Provenance, Rejection> {
    let library = obj
        .get("context")
        .and_then(|c| c.get("library"))
        .and_then(|l| l.get("name"))
        .and_then(Value::as_str);
    let mut p = Provenance {
        source: match library {
            Some(lib) => format!("{}:{}", kind.as_str(), lib),
            None => kind.as_str().to_owned(),
        },
        party: TraitParty::First,
        consent_basis: None,
        policy_version: None,
    };
    let Some(m) = obj.get("context").and_then(|c| c.get("missive")) else {
        return Ok(p);
    };
    let Value::Object(m) = m else {
        return Err(Rejection::new(
            ErrorCode::InvalidType,
            "context.missive",
            "context.missive must be an object",
        ));
    };
    if let Some(s) = m.get("source") {
        let s = s.as_str().ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidType,
                "context.missive.source",
                "source must be a string",
            )
        })?;
        p.source = s.to_owned();
    }
    match m.get("party").map(|v| v.as_str()) {
        None => {}
        Some(Some("first")) => p.party = TraitParty::First,
        Some(Some("third")) => p.party = TraitParty::Third,
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidValue,
                "context.missive.party",
                "party must be \"first\" or \"third\"",
            ));
        }
    }
    if let Some(c) = m.get("consent_basis") {
        let c = c.as_str().ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidType,
                "context.missive.consent_basis",
                "consent_basis must be a string",
            )
        })?;
        p.consent_basis = Some(c.to_owned());
    }
    if let Some(v) = m.get("policy_version") {
        let v = v.as_str().ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidType,
                "context.missive.policy_version",
                "policy_version must be a string",
            )
        })?;
        p.policy_version = Some(v.to_owned());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2026-03-01T12:00:00Z").unwrap()
    }

    fn reject(v: Value, kind: Option<EventKind>) -> Rejection {
        validate_message(v, kind, None, now()).unwrap_err()
    }

    #[test]
    fn track_without_user_or_anonymous_id_is_refused_naming_user_id() {
        let r = reject(json!({"event": "x"}), Some(EventKind::Track));
        assert_eq!(
            (r.code.as_str(), r.field.as_str()),
            ("missing_identity", "userId")
        );
    }

    #[test]
    fn track_without_event_name_is_refused_naming_event() {
        let r = reject(json!({"userId": "u"}), Some(EventKind::Track));
        assert_eq!((r.code.as_str(), r.field.as_str()), ("missing_field", "event"));
    }

    #[test]
    fn wrong_types_are_refused_naming_the_field() {
        let r = reject(json!({"userId": {"a": 1}, "event": "x"}), Some(EventKind::Track));
        assert_eq!((r.code.as_str(), r.field.as_str()), ("invalid_type", "userId"));
        let r = reject(
            json!({"userId": "u", "event": "x", "properties": [1]}),
            Some(EventKind::Track),
        );
        assert_eq!(
            (r.code.as_str(), r.field.as_str()),
            ("invalid_type", "properties")
        );
        let r = reject(
            json!({"userId": "u", "traits": {}, "context": {"traits": 5}}),
            Some(EventKind::Identify),
        );
        assert_eq!(
            (r.code.as_str(), r.field.as_str()),
            ("invalid_type", "context.traits")
        );
        let r = reject(
            json!({"userId": "u", "event": "x", "timestamp": "yesterday"}),
            Some(EventKind::Track),
        );
        assert_eq!(
            (r.code.as_str(), r.field.as_str()),
            ("invalid_timestamp", "timestamp")
        );
        let r = reject(json!({"userId": "u", "event": 5}), Some(EventKind::Track));
        assert_eq!((r.code.as_str(), r.field.as_str()), ("invalid_type", "event"));
    }

    #[test]
    fn batch_items_need_a_known_type() {
        assert_eq!(reject(json!({"userId": "u"}), None).field, "type");
        assert_eq!(
            reject(json!({"userId": "u", "type": "boom"}), None).code,
            ErrorCode::InvalidType
        );
    }

    #[test]
    fn alias_needs_previous_id_and_group_needs_group_id() {
        assert_eq!(
            reject(json!({"userId": "u"}), Some(EventKind::Alias)).field,
            "previousId"
        );
        assert_eq!(
            reject(json!({"userId": "u"}), Some(EventKind::Group)).field,
            "groupId"
        );
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let r = reject(
            json!({"userId": "u", "event": "x", "properties": {"a": {"b": "x\u{0}y"}}}),
            Some(EventKind::Track),
        );
        assert_eq!(
            (r.code.as_str(), r.field.as_str()),
            ("invalid_value", "properties.a.b")
        );
    }

    #[test]
    fn timestamps_outside_the_plausible_years_fall_back_to_the_receipt_time() {
        for ts in ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"] {
            let e = validate_message(
                json!({"userId": "u", "event": "x", "timestamp": ts}),
                Some(EventKind::Track),
                None,
                now(),
            )
            .unwrap();
            assert_eq!(e.timestamp, now(), "{ts}");
            assert!(e.body["originalTimestamp"].is_string());
        }
    }

    #[test]
    fn times_in_the_future_are_clamped_to_the_receipt_time_plus_the_allowed_skew() {
        let e = validate_message(
            json!({"userId": "u", "type": "identify", "timestamp": "2999-01-01T00:00:00Z"}),
            None,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.timestamp, now() + ALLOWED_FUTURE_SKEW);
        assert_eq!(e.body["originalTimestamp"], json!("2999-01-01T00:00:00+00:00"));
        // Within the skew, the client's own time stands.
        let near = now() + chrono::TimeDelta::seconds(30);
        let e = validate_message(
            json!({"userId": "u", "event": "x", "timestamp": near.to_rfc3339()}),
            Some(EventKind::Track),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.timestamp, near);
    }

    #[test]
    fn a_client_cannot_claim_trust_its_key_does_not_give() {
        let mut e = validate_message(
            json!({"userId": "u", "event": "x", "missiveTrust": "missive"}),
            Some(EventKind::Track),
            None,
            now(),
        )
        .unwrap();
        e.set_trust(crate::Trust::Client);
        assert_eq!(e.trust, crate::Trust::Client);
        let replayed = validate_message(e.body.clone(), Some(EventKind::Track), None, now()).unwrap();
        assert_eq!(replayed.trust, crate::Trust::Client);
    }

    #[test]
    fn order_amounts_that_are_not_real_are_refused_naming_the_field() {
        let order = |props: Value| {
            validate_message(
                json!({"userId": "u", "event": "Order Completed", "properties": props}),
                Some(EventKind::Track),
                None,
                now(),
            )
        };
        for (props, field) in [
            (json!({"revenue": 1e308}), "properties.revenue"),
            (json!({"revenue": "NaN"}), "properties.revenue"),
            (json!({"revenue": "Infinity"}), "properties.revenue"),
            (json!({"total": "lots"}), "properties.total"),
            (json!({"revenue": -20}), "properties.revenue"),
            (
                json!({"products": [{"price": 1e9, "quantity": 1e9}]}),
                "properties.products.0",
            ),
            (
                json!({"products": [{"price": 10, "quantity": -1}]}),
                "properties.products.0.quantity",
            ),
        ] {
            let r = order(props.clone()).unwrap_err();
            assert_eq!(
                (r.code.as_str(), r.field.as_str()),
                ("invalid_amount", field),
                "{props}"
            );
        }
        assert!(
            order(json!({"revenue": -20}))
                .unwrap_err()
                .message
                .contains("Order Refunded")
        );
        assert!(order(json!({"revenue": "89.90", "products": [{"price": 10, "quantity": 2}]})).is_ok());
        // Other events are not orders: their numbers are their own business.
        let refund = validate_message(
            json!({"userId": "u", "event": "Order Refunded", "properties": {"revenue": 20}}),
            Some(EventKind::Track),
            None,
            now(),
        );
        assert!(refund.is_ok());
    }

    #[test]
    fn numeric_user_ids_are_coerced_to_strings() {
        let e = validate_message(
            json!({"userId": 42, "event": "x"}),
            Some(EventKind::Track),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn timestamp_is_corrected_by_the_skew_between_sent_at_and_received_at() {
        // The client's clock runs 10 minutes fast.
        let e = validate_message(
            json!({"userId": "u", "event": "x",
                   "timestamp": "2026-03-01T12:09:00Z", "sentAt": "2026-03-01T12:10:00Z"}),
            Some(EventKind::Track),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.timestamp, parse_time("2026-03-01T11:59:00Z").unwrap());
        assert_eq!(e.body["originalTimestamp"], json!("2026-03-01T12:09:00+00:00"));
        assert_eq!(e.body["receivedAt"], json!("2026-03-01T12:00:00+00:00"));
    }

    #[test]
    fn batch_sent_at_applies_when_the_message_has_none() {
        let e = validate_message(
            json!({"type": "track", "userId": "u", "event": "x", "timestamp": "2026-03-01T11:00:00Z"}),
            None,
            Some(parse_time("2026-03-01T11:00:30Z").unwrap()),
            now(),
        )
        .unwrap();
        assert_eq!(e.timestamp, parse_time("2026-03-01T11:59:30Z").unwrap());
    }

    #[test]
    fn traits_come_from_traits_or_context_traits_and_email_is_extracted() {
        let e = validate_message(
            json!({"userId": "u", "event": "x", "context": {"traits": {"email": "Ann@Example.com", "plan": "pro"}}}),
            Some(EventKind::Track),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.email.unwrap().as_str(), "ann@example.com");
        assert_eq!(e.traits["plan"], json!("pro"));
        let e = validate_message(
            json!({"userId": "u", "traits": {"plan": "team"}, "context": {"traits": {"plan": "pro"}}}),
            Some(EventKind::Identify),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.traits["plan"], json!("team"));
    }

    #[test]
    fn third_party_provenance_is_read_from_context_missive() {
        let e = validate_message(
            json!({"userId": "u", "traits": {"income": 1},
                   "context": {"missive": {"source": "acme-enrichment", "party": "third", "consent_basis": "consent"}}}),
            Some(EventKind::Identify),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(e.provenance.party, TraitParty::Third);
        assert_eq!(e.provenance.source, "acme-enrichment");
        assert_eq!(e.provenance.consent_basis.as_deref(), Some("consent"));
    }
}
