//! Broadcasts: one template to every member of a saved segment, now or at a set time,
//! throttled, pausable, resumable and cancellable, with progress.
//!
//! A running broadcast walks the segment's members in id order from a cursor and queues one
//! outbox row per member (idempotency key `broadcast:ID:PROFILE`), each due at the next slot of
//! its rate. It queues at most a couple of seconds ahead, so a pause takes effect at once;
//! cancelling also skips what is already queued. The cursor and counts live in the broadcast's
//! document; a crash between queuing and saving them re-queues the same members, which the
//! idempotency keys turn into no-ops.
//!
//! A broadcast whose experiment is a bandit goes out in **waves**: each test wave reaches its
//! share of the people, split by the wave's shares; after `hours_between`, the next wave's
//! shares follow each variant's posterior chance of being best (Thompson sampling with a floor,
//! `missive_experiment::bandit`); after the last test wave, the rest gets the most probable
//! best. Each message's variant is chosen when it is queued and kept in its context.

pub use missive_journey::SendTiming;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use missive_store::{
    DocumentKind, DocumentRecord, JourneyCommit, OutboxCounts, OutboxMessage, OutboxStatus, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::journeys::MessageClass;
use missive_engine::Engine;

/// How far ahead of its rate a broadcast queues messages.
const LOOKAHEAD: TimeDelta = TimeDelta::seconds(2);
/// Members queued per step when the rate is unlimited.
const PAGE: u32 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

/// What a broadcast is and how far it got (a document of kind `broadcast`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Broadcast {
    pub id: String,
    pub template: String,
    pub segment: String,
    pub class: MessageClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The experiment each message takes part in (subject, template, holdout or content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The waves, when the experiment is a bandit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Waves>,
    pub send_at: DateTime<Utc>,
    /// With `at: best_time`: the window, in hours, each message may wait for its recipient's
    /// best hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_time_within_hours: Option<u32>,
    /// Messages per second; 0 for as fast as the sender goes.
    pub rate_per_second: u32,
    pub state: BroadcastState,
    /// The last member queued.
    pub cursor: Option<String>,
    pub queued: u64,
    /// Members when it started.
    pub total: u64,
    /// When the next message is due (the throttle).
    pub next_slot: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A broadcast in waves under a bandit experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = BroadcastWaves)]
pub struct Waves {
    /// People in each test wave.
    pub size: u64,
    /// Test waves.
    pub count: u32,
    /// The wave being queued: 0 to `count - 1` are test waves; `count` is the rest.
    pub current: u32,
    /// The current test wave's share of each variant, in the experiment's order.
    pub shares: Vec<f64>,
    /// When the queued wave has had its time and the next one may be decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_at: Option<DateTime<Utc>>,
    /// The variant the rest gets, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<String>,
    /// Every decision, for the record.
    #[serde(default)]
    pub decisions: Vec<WaveDecision>,
}

/// What was known after a wave, and what it decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = BroadcastWaveDecision)]
pub struct WaveDecision {
    pub after_wave: u32,
    pub at: DateTime<Utc>,
    /// Per variant: people exposed so far, and how many opened (or clicked, or converted).
    pub units: Vec<u64>,
    pub successes: Vec<u64>,
    pub win_probabilities: Vec<f64>,
}

/// What a caller asks for.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastIn {
    pub template: String,
    pub segment: String,
    #[serde(default)]
    pub send_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub rate_per_second: u32,
    #[serde(default)]
    pub class: MessageClass,
    /// The preference-centre topic (people who declined it are skipped).
    #[serde(default)]
    pub topic: Option<String>,
    /// An experiment (not of kind `branch`) the messages take part in.
    #[serde(default)]
    pub experiment: Option<String>,
    /// `best_time`: each message waits for its recipient's best hour within `within`
    /// (docs/models.md).
    #[serde(default)]
    pub at: Option<missive_journey::SendTiming>,
    /// The window for `at` (default 24h; 1h to 7d).
    #[serde(default)]
    pub within: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("invalid broadcast: {0}")]
    Invalid(String),
    #[error("broadcast {0:?} does not exist")]
    NotFound(String),
    #[error("broadcast {id:?} is {state:?}; it cannot be {action}")]
    WrongState {
        id: String,
        state: BroadcastState,
        action: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored broadcast is unreadable: {0}")]
    Corrupt(String),
}

/// A broadcast with its delivery counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastProgress)]
pub struct Progress {
    #[serde(flatten)]
    pub broadcast: Broadcast,
    pub messages: OutboxCounts,
}

#[derive(Clone)]
pub struct Broadcasts {
    engine: Engine,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Broadcasts {
    pub fn new(engine: Engine) -> Self {
        Broadcasts {
            engine,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn store(&self) -> &missive_store::Store {
        self.engine.store()
    }

    pub async fn create(&self, req: BroadcastIn) -> Result<Progress, BroadcastError> {
        let now = self.engine.clock().now();
        if self
            .store()
            .documents()
            .get_document(DocumentKind::Template, &req.template)
            .await?
            .is_none()
        {
            return Err(BroadcastError::Invalid(format!(
                "template {:?} does not exist",
                req.template
            )));
        }
        if !self
            .store()
            .documents()
            .list_segments()
            .await?
            .iter()
            .any(|s| s.name == req.segment)
        {
            return Err(BroadcastError::Invalid(format!(
                "segment {:?} does not exist",
                req.segment
            )));
        }
        let bandit = match &req.experiment {
            Some(name) => {
                let e = self.experiment(name).await?;
                if e.definition.varies == missive_experiment::definition::Varies::Branch {
                    return Err(BroadcastError::Invalid(format!(
                        "experiment {name:?} varies \"branch\", which only a journey's split step can use"
                    )));
                }
                if req.class == MessageClass::Transactional
                    && e.definition.varies == missive_experiment::definition::Varies::Holdout
                {
                    return Err(BroadcastError::Invalid(format!(
                        "experiment {name:?} holds messages back, which a transactional broadcast must not do"
                    )));
                }
                if e.definition.bandit.is_some()
                    && e.status != missive_experiment::definition::Status::Running
                {
                    return Err(BroadcastError::Invalid(format!(
                        "experiment {name:?} is a bandit and is {}: start it first, since its waves learn from the start",
                        e.status.as_str()
                    )));
                }
                e.definition.bandit.map(|b| (b, e.planned_shares()))
            }
            None => None,
        };
        self.engine
            .sync()
            .await
            .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
        let total = self.count_members(&req.segment).await?;
        let waves = bandit.map(|(b, shares)| Waves {
            size: ((total as f64 * b.share / f64::from(b.waves)).ceil() as u64).max(1),
            count: b.waves,
            current: 0,
            shares,
            decide_at: None,
            best: None,
            decisions: Vec::new(),
        });
        let send_at = req.send_at.unwrap_or(now).max(now);
        let best_time_within_hours = match (req.at, req.within.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(BroadcastError::Invalid(
                    "`within` goes with `at: \"best_time\"`".into(),
                ));
            }
            (Some(_), _) if waves.is_some() => {
                return Err(BroadcastError::Invalid(
                    "`at: \"best_time\"` cannot go with a bandit's waves: the waves are judged on their times".into(),
                ));
            }
            (Some(missive_journey::SendTiming::BestTime), w) => {
                match missive_journey::parse_duration(w.unwrap_or("24h")) {
                    Some(d) if d >= TimeDelta::hours(1) && d <= TimeDelta::days(7) => {
                        Some(u32::try_from(d.num_hours()).unwrap_or(24))
                    }
                    _ => {
                        return Err(BroadcastError::Invalid(format!(
                            "within {:?}: a duration from 1h to 7d",
                            w.unwrap_or_default()
                        )));
                    }
                }
            }
        };
        let b = Broadcast {
            id: format!("brd_{}", uuid::Uuid::now_v7().simple()),
            template: req.template,
            segment: req.segment,
            class: req.class,
            topic: req.topic,
            experiment: req.experiment,
            waves,
            send_at,
            best_time_within_hours,
            rate_per_second: req.rate_per_second,
            state: BroadcastState::Scheduled,
            cursor: None,
            queued: 0,
            total,
            next_slot: send_at,
            created_at: now,
            updated_at: now,
        };
        self.put(&b).await?;
        Ok(Progress {
            broadcast: b,
            messages: OutboxCounts::default(),
        })
    }

    async fn experiment(
        &self,
        name: &str,
    ) -> Result<missive_experiment::definition::Experiment, BroadcastError> {
        match crate::experiments::Experiments::new(self.store().clone())
            .get(name)
            .await
        {
            Ok(e) => Ok(e),
            Err(crate::experiments::ExperimentError::Store(e)) => Err(e.into()),
            Err(e) => Err(BroadcastError::Invalid(format!("experiment: {e}"))),
        }
    }

    /// Decides what follows the wave just waited for: the next test wave's shares, or the best
    /// for the rest, from each variant's people and successes so far.
    async fn decide_wave(
        &self,
        b: &mut Broadcast,
        e: &missive_experiment::definition::Experiment,
        now: DateTime<Utc>,
    ) -> Result<(), BroadcastError> {
        use rand::SeedableRng;
        // This broadcast's people only: the experiment may be used elsewhere too.
        let source = missive_core::MessageSource::Broadcast(b.id.clone()).to_string();
        let units = crate::experiments::Experiments::new(self.store().clone())
            .units_from(e, Some(&source))
            .await
            .map_err(|err| match err {
                crate::experiments::ExperimentError::Store(s) => BroadcastError::Store(s),
                other => BroadcastError::Invalid(other.to_string()),
            })?;
        let metric = e.definition.primary_metric;
        let names: Vec<&str> = e.definition.variants.iter().map(|v| v.name.as_str()).collect();
        let mut arms = vec![
            missive_experiment::stats::Counts {
                successes: 0,
                units: 0
            };
            names.len()
        ];
        for u in &units.units {
            if let Some(i) = names.iter().position(|n| *n == u.variant) {
                arms[i].units += 1;
                arms[i].successes += u64::from(u.value(metric) == 1.0);
            }
        }
        let Some(w) = b.waves.as_mut() else { return Ok(()) };
        let floor = e.definition.bandit.map_or(0.0, |x| x.floor);
        let last = w.current + 1 >= w.count;
        // Seeded by broadcast and wave: the same counts give the same decision.
        let seed = twox_hash::XxHash3_64::oneshot(format!("{}/{}", b.id, w.current).as_bytes());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let decision = missive_experiment::bandit::decide(&arms, floor, last, &mut rng)
            .map_err(|err| BroadcastError::Invalid(format!("experiment {}: {err}", e.definition.name)))?;
        w.decisions.push(WaveDecision {
            after_wave: w.current,
            at: now,
            units: arms.iter().map(|a| a.units).collect(),
            successes: arms.iter().map(|a| a.successes).collect(),
            win_probabilities: decision.win_probabilities.clone(),
        });
        match decision.best {
            Some(i) => w.best = names.get(i).map(|n| (*n).to_owned()),
            None => w.shares = decision.shares,
        }
        w.current += 1;
        w.decide_at = None;
        Ok(())
    }

    async fn count_members(&self, segment: &str) -> Result<u64, BroadcastError> {
        let mut n = 0;
        let mut after = None;
        loop {
            let page = self
                .store()
                .events()
                .segment_members(segment, after, 10_000)
                .await?;
            let Some(last) = page.last().cloned() else { break };
            n += page.len() as u64;
            after = Some(last);
        }
        Ok(n)
    }

    async fn put(&self, b: &Broadcast) -> Result<(), BroadcastError> {
        let body = serde_json::to_value(b).map_err(|e| BroadcastError::Corrupt(e.to_string()))?;
        self.store()
            .documents()
            .put_documents(vec![DocumentRecord {
                kind: DocumentKind::Broadcast,
                name: b.id.clone(),
                version: 0,
                body,
                updated_at: b.updated_at,
            }])
            .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Progress, BroadcastError> {
        let doc = self
            .store()
            .documents()
            .get_document(DocumentKind::Broadcast, id)
            .await?
            .ok_or_else(|| BroadcastError::NotFound(id.into()))?;
        let broadcast: Broadcast =
            serde_json::from_value(doc.body).map_err(|e| BroadcastError::Corrupt(e.to_string()))?;
        let messages = self
            .store()
            .delivery()
            .outbox_counts(&missive_core::MessageSource::Broadcast(id.to_owned()))
            .await?;
        Ok(Progress { broadcast, messages })
    }

    pub async fn list(&self) -> Result<Vec<Broadcast>, BroadcastError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store()
                .documents()
                .list_documents(DocumentKind::Broadcast, after, 1_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for doc in page {
                out.push(
                    serde_json::from_value(doc.body).map_err(|e| BroadcastError::Corrupt(e.to_string()))?,
                );
            }
        }
        Ok(out)
    }

    async fn transition(
        &self,
        id: &str,
        action: &'static str,
        allowed: &[BroadcastState],
        to: BroadcastState,
    ) -> Result<Progress, BroadcastError> {
        let _one_at_a_time = self.running.lock().await;
        let mut b = self.get(id).await?.broadcast;
        if !allowed.contains(&b.state) {
            return Err(BroadcastError::WrongState {
                id: id.into(),
                state: b.state,
                action,
            });
        }
        b.updated_at = self.engine.clock().now();
        // A broadcast paused before its time resumes waiting for it.
        b.state = if to == BroadcastState::Running && b.send_at > b.updated_at {
            BroadcastState::Scheduled
        } else {
            to
        };
        if b.state == BroadcastState::Running {
            // Resuming: the throttle starts again from now, not from where it paused.
            b.next_slot = b.next_slot.max(b.updated_at);
        }
        self.put(&b).await?;
        if to == BroadcastState::Cancelled {
            // The same reason the sender records for a message it finds cancelled.
            let reason = crate::sender::BROADCAST_CANCELLED;
            let skipped = self
                .store()
                .delivery()
                .skip_queued(&missive_core::MessageSource::Broadcast(id.to_owned()), reason)
                .await?;
            metrics::counter!("missive_messages_skipped_total", "reason" => crate::sender::reason_label(reason))
                .increment(skipped);
        }
        self.get(id).await
    }

    pub async fn pause(&self, id: &str) -> Result<Progress, BroadcastError> {
        self.transition(
            id,
            "paused",
            &[BroadcastState::Scheduled, BroadcastState::Running],
            BroadcastState::Paused,
        )
        .await
    }

    pub async fn resume(&self, id: &str) -> Result<Progress, BroadcastError> {
        self.transition(id, "resumed", &[BroadcastState::Paused], BroadcastState::Running)
            .await
    }

    pub async fn cancel(&self, id: &str) -> Result<Progress, BroadcastError> {
        self.transition(
            id,
            "cancelled",
            &[
                BroadcastState::Scheduled,
                BroadcastState::Running,
                BroadcastState::Paused,
            ],
            BroadcastState::Cancelled,
        )
        .await
    }

    /// Queues broadcasts in the background until `shutdown`, telling `queued` when it did.
    pub fn spawn(
        self,
        poll: std::time::Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
        queued: Arc<tokio::sync::Notify>,
    ) -> tokio::task::JoinHandle<()> {
        missive_engine::background::poll_until_shutdown(shutdown, None, move || {
            let (this, queued) = (self.clone(), queued.clone());
            async move {
                match this.run_pending().await {
                    Ok(n) if n > 0 => queued.notify_one(),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "broadcast step failed; retrying"),
                }
                poll
            }
        })
    }

    /// Queues what is due of every broadcast; returns how many messages were queued.
    pub async fn run_pending(&self) -> Result<u64, BroadcastError> {
        let _one_at_a_time = self.running.lock().await;
        let mut queued = 0;
        for mut b in self.list().await? {
            let now = self.engine.clock().now();
            match b.state {
                BroadcastState::Scheduled if b.send_at <= now => b.state = BroadcastState::Running,
                BroadcastState::Running => {}
                _ => continue,
            }
            queued += self.queue_due(&mut b, now).await?;
        }
        Ok(queued)
    }

    async fn queue_due(&self, b: &mut Broadcast, now: DateTime<Utc>) -> Result<u64, BroadcastError> {
        let source = missive_core::MessageSource::Broadcast(b.id.clone());
        let horizon = now + LOOKAHEAD;
        let mut queued = 0;
        let bandit = match (&b.waves, &b.experiment) {
            (Some(_), Some(name)) => Some(self.experiment(name).await?),
            _ => None,
        };
        loop {
            let mut room = if b.rate_per_second == 0 {
                PAGE
            } else {
                let slots =
                    (horizon - b.next_slot.max(now)).num_milliseconds() * i64::from(b.rate_per_second) / 1000;
                u32::try_from(slots.clamp(0, i64::from(PAGE))).unwrap_or(0)
            };
            if let (Some(w), Some(e)) = (&mut b.waves, &bandit)
                && w.current < w.count
            {
                let end = u64::from(w.current + 1) * w.size;
                if b.queued >= end {
                    match w.decide_at {
                        None => {
                            let hours = e.definition.bandit.map_or(1.0, |x| x.hours_between);
                            w.decide_at = Some(now + TimeDelta::seconds((hours * 3600.0).round() as i64));
                            break;
                        }
                        Some(at) if now < at => break,
                        Some(_) => {
                            self.decide_wave(b, e, now).await?;
                            continue;
                        }
                    }
                }
                room = room.min(u32::try_from(end - b.queued).unwrap_or(u32::MAX));
            }
            if room == 0 {
                break;
            }
            let after = b
                .cursor
                .as_deref()
                .and_then(|c| missive_core::ProfileId::parse(c).ok());
            let members = self
                .store()
                .events()
                .segment_members(&b.segment, after, room)
                .await?;
            let Some(last) = members.last().cloned() else {
                b.state = BroadcastState::Completed;
                break;
            };
            let spacing = match b.rate_per_second {
                0 => TimeDelta::zero(),
                r => TimeDelta::microseconds(1_000_000 / i64::from(r)),
            };
            let mut slot = b.next_slot.max(now);
            let mut context = json!({});
            if let Some(topic) = &b.topic {
                context["topic"] = json!(topic);
            }
            if let Some(e) = &b.experiment {
                context[crate::exposure::CONTEXT_EXPERIMENT] = json!(e);
            }
            // With `best_time`, each recipient's hour (their profile read once here); those
            // sharing an hour are spread from it at the broadcast's rate.
            let mut best_times = std::collections::HashMap::new();
            let mut per_hour: std::collections::HashMap<DateTime<Utc>, i32> =
                std::collections::HashMap::new();
            if let Some(hours) = b.best_time_within_hours {
                let model = crate::journeys::send_time_model(&self.engine).await;
                let within = TimeDelta::hours(i64::from(hours));
                for p in &members {
                    if let Some(profile) = self.store().events().load_profile(p).await? {
                        let hour = crate::journeys::best_time_for(&model, &profile, slot, within);
                        let n = per_hour.entry(hour).or_default();
                        best_times.insert(p.clone(), hour + spacing * *n);
                        *n += 1;
                    }
                }
            }
            let outbox: Vec<OutboxMessage> = members
                .iter()
                .map(|p| {
                    let key = format!("{source}:{p}");
                    let mut context = context.clone();
                    if let (Some(w), Some(e)) = (&b.waves, &bandit) {
                        let variant = match &w.best {
                            Some(best) => best.clone(),
                            None => {
                                let wave = format!("{}/wave-{}", e.definition.name, w.current);
                                let i = missive_experiment::assign::pick(&w.shares, &wave, p.as_str());
                                e.definition.variants[i.min(e.definition.variants.len() - 1)]
                                    .name
                                    .clone()
                            }
                        };
                        context[crate::exposure::CONTEXT_VARIANT] = json!(variant);
                    }
                    let m = OutboxMessage {
                        // Time-ordered (UUIDv7), not a hash of the key: a million messages
                        // queued in a row then go to the end of the id indexes instead of to a
                        // random page each. Queueing stays once only by the idempotency key
                        // (a repeat conflicts on it and is left out).
                        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                        idempotency_key: key,
                        profile_id: p.clone(),
                        template: b.template.clone(),
                        class: b.class,
                        source: source.clone(),
                        step: None,
                        context,
                        status: OutboxStatus::Queued,
                        attempts: 0,
                        next_attempt_at: best_times.get(p).map_or(slot, |t| slot.max(*t)),
                        created_at: now,
                        sent_at: None,
                        recipient: None,
                        detail: None,
                    };
                    slot += spacing;
                    m
                })
                .collect();
            queued += outbox.len() as u64;
            b.queued += outbox.len() as u64;
            b.cursor = Some(last.to_string());
            b.next_slot = slot;
            self.store()
                .delivery()
                .commit_journey(JourneyCommit {
                    instances: vec![],
                    outbox,
                    events_through: None,
                    segments_through: None,
                })
                .await?;
            if b.rate_per_second != 0 && b.next_slot >= horizon {
                break;
            }
        }
        b.updated_at = now;
        self.put(b).await?;
        Ok(queued)
    }
}
