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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::zone::Tz;
use missive_core::{EventKind, Profile, ProfileId};
use missive_segment::Facts;
use missive_store::{
    DocumentKind, DocumentRecord, InstanceStatus, JourneyCommit, JourneyInstance, OutboxMessage,
    OutboxStatus, StoreError, StoredEvent,
};
use serde::Serialize;
use serde_json::{Value, json};

use missive_engine::Engine;
use missive_engine::segments::window_events;

mod context;
mod experiments;
mod webhook;

use context::{bump_sends, bump_visits, event_data, event_key, record_event, send_context};

pub use missive_journey::{
    Action, Compiled, Condition, DEFAULT_MAX_SENDS_PER_INSTANCE, DefinitionError, EXIT, Edge, JourneyDef,
    MessageClass, Op, Reentry, SplitPath, Step, Trigger, compile, edges, key_text, lookup, matches,
    parse_duration, parse_time_of_day, summary, trigger_summary,
};

/// Most steps one instance runs without waiting (a loop of branches would spin forever).
/// The instance's context key naming the `best_time` send step it waits at.
const BEST_TIME_DUE: &str = "best_time_due";
const MAX_STEPS_PER_RUN: usize = 64;
const PAGE: u32 = 1_000;
/// How long journey definitions are trusted before they are read again.
const DEF_TTL: Duration = Duration::from_secs(5);

/// Why a journey could not be saved or run.
#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("journey {0:?} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] Arc<missive_engine::EngineError>),
    #[error("stored journey {0:?} is unreadable: {1}")]
    Corrupt(String, String),
}

/// What one pass of the runner did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// Webhook steps' client and the internal networks they may reach.
    http: Option<reqwest::Client>,
    guard: Arc<crate::webhooks::Guard>,
}

fn hash_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = twox_hash::XxHash3_128::new();
    for p in parts {
        h.write(p.as_bytes());
        h.write(&[0]);
    }
    format!("{prefix}{:032x}", h.finish_128())
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
            http: None,
            guard: Arc::default(),
        }
        .with_webhook_guard(crate::webhooks::Guard::default())
    }

    /// Webhook steps may reach these internal networks (`[webhooks] allow_internal`).
    pub fn with_webhook_guard(mut self, guard: crate::webhooks::Guard) -> Self {
        self.guard = Arc::new(guard);
        self.http = match crate::webhooks::http::client(self.guard.clone(), 3) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "journey webhook steps have no HTTP client");
                None
            }
        };
        self
    }

    /// Notifies `queued` whenever a pass puts messages in the outbox.
    pub fn notify_queued(mut self, queued: Arc<tokio::sync::Notify>) -> Self {
        self.queued = Some(queued);
        self
    }

    fn store(&self) -> &missive_store::Store {
        self.engine.store()
    }

    /// Checks and saves a journey (a new version).
    pub async fn save(&self, name: &str, def: JourneyDef, now: DateTime<Utc>) -> Result<i64, JourneyError> {
        self.check(name, &def).await?;
        let body =
            serde_json::to_value(&def).map_err(|e| JourneyError::Corrupt(name.into(), e.to_string()))?;
        let versions = self
            .store()
            .documents()
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

    /// What [`Self::save`] checks, without saving: the name, the definition (targets, waits,
    /// conditions against today's schema, loops), that its templates exist and that the
    /// experiments it names fit.
    pub async fn check(&self, name: &str, def: &JourneyDef) -> Result<(), JourneyError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(JourneyError::Definition(DefinitionError::Invalid(
                "a journey name is 1 to 64 letters, digits, '-' or '_'".into(),
            )));
        }
        // What was just ingested counts: checkpoint first.
        self.engine.sync().await?;
        let schema = missive_engine::schema::segment_schema(self.store()).await?;
        let compiled = compile(name, 0, def.clone(), &schema)?;
        for step in &compiled.def.steps {
            if let Action::Send { template, .. } = &step.action
                && self
                    .store()
                    .documents()
                    .get_document(DocumentKind::Template, template)
                    .await?
                    .is_none()
            {
                return Err(JourneyError::Definition(DefinitionError::Invalid(format!(
                    "step {:?} sends template {template:?}, which does not exist",
                    step.id
                ))));
            }
            self.check_experiment(step, compiled.def.class).await?;
        }
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), JourneyError> {
        if !self
            .store()
            .documents()
            .delete_document(DocumentKind::Journey, name)
            .await?
        {
            return Err(JourneyError::NotFound(name.into()));
        }
        self.forget_definitions();
        Ok(())
    }

    /// Instances of one journey, newest first.
    pub async fn instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, JourneyError> {
        Ok(self.store().delivery().journey_instances(journey, limit).await?)
    }

    /// A journey's instances counted by the step they wait at or left from, and their state.
    pub async fn step_counts(&self, journey: &str) -> Result<Vec<missive_store::StepCount>, JourneyError> {
        Ok(self.store().delivery().journey_step_counts(journey).await?)
    }

    pub async fn get(&self, name: &str) -> Result<(DocumentRecord, JourneyDef), JourneyError> {
        let doc = self
            .store()
            .documents()
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
        // A cluster node keeps none: journeys are saved through any node's API, and the one
        // running them must not read events with definitions a moment old.
        let ttl = match self.engine.config().cluster {
            true => Duration::ZERO,
            false => DEF_TTL,
        };
        if let Some((at, defs)) = &*self.defs.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < ttl
        {
            return Ok(defs.clone());
        }
        // Saved definitions were checked when saved; a name unknown to the schema since (a
        // declaration withdrawn) must not stop a running journey.
        let schema = missive_segment::Schema::default();
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store()
                .documents()
                .list_documents(DocumentKind::Journey, after, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for doc in page {
                let compiled = serde_json::from_value::<JourneyDef>(doc.body)
                    .map_err(|e| JourneyError::Corrupt(doc.name.clone(), e.to_string()))
                    .and_then(|def| Ok(compile(&doc.name, doc.version, def, &schema)?));
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
        let wake = self.notify.clone();
        missive_engine::background::poll_until_shutdown(shutdown, Some(wake), move || {
            let this = self.clone();
            async move {
                let mut sleep_for = poll;
                match this.run_pending().await {
                    Ok(_) => {
                        if let Ok(Some(wake)) = this.store().delivery().next_instance_wake().await {
                            let until = (wake - this.engine.clock().now())
                                .to_std()
                                .unwrap_or(Duration::ZERO);
                            sleep_for = sleep_for.min(until);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "journey pass failed; retrying"),
                }
                sleep_for
            }
        })
    }

    /// One pass: every event committed since the last pass, then every wait that is due.
    pub async fn run_pending(&self) -> Result<RunStats, JourneyError> {
        let _one_at_a_time = self.running.lock().await;
        let pass_started = Instant::now();
        let defs = self.definitions().await?;
        let mut stats = RunStats::default();
        let mut through = self.store().delivery().journey_events_through().await?;
        // In cluster mode events are numbered by the log and committed by their partitions'
        // owners at their own pace: only those up to the cluster's watermark are all there.
        let watermark = match self.engine.config().cluster {
            true => Some(self.store().events().profile_checkpoint().await?),
            false => None,
        };
        loop {
            let mut events = self.store().events().events_after(through, PAGE).await?;
            if let Some(w) = watermark {
                events.retain(|e| e.seq <= w);
            }
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
                .delivery()
                .commit_journey(JourneyCommit {
                    instances: pending.instances.into_values().collect(),
                    outbox: pending.outbox,
                    events_through: Some(last_seq),
                    segments_through: None,
                })
                .await?;
            through = last_seq;
        }
        let mut segments_through = self.store().delivery().journey_segments_through().await?;
        loop {
            let changes = self
                .store()
                .events()
                .segment_changes_after(segments_through, PAGE)
                .await?;
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
                .delivery()
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
            let due = self.store().delivery().due_instances(now, PAGE).await?;
            if due.is_empty() {
                break;
            }
            let mut pending = Pending::default();
            for mut instance in due {
                let Some(def) = defs.iter().find(|d| d.name == instance.journey) else {
                    if self
                        .store()
                        .documents()
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
                    // A `best_time` send whose hour has come: the step runs again and sends.
                    Some(Action::Send { at: Some(_), .. }) => instance.step.clone(),
                    _ => def.after(&instance.step),
                };
                pending.stats.woken += 1;
                self.advance(def, instance, &next, now, &mut pending).await?;
            }
            stats.woken += pending.stats.woken;
            stats.sends += pending.stats.sends;
            self.store()
                .delivery()
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
        // Keyed journeys keep the events that carry their key (a cart's adds and removals).
        let carries_a_key = defs.iter().any(|d| event_key(d, event).is_some());
        if !waited_for && triggers.is_empty() && !carries_a_key {
            return Ok(());
        }
        let now = self.engine.clock().now();
        let mut active = self.active_instances(&event.profile_id, pending).await?;

        if carries_a_key {
            for instance in active.iter_mut() {
                let Some(def) = defs.iter().find(|d| d.name == instance.journey) else {
                    continue;
                };
                let key = event_key(def, event);
                // An event received after the instance's wake time (read late, after downtime)
                // belongs after its next step, as for the waits below.
                let in_time = instance.wake_at.is_none_or(|w| event.received_at <= w);
                if key.as_deref() == Some(instance.key.as_str())
                    && in_time
                    && record_event(&mut instance.context, event)
                {
                    instance.updated_at = now;
                    pending.instances.insert(instance.id.clone(), instance.clone());
                }
            }
        }

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
            if *match_key && event_key(def, event).as_deref() != Some(instance.key.as_str()) {
                continue;
            }
            pending.stats.woken += 1;
            let next = on_event.clone();
            self.advance(def, instance.clone(), &next, now, pending).await?;
        }

        // Journeys this event starts.
        for def in triggers {
            let key = match (&def.def.key, event_key(def, event)) {
                (Some(_), Some(k)) => k,
                (Some(_), None) => continue,
                (None, _) => String::new(),
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
                "event": event_data(event),
                "events": if def.def.key.is_some() { json!([event_data(event)]) } else { json!([]) },
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
            .delivery()
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
                        Some(time) => {
                            let p = self.profile(&instance.profile_id, &mut profile).await?;
                            missive_core::zone::next_local_time(now, time, self.person_zone(p))
                        }
                        None => now + def.wait_of(&at).unwrap_or_default(),
                    };
                    instance.wake_at = Some(wake);
                    pending.instances.insert(instance.id.clone(), instance);
                    return Ok(());
                }
                Action::WaitForEvent { event, .. } => {
                    instance.wake_at = Some(now + def.wait_of(&at).unwrap_or_default());
                    instance.waiting_for = Some(event.clone());
                    pending.instances.insert(instance.id.clone(), instance);
                    return Ok(());
                }
                Action::Branch { then, otherwise, .. } => {
                    let segment = def.condition_of(&at);
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
                Action::Split {
                    experiment: Some(name),
                    paths,
                } => {
                    let p = self.profile(&instance.profile_id, &mut profile).await?;
                    at = self
                        .experiment_path(&mut instance, name, paths, p, def, &at)
                        .await?;
                    continue;
                }
                Action::Split { paths, .. } => {
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
                Action::Send {
                    template,
                    experiment,
                    at: timing,
                    within,
                } => {
                    // `best_time`: the instance waits at this step until the person's best hour
                    // in the window, then the step runs again and sends (so an exit or a later
                    // step cannot overtake the message); the sender's quiet hours still apply.
                    if timing.is_some() {
                        let due_here = instance
                            .context
                            .get(BEST_TIME_DUE)
                            .and_then(Value::as_str)
                            .is_some_and(|s| s == at);
                        if due_here {
                            if let Some(o) = instance.context.as_object_mut() {
                                o.remove(BEST_TIME_DUE);
                            }
                        } else {
                            let within = within
                                .as_deref()
                                .and_then(missive_journey::parse_duration)
                                .unwrap_or(TimeDelta::hours(24));
                            let p = self.profile(&instance.profile_id, &mut profile).await?;
                            let when = self.best_time(p, now, within).await;
                            if when > now {
                                if let Some(o) = instance.context.as_object_mut() {
                                    o.insert(BEST_TIME_DUE.into(), json!(at));
                                }
                                instance.wake_at = Some(when);
                                pending.instances.insert(instance.id.clone(), instance);
                                return Ok(());
                            }
                        }
                    }
                    let send_at = now;
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
                        class: def.def.class,
                        source: missive_core::MessageSource::Journey(def.name.clone()),
                        step: Some(at.clone()),
                        context: send_context(
                            &def.name,
                            &instance,
                            def.def.topic.as_deref(),
                            experiment.as_deref(),
                        ),
                        status: OutboxStatus::Queued,
                        attempts: 0,
                        next_attempt_at: send_at,
                        created_at: now,
                        sent_at: None,
                        recipient: None,
                        detail: None,
                    });
                    pending.stats.sends += 1;
                }
                Action::Webhook(call) => {
                    let p = self.profile(&instance.profile_id, &mut profile).await?.clone();
                    let outcome = self
                        .call_webhook(&def.name, &at, visits, call, &instance, &p)
                        .await;
                    at = match (outcome, &call.on_failure) {
                        (webhook::Outcome::Failed(_), Some(on_failure)) => on_failure.clone(),
                        _ => def.after(&at),
                    };
                    continue;
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

    /// When a `best_time` send goes out: the person's best hour within `within` by the active
    /// send-time model (docs/models.md). Their own opens and clicks count only with
    /// `profiling` consent, and only they count without an active model (the earliest hour,
    /// now, when nothing is known).
    async fn best_time(&self, p: &Profile, now: DateTime<Utc>, within: TimeDelta) -> DateTime<Utc> {
        let model = send_time_model(&self.engine).await;
        best_time_for(&model, p, now, within)
    }

    /// The person's time zone, with the workspace's default.
    fn person_zone(&self, p: &Profile) -> Tz {
        missive_core::zone::time_zone_of(p, self.engine.config().default_time_zone)
    }

    async fn profile<'a>(
        &self,
        id: &ProfileId,
        cache: &'a mut Option<Profile>,
    ) -> Result<&'a Profile, JourneyError> {
        if cache.is_none() {
            // Branches read aggregates: make every accepted event count first.
            self.engine.sync().await?;
            let key = missive_engine::profiles::ProfileKey::Id(id.clone());
            let p =
                missive_engine::profiles::find_profile(self.store(), &key, self.engine.config().history_len)
                    .await?
                    .unwrap_or_else(|| Profile::new(id.clone(), self.engine.clock().now()));
            *cache = Some(p);
        }
        cache
            .as_ref()
            .ok_or_else(|| JourneyError::Corrupt(id.to_string(), "profile not loaded".into()))
    }
}

/// The active send-time model, or, without one (or when it does not load, which is logged), a
/// flat one on the workspace's default zone: then only the person's own opens and clicks
/// decide.
pub(crate) async fn send_time_model(engine: &Engine) -> missive_models::send_time::SendTime {
    use missive_models::send_time::{HOURS, SendTime};
    let flat = || {
        SendTime::fit(
            std::iter::empty::<&[f64; HOURS]>(),
            8.0,
            engine.config().default_time_zone,
        )
    };
    match missive_engine::models::registry::active_send_time(engine.store()).await {
        Ok(Some(m)) => m,
        Ok(None) => flat(),
        Err(e) => {
            tracing::warn!(error = %e, "the send-time model does not load; only people's own hours count");
            flat()
        }
    }
}

/// When to send to `p` within `within` of `now` (their own opens and clicks count only with
/// `profiling` consent).
pub(crate) fn best_time_for(
    model: &missive_models::send_time::SendTime,
    p: &Profile,
    now: DateTime<Utc>,
    within: TimeDelta,
) -> DateTime<Utc> {
    use missive_models::send_time::{HOURS, engagement};
    let zone = model.zone_of(p);
    let own = if p.consents(missive_core::Purpose::Profiling) {
        engagement(p, zone)
    } else {
        [0.0; HOURS]
    };
    model.best_time(&own, now, within, zone)
}
