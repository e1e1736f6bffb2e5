//! What a journey instance carries in its context: the events of its key (and the cart they
//! make), its visits and sends, the experiment split it went through; and what a message it
//! queues carries to its template and the sender.

use missive_store::{JourneyInstance, StoredEvent};
use serde_json::{Value, json};

use super::{Compiled, key_text, lookup};

/// The value an event holds at a keyed journey's key path (`properties.cart_id`), if any.
pub(super) fn event_key(def: &Compiled, event: &StoredEvent) -> Option<String> {
    def.def
        .key
        .as_deref()
        .and_then(|k| lookup(&event.body, k))
        .and_then(key_text)
}

/// At most this many events are kept per instance. Over it, the oldest event that does not
/// change the cart goes first, then the oldest after the trigger.
const MAX_INSTANCE_EVENTS: usize = 100;

/// Events whose loss would change `journey.cart`.
const CART_EVENTS: &[&str] = &[
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
];

/// An event as templates see it (`event`, `journey.events`).
pub(super) fn event_data(event: &StoredEvent) -> Value {
    json!({
        "name": event.name,
        "message_id": event.message_id.as_str(),
        "properties": event.body.get("properties").cloned().unwrap_or(json!({})),
        "timestamp": event.timestamp,
    })
}

/// Adds `event` to an instance's events, once; returns whether it was added.
pub(super) fn record_event(context: &mut Value, event: &StoredEvent) -> bool {
    let Some(obj) = context.as_object_mut() else {
        return false;
    };
    let events = obj.entry("events").or_insert_with(|| json!([]));
    let Some(list) = events.as_array_mut() else {
        return false;
    };
    let id = event.message_id.as_str();
    if list.iter().any(|e| e["message_id"] == id) {
        return false;
    }
    list.push(event_data(event));
    if list.len() > MAX_INSTANCE_EVENTS {
        let other = list
            .iter()
            .skip(1)
            .position(|e| !CART_EVENTS.contains(&e["name"].as_str().unwrap_or("")))
            .map_or(1, |i| i + 1);
        list.remove(other);
    }
    true
}

/// What a queued message carries to its template and the sender: the triggering event, as
/// `journey` the instance's events and the cart they make (see [`missive_content::cart`]), the
/// topic, and the experiment: the send step's own, else the one whose split the instance went
/// through, with the variant it chose.
pub(super) fn send_context(
    journey: &str,
    instance: &JourneyInstance,
    topic: Option<&str>,
    experiment: Option<&str>,
) -> Value {
    let event = instance.context.get("event").cloned().unwrap_or(Value::Null);
    let events = match instance.context.get("events") {
        Some(Value::Array(events)) => events.clone(),
        _ => Vec::new(),
    };
    let mut context = json!({
        "event": event,
        "journey": missive_content::cart::journey_variable(journey, &instance.key, events),
    });
    if let Some(topic) = topic {
        context["topic"] = json!(topic);
    }
    match (experiment, instance.context.get(SPLIT_EXPERIMENT)) {
        (Some(name), _) => context[crate::exposure::CONTEXT_EXPERIMENT] = json!(name),
        (None, Some(split)) => {
            context[crate::exposure::CONTEXT_EXPERIMENT] = split["name"].clone();
            context[crate::exposure::CONTEXT_VARIANT] = split["variant"].clone();
        }
        (None, None) => {}
    }
    context
}

/// Where an instance keeps the experiment split it went through: `{"name", "variant"}`.
pub(super) const SPLIT_EXPERIMENT: &str = "split_experiment";

/// How often an instance has been at `step` (counting the current visit).
pub(super) fn visits_of(context: &Value, step: &str) -> u64 {
    context["visits"][step].as_u64().unwrap_or(1)
}

pub(super) fn bump_visits(context: &mut Value, step: &str) -> u64 {
    let Some(obj) = context.as_object_mut() else {
        return 1;
    };
    let visits = obj.entry("visits").or_insert_with(|| json!({}));
    let Some(v) = visits.as_object_mut() else { return 1 };
    let n = v.get(step).and_then(Value::as_u64).unwrap_or(0) + 1;
    v.insert(step.to_string(), json!(n));
    n
}

/// Counts a send of the instance in its context; returns the count including this one.
pub(super) fn bump_sends(context: &mut Value) -> u64 {
    let Some(obj) = context.as_object_mut() else {
        return 1;
    };
    let n = obj.get("sends").and_then(Value::as_u64).unwrap_or(0) + 1;
    obj.insert("sends".into(), json!(n));
    n
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use missive_core::{EventKind, ProfileId};

    use super::*;

    fn stored(i: usize, name: &str) -> StoredEvent {
        let p = ProfileId::generate();
        let at = DateTime::from_timestamp(1_764_000_000 + i as i64, 0).unwrap();
        StoredEvent {
            seq: i as i64,
            message_id: missive_core::MessageId::parse(&format!("m-{i}")).unwrap(),
            profile_id: p.clone(),
            origin_profile_id: p,
            kind: EventKind::Track,
            name: name.into(),
            timestamp: at,
            received_at: at,
            body: json!({"properties": {"cart_id": "c1", "product_id": format!("p{i}")}}),
        }
    }

    #[test]
    fn an_instance_keeps_each_event_once_and_its_cart_events_longest() {
        let mut context = json!({"events": []});
        assert!(record_event(&mut context, &stored(0, "Product Added")));
        assert!(!record_event(&mut context, &stored(0, "Product Added")), "once");
        for i in 1..MAX_INSTANCE_EVENTS {
            let name = if i % 2 == 0 {
                "Product Added"
            } else {
                "Product Viewed"
            };
            assert!(record_event(&mut context, &stored(i, name)));
        }
        assert_eq!(context["events"].as_array().unwrap().len(), MAX_INSTANCE_EVENTS);
        // Over the cap, the oldest non-cart event goes (m-1, a view), never a cart event.
        assert!(record_event(
            &mut context,
            &stored(MAX_INSTANCE_EVENTS, "Product Added")
        ));
        let events = context["events"].as_array().unwrap();
        assert_eq!(events.len(), MAX_INSTANCE_EVENTS);
        assert_eq!(events[0]["message_id"], "m-0", "the trigger stays");
        assert!(events.iter().all(|e| e["message_id"] != "m-1"));
        assert!(events.iter().any(|e| e["message_id"] == "m-2"));
    }
}
