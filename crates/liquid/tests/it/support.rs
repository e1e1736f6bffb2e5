//! Shared helpers: an environment, in-memory partials and one-line renders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use missive_liquid::{Env, Error, Limits, Object, PartialError, Partials, Template, Value};

/// Partials and blocks from in-memory sources, parsed on first use.
#[derive(Default)]
pub struct MemPartials {
    pub sources: HashMap<String, String>,
    pub blocks: HashMap<String, String>,
    cache: Mutex<HashMap<String, Arc<Template>>>,
}

impl MemPartials {
    pub fn new(sources: &[(&str, &str)]) -> Self {
        MemPartials {
            sources: sources
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..MemPartials::default()
        }
    }

    fn get(&self, key: String, source: Option<&String>) -> Result<Arc<Template>, PartialError> {
        let mut cache = self.cache.lock().expect("partials cache lock");
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let source = source.ok_or(PartialError::NotFound)?;
        let t = Arc::new(Template::parse(source).map_err(|e| PartialError::Invalid(Box::new(e)))?);
        cache.insert(key, t.clone());
        Ok(t)
    }
}

impl Partials for MemPartials {
    fn partial(&self, name: &str) -> Result<Arc<Template>, PartialError> {
        self.get(format!("p:{name}"), self.sources.get(name))
    }
    fn block(&self, slot: &str) -> Option<Arc<Template>> {
        self.get(format!("b:{slot}"), self.blocks.get(slot)).ok()
    }
}

pub fn fixed_now() -> chrono::DateTime<chrono::Utc> {
    "2024-05-17T09:30:00Z".parse().expect("valid timestamp")
}

pub fn env(partials: &dyn Partials) -> Env<'_> {
    Env {
        strict_variables: false,
        strict_filters: false,
        limits: Limits::default(),
        partials,
        time_zone: chrono_tz::Tz::UTC,
        now: fixed_now(),
        currency: "USD".to_string(),
        escape_output: false,
    }
}

pub fn globals(json: &str) -> Object {
    match Value::from_json_str(json).expect("valid json") {
        Value::Object(o) => (*o).clone(),
        _ => Object::new(),
    }
}

/// Renders `source` with `data` (JSON) and the default environment.
pub fn render(source: &str, data: &str) -> Result<String, Error> {
    let partials = MemPartials::default();
    let env = env(&partials);
    Template::parse(source)?.render(&globals(data), &env)
}
