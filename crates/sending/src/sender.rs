//! The sender: takes due messages from the outbox, applies the send-time policy, renders them,
//! tracks their links, signs them with DKIM, throttles and hands them to the transport, and
//! records what happened. A 4xx answer is retried with exponential backoff; a 5xx answer
//! fails the message and suppresses the address.
//!
//! Delivery is at least once at the hand-over itself: a crash after the relay accepted a
//! message and before its status was recorded sends it again on restart. Everything before
//! that point (the decision to send) is exactly once, through the outbox's idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use missive_core::{Event, Profile, ProfileId};
use missive_delivery::{
    DkimSigner, Envelope, LinkSigner, OutgoingEmail, SendOutcome, Throttle, Transport, build_message,
    retry_delay,
};
use missive_store::{OutboxMessage, OutboxStatus, Suppression};
use serde::Serialize;
use serde_json::json;

use crate::broadcasts::BroadcastState;
use crate::content::{ContentService, ContentServiceError, MessageLinks, Variation};
use crate::exposure;
use crate::own_events::{self, Own};
use crate::policy::{Decision, Known, PolicyConfig, address_hash, decide, load_known};
use crate::relay_answers::{refuses_recipient, relay_detail};
use crate::rounds;
use missive_core::outbox::Lane;
use missive_core::{MessageClass, MessageSource};
use missive_engine::Engine;
use missive_engine::profiles::find_profiles;
use missive_experiment::definition::Experiment;

/// The event a message the relay accepted is recorded as (Segment's e-mail spec).
pub const EMAIL_DELIVERED: &str = "Email Delivered";

/// Who messages come from and where their links point.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub from_address: String,
    pub from_name: Option<String>,
    /// The envelope sender: where bounces go.
    pub bounce_address: String,
    /// The right-hand side of `Message-ID`s.
    pub message_id_domain: String,
    /// The public base URL of tracking and unsubscribe endpoints.
    pub public_url: String,
    pub policy: PolicyConfig,
    /// Attempts before a message that keeps failing temporarily is given up.
    pub max_attempts: u32,
    /// Messages taken from the outbox per round.
    pub batch: u32,
    /// Messages in flight at once (rendering, signing, waiting for the relay).
    pub concurrency: usize,
    /// How long the preference-centre link in each e-mail stays valid.
    pub preference_link_ttl: chrono::TimeDelta,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            from_address: "missive@localhost".into(),
            from_name: None,
            bounce_address: "bounces@localhost".into(),
            message_id_domain: "localhost".into(),
            public_url: "http://localhost:8080".into(),
            policy: PolicyConfig::default(),
            max_attempts: missive_delivery::MAX_ATTEMPTS,
            // Outcomes are written per batch: a crash re-sends at most this many.
            batch: 64,
            concurrency: 8,
            preference_link_ttl: chrono::TimeDelta::days(60),
        }
    }
}

/// Secrets the sender needs, kept in the store's metadata.
pub struct SenderSecrets {
    pub links: LinkSigner,
    pub hash_key: Vec<u8>,
}

impl SenderSecrets {
    /// The workspace's tracking and hashing keys, created on first use.
    pub async fn load(store: &missive_store::Store) -> Result<Self, SendError> {
        let fresh = || hex::encode(rand::random::<[u8; 32]>());
        let link_key = store
            .documents()
            .meta_get_or_init("secret.tracking", fresh())
            .await?;
        let hash_key = store
            .documents()
            .meta_get_or_init("secret.address_hash", fresh())
            .await?;
        let links = LinkSigner::new(link_key.as_bytes()).map_err(|e| SendError::Setup(e.to_string()))?;
        Ok(SenderSecrets {
            links,
            hash_key: hash_key.into_bytes(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Store(#[from] missive_store::StoreError),
    #[error(transparent)]
    Content(#[from] ContentServiceError),
    #[error(transparent)]
    Engine(#[from] Arc<missive_engine::EngineError>),
    #[error("{0}")]
    Setup(String),
    /// The task writing a round's outcomes panicked: its messages stay queued and are sent
    /// again (at least once at the hand-over, as after a crash).
    #[error("writing a round's outcomes stopped: {0}")]
    Writer(String),
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SendStats {
    pub sent: u64,
    pub skipped: u64,
    pub deferred: u64,
    pub retried: u64,
    pub failed: u64,
}

impl SendStats {
    fn add(&mut self, o: SendStats) {
        self.sent += o.sent;
        self.skipped += o.skipped;
        self.deferred += o.deferred;
        self.retried += o.retried;
        self.failed += o.failed;
    }
}

/// Experiments by name as read this round (`None`: no such experiment).
type ExperimentsRead = std::collections::HashMap<String, Option<Arc<Experiment>>>;

/// Broadcast states by id, with when each was read.
type BroadcastStates = std::collections::HashMap<String, (std::time::Instant, Option<BroadcastState>)>;

#[derive(Clone)]
pub struct Sender {
    engine: Engine,
    content: ContentService,
    transport: Arc<dyn Transport>,
    dkim: Option<Arc<DkimSigner>>,
    secrets: Arc<SenderSecrets>,
    throttle: Arc<Throttle>,
    config: Arc<SenderConfig>,
    /// One pass at a time per lane: `[triggered, bulk]`.
    running: Arc<[tokio::sync::Mutex<()>; 2]>,
    /// Wakes the triggered lane's loop (journeys queued messages).
    notify: Arc<tokio::sync::Notify>,
    /// Wakes the bulk lane's loop.
    notify_bulk: Arc<tokio::sync::Notify>,
    /// People with a marketing message in flight or being written, in either lane.
    claims: rounds::Claims,
    /// Broadcast states, read once per round of the lane (so a pause holds from the next
    /// round on): one cache per lane, `[triggered, bulk]`, each cleared by its own loop.
    broadcasts: Arc<[std::sync::Mutex<BroadcastStates>; 2]>,
    /// Experiments, read once per round of the lane (a start, stop or conclusion holds from
    /// the next), one cache per lane.
    experiments: Arc<[std::sync::Mutex<ExperimentsRead>; 2]>,
}

impl Sender {
    pub fn new(
        engine: Engine,
        content: ContentService,
        transport: Arc<dyn Transport>,
        dkim: Option<DkimSigner>,
        secrets: SenderSecrets,
        throttle: Throttle,
        config: SenderConfig,
    ) -> Self {
        Sender {
            engine,
            content,
            transport,
            dkim: dkim.map(Arc::new),
            secrets: Arc::new(secrets),
            throttle: Arc::new(throttle),
            config: Arc::new(config),
            running: Arc::new([tokio::sync::Mutex::new(()), tokio::sync::Mutex::new(())]),
            notify: Arc::new(tokio::sync::Notify::new()),
            notify_bulk: Arc::new(tokio::sync::Notify::new()),
            claims: rounds::Claims::default(),
            broadcasts: Arc::default(),
            experiments: Arc::default(),
        }
    }

    /// The state of the broadcast a message belongs to, if any.
    async fn broadcast_state(&self, source: &MessageSource) -> Result<Option<BroadcastState>, SendError> {
        let Some(id) = source.broadcast() else {
            return Ok(None);
        };
        let cache = &self.broadcasts[lane_index(source.lane())];
        if let Some((_, state)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(*state);
        }
        let doc = self
            .engine
            .store()
            .documents()
            .get_document(missive_store::DocumentKind::Broadcast, id)
            .await?;
        let state = doc
            .and_then(|d| serde_json::from_value::<crate::broadcasts::Broadcast>(d.body).ok())
            .map(|b| b.state);
        cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (std::time::Instant::now(), state));
        Ok(state)
    }

    /// The experiment named `name`, read at most once per round of `lane`.
    async fn experiment(&self, name: &str, lane: Lane) -> Result<Option<Arc<Experiment>>, SendError> {
        let cache = &self.experiments[lane_index(lane)];
        if let Some(e) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(e.clone());
        }
        let e = match crate::experiments::Experiments::new(self.engine.store().clone())
            .get(name)
            .await
        {
            Ok(e) => Some(Arc::new(e)),
            Err(crate::experiments::ExperimentError::NotFound(_)) => None,
            Err(crate::experiments::ExperimentError::Store(e)) => return Err(e.into()),
            Err(e) => {
                // Unreadable: sent as without the experiment, and said loudly.
                tracing::error!(experiment = name, error = %e, "experiment unreadable; its messages go out without it");
                None
            }
        };
        cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), e.clone());
        Ok(e)
    }

    pub fn links(&self) -> &LinkSigner {
        &self.secrets.links
    }

    /// A sender for `engine`'s workspace, with its link and address-hash secrets (created in
    /// the store at first use).
    pub async fn start(
        engine: Engine,
        content: ContentService,
        transport: Arc<dyn Transport>,
        dkim: Option<DkimSigner>,
        throttle: Throttle,
        config: SenderConfig,
    ) -> Result<Self, SendError> {
        let secrets = SenderSecrets::load(engine.store()).await?;
        // The send-time rules may have changed since messages were deferred (quiet hours
        // turned off or moved): those messages are decided again under the rules now.
        let requeued = engine
            .store()
            .delivery()
            .requeue_deferred(engine.clock().now())
            .await?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "deferred messages are decided again under the current send-time rules"
            );
        }
        Ok(Self::new(
            engine, content, transport, dkim, secrets, throttle, config,
        ))
    }

    /// Reads the delivery reports (bounces, complaints) waiting in the maildir `dir` and
    /// suppresses what they say.
    pub async fn read_bounce_mailbox(
        &self,
        dir: &std::path::Path,
        now: DateTime<Utc>,
    ) -> Result<crate::bounces::MailboxPass, crate::bounces::BounceError> {
        crate::bounces::read_mailbox(&self.engine, self.hash_key(), dir, now).await
    }

    /// Applies one raw delivery report (a DSN or an ARF complaint) to the suppression list.
    pub async fn apply_report(
        &self,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<crate::bounces::ReportOutcome, crate::bounces::BounceError> {
        crate::bounces::apply_report(&self.engine, self.hash_key(), raw, now).await
    }

    pub fn hash_key(&self) -> &[u8] {
        &self.secrets.hash_key
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn content(&self) -> &ContentService {
        &self.content
    }

    pub(crate) fn dkim(&self) -> Option<&DkimSigner> {
        self.dkim.as_deref()
    }

    pub(crate) fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// Wakes both lanes' background loops.
    pub fn poke(&self) {
        self.notify.notify_one();
        self.notify_bulk.notify_one();
    }

    /// What wakes the triggered lane's background loop, for whoever queues its messages
    /// (journeys).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.notify.clone()
    }

    /// What wakes the bulk lane's background loop, for whoever queues its messages
    /// (broadcasts).
    pub fn bulk_waker(&self) -> Arc<tokio::sync::Notify> {
        self.notify_bulk.clone()
    }

    /// Sends in the background until `shutdown`, a loop per lane, so that a broadcast's rounds
    /// never hold up a journey's message: after each pass a loop sleeps at most `poll`, or
    /// until poked.
    pub fn spawn(
        self,
        poll: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let loops: Vec<_> = [
            (Lane::Triggered, self.notify.clone()),
            (Lane::Bulk, self.notify_bulk.clone()),
        ]
        .into_iter()
        .map(|(lane, wake)| {
            let me = self.clone();
            missive_engine::background::poll_until_shutdown(shutdown.clone(), Some(wake), move || {
                let this = me.clone();
                async move {
                    if let Err(e) = this.run_lane(lane).await {
                        tracing::error!(error = %e, ?lane, "send round failed; retrying");
                    }
                    poll
                }
            })
        })
        .collect();
        tokio::spawn(async move {
            for l in loops {
                if let Err(e) = l.await {
                    // Its claims were released as it unwound; the other lane goes on.
                    tracing::error!(error = %e, "a sender loop stopped abnormally");
                }
            }
        })
    }

    /// Sends every message due now, in both lanes at once.
    pub async fn run_pending(&self) -> Result<SendStats, SendError> {
        let (triggered, bulk) = tokio::join!(self.run_lane(Lane::Triggered), self.run_lane(Lane::Bulk));
        let mut stats = triggered?;
        stats.add(bulk?);
        Ok(stats)
    }

    /// Sends every message of `lane` due now.
    ///
    /// Rounds are pipelined: a round's outcomes and `Email Delivered` events are written while
    /// the next round is sent (see [`rounds`] for what a round leaves out meanwhile). Every
    /// outcome is written before this returns.
    pub async fn run_lane(&self, lane: Lane) -> Result<SendStats, SendError> {
        let _one_at_a_time = self.running[lane_index(lane)].lock().await;
        let mut stats = SendStats::default();
        let mut writing: Option<Writing> = None;
        let sent = self.send_rounds(lane, &mut stats, &mut writing).await;
        // The last round's outcomes, also after a failed round: they were sent.
        let written = match writing.take() {
            Some(w) => w.finish().await,
            None => Ok(()),
        };
        sent.and(written).map(|()| stats)
    }

    /// Sends rounds of `lane` until none is due, handing each round's outcomes to a writer that
    /// runs while the next round is sent (at most one writer at a time).
    async fn send_rounds(
        &self,
        lane: Lane,
        stats: &mut SendStats,
        writing: &mut Option<Writing>,
    ) -> Result<(), SendError> {
        let store = self.engine.store().clone();
        loop {
            let now = self.engine.clock().now();
            self.broadcasts[lane_index(lane)]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.experiments[lane_index(lane)]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            let in_writing = writing.as_ref().map(|w| &w.ids);
            let due = store
                .delivery()
                .due_in_lane(lane, now, rounds::due_limit(self.config.batch, in_writing))
                .await?;
            // Registered before the round is taken, so that a release in between is not missed.
            let released = self.claims.released();
            tokio::pin!(released);
            released.as_mut().enable();
            let Some((round, claimed)) = self
                .claims
                .take_round(due, in_writing, self.config.batch as usize)
            else {
                return Ok(());
            };
            if round.is_empty() {
                // All marketing for people claimed: by this loop's round being written (its
                // write releases them), or by the other loop (wait for it to release some;
                // the timeout is a safety net only).
                match writing.take() {
                    Some(previous) => previous.finish().await?,
                    None => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), released).await;
                    }
                }
                continue;
            }
            let (done, delivered) = self.send_round(round, now, stats).await;
            let previous = match writing.take() {
                Some(previous) => previous.finish().await,
                None => Ok(()),
            };
            // This round was sent: its outcomes are written even when the previous write
            // failed (`run_lane` waits for them before it reports the failure).
            *writing = Some(Writing::start(self.engine.clone(), done, delivered, claimed));
            previous?;
        }
    }

    /// Sends one round's messages, `concurrency` at a time; gives back their outcomes and the
    /// `Email Delivered` events of those the relay accepted.
    async fn send_round(
        &self,
        round: Vec<OutboxMessage>,
        now: DateTime<Utc>,
        stats: &mut SendStats,
    ) -> (Vec<OutboxMessage>, Vec<Event>) {
        let mut done = Vec::with_capacity(round.len());
        let mut in_flight = tokio::task::JoinSet::new();
        // A task that fails (a store error, a panic) must not lose the outcomes of the
        // others: its message is put back for a retry a minute later.
        let mut delivered = Vec::new();
        let collect = |joined: Result<Attempt, tokio::task::JoinError>,
                       done: &mut Vec<OutboxMessage>,
                       delivered: &mut Vec<Event>,
                       stats: &mut SendStats| {
            match joined {
                Ok(Attempt {
                    result: Ok(m),
                    stats: s,
                    delivered: event,
                    ..
                }) => {
                    done.push(m);
                    delivered.extend(event);
                    stats.add(s);
                }
                Ok(Attempt {
                    mut original,
                    result: Err(e),
                    ..
                }) => {
                    tracing::error!(message = %original.id, error = %e, "send failed; retrying in a minute");
                    original.next_attempt_at = now + chrono::TimeDelta::minutes(1);
                    original.detail = Some(format!("retry: {e}"));
                    stats.retried += 1;
                    done.push(original);
                }
                // A panicked task's message stays queued and is tried again next round.
                Err(e) => tracing::error!(error = %e, "send task panicked"),
            }
        };
        // A failed read of the round (one unreadable profile, a store error) must not hold
        // up every message: each is then read on its own, and its error is its own retry.
        let batch = Arc::new(match self.load_batch(&round, now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading the round's recipients failed; reading them one by one");
                Batch::default()
            }
        });
        for message in round {
            while in_flight.len() >= self.config.concurrency.max(1) {
                if let Some(joined) = in_flight.join_next().await {
                    collect(joined, &mut done, &mut delivered, stats);
                }
            }
            let me = self.clone();
            let batch = batch.clone();
            in_flight.spawn(async move {
                let mut s = SendStats::default();
                let mut delivered = None;
                let original = message.clone();
                let result = me.send_one(message, &batch, now, &mut s, &mut delivered).await;
                Attempt {
                    original,
                    result,
                    stats: s,
                    delivered,
                }
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            collect(joined, &mut done, &mut delivered, stats);
        }
        (done, delivered)
    }

    /// What a round's messages need from the store, read for the whole round at once: their
    /// recipients' profiles (with history, for templates) and the policy's facts.
    async fn load_batch(&self, round: &[OutboxMessage], now: DateTime<Utc>) -> Result<Batch, SendError> {
        let store = self.engine.store();
        let mut ids: Vec<ProfileId> = round.iter().map(|m| m.profile_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let profiles = find_profiles(store, &ids, self.engine.config().history_len).await?;
        let any_marketing = round.iter().any(|m| m.class != MessageClass::Transactional);
        let recipients: Vec<&Profile> = profiles.values().collect();
        let known = load_known(
            store,
            &self.config.policy,
            &self.secrets.hash_key,
            &recipients,
            any_marketing,
            now,
        )
        .await?;
        Ok(Batch {
            profiles,
            known,
            read: true,
        })
    }

    #[tracing::instrument(level = "debug", name = "send", skip_all, fields(message_id = %message.id))]
    async fn send_one(
        &self,
        mut message: OutboxMessage,
        batch: &Batch,
        now: DateTime<Utc>,
        stats: &mut SendStats,
        delivered: &mut Option<Event>,
    ) -> Result<OutboxMessage, SendError> {
        let store = self.engine.store();
        match self.broadcast_state(&message.source).await? {
            Some(BroadcastState::Paused) => {
                // Held while paused, not dropped.
                message.next_attempt_at = now + chrono::TimeDelta::seconds(5);
                message.detail = Some("broadcast paused".into());
                stats.deferred += 1;
                metrics::counter!("missive_messages_deferred_total", "reason" => "broadcast_paused")
                    .increment(1);
                return Ok(message);
            }
            Some(BroadcastState::Cancelled) => return Ok(skip(message, BROADCAST_CANCELLED, stats)),
            _ => {}
        }
        // Profiles in the store lag accepted events by at most the checkpoint interval
        // (250 ms by default); only a profile not stored yet is worth forcing a checkpoint for,
        // and its facts are then read for it alone.
        let late;
        let (profile, known) = match batch.profiles.get(&message.profile_id) {
            Some(p) => (p, &batch.known),
            None => {
                if batch.read {
                    self.engine.sync().await?;
                }
                late = self.load_batch(std::slice::from_ref(&message), now).await?;
                match late.profiles.get(&message.profile_id) {
                    Some(p) => (p, &late.known),
                    None => return Ok(skip(message, "profile_gone", stats)),
                }
            }
        };
        let zone = missive_core::zone::time_zone_of(profile, self.engine.config().default_time_zone);
        let policy = &self.config.policy;
        let topic = message.context.get("topic").and_then(serde_json::Value::as_str);
        let facts = known.facts(profile, zone, policy, now);
        let address = match decide(&facts, policy, message.class, topic, now) {
            Decision::Send { address } => address,
            Decision::Skip { reason } => return Ok(skip(message, &reason.to_string(), stats)),
            Decision::Defer { until, reason } => {
                message.next_attempt_at = until;
                message.detail = Some(format!("deferred: {reason}"));
                stats.deferred += 1;
                metrics::counter!("missive_messages_deferred_total", "reason" => reason.to_string())
                    .increment(1);
                return Ok(message);
            }
        };
        // Assigned only now, after the rules: a person they skip is never counted.
        let applied = match exposure::experiment_of(&message) {
            Some(name) => self
                .experiment(name, message.source.lane())
                .await?
                .map(|e| exposure::apply(&e, &mut message)),
            None => None,
        };
        if let Some(a) = &applied {
            exposure::record(&self.engine, profile, a, &message).await;
            if let Some(reason) = a.holdout_reason() {
                return Ok(skip(message, &reason, stats));
            }
        }
        let started = std::time::Instant::now();
        let bytes = match self
            .compose(&message, profile, &address, applied.as_ref(), now)
            .await
        {
            Ok(b) => b,
            Err(Compose::Retry(reason)) => {
                message.attempts += 1;
                message.next_attempt_at = now + chrono::TimeDelta::minutes(1);
                message.detail = Some(format!("retry: {reason}"));
                stats.retried += 1;
                return Ok(message);
            }
            Err(Compose::Fail(reason)) => {
                message.status = OutboxStatus::Failed;
                message.detail = Some(reason);
                stats.failed += 1;
                metrics::counter!("missive_messages_failed_total").increment(1);
                return Ok(message);
            }
        };
        let domain = address
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_ascii_lowercase();
        self.throttle.acquire(&domain).await;
        let composed = started.elapsed();
        let outcome = self
            .transport
            .send(
                &Envelope::new(self.config.bounce_address.clone(), address.clone()),
                &bytes,
            )
            .await;
        tracing::debug!(
            message = %message.id,
            compose_ms = composed.as_secs_f64() * 1e3,
            handover_ms = (started.elapsed() - composed).as_secs_f64() * 1e3,
            "message handed over"
        );
        message.attempts += 1;
        message.recipient = Some(address.clone());
        let now = self.engine.clock().now();
        match outcome {
            SendOutcome::Delivered { response } => {
                message.status = OutboxStatus::Sent;
                message.sent_at = Some(now);
                message.detail = Some(response);
                *delivered = delivered_event(&self.engine, profile, &message).ok();
                stats.sent += 1;
                metrics::counter!("missive_messages_sent_total", "transport" => self.transport.name())
                    .increment(1);
            }
            SendOutcome::Transient {
                code,
                enhanced,
                message: text,
            } => {
                let detail = relay_detail(code, enhanced.as_deref(), &text, &address);
                if message.attempts >= self.config.max_attempts {
                    message.status = OutboxStatus::Failed;
                    message.detail = Some(format!("gave up after {} attempts: {detail}", message.attempts));
                    stats.failed += 1;
                    metrics::counter!("missive_messages_failed_total").increment(1);
                } else {
                    let delay =
                        chrono::TimeDelta::from_std(retry_delay(message.attempts)).unwrap_or_default();
                    message.next_attempt_at = now + delay;
                    message.detail = Some(detail);
                    stats.retried += 1;
                }
            }
            SendOutcome::Permanent {
                code,
                enhanced,
                message: text,
            } => {
                let detail = relay_detail(code, enhanced.as_deref(), &text, &address);
                message.status = OutboxStatus::Failed;
                message.detail = Some(detail.clone());
                stats.failed += 1;
                metrics::counter!("missive_messages_failed_total").increment(1);
                if !refuses_recipient(code, enhanced.as_deref()) {
                    tracing::error!(message = %message.id, code, "the relay refused a message for a reason other than its recipient; not suppressing");
                    return Ok(message);
                }
                store
                    .delivery()
                    .suppress(Suppression {
                        address_hash: address_hash(&self.secrets.hash_key, &address),
                        reason: "hard_bounce".into(),
                        detail,
                        at: now,
                    })
                    .await?;
                metrics::counter!("missive_messages_bounced_total", "kind" => "hard").increment(1);
            }
        }
        Ok(message)
    }

    /// The signed bytes of `message` for `profile`; an error is the reason it cannot be sent.
    async fn compose(
        &self,
        message: &OutboxMessage,
        profile: &Profile,
        address: &str,
        applied: Option<&exposure::Applied>,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, Compose> {
        let base = self.config.public_url.trim_end_matches('/');
        let unsubscribe = self
            .secrets
            .links
            .unsubscribe_url(base, profile.id.as_str(), &message.id);
        let preferences = self.secrets.links.preferences_url(
            base,
            profile.id.as_str(),
            now.checked_add_signed(self.config.preference_link_ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                .timestamp(),
        );
        let links = MessageLinks {
            unsubscribe: unsubscribe.clone(),
            preferences: preferences.clone(),
        };
        let zone = missive_core::zone::time_zone_of(profile, self.engine.config().default_time_zone);
        let variation = applied.map(|a| Variation {
            experiment: &a.experiment,
            variant: &a.variant.name,
            subject: a.variant.subject.as_deref(),
        });
        // A template experiment's variant is its own template.
        let templated;
        let message = match applied.and_then(|a| a.variant.template.as_ref()) {
            Some(t) => {
                templated = OutboxMessage {
                    template: t.clone(),
                    ..message.clone()
                };
                &templated
            }
            None => message,
        };
        let email = self
            .content
            .compose(profile, message, &links, zone, now, variation)
            .await
            .map_err(Compose::from)?;
        let unsubscribe_prefix = format!("{base}/u/");
        let preferences_prefix = format!("{base}/preferences/");
        let (html, text) = with_preference_link(email.html, email.text, &preferences);
        let own = |href: &str| href.starts_with(&unsubscribe_prefix) || href.starts_with(&preferences_prefix);
        let html = self.secrets.links.rewrite_html(&html, base, &message.id, own);
        let text = self.secrets.links.rewrite_text(&text, base, &message.id, own);
        let outgoing = OutgoingEmail {
            message_id: message.id.clone(),
            from_name: self.config.from_name.clone(),
            from_address: self.config.from_address.clone(),
            reply_to: None,
            to_address: address.to_string(),
            to_name: None,
            subject: email.subject,
            html,
            text,
            // RFC 8058 one-click needs https: behind a plain-http public URL (a development
            // set-up) the headers are left out and the link in the body remains.
            list_unsubscribe_url: unsubscribe.starts_with("https://").then_some(unsubscribe.clone()),
            list_unsubscribe_mailto: None,
            extra_headers: vec![("X-Missive-Source".into(), message.source.to_string())],
        };
        let bytes = build_message(&outgoing, &self.config.message_id_domain, now).map_err(Compose::from)?;
        match &self.dkim {
            Some(signer) => signer.sign(&bytes).map_err(|e| Compose::Fail(e.to_string())),
            None => Ok(bytes),
        }
    }
}

/// A round's recipients, read at once ([`Sender::load_batch`]).
#[derive(Default)]
struct Batch {
    /// By the profile id the messages name.
    profiles: std::collections::HashMap<ProfileId, Profile>,
    known: Known,
    /// Whether the read succeeded: a profile missing from a successful read is worth a
    /// checkpoint (it may not be stored yet); after a failed one, each is read alone.
    read: bool,
}

/// One message's turn in a round: the message as it was taken, what became of it, and the
/// `Email Delivered` event to record when the relay accepted it.
struct Attempt {
    original: OutboxMessage,
    result: Result<OutboxMessage, SendError>,
    stats: SendStats,
    delivered: Option<Event>,
}

/// A round's outcomes being written in the background while the next round is sent.
struct Writing {
    /// The round's messages: still queued in the store until written, so left out of the next.
    ids: std::collections::HashSet<String>,
    task: tokio::task::JoinHandle<Result<(), SendError>>,
}

impl Writing {
    /// Writes `done` and then records `delivered`. The outcomes first: waiting for the events'
    /// commit before them would widen the window in which a crash sends accepted messages
    /// again. The events' messageId (one per message) keeps a repeat from counting twice. A
    /// failure to record them is logged inside and not retried: `Email Delivered` then
    /// undercounts. The round's claims are released once the outcomes are stored (or their
    /// write failed, and the messages stay queued), also if this task panics.
    fn start(
        engine: Engine,
        done: Vec<OutboxMessage>,
        delivered: Vec<Event>,
        claimed: rounds::Claimed,
    ) -> Self {
        let ids = done.iter().map(|m| m.id.clone()).collect();
        let task = tokio::spawn(async move {
            let written = if done.is_empty() {
                Ok(())
            } else {
                engine.store().delivery().update_outbox(done).await
            };
            drop(claimed);
            written?;
            let _ = own_events::ingest_all(&engine, delivered, "delivery").await;
            Ok(())
        });
        Writing { ids, task }
    }

    async fn finish(self) -> Result<(), SendError> {
        self.task.await.map_err(|e| SendError::Writer(e.to_string()))?
    }
}

/// The index of `lane` in the sender's per-lane arrays.
fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Triggered => 0,
        Lane::Bulk => 1,
    }
}

/// `Email Delivered` (Segment's name) for a message the relay accepted: it counts the messages
/// a person received (segments, and the engagement-rate features of models, read it).
fn delivered_event(engine: &Engine, profile: &Profile, m: &OutboxMessage) -> Result<Event, Own> {
    let msg = json!({
        "type": "track",
        "event": EMAIL_DELIVERED,
        "properties": {"message_id": m.id, "template": m.template, "source": m.source.to_string()},
        "messageId": format!("delivered-{}", m.id),
    });
    own_events::event(engine, profile, msg, "delivery")
}

/// Every e-mail carries its preference-centre link: a template that does not place
/// `{{ preferences_url }}` itself gets a footer line with it, in both parts.
fn with_preference_link(html: String, text: String, url: &str) -> (String, String) {
    let escaped = url.replace('&', "&amp;");
    let html = if html.contains(url) || html.contains(&escaped) {
        html
    } else {
        let footer = format!(
            "<p style=\"font-size:12px;color:#666666;text-align:center\">\
             <a href=\"{escaped}\">Manage your e-mail preferences and data</a></p>"
        );
        let mut html = html;
        missive_delivery::insert_before_body_end(&mut html, &footer);
        html
    };
    let text = if text.contains(url) || text.is_empty() {
        text
    } else {
        format!(
            "{}\n\nManage your e-mail preferences and data: {url}\n",
            text.trim_end()
        )
    };
    (html, text)
}

/// Why a message could not be composed: worth retrying (the store was unavailable) or not
/// (the template does not render for this profile).
enum Compose {
    Retry(String),
    Fail(String),
}

impl From<missive_delivery::DeliveryError> for Compose {
    fn from(e: missive_delivery::DeliveryError) -> Self {
        Compose::Fail(e.to_string())
    }
}

impl From<ContentServiceError> for Compose {
    fn from(e: ContentServiceError) -> Self {
        match e {
            ContentServiceError::Store(_) | ContentServiceError::Engine(_) => Compose::Retry(e.to_string()),
            e => Compose::Fail(e.to_string()),
        }
    }
}

/// Why the messages of a cancelled broadcast are not sent.
pub(crate) const BROADCAST_CANCELLED: &str = "broadcast cancelled";

/// The label a skip reason counts under in `/metrics`: its code (`suppressed`, not
/// `suppressed: hard_bounce`), so that the metric's series stay few.
pub(crate) fn reason_label(reason: &str) -> String {
    reason
        .split(':')
        .next()
        .unwrap_or(reason)
        .trim()
        .replace(' ', "_")
}

fn skip(mut message: OutboxMessage, reason: &str, stats: &mut SendStats) -> OutboxMessage {
    metrics::counter!("missive_messages_skipped_total", "reason" => reason_label(reason)).increment(1);
    message.status = OutboxStatus::Skipped;
    message.detail = Some(reason.to_string());
    stats.skipped += 1;
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_count_under_their_code() {
        assert_eq!(reason_label("suppressed: hard_bounce"), "suppressed");
        assert_eq!(reason_label(BROADCAST_CANCELLED), "broadcast_cancelled");
    }
}
