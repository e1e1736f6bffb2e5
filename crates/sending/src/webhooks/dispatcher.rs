//! The delivery loop: a supervisor that runs the follower, keeps one task per active
//! endpoint and trims the queue, and the endpoint tasks that post notices in order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use missive_engine::profiles::ProfileKey;
use missive_store::{DeadLetter, WebhookAttempt, WebhookNotice, WebhookPosition};
use missive_webhooks::endpoint::Endpoint;
use missive_webhooks::payload::{self, Person};
use missive_webhooks::retry::Verdict;
use missive_webhooks::{EventType, signature};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::changes::{ChangeStream, POSITION_NAME};
use super::{WebhookError, Webhooks};

/// Notices read per round of an endpoint.
const BATCH: u32 = 100;
/// Attempts are kept this long.
const ATTEMPTS_KEPT_DAYS: i64 = 7;

/// What one round of an endpoint did.
enum Round {
    /// Delivered or skipped something: go on at once.
    More,
    /// Nothing waiting.
    Idle,
    /// The breaker holds it until then.
    Wait(chrono::DateTime<Utc>),
    /// Deleted or paused: the task ends.
    Gone,
}

/// The outcome of one request.
struct Sent {
    status: u16,
    error: String,
    duration_ms: u32,
}

impl Webhooks {
    /// Runs delivery until `shutdown` turns true: the follower after every wake (a segment
    /// change, a poke) or `poll`, a task per active endpoint, the queue trimmed each minute.
    pub fn spawn(self, poll: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let mut changes = self.inner.engine.subscribe_segment_changes();
        let wake = self.inner.wake.clone();
        tokio::spawn(async move {
            // Segment changes wake the follower at once: entries are the latency that matters.
            let forward = {
                let wake = wake.clone();
                tokio::spawn(async move {
                    // A lagged receiver still means "something changed".
                    while !matches!(
                        changes.recv().await,
                        Err(tokio::sync::broadcast::error::RecvError::Closed)
                    ) {
                        wake.notify_one();
                    }
                })
            };
            let (queued_tx, queued_rx) = watch::channel(0u64);
            let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
            let mut last_trim = tokio::time::Instant::now();
            let mut generation = 0u64;
            while !*shutdown.borrow() {
                match self.supervise(&mut tasks, &queued_rx, &shutdown).await {
                    Ok(n) if n > 0 => {
                        generation += 1;
                        let _ = queued_tx.send(generation);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "webhook follower failed; retrying"),
                }
                // Endpoints woken by the store's own notices (sends, completions) too.
                generation += 1;
                let _ = queued_tx.send(generation);
                if last_trim.elapsed() >= Duration::from_secs(60) {
                    last_trim = tokio::time::Instant::now();
                    if let Err(e) = self.trim().await {
                        tracing::error!(error = %e, "webhook queue not trimmed");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
            forward.abort();
            for (_, t) in tasks {
                let _ = t.await;
            }
        })
    }

    /// Delivers what is waiting now, without background tasks (tests, `missive bench`): the
    /// follower, then each active endpoint until it is idle or its breaker holds it.
    pub async fn run_pending(&self) -> Result<(), WebhookError> {
        let endpoints = self.endpoints().await?;
        super::follower::follow(self.store(), &self.wants(&endpoints)).await?;
        for e in endpoints.iter().filter(|e| !e.paused) {
            let mut last = None;
            while let Round::More = self.round(&e.name, &mut last).await? {}
        }
        if let Some(stream) = &self.inner.stream {
            while self.stream_round(stream).await? == BATCH as usize {}
        }
        Ok(())
    }

    /// The kinds of notice someone takes: the endpoints' (a paused endpoint still subscribes:
    /// what is queued waits for it) and the change stream's.
    fn wants(&self, endpoints: &[Endpoint]) -> HashSet<EventType> {
        let mut wants: HashSet<EventType> = endpoints.iter().flat_map(|e| e.events.iter().copied()).collect();
        if let Some(stream) = &self.inner.stream {
            wants.extend(stream.kinds.iter().copied());
        }
        wants
    }

    /// One pass of the supervisor: follow the logs, start a task for each active endpoint
    /// that has none. Returns how many notices were queued.
    async fn supervise(
        &self,
        tasks: &mut HashMap<String, JoinHandle<()>>,
        queued: &watch::Receiver<u64>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<u64, WebhookError> {
        let endpoints = self.endpoints().await?;
        let wants = self.wants(&endpoints);
        tasks.retain(|_, t| !t.is_finished());
        if self.inner.stream.is_some()
            && let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(POSITION_NAME.to_owned())
        {
            let this = self.clone();
            let (queued, shutdown) = (queued.clone(), shutdown.clone());
            slot.insert(tokio::spawn(
                async move { this.run_stream(queued, shutdown).await },
            ));
        }
        for e in endpoints.into_iter().filter(|e| !e.paused) {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(e.name) {
                let this = self.clone();
                let (queued, shutdown) = (queued.clone(), shutdown.clone());
                let name = slot.key().clone();
                slot.insert(tokio::spawn(async move {
                    this.run_endpoint(name, queued, shutdown).await
                }));
            }
        }
        // After the tasks are running: a failing follower does not hold back endpoints.
        Ok(super::follower::follow(self.store(), &wants).await?)
    }

    /// Deletes notices every endpoint has passed, and old attempts.
    async fn trim(&self) -> Result<u64, WebhookError> {
        // Not while an endpoint is being created (its position set, its document not yet).
        let _no_changes = self.inner.changes.lock().await;
        let w = self.store().webhooks();
        let mut through = w.last_webhook_seq().await?;
        if self.inner.stream.is_some() {
            through = through.min(
                w.webhook_position(&WebhookPosition::Endpoint(POSITION_NAME).key())
                    .await?,
            );
        }
        for e in self.endpoints().await? {
            through = through.min(
                w.webhook_position(&WebhookPosition::Endpoint(&e.name).key())
                    .await?,
            );
        }
        Ok(
            w.trim_webhooks(through, Utc::now() - chrono::Duration::days(ATTEMPTS_KEPT_DAYS))
                .await?,
        )
    }

    async fn run_endpoint(
        self,
        name: String,
        mut queued: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut last_request: Option<tokio::time::Instant> = None;
        let mut kicked = self.inner.kick.subscribe();
        while !*shutdown.borrow() {
            let round = match self.round(&name, &mut last_request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(endpoint = %name, error = %e, "webhook delivery round failed; retrying");
                    Round::Wait(Utc::now() + chrono::Duration::seconds(1))
                }
            };
            let sleep = match round {
                Round::More => continue,
                Round::Gone => break,
                Round::Idle => Duration::from_secs(5),
                Round::Wait(t) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            };
            let woken = matches!(round, Round::Idle);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = queued.changed(), if woken => {}
                _ = kicked.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Delivers what is waiting for `name`, in order, until a failure or the end of a batch.
    async fn round(
        &self,
        name: &str,
        last_request: &mut Option<tokio::time::Instant>,
    ) -> Result<Round, WebhookError> {
        let Some(ep) = self.load(name).await? else {
            return Ok(Round::Gone);
        };
        if ep.paused {
            return Ok(Round::Gone);
        }
        let health = self.health(name);
        if !health.ready(Utc::now()) {
            return Ok(health.next_try.map_or(Round::More, Round::Wait));
        }
        let w = self.store().webhooks();
        let key = WebhookPosition::Endpoint(name).key();
        let start = w.webhook_position(&key).await?;
        let notices = w.webhooks_after(start, BATCH).await?;
        if notices.is_empty() {
            return Ok(Round::Idle);
        }
        let mut position = start;
        for n in &notices {
            let Some(kind) = EventType::parse(&n.kind) else {
                position = n.seq;
                continue;
            };
            if !takes(&ep, kind, n) {
                position = n.seq;
                continue;
            }
            // Pacing: at most `rate_per_second` requests a second.
            let gap = Duration::from_secs_f64(1.0 / f64::from(ep.rate_per_second.max(1)));
            if let Some(last) = *last_request
                && last + gap > tokio::time::Instant::now()
            {
                tokio::time::sleep_until(last + gap).await;
            }
            *last_request = Some(tokio::time::Instant::now());
            let at = Utc::now();
            let sent = self.post(&ep, kind, n).await;
            // A delivery's attempt and position are one commit.
            let moved = sent.error.is_empty().then(|| (key.clone(), n.seq));
            w.record_webhook_attempts(
                vec![WebhookAttempt {
                    endpoint: name.to_owned(),
                    seq: n.seq,
                    webhook_id: webhook_id(n),
                    kind: n.kind.clone(),
                    status: sent.status,
                    error: sent.error.clone(),
                    at,
                    duration_ms: sent.duration_ms,
                }],
                moved,
            )
            .await?;
            if sent.error.is_empty() {
                metrics::counter!("missive_webhooks_delivered_total").increment(1);
                position = n.seq;
                if let Ok(mut h) = self.inner.health.lock() {
                    h.remove(name);
                }
                continue;
            }
            metrics::counter!("missive_webhooks_failed_total").increment(1);
            if position > start {
                w.set_webhook_position(&key, position).await?;
            }
            let verdict = match self.inner.health.lock() {
                Ok(mut h) => h.entry(name.to_owned()).or_default().on_failure(
                    n.seq,
                    &self.inner.policy,
                    at,
                    rand::random::<f64>(),
                ),
                Err(_) => Verdict::RetryAt(at + chrono::Duration::seconds(5)),
            };
            tracing::warn!(endpoint = %name, seq = n.seq, status = sent.status, error = %sent.error, ?verdict, "webhook delivery failed");
            return Ok(match verdict {
                Verdict::RetryAt(t) => Round::Wait(t),
                Verdict::DeadLetter(t) => {
                    self.bury(name, n, &sent).await?;
                    Round::Wait(t)
                }
                Verdict::DeadLetterAll(t) => {
                    self.bury_all(&ep, n, &sent).await?;
                    Round::Wait(t)
                }
            });
        }
        if position > start {
            w.set_webhook_position(&key, position).await?;
        }
        Ok(Round::More)
    }

    /// The change stream's task: publishes what is queued, in order, waiting and retrying
    /// (up to a minute apart) while the stream does not take it.
    async fn run_stream(self, mut queued: watch::Receiver<u64>, mut shutdown: watch::Receiver<bool>) {
        let Some(stream) = self.inner.stream.clone() else {
            return;
        };
        let mut pause = Duration::from_millis(500);
        while !*shutdown.borrow() {
            let sleep = match self.stream_round(&stream).await {
                Ok(n) if n == BATCH as usize => continue,
                Ok(_) => {
                    pause = Duration::from_millis(500);
                    Duration::from_secs(5)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change stream: publishing failed; retrying");
                    pause = (pause * 2).min(Duration::from_secs(60));
                    pause
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = queued.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Publishes the next batch of queued notices the change stream carries, moving its
    /// position past each one published; answers how many notices it read.
    async fn stream_round(&self, stream: &ChangeStream) -> Result<usize, WebhookError> {
        let w = self.store().webhooks();
        let key = WebhookPosition::Endpoint(POSITION_NAME).key();
        let start = w.webhook_position(&key).await?;
        let notices = w.webhooks_after(start, BATCH).await?;
        let mut position = start;
        let mut failure = None;
        for n in &notices {
            let kind = EventType::parse(&n.kind).filter(|k| stream.kinds.contains(k));
            // Notices addressed to one endpoint (tests, replays) are not changes.
            if let (Some(kind), None) = (kind, &n.endpoint) {
                let body = payload::change(kind, n.at, n.profile_id.as_ref().map(|p| p.as_str()), &n.data);
                let published = stream
                    .sink
                    .publish(kind.as_str(), &webhook_id(n), body.to_string().into_bytes())
                    .await;
                if let Err(e) = published {
                    failure = Some(e);
                    break;
                }
                metrics::counter!("missive_change_stream_published_total").increment(1);
            }
            position = n.seq;
        }
        if position > start {
            w.set_webhook_position(&key, position).await?;
        }
        match failure {
            Some(e) => Err(WebhookError::Stream(e)),
            None => Ok(notices.len()),
        }
    }

    async fn bury(&self, name: &str, n: &WebhookNotice, sent: &Sent) -> Result<(), WebhookError> {
        metrics::counter!("missive_webhooks_dead_letters_total").increment(1);
        let reason = format!(
            "failed for {} h; last: {}",
            self.inner.policy.window.num_hours(),
            sent.error
        );
        self.store()
            .webhooks()
            .dead_letter(DeadLetter {
                endpoint: name.to_owned(),
                notice: n.clone(),
                reason,
                at: Utc::now(),
            })
            .await?;
        Ok(())
    }

    /// A tripped endpoint's probe failed: everything waiting for it becomes a dead letter.
    async fn bury_all(&self, ep: &Endpoint, first: &WebhookNotice, sent: &Sent) -> Result<(), WebhookError> {
        self.bury(&ep.name, first, sent).await?;
        let w = self.store().webhooks();
        let key = WebhookPosition::Endpoint(&ep.name).key();
        loop {
            let start = w.webhook_position(&key).await?;
            let notices = w.webhooks_after(start, 1_000).await?;
            let Some(last) = notices.last() else { break };
            let last = last.seq;
            for n in &notices {
                if EventType::parse(&n.kind).is_some_and(|kind| takes(ep, kind, n)) {
                    self.bury(&ep.name, n, sent).await?;
                }
            }
            w.set_webhook_position(&key, last).await?;
        }
        Ok(())
    }

    /// Posts one notice, signed; returns the answer's status or why there was none.
    async fn post(&self, ep: &Endpoint, kind: EventType, n: &WebhookNotice) -> Sent {
        let started = std::time::Instant::now();
        let done = |status: u16, error: String| Sent {
            status,
            error,
            duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        };
        let url = match url::Url::parse(&ep.url) {
            Ok(u) => u,
            Err(e) => return done(0, format!("bad URL: {e}")),
        };
        if let Err(e) = self.inner.guard.check_url(&url) {
            return done(0, e.to_string());
        }
        let person = match (&ep.personal_data, &n.profile_id) {
            (Some(pd), Some(id)) => match self.person(id, &pd.purpose).await {
                Ok(p) => p,
                Err(e) => return done(0, format!("profile not read: {e}")),
            },
            _ => None,
        };
        let body = payload::body(
            ep,
            kind,
            n.at,
            n.profile_id.as_ref().map(|p| p.as_str()),
            &n.data,
            person.as_ref(),
        );
        let body = body.to_string().into_bytes();
        let now = Utc::now();
        let secrets = ep.signing_secrets(now);
        let secret_refs: Vec<&signature::Secret> = secrets.iter().collect();
        let id = webhook_id(n);
        let headers = signature::headers(&secret_refs, &id, now.timestamp(), &body);
        let mut req = self
            .inner
            .http
            .post(url)
            .timeout(Duration::from_millis(u64::from(ep.timeout_ms)))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.body(body).send().await {
            Ok(resp) if resp.status().is_success() => done(resp.status().as_u16(), String::new()),
            Ok(resp) => done(resp.status().as_u16(), format!("HTTP {}", resp.status().as_u16())),
            Err(e) if e.is_timeout() => done(0, format!("no answer within {} ms", ep.timeout_ms)),
            Err(e) => done(0, error_chain(&e)),
        }
    }

    /// The person's personal data for a payload, when their consent covers `purpose`.
    async fn person(
        &self,
        id: &missive_core::ProfileId,
        purpose: &str,
    ) -> Result<Option<Person>, WebhookError> {
        let Some(profile) = self
            .inner
            .engine
            .profiles()
            .find_bare(&ProfileKey::Id(id.clone()))
            .await?
        else {
            return Ok(None);
        };
        let consents = missive_core::Purpose::parse(purpose).is_some_and(|p| profile.consents(p));
        Ok(Some(Person {
            email: profile.email().map(str::to_owned),
            user_id: profile.identities.user_ids.iter().next().cloned(),
            traits: profile
                .traits
                .iter()
                .map(|(k, t)| (k.clone(), t.value.clone()))
                .collect(),
            consents,
        }))
    }
}

/// Whether `ep` takes notice `n`: one addressed to it (a test, a replay), or one it
/// subscribes to, within its filters, about something that happened since it was created.
fn takes(ep: &Endpoint, kind: EventType, n: &WebhookNotice) -> bool {
    match &n.endpoint {
        Some(e) => *e == ep.name,
        None => n.at >= ep.created_at && ep.wants(kind, &n.data),
    }
}

/// The `webhook-id` of a notice: the same on every retry, so receivers can deduplicate; a
/// replayed dead letter (key `replay:ENDPOINT:SEQ:TIME`) keeps the id of the notice it copies.
fn webhook_id(n: &WebhookNotice) -> String {
    let original = n
        .key
        .strip_prefix("replay:")
        .and_then(|rest| rest.rsplit(':').nth(1))
        .and_then(|seq| seq.parse::<i64>().ok())
        .filter(|_| n.endpoint.is_some());
    format!("msg_{}", original.unwrap_or(n.seq))
}

/// An error with its sources ("error sending request: … : connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
