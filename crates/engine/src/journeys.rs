//! Journeys: event-triggered flows of waits, branches and sends, run durably.
//!
//! A journey is a JSON document (see docs/journeys.md): a trigger (an event, with conditions
//! on its properties), an optional instance key (one instance per `cart_id`), a re-entry rule
//! and a list of steps (`wait`, `wait_for_event`, `branch`, `split`, `send`, `exit`).
//!
//! The runner reads the event log in commit order from a cursor. For each event it wakes the
//! instances waiting for it and starts the journeys it triggers; then it fires the waits that
//! are due. Every change an event or a timer causes (instances moved, send decisions as outbox
//! rows with idempotency keys, the cursor) is committed in one transaction, and instance and
//! message ids are derived from what caused them, so a crash or a restart at any point neither
//! loses nor repeats a step.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::{EventKind, Profile, ProfileId};
use missive_segment::{Facts, Segment};
use missive_store::{
    DocumentKind, DocumentRecord, InstanceStatus, JourneyCommit, JourneyInstance, OutboxMessage,
    OutboxStatus, StoreError, StoredEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Engine;
use crate::segments::{infer_schema, window_events};

/// A journey as its author writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyDef {
    pub trigger: Trigger,
    /// An event property path (`properties.cart_id`): one instance per value of it.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub reentry: Reentry,
    /// `marketing` (needs consent, counts towards the frequency cap) or `transactional`.
    #[serde(default)]
    pub class: MessageClass,
    /// The preference-centre topic its e-mails belong to (one of `[[preferences.topics]]`):
    /// people who declined it are not sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The most e-mails one instance (one person, one key) may send; a loop through a wait
    /// stops there. Default [`DEFAULT_MAX_SENDS_PER_INSTANCE`], at most [`MAX_SENDS_PER_INSTANCE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sends_per_instance: Option<u32>,
    pub steps: Vec<Step>,
}

/// Sends one journey instance may make unless its definition says otherwise.
pub const DEFAULT_MAX_SENDS_PER_INSTANCE: u32 = 10;
/// The ceiling of `max_sends_per_instance`: no definition can mail one person without end.
pub const MAX_SENDS_PER_INSTANCE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The track event that starts the journey…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// …or the saved segment whose new members start it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A test on an event: `{"path": "properties.value", "op": "gte", "value": 50}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub path: String,
    pub op: Op,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
    Contains,
}

/// When a profile may enter a journey it is already in or has been in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Not while an instance with the same key is active (the default).
    #[default]
    AfterExit,
    /// Every trigger starts an instance.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageClass {
    #[default]
    Marketing,
    Transactional,
}

impl MessageClass {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageClass::Marketing => "marketing",
            MessageClass::Transactional => "transactional",
        }
    }
}

// No `deny_unknown_fields` here: serde cannot combine it with `flatten`; the action's own
// variants refuse unknown fields instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
    /// The step after this one; default: the next in the list (after the last: the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Wait a duration (`"1h"`) or until a local time of day (`"09:00"`) in the profile's
    /// time zone.
    Wait {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_time: Option<String>,
    },
    /// Wait for an event, at most `timeout`: go to `on_event` if it comes (`"exit"` ends the
    /// journey), else to `on_timeout` (default: the next step).
    WaitForEvent {
        event: String,
        #[serde(default)]
        conditions: Vec<Condition>,
        /// Only an event whose key property equals the instance's key (the same cart).
        #[serde(default)]
        match_key: bool,
        timeout: String,
        #[serde(default = "exit_step")]
        on_event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_timeout: Option<String>,
    },
    /// A segment expression on the profile, now.
    Branch {
        condition: String,
        then: String,
        #[serde(rename = "else")]
        otherwise: String,
    },
    /// A random split, stable per instance.
    Split {
        paths: Vec<SplitPath>,
    },
    Send {
        template: String,
    },
    Exit,
}

fn exit_step() -> String {
    EXIT.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitPath {
    pub weight: u32,
    pub next: String,
}

/// The step name that ends an instance.
pub const EXIT: &str = "exit";
/// Most steps one instance runs without waiting (a loop of branches would spin forever).
const MAX_STEPS_PER_RUN: usize = 64;
const PAGE: u32 = 1_000;
/// How long journey definitions are trusted before they are read again.
const DEF_TTL: Duration = Duration::from_secs(5);

/// Why a journey could not be saved or run.
#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error("invalid journey: {0}")]
    Invalid(String),
    #[error("step {step:?}: {error}")]
    Condition {
        step: String,
        error: missive_segment::SegmentError,
    },
    #[error("journey {0:?} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] Arc<crate::EngineError>),
    #[error("stored journey {0:?} is unreadable: {1}")]
    Corrupt(String, String),
}

/// A journey ready to run.
#[derive(Debug)]
pub struct Compiled {
    pub name: String,
    pub version: i64,
    pub def: JourneyDef,
    waits: HashMap<String, TimeDelta>,
    conditions: HashMap<String, Segment>,
}

impl Compiled {
    fn index(&self, id: &str) -> Option<usize> {
        self.def.steps.iter().position(|s| s.id == id)
    }

    /// The step after `id`: its `next`, else the following one, else the end.
    fn after(&self, id: &str) -> String {
        let Some(i) = self.index(id) else {
            return EXIT.into();
        };
        match &self.def.steps[i].next {
            Some(n) => n.clone(),
            None => self.def.steps.get(i + 1).map_or(EXIT.into(), |s| s.id.clone()),
        }
    }
}

/// Parses `"90s"`, `"15m"`, `"1h"`, `"2d"`, `"1w"`.
pub fn parse_duration(s: &str) -> Option<TimeDelta> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = s[..split].parse().ok()?;
    let d = match &s[split..] {
        "s" => TimeDelta::try_seconds(n)?,
        "m" => TimeDelta::try_minutes(n)?,
        "h" => TimeDelta::try_hours(n)?,
        "d" => TimeDelta::try_days(n)?,
        "w" => TimeDelta::try_weeks(n)?,
        _ => return None,
    };
    (d > TimeDelta::zero() && d <= TimeDelta::days(366)).then_some(d)
}

fn parse_time_of_day(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

/// Checks a definition and compiles its waits and conditions.
pub fn compile(
    name: &str,
    version: i64,
    def: JourneyDef,
    schema: &missive_segment::Schema,
) -> Result<Compiled, JourneyError> {
    let invalid = |m: String| Err(JourneyError::Invalid(m));
    if def.steps.is_empty() {
        return invalid("a journey needs at least one step".into());
    }
    match (&def.trigger.event, &def.trigger.segment) {
        (Some(e), None) if !e.trim().is_empty() => {}
        (None, Some(s)) if !s.trim().is_empty() => {
            if !def.trigger.conditions.is_empty() || def.key.is_some() {
                return invalid("a segment trigger takes no conditions and no key".into());
            }
        }
        _ => return invalid("the trigger needs exactly one of event and segment".into()),
    }
    let mut ids = std::collections::HashSet::new();
    for s in &def.steps {
        if s.id == EXIT || s.id.is_empty() || !ids.insert(s.id.as_str()) {
            return invalid(format!(
                "step ids must be unique, non-empty and not \"exit\": {:?}",
                s.id
            ));
        }
    }
    let known = |t: &str| t == EXIT || ids.contains(t);
    let mut waits = HashMap::new();
    let mut conditions = HashMap::new();
    for s in &def.steps {
        let mut targets: Vec<&str> = s.next.iter().map(String::as_str).collect();
        match &s.action {
            Action::Wait { duration, until_time } => match (duration, until_time) {
                (Some(d), None) => {
                    let d = parse_duration(d).ok_or_else(|| {
                        JourneyError::Invalid(format!(
                            "step {:?}: duration {d:?} is not like \"30m\", \"1h\", \"2d\" (at most a year)",
                            s.id
                        ))
                    })?;
                    waits.insert(s.id.clone(), d);
                }
                (None, Some(t)) => {
                    if parse_time_of_day(t).is_none() {
                        return invalid(format!("step {:?}: until_time {t:?} is not like \"09:30\"", s.id));
                    }
                }
                _ => {
                    return invalid(format!(
                        "step {:?}: a wait needs exactly one of duration and until_time",
                        s.id
                    ));
                }
            },
            Action::WaitForEvent {
                timeout,
                on_event,
                on_timeout,
                match_key,
                ..
            } => {
                let d = parse_duration(timeout).ok_or_else(|| {
                    JourneyError::Invalid(format!("step {:?}: timeout {timeout:?} is not like \"1h\"", s.id))
                })?;
                if *match_key && def.key.is_none() {
                    return invalid(format!("step {:?}: match_key needs the journey's key", s.id));
                }
                waits.insert(s.id.clone(), d);
                targets.push(on_event);
                targets.extend(on_timeout.iter().map(String::as_str));
            }
            Action::Branch {
                condition,
                then,
                otherwise,
            } => {
                let segment =
                    Segment::compile(condition, schema).map_err(|error| JourneyError::Condition {
                        step: s.id.clone(),
                        error,
                    })?;
                conditions.insert(s.id.clone(), segment);
                targets.extend([then.as_str(), otherwise.as_str()]);
            }
            Action::Split { paths } => {
                if paths.is_empty() || paths.iter().all(|p| p.weight == 0) {
                    return invalid(format!("step {:?}: a split needs paths with weights", s.id));
                }
                targets.extend(paths.iter().map(|p| p.next.as_str()));
            }
            Action::Send { template } => {
                if template.trim().is_empty() {
                    return invalid(format!("step {:?}: send needs a template", s.id));
                }
            }
            Action::Exit => {}
        }
        if let Some(bad) = targets.iter().find(|t| !known(t)) {
            return invalid(format!("step {:?} goes to {bad:?}, which is not a step", s.id));
        }
    }
    if let Some(n) = def.max_sends_per_instance
        && !(1..=MAX_SENDS_PER_INSTANCE).contains(&n)
    {
        return invalid(format!(
            "max_sends_per_instance must be between 1 and {MAX_SENDS_PER_INSTANCE}, not {n}"
        ));
    }
    if let Some(cycle) = loop_without_wait(&def.steps) {
        return invalid(format!(
            "steps {} form a loop with no wait: one event would run it without end; put a wait step in it",
            cycle.join(" → ")
        ));
    }
    Ok(Compiled {
        name: name.into(),
        version,
        def,
        waits,
        conditions,
    })
}

/// The steps that may run right after `i` within one pass (a wait ends the pass).
fn successors(steps: &[Step], i: usize) -> Vec<&str> {
    let s = &steps[i];
    let after = || {
        s.next
            .as_deref()
            .unwrap_or_else(|| steps.get(i + 1).map_or(EXIT, |n| n.id.as_str()))
    };
    match &s.action {
        Action::Wait { .. } | Action::WaitForEvent { .. } | Action::Exit => vec![],
        Action::Branch { then, otherwise, .. } => vec![then.as_str(), otherwise.as_str()],
        Action::Split { paths } => paths.iter().map(|p| p.next.as_str()).collect(),
        Action::Send { .. } => vec![after()],
    }
}

/// A loop of steps none of which waits (`send → send`, `branch → send → branch`), as the ids
/// in order from where it closes, if there is one. Iterative: definitions can be long.
fn loop_without_wait(steps: &[Step]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut mark = vec![Mark::New; steps.len()];
    for start in 0..steps.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (step, its successors, how many of them were visited)
        let mut path: Vec<(usize, Vec<usize>, usize)> = Vec::new();
        let succ = |i: usize| -> Vec<usize> {
            successors(steps, i)
                .into_iter()
                .filter_map(|t| index.get(t).copied())
                .collect()
        };
        mark[start] = Mark::OnPath;
        path.push((start, succ(start), 0));
        while let Some((node, next, done)) = path.last_mut() {
            if *done == next.len() {
                mark[*node] = Mark::Done;
                path.pop();
                continue;
            }
            let t = next[*done];
            *done += 1;
            match mark[t] {
                Mark::OnPath => {
                    let from = path.iter().position(|(n, _, _)| *n == t).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|(n, _, _)| steps[*n].id.clone())
                        .collect();
                    cycle.push(steps[t].id.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    mark[t] = Mark::OnPath;
                    let s = succ(t);
                    path.push((t, s, 0));
                }
                Mark::Done => {}
            }
        }
    }
    None
}

/// What one pass of the runner did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RunStats {
    pub events: u64,
    pub started: u64,
    pub woken: u64,
    pub sends: u64,
}

/// Every compiled journey.
pub type Definitions = Arc<Vec<Arc<Compiled>>>;

/// Journeys: definitions over the store, and the runner.
#[derive(Clone)]
pub struct Journeys {
    engine: Engine,
    defs: Arc<Mutex<Option<(Instant, Definitions)>>>,
    /// One pass at a time (the background loop and `run_pending` from tests or the API).
    running: Arc<tokio::sync::Mutex<()>>,
    notify: Arc<tokio::sync::Notify>,
    /// Told when a pass queued messages (the sender waits on it).
    queued: Option<Arc<tokio::sync::Notify>>,
}

fn hash_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = twox_hash::XxHash3_128::new();
    for p in parts {
        h.write(p.as_bytes());
        h.write(&[0]);
    }
    format!("{prefix}{:032x}", h.finish_128())
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether an event (its Segment body) passes every condition.
pub fn matches(conditions: &[Condition], body: &Value) -> bool {
    conditions.iter().all(|c| {
        let v = lookup(body, &c.path);
        let num = |x: &Value| x.as_f64();
        match c.op {
            Op::Exists => v.is_some_and(|v| !v.is_null()),
            Op::Eq => v == Some(&c.value),
            Op::Ne => v != Some(&c.value),
            Op::Contains => match v {
                Some(Value::String(s)) => c.value.as_str().is_some_and(|x| s.contains(x)),
                Some(Value::Array(a)) => a.contains(&c.value),
                _ => false,
            },
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => match (v.and_then(num), num(&c.value)) {
                (Some(a), Some(b)) => match c.op {
                    Op::Gt => a > b,
                    Op::Gte => a >= b,
                    Op::Lt => a < b,
                    _ => a <= b,
                },
                _ => false,
            },
        }
    })
}

/// Work of one pass, committed together.
#[derive(Default)]
struct Pending {
    instances: BTreeMap<String, JourneyInstance>,
    outbox: Vec<OutboxMessage>,
    stats: RunStats,
}

impl Journeys {
    pub fn new(engine: Engine) -> Self {
        Journeys {
            engine,
            defs: Arc::new(Mutex::new(None)),
            running: Arc::new(tokio::sync::Mutex::new(())),
            notify: Arc::new(tokio::sync::Notify::new()),
            queued: None,
        }
    }

    /// Notifies `queued` whenever a pass puts messages in the outbox.
    pub fn notify_queued(mut self, queued: Arc<tokio::sync::Notify>) -> Self {
        self.queued = Some(queued);
        self
    }

    fn store(&self) -> &dyn missive_store::Store {
        &**self.engine.store()
    }

    /// Checks and saves a journey (a new version).
    pub async fn save(&self, name: &str, def: JourneyDef, now: DateTime<Utc>) -> Result<i64, JourneyError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(JourneyError::Invalid(
                "a journey name is 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        let schema = infer_schema(self.store()).await?;
        let compiled = compile(name, 0, def.clone(), &schema)?;
        for step in &compiled.def.steps {
            if let Action::Send { template } = &step.action
                && self
                    .store()
                    .get_document(DocumentKind::Template, template)
                    .await?
                    .is_none()
            {
                return Err(JourneyError::Invalid(format!(
                    "step {:?} sends template {template:?}, which does not exist",
                    step.id
                )));
            }
        }
        let body =
            serde_json::to_value(&def).map_err(|e| JourneyError::Corrupt(name.into(), e.to_string()))?;
        let versions = self
            .store()
            .put_documents(vec![DocumentRecord {
                kind: DocumentKind::Journey,
                name: name.into(),
                version: 0,
                body,
                updated_at: now,
            }])
            .await?;
        self.forget_definitions();
        versions
            .first()
            .copied()
            .ok_or_else(|| JourneyError::Corrupt(name.into(), "no version returned".into()))
    }

    pub async fn delete(&self, name: &str) -> Result<(), JourneyError> {
        if !self.store().delete_document(DocumentKind::Journey, name).await? {
            return Err(JourneyError::NotFound(name.into()));
        }
        self.forget_definitions();
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<(DocumentRecord, JourneyDef), JourneyError> {
        let doc = self
            .store()
            .get_document(DocumentKind::Journey, name)
            .await?
            .ok_or_else(|| JourneyError::NotFound(name.into()))?;
        let def = serde_json::from_value(doc.body.clone())
            .map_err(|e| JourneyError::Corrupt(name.into(), e.to_string()))?;
        Ok((doc, def))
    }

    fn forget_definitions(&self) {
        *self.defs.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Every journey, compiled. A stored journey that no longer compiles is left out (and
    /// logged): its instances wait until it is fixed.
    pub async fn definitions(&self) -> Result<Definitions, JourneyError> {
        if let Some((at, defs)) = &*self.defs.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < DEF_TTL
        {
            return Ok(defs.clone());
        }
        let schema = infer_schema(self.store()).await?;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store()
                .list_documents(DocumentKind::Journey, after, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for doc in page {
                let compiled = serde_json::from_value::<JourneyDef>(doc.body)
                    .map_err(|e| JourneyError::Corrupt(doc.name.clone(), e.to_string()))
                    .and_then(|def| compile(&doc.name, doc.version, def, &schema));
                match compiled {
                    Ok(c) => out.push(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!(journey = %doc.name, error = %e, "journey left out: it does not compile")
                    }
                }
            }
        }
        let defs = Arc::new(out);
        *self.defs.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), defs.clone()));
        Ok(defs)
    }

    /// Wakes the background runner (new events were committed).
    pub fn poke(&self) {
        self.notify.notify_one();
    }

    /// Runs the journeys in the background until `shutdown` resolves: after each pass it
    /// sleeps until the next wait is due, new events arrive, or at most `poll`.
    pub fn spawn(
        self,
        poll: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut shutdown = shutdown;
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let mut sleep_for = poll;
                match self.run_pending().await {
                    Ok(_) => {
                        if let Ok(Some(wake)) = self.store().next_instance_wake().await {
                            let until = (wake - self.engine.clock().now())
                                .to_std()
                                .unwrap_or(Duration::ZERO);
                            sleep_for = sleep_for.min(until);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "journey pass failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(sleep_for) => {}
                    _ = self.notify.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }

    /// One pass: every event committed since the last pass, then every wait that is due.
    pub async fn run_pending(&self) -> Result<RunStats, JourneyError> {
        let _one_at_a_time = self.running.lock().await;
        let pass_started = Instant::now();
        let defs = self.definitions().await?;
        let mut stats = RunStats::default();
        let mut through = self.store().journey_events_through().await?;
        loop {
            let events = self.store().events_after(through, PAGE).await?;
            let Some(last) = events.last() else { break };
            let last_seq = last.seq;
            let mut pending = Pending::default();
            for event in &events {
                self.on_event(&defs, event, &mut pending).await?;
            }
            stats.events += events.len() as u64;
            stats.started += pending.stats.started;
            stats.woken += pending.stats.woken;
            stats.sends += pending.stats.sends;
            self.store()
                .commit_journey(JourneyCommit {
                    instances: pending.instances.into_values().collect(),
                    outbox: pending.outbox,
                    events_through: Some(last_seq),
                    segments_through: None,
                })
                .await?;
            through = last_seq;
        }
        let mut segments_through = self.store().journey_segments_through().await?;
        loop {
            let changes = self.store().segment_changes_after(segments_through, PAGE).await?;
            let Some((last, _)) = changes.last() else { break };
            let last = *last;
            let mut pending = Pending::default();
            for (seq, change) in &changes {
                if change.entered {
                    self.on_segment_entry(&defs, *seq, change, &mut pending).await?;
                }
            }
            stats.started += pending.stats.started;
            stats.sends += pending.stats.sends;
            self.store()
                .commit_journey(JourneyCommit {
                    instances: pending.instances.into_values().collect(),
                    outbox: pending.outbox,
                    events_through: None,
                    segments_through: Some(last),
                })
                .await?;
            segments_through = last;
        }
        loop {
            let now = self.engine.clock().now();
            let due = self.store().due_instances(now, PAGE).await?;
            if due.is_empty() {
                break;
            }
            let mut pending = Pending::default();
            for mut instance in due {
                let Some(def) = defs.iter().find(|d| d.name == instance.journey) else {
                    if self
                        .store()
                        .get_document(DocumentKind::Journey, &instance.journey)
                        .await?
                        .is_none()
                    {
                        // Its journey was deleted: the instance ends.
                        instance.status = InstanceStatus::Exited;
                        instance.wake_at = None;
                    } else {
                        // Its journey no longer compiles: the instance waits for a fix.
                        instance.wake_at = Some(now + TimeDelta::minutes(5));
                    }
                    instance.updated_at = now;
                    pending.instances.insert(instance.id.clone(), instance);
                    continue;
                };
                let next = match def
                    .def
                    .steps
                    .iter()
                    .find(|s| s.id == instance.step)
                    .map(|s| &s.action)
                {
                    Some(Action::WaitForEvent {
                        on_timeout: Some(t), ..
                    }) => t.clone(),
                    _ => def.after(&instance.step),
                };
                pending.stats.woken += 1;
                self.advance(def, instance, &next, now, &mut pending).await?;
            }
            stats.woken += pending.stats.woken;
            stats.sends += pending.stats.sends;
            self.store()
                .commit_journey(JourneyCommit {
                    instances: pending.instances.into_values().collect(),
                    outbox: pending.outbox,
                    events_through: None,
                    segments_through: None,
                })
                .await?;
        }
        if stats.sends > 0
            && let Some(q) = &self.queued
        {
            q.notify_one();
        }
        tracing::debug!(
            ?stats,
            ms = pass_started.elapsed().as_secs_f64() * 1e3,
            "journey pass"
        );
        Ok(stats)
    }

    async fn on_event(
        &self,
        defs: &[Arc<Compiled>],
        event: &StoredEvent,
        pending: &mut Pending,
    ) -> Result<(), JourneyError> {
        if event.kind != EventKind::Track {
            return Ok(());
        }
        let waited_for = defs.iter().any(|d| {
            d.def
                .steps
                .iter()
                .any(|s| matches!(&s.action, Action::WaitForEvent { event: e, .. } if *e == event.name))
        });
        let triggers: Vec<&Arc<Compiled>> = defs
            .iter()
            .filter(|d| {
                d.def.trigger.event.as_deref() == Some(event.name.as_str())
                    && matches(&d.def.trigger.conditions, &event.body)
            })
            .collect();
        if !waited_for && triggers.is_empty() {
            return Ok(());
        }
        let now = self.engine.clock().now();
        let mut active = self.active_instances(&event.profile_id, pending).await?;

        // Instances waiting for this event move on.
        // An event that arrived after a wait timed out belongs to the timer, even when the
        // runner reads it late (after downtime, the event backlog is read first).
        for instance in active.iter_mut().filter(|i| {
            i.waiting_for.as_deref() == Some(event.name.as_str())
                && i.wake_at.is_none_or(|w| event.received_at <= w)
        }) {
            let Some(def) = defs.iter().find(|d| d.name == instance.journey) else {
                continue;
            };
            let Some(Action::WaitForEvent {
                conditions,
                match_key,
                on_event,
                ..
            }) = def
                .def
                .steps
                .iter()
                .find(|s| s.id == instance.step)
                .map(|s| &s.action)
            else {
                continue;
            };
            if !matches(conditions, &event.body) {
                continue;
            }
            if *match_key {
                let key = def
                    .def
                    .key
                    .as_deref()
                    .and_then(|k| lookup(&event.body, k))
                    .and_then(key_text);
                if key.as_deref() != Some(instance.key.as_str()) {
                    continue;
                }
            }
            pending.stats.woken += 1;
            let next = on_event.clone();
            self.advance(def, instance.clone(), &next, now, pending).await?;
        }

        // Journeys this event starts.
        for def in triggers {
            let key = match &def.def.key {
                Some(path) => match lookup(&event.body, path).and_then(key_text) {
                    Some(k) => k,
                    None => continue,
                },
                None => String::new(),
            };
            if def.def.reentry == Reentry::AfterExit {
                let refreshed = self.active_instances(&event.profile_id, pending).await?;
                if refreshed.iter().any(|i| i.journey == def.name && i.key == key) {
                    continue;
                }
            }
            let id = hash_id("ji_", &[&def.name, event.message_id.as_str()]);
            if pending.instances.contains_key(&id) {
                continue;
            }
            let context = json!({
                "event": {
                    "name": event.name,
                    "message_id": event.message_id.as_str(),
                    "properties": event.body.get("properties").cloned().unwrap_or(json!({})),
                    "timestamp": event.timestamp,
                },
                "visits": {},
            });
            self.start(def, id, event.profile_id.clone(), key, context, now, pending)
                .await?;
        }
        Ok(())
    }

    /// Starts the journeys triggered by a profile entering a segment.
    async fn on_segment_entry(
        &self,
        defs: &[Arc<Compiled>],
        seq: i64,
        change: &missive_store::SegmentChange,
        pending: &mut Pending,
    ) -> Result<(), JourneyError> {
        let now = self.engine.clock().now();
        for def in defs
            .iter()
            .filter(|d| d.def.trigger.segment.as_deref() == Some(change.segment.as_str()))
        {
            if def.def.reentry == Reentry::AfterExit {
                let active = self.active_instances(&change.profile_id, pending).await?;
                if active.iter().any(|i| i.journey == def.name) {
                    continue;
                }
            }
            let id = hash_id("ji_", &[&def.name, "segment", &seq.to_string()]);
            let context = json!({"segment": {"name": change.segment, "entered_at": change.at}, "visits": {}});
            self.start(
                def,
                id,
                change.profile_id.clone(),
                String::new(),
                context,
                now,
                pending,
            )
            .await?;
        }
        Ok(())
    }

    /// Starts an instance at the journey's first step.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        def: &Compiled,
        id: String,
        profile_id: ProfileId,
        key: String,
        context: Value,
        now: DateTime<Utc>,
        pending: &mut Pending,
    ) -> Result<(), JourneyError> {
        let instance = JourneyInstance {
            id,
            journey: def.name.clone(),
            journey_version: def.version,
            profile_id,
            key,
            step: String::new(),
            status: InstanceStatus::Active,
            wake_at: None,
            waiting_for: None,
            context,
            entered_at: now,
            updated_at: now,
        };
        pending.stats.started += 1;
        let first = def.def.steps[0].id.clone();
        self.advance(def, instance, &first, now, pending).await
    }

    /// The profile's active instances: the store's, overlaid with this pass's changes.
    async fn active_instances(
        &self,
        profile: &ProfileId,
        pending: &Pending,
    ) -> Result<Vec<JourneyInstance>, JourneyError> {
        let mut by_id: BTreeMap<String, JourneyInstance> = self
            .store()
            .active_instances(profile)
            .await?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        for (id, i) in &pending.instances {
            if i.profile_id == *profile {
                by_id.insert(id.clone(), i.clone());
            }
        }
        Ok(by_id
            .into_values()
            .filter(|i| i.status == InstanceStatus::Active)
            .collect())
    }

    /// Runs `instance` from step `from` until it waits or ends.
    async fn advance(
        &self,
        def: &Compiled,
        mut instance: JourneyInstance,
        from: &str,
        now: DateTime<Utc>,
        pending: &mut Pending,
    ) -> Result<(), JourneyError> {
        let mut at = from.to_string();
        let mut profile: Option<Profile> = None;
        instance.wake_at = None;
        instance.waiting_for = None;
        instance.updated_at = now;
        for _ in 0..MAX_STEPS_PER_RUN {
            if at == EXIT {
                instance.status = InstanceStatus::Completed;
                break;
            }
            let Some(step) = def.def.steps.iter().find(|s| s.id == at) else {
                instance.status = InstanceStatus::Exited;
                break;
            };
            instance.step = at.clone();
            let visits = bump_visits(&mut instance.context, &at);
            match &step.action {
                Action::Wait { until_time, .. } => {
                    let wake = match until_time.as_deref().and_then(parse_time_of_day) {
                        Some((h, m)) => {
                            let p = self.profile(&instance.profile_id, &mut profile).await?;
                            missive_core::zone::next_local_time(now, h, m, &self.person_zone(p))
                        }
                        None => now + def.waits.get(&at).copied().unwrap_or_default(),
                    };
                    instance.wake_at = Some(wake);
                    pending.instances.insert(instance.id.clone(), instance);
                    return Ok(());
                }
                Action::WaitForEvent { event, .. } => {
                    instance.wake_at = Some(now + def.waits.get(&at).copied().unwrap_or_default());
                    instance.waiting_for = Some(event.clone());
                    pending.instances.insert(instance.id.clone(), instance);
                    return Ok(());
                }
                Action::Branch { then, otherwise, .. } => {
                    let segment = def.conditions.get(&at);
                    let p = self.profile(&instance.profile_id, &mut profile).await?;
                    let member = match segment {
                        Some(seg) => {
                            let events = window_events(self.store(), p, seg, now).await?;
                            seg.evaluate(
                                &Facts::new(p, &events, &p.segments.segments, p.model_scores()),
                                now,
                            )
                            .member
                        }
                        None => false,
                    };
                    at = if member { then.clone() } else { otherwise.clone() };
                    continue;
                }
                Action::Split { paths } => {
                    let total: u64 = paths.iter().map(|p| u64::from(p.weight)).sum();
                    let roll = u64::from_str_radix(&hash_id("", &[&instance.id, &at])[..16], 16).unwrap_or(0)
                        % total.max(1);
                    let mut acc = 0;
                    let mut chosen = EXIT.to_string();
                    for p in paths {
                        acc += u64::from(p.weight);
                        if roll < acc {
                            chosen = p.next.clone();
                            break;
                        }
                    }
                    at = chosen;
                    continue;
                }
                Action::Send { template } => {
                    let cap = def
                        .def
                        .max_sends_per_instance
                        .unwrap_or(DEFAULT_MAX_SENDS_PER_INSTANCE);
                    if bump_sends(&mut instance.context) > u64::from(cap) {
                        tracing::warn!(journey = %def.name, instance = %instance.id, cap, "journey instance reached its send cap; exited");
                        instance.status = InstanceStatus::Exited;
                        break;
                    }
                    let idempotency_key = format!("{}:{}:{}", instance.id, at, visits);
                    pending.outbox.push(OutboxMessage {
                        id: hash_id("msg_", &[&idempotency_key]),
                        idempotency_key,
                        profile_id: instance.profile_id.clone(),
                        template: template.clone(),
                        class: def.def.class.as_str().into(),
                        source: format!("journey:{}", def.name),
                        context: send_context(
                            instance.context.get("event").cloned().unwrap_or(Value::Null),
                            def.def.topic.as_deref(),
                        ),
                        status: OutboxStatus::Queued,
                        attempts: 0,
                        next_attempt_at: now,
                        created_at: now,
                        sent_at: None,
                        recipient: None,
                        detail: None,
                    });
                    pending.stats.sends += 1;
                }
                Action::Exit => {
                    instance.status = InstanceStatus::Exited;
                    break;
                }
            }
            at = def.after(&at);
        }
        if instance.status == InstanceStatus::Active {
            // Ran out of steps without waiting: a loop in the definition.
            tracing::warn!(journey = %def.name, instance = %instance.id, "journey ran {MAX_STEPS_PER_RUN} steps without waiting; stopped");
            instance.status = InstanceStatus::Exited;
        }
        pending.instances.insert(instance.id.clone(), instance);
        Ok(())
    }

    /// The person's time zone, with the workspace's default.
    fn person_zone(&self, p: &Profile) -> jiff::tz::TimeZone {
        missive_core::zone::time_zone_of(p, &self.engine.config().default_time_zone)
    }

    async fn profile<'a>(
        &self,
        id: &ProfileId,
        cache: &'a mut Option<Profile>,
    ) -> Result<&'a Profile, JourneyError> {
        if cache.is_none() {
            // Branches read aggregates: make every accepted event count first.
            self.engine.sync().await?;
            let key = crate::profiles::ProfileKey::Id(id.clone());
            let p = crate::profiles::find_profile(self.store(), &key, self.engine.config().history_len)
                .await?
                .unwrap_or_else(|| Profile::new(id.clone(), self.engine.clock().now()));
            *cache = Some(p);
        }
        cache
            .as_ref()
            .ok_or_else(|| JourneyError::Corrupt(id.to_string(), "profile not loaded".into()))
    }
}

/// Counts a visit of `step` in the instance context; returns the count (1 for the first).
/// The render context of a queued message: the triggering event, and the topic the send-time
/// policy checks.
fn send_context(event: Value, topic: Option<&str>) -> Value {
    let mut context = json!({"event": event});
    if let Some(topic) = topic {
        context["topic"] = json!(topic);
    }
    context
}

fn bump_visits(context: &mut Value, step: &str) -> u64 {
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
fn bump_sends(context: &mut Value) -> u64 {
    let Some(obj) = context.as_object_mut() else {
        return 1;
    };
    let n = obj.get("sends").and_then(Value::as_u64).unwrap_or(0) + 1;
    obj.insert("sends".into(), json!(n));
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_of_day_parse() {
        assert_eq!(parse_duration("90s"), Some(TimeDelta::seconds(90)));
        assert_eq!(parse_duration("1h"), Some(TimeDelta::hours(1)));
        assert_eq!(parse_duration("2d"), Some(TimeDelta::days(2)));
        assert_eq!(parse_duration("0m"), None);
        assert_eq!(parse_duration("5y"), None);
        assert_eq!(parse_time_of_day("09:30"), Some((9, 30)));
        assert_eq!(parse_time_of_day("24:00"), None);
    }

    #[test]
    fn conditions_test_event_properties() {
        let body = json!({"properties": {"value": 120, "tags": ["gift"], "cart_id": "c1"}});
        let c = |path: &str, op, value| Condition {
            path: path.into(),
            op,
            value,
        };
        assert!(matches(&[c("properties.value", Op::Gte, json!(100))], &body));
        assert!(!matches(&[c("properties.value", Op::Lt, json!(100))], &body));
        assert!(matches(
            &[c("properties.tags", Op::Contains, json!("gift"))],
            &body
        ));
        assert!(matches(
            &[c("properties.cart_id", Op::Exists, Value::Null)],
            &body
        ));
        assert!(!matches(
            &[c("properties.coupon", Op::Exists, Value::Null)],
            &body
        ));
    }

    fn def(steps: Value) -> JourneyDef {
        serde_json::from_value(json!({
            "trigger": {"event": "Product Added"},
            "key": "properties.cart_id",
            "steps": steps,
        }))
        .unwrap()
    }

    #[test]
    fn definitions_are_checked() {
        let schema = missive_segment::Schema::default();
        let ok = def(json!([
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true, "timeout": "1h"},
            {"id": "send", "type": "send", "template": "cart"},
        ]));
        let c = compile("cart", 1, ok, &schema).unwrap();
        assert_eq!(c.after("wait"), "send");
        assert_eq!(c.after("send"), EXIT);
        for (bad, why) in [
            (
                json!([{"id": "a", "type": "wait", "duration": "soon"}]),
                "duration",
            ),
            (
                json!([{"id": "a", "type": "send", "template": "x", "next": "b"}]),
                "not a step",
            ),
            (
                json!([{"id": "a", "type": "exit"}, {"id": "a", "type": "exit"}]),
                "unique",
            ),
            (
                json!([{"id": "a", "type": "branch", "condition": "orders.count >>", "then": "exit", "else": "exit"}]),
                "step \"a\"",
            ),
            (
                json!([{"id": "a", "type": "send", "template": "x", "next": "a"}]),
                "steps a → a form a loop with no wait",
            ),
            (
                json!([
                    {"id": "b", "type": "branch", "condition": "orders.count > 0", "then": "s", "else": "exit"},
                    {"id": "s", "type": "send", "template": "x"},
                    {"id": "t", "type": "split", "paths": [{"weight": 1, "next": "b"}]},
                ]),
                "steps b → s → t → b",
            ),
            (json!([]), "at least one step"),
        ] {
            let e = compile("x", 1, def(bad), &schema).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        // A loop through a wait is allowed (the send cap bounds it).
        let through_wait = def(json!([
            {"id": "s", "type": "send", "template": "x"},
            {"id": "w", "type": "wait", "duration": "1s", "next": "s"},
        ]));
        assert!(compile("x", 1, through_wait, &schema).is_ok());
        let mut capped = def(json!([{"id": "s", "type": "send", "template": "x"}]));
        capped.max_sends_per_instance = Some(0);
        assert!(
            compile("x", 1, capped, &schema)
                .unwrap_err()
                .to_string()
                .contains("max_sends_per_instance")
        );
    }
}
