//! What the engine observes of the schema while it folds events, kept in memory and handed
//! to each checkpoint: the fields seen since the last one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{FieldKey, FieldKind, MAX_FIELDS, MAX_NAME_BYTES, Observed};
use crate::{Event, EventKind};

/// One field's observation and whether it changed since the last [`SchemaRegistry::take_changes`].
#[derive(Debug)]
struct Entry {
    observed: Observed,
    dirty: bool,
}

#[derive(Debug, Default)]
struct EventEntry {
    entry: Option<Entry>,
    properties: HashMap<String, Entry>,
}

/// The observed schema. Looking a field up allocates nothing; a field seen for the first
/// time costs one key.
#[derive(Debug, Default)]
pub struct SchemaRegistry {
    traits: HashMap<String, Entry>,
    events: HashMap<String, EventEntry>,
    dirty: bool,
    /// Fields recorded, and names not recorded (too long, or past [`MAX_FIELDS`]).
    fields: usize,
    refused: u64,
}

/// The registry's counts, borrowed apart from its maps.
struct Counts<'a> {
    fields: &'a mut usize,
    refused: &'a mut u64,
}

/// Whether a new field named `name` may be recorded, counting it if so.
fn admit(name: &str, fields: &mut usize, refused: &mut u64) -> bool {
    if name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) || *fields >= MAX_FIELDS {
        *refused += 1;
        return false;
    }
    *fields += 1;
    true
}

fn observe_in(
    map: &mut HashMap<String, Entry>,
    name: &str,
    value: Option<&Value>,
    at: DateTime<Utc>,
    numbers: bool,
    counts: &mut Counts<'_>,
) {
    match map.get_mut(name) {
        Some(e) => {
            e.observed.observe(value, at, numbers);
            e.dirty = true;
        }
        None => {
            if !admit(name, counts.fields, counts.refused) {
                return;
            }
            let mut observed = Observed::new(at);
            observed.observe(value, at, numbers);
            map.insert(
                name.to_owned(),
                Entry {
                    observed,
                    dirty: true,
                },
            );
        }
    }
}

impl SchemaRegistry {
    /// The registry as stored (at start-up).
    pub fn load(stored: impl IntoIterator<Item = (FieldKey, Observed)>) -> Self {
        let mut r = Self::default();
        for (key, observed) in stored {
            r.fields += 1;
            let entry = Entry {
                observed,
                dirty: false,
            };
            match key.kind {
                FieldKind::Trait => {
                    r.traits.insert(key.name, entry);
                }
                FieldKind::Event => r.events.entry(key.name).or_default().entry = Some(entry),
                FieldKind::Property => {
                    r.events
                        .entry(key.event)
                        .or_default()
                        .properties
                        .insert(key.name, entry);
                }
            }
        }
        r
    }

    /// Takes in the traits (when the profile took them: not third-party traits it refused
    /// for lack of consent) and properties of one folded event, as of its receipt. `consent`
    /// is not a trait (it changes the profile's consent record).
    pub fn observe(&mut self, e: &Event, traits_taken: bool) {
        let at = e.received_at;
        self.dirty = true;
        let mut counts = Counts {
            fields: &mut self.fields,
            refused: &mut self.refused,
        };
        if traits_taken {
            for (name, value) in &e.traits {
                if name != "consent" {
                    observe_in(&mut self.traits, name, Some(value), at, false, &mut counts);
                }
            }
        }
        if e.kind == EventKind::Alias {
            return;
        }
        let ev = match self.events.get_mut(&e.name) {
            Some(ev) => ev,
            None => {
                if !admit(&e.name, counts.fields, counts.refused) {
                    return;
                }
                self.events.entry(e.name.clone()).or_default()
            }
        };
        match &mut ev.entry {
            Some(entry) => {
                entry.observed.observe(None, at, false);
                entry.dirty = true;
            }
            None => {
                ev.entry = Some(Entry {
                    observed: Observed::new(at),
                    dirty: true,
                })
            }
        }
        observe_properties(&mut ev.properties, &e.properties, at, &mut counts);
    }

    /// Names not recorded since the last call (too long, or past [`MAX_FIELDS`]).
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    /// The fields observed since the last call, with all that is known of each.
    pub fn take_changes(&mut self) -> Vec<(FieldKey, Observed)> {
        if !std::mem::take(&mut self.dirty) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut take = |key: &dyn Fn() -> FieldKey, e: &mut Entry| {
            if std::mem::take(&mut e.dirty) {
                out.push((key(), e.observed.clone()));
            }
        };
        for (name, e) in &mut self.traits {
            take(&|| FieldKey::trait_(name.clone()), e);
        }
        for (event, ev) in &mut self.events {
            if let Some(e) = &mut ev.entry {
                take(&|| FieldKey::event(event.clone()), e);
            }
            for (name, e) in &mut ev.properties {
                take(&|| FieldKey::property(event.clone(), name.clone()), e);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn observe_properties(
    into: &mut HashMap<String, Entry>,
    properties: &Map<String, Value>,
    at: DateTime<Utc>,
    counts: &mut Counts<'_>,
) {
    for (p, v) in properties {
        observe_in(into, p, Some(v), at, true, counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::validate_message;
    use crate::schema::FieldType;
    use crate::schema::MAX_FIELDS;
    use serde_json::json;

    fn event(v: Value) -> Event {
        let now = "2026-03-01T00:00:00Z".parse().unwrap();
        validate_message(v, None, None, now).unwrap()
    }

    #[test]
    fn observes_traits_events_and_properties_and_hands_each_change_once() {
        let mut r = SchemaRegistry::default();
        r.observe(&event(json!({"type": "identify", "userId": "u", "traits": {"age": 30, "consent": {"email_marketing": true}}})), true);
        r.observe(&event(json!({"type": "track", "userId": "u", "event": "Product Added", "properties": {"price": 9.5, "name": "Sock"}})), true);
        let changes = r.take_changes();
        let keys: Vec<FieldKey> = changes.iter().map(|c| c.0.clone()).collect();
        assert_eq!(
            keys,
            vec![
                FieldKey::trait_("age"),
                FieldKey::event("$identify"),
                FieldKey::event("Product Added"),
                FieldKey::property("Product Added", "name"),
                FieldKey::property("Product Added", "price"),
            ]
        );
        assert_eq!(changes[4].1.types.single(), Some(FieldType::Number));
        assert!(r.take_changes().is_empty(), "nothing new");

        r.observe(
            &event(json!({"type": "identify", "userId": "u", "traits": {"age": "thirty"}})),
            true,
        );
        let again = r.take_changes();
        assert_eq!(again[0].0, FieldKey::trait_("age"));
        assert_eq!(again[0].1.types.single(), None, "now seen with two types");
    }

    #[test]
    fn a_loaded_registry_continues_what_was_stored() {
        let mut o = Observed::new("2026-01-01T00:00:00Z".parse().unwrap());
        o.observe(Some(&json!(true)), o.first_seen, false);
        let mut r = SchemaRegistry::load([(FieldKey::trait_("vip"), o.clone())]);
        assert!(r.take_changes().is_empty());
        r.observe(
            &event(json!({"type": "identify", "userId": "u", "traits": {"vip": false}})),
            true,
        );
        let changes = r.take_changes();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].0, FieldKey::trait_("vip"));
        assert_eq!(changes[0].1.first_seen, o.first_seen);
        assert_eq!(changes[0].1.examples, vec![json!(true), json!(false)]);
    }

    #[test]
    fn refused_traits_long_names_and_fields_past_the_cap_are_not_recorded() {
        let mut r = SchemaRegistry::default();
        r.observe(
            &event(json!({"type": "identify", "userId": "u", "traits": {"score": 3}})),
            false,
        );
        let keys: Vec<FieldKey> = r.take_changes().into_iter().map(|c| c.0).collect();
        assert_eq!(
            keys,
            vec![FieldKey::event("$identify")],
            "traits the profile refused"
        );

        let long = "x".repeat(201);
        r.observe(
            &event(json!({"type": "identify", "userId": "u", "traits": {long.clone(): 1}})),
            true,
        );
        assert_eq!(r.take_refused(), 1);
        let mut traits = Map::new();
        for i in 0..MAX_FIELDS {
            traits.insert(format!("t{i}"), json!(i));
        }
        r.observe(
            &event(json!({"type": "identify", "userId": "u", "traits": traits})),
            true,
        );
        assert_eq!(r.take_changes().len(), MAX_FIELDS, "the cap counts the event too");
        assert_eq!(r.take_refused(), 1);
    }
}
