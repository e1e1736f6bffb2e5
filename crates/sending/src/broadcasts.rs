//! Broadcasts: one template to every member of a saved segment, now or at a set time,
//! throttled, pausable, resumable and cancellable, with progress.
//!
//! A running broadcast walks the segment's members in id order from a cursor and queues one
//! outbox row per member (idempotency key `broadcast:ID:PROFILE`), each due at the next slot of
//! its rate. It queues at most a couple of seconds ahead, so a pause takes effect at once;
//! cancelling also skips what is already queued. The cursor and counts live in the broadcast's
//! document; a crash between queuing and saving them re-queues the same members, which the
//! idempotency keys turn into no-ops.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

/// What a broadcast is and how far it got (a document of kind `broadcast`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub send_at: DateTime<Utc>,
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

/// What a caller asks for.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Serialize)]
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
        if let Some(name) = &req.experiment {
            match crate::experiments::Experiments::new(self.store().clone())
                .get(name)
                .await
            {
                Ok(e) if e.definition.varies == missive_experiment::definition::Varies::Branch => {
                    return Err(BroadcastError::Invalid(format!(
                        "experiment {name:?} varies \"branch\", which only a journey's split step can use"
                    )));
                }
                Ok(_) => {}
                Err(crate::experiments::ExperimentError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(BroadcastError::Invalid(format!("experiment: {e}"))),
            }
        }
        self.engine
            .sync()
            .await
            .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
        let total = self.count_members(&req.segment).await?;
        let send_at = req.send_at.unwrap_or(now).max(now);
        let b = Broadcast {
            id: format!("brd_{}", uuid::Uuid::now_v7().simple()),
            template: req.template,
            segment: req.segment,
            class: req.class,
            topic: req.topic,
            experiment: req.experiment,
            send_at,
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
        loop {
            let room = if b.rate_per_second == 0 {
                PAGE
            } else {
                let slots =
                    (horizon - b.next_slot.max(now)).num_milliseconds() * i64::from(b.rate_per_second) / 1000;
                u32::try_from(slots.clamp(0, i64::from(PAGE))).unwrap_or(0)
            };
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
            let outbox: Vec<OutboxMessage> = members
                .iter()
                .map(|p| {
                    let key = format!("{source}:{p}");
                    let m = OutboxMessage {
                        id: format!("msg_{:032x}", twox_hash::XxHash3_128::oneshot(key.as_bytes())),
                        idempotency_key: key,
                        profile_id: p.clone(),
                        template: b.template.clone(),
                        class: b.class,
                        source: source.clone(),
                        step: None,
                        context: context.clone(),
                        status: OutboxStatus::Queued,
                        attempts: 0,
                        next_attempt_at: slot,
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
