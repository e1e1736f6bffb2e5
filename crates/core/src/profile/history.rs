//! The bounded history of recent events kept inside a profile.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Event, EventKind, MessageId};

/// Properties larger than this are left out of the in-profile history (the event log has them).
pub(crate) const HISTORY_PROPERTIES_MAX_BYTES: usize = 4096;

/// One recent event, kept in the profile for fast access by segments and templates.
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
