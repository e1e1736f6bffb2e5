//! Events kept inside a profile: the bounded history of recent events ([`RecentEvent`], for
//! templates, recommendations and the API) and the window events segments count
//! ([`HistoryEntry`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Event, EventKind, MessageId};

/// Properties larger than this are left out of the in-profile history (the event log has them).
pub const HISTORY_PROPERTIES_MAX_BYTES: usize = 4096;

/// One event as segments read it: a profile's window events, with their properties parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub message_id: MessageId,
    pub kind: EventKind,
    pub name: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

impl HistoryEntry {
    pub fn of(e: &Event) -> Self {
        let properties = if fits(&e.properties, HISTORY_PROPERTIES_MAX_BYTES) {
            e.properties.clone()
        } else {
            Map::new()
        };
        Self {
            message_id: e.message_id.clone(),
            kind: e.kind,
            name: e.name.clone(),
            at: e.timestamp,
            properties,
        }
    }
}

/// One recent event in the profile's history ([`super::Profile::history`]), for templates,
/// recommendations and previews. Its properties are kept as compact JSON text, not as a
/// `serde_json` tree: a tree takes several times the bytes of its text (each object a B-tree
/// node sized for eleven entries, each value 32 bytes), and with a history of 50 events the
/// trees were most of a cached profile's memory (heaptrack; docs/BENCHMARKS.md, "Memory under
/// ingest"). Readers parse the properties when they need them, which is per message or per
/// request, not per event. Segments read [`HistoryEntry`]s, whose properties are parsed once.
/// Equality compares the properties' text, so the same properties in another key order differ.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub message_id: MessageId,
    pub kind: EventKind,
    pub name: String,
    pub at: DateTime<Utc>,
    pub properties: CompactProperties,
}

impl RecentEvent {
    pub fn of(e: &Event) -> Self {
        Self::with_properties(
            e.message_id.clone(),
            e.kind,
            e.name.clone(),
            e.timestamp,
            &e.properties,
        )
    }

    /// An entry whose properties are left out when larger than the history keeps.
    pub fn with_properties(
        message_id: MessageId,
        kind: EventKind,
        name: String,
        at: DateTime<Utc>,
        properties: &Map<String, Value>,
    ) -> Self {
        let properties = if fits(properties, HISTORY_PROPERTIES_MAX_BYTES) {
            CompactProperties::of(properties)
        } else {
            CompactProperties::default()
        };
        Self {
            message_id,
            kind,
            name,
            at,
            properties,
        }
    }
}

/// An event's properties as compact JSON text (an object, or nothing for none).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CompactProperties(Box<str>);

impl CompactProperties {
    pub fn of(map: &Map<String, Value>) -> Self {
        if map.is_empty() {
            return Self::default();
        }
        // A map of JSON values always serializes (string keys, finite numbers).
        let text = serde_json::to_string(map);
        debug_assert!(text.is_ok(), "a JSON map did not serialize");
        Self(text.unwrap_or_default().into_boxed_str())
    }

    /// The properties, parsed.
    pub fn parse(&self) -> Map<String, Value> {
        if self.0.is_empty() {
            return Map::new();
        }
        // Only `of` makes the text, from a map: it parses.
        let map = serde_json::from_str(&self.0);
        debug_assert!(map.is_ok(), "compact properties did not parse");
        map.unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for CompactProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `map` serializes to at most `budget` bytes, give or take quoting: counted without
/// serializing, and without walking further than the budget.
pub fn fits(map: &Map<String, Value>, budget: usize) -> bool {
    pub(crate) fn size(v: &Value, left: &mut isize) {
        if *left < 0 {
            return;
        }
        *left -= match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 12,
            Value::String(s) => s.len() as isize + 3,
            Value::Array(items) => {
                for i in items {
                    size(i, left);
                }
                2 + items.len() as isize
            }
            Value::Object(m) => {
                for (k, v) in m {
                    *left -= k.len() as isize + 4;
                    size(v, left);
                }
                2
            }
        };
    }
    let mut left = budget as isize;
    for (k, v) in map {
        left -= k.len() as isize + 4;
        size(v, &mut left);
    }
    left >= 0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn compact_properties_give_back_what_they_were_made_of() {
        let cases = [
            json!({}),
            json!({"product_id": "p-1", "price": 19.5, "n": 3}),
            json!({"products": [{"id": "a", "qty": 2}, {"id": "b", "tags": ["x", null, true]}]}),
            json!({"text": "quote \" backslash \\ unicode é \u{1F600}"}),
        ];
        for case in cases {
            let m = map(case);
            let c = CompactProperties::of(&m);
            assert_eq!(c.parse(), m);
            assert_eq!(c.is_empty(), m.is_empty());
        }
    }

    #[test]
    fn a_recent_event_leaves_out_properties_too_large_to_keep() {
        let big = map(json!({"blob": "x".repeat(HISTORY_PROPERTIES_MAX_BYTES + 1)}));
        let small = map(json!({"product_id": "p-1"}));
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let id = || MessageId::parse("m-1").unwrap();
        let kept = RecentEvent::with_properties(id(), EventKind::Track, "Viewed".into(), at, &small);
        let dropped = RecentEvent::with_properties(id(), EventKind::Track, "Viewed".into(), at, &big);
        assert_eq!(kept.properties.parse(), small);
        assert!(dropped.properties.is_empty());
        assert_eq!(dropped.properties.parse(), Map::new());
    }
}
