//! Outbound webhooks: endpoints as documents (kind `webhook`), and their delivery.
//!
//! **Durability.** A notice is queued in the same transaction as what caused it, or by the
//! [`follower`] from a committed log with the log's position in the same transaction; so a
//! crash loses nothing and nothing rolled back is ever sent. Each endpoint keeps its own
//! position in the queue, moved only after a 2xx answer (or a dead letter): a crash between
//! the answer and the move re-sends that one notice under the same `webhook-id`, which
//! receivers deduplicate as the Standard Webhooks specification says. Delivery to an endpoint
//! is one request at a time in queue order, so order per profile holds.
//!
//! **Failures** ([`missive_webhooks::retry`]): exponential backoff with jitter for about a
//! day, then the dead letters (replayable); an endpoint failing for longer is tripped and
//! probed hourly. Breaker state and pacing are in memory: a restart tries at once.
//!
//! **Privacy**: the queue holds no personal data; a payload's `profile` part is read when it
//! is sent, only for an endpoint marked for it and a person whose consent covers its purpose.

pub mod changes;
mod dispatcher;
pub(crate) use dispatcher::error_chain;
pub mod follower;
pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use missive_engine::Engine;
use missive_store::{
    DeadLetter, DocumentKind, DocumentRecord, Store, StoreError, WebhookAttempt, WebhookNotice,
    WebhookPosition,
};
use missive_webhooks::EventType;
use missive_webhooks::endpoint::{
    DEFAULT_ROTATION_OVERLAP_HOURS, Endpoint, EndpointError, EndpointIn, PersonalData,
};
use missive_webhooks::retry::{BreakerState, Health, RetryPolicy};
use serde::Serialize;

pub use http::Guard;

/// How outbound webhooks are set up (`[webhooks]` in the configuration).
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// Internal networks calls may reach (for example a receiver on the same host); nothing
    /// internal is reachable by default.
    pub allow_internal: Vec<ipnet::IpNet>,
    pub retry: RetryPolicy,
    /// missive's change stream (`[streams.changes]`), when set.
    pub changes: Option<changes::ChangeStream>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("the change stream did not take a notice: {0}")]
    Stream(String),
    #[error("no webhook endpoint is named {0:?}")]
    NotFound(String),
    #[error("a webhook endpoint named {0:?} exists already: pick another name, or delete it first")]
    Exists(String),
    #[error("stored webhook endpoint {0:?} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An endpoint as the API shows it: no secrets, with where its delivery stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub name: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub segments: Vec<String>,
    pub journeys: Vec<String>,
    pub personal_data: Option<PersonalData>,
    pub rate_per_second: u32,
    pub timeout_ms: u32,
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    /// Secrets signing now (two during a rotation's overlap).
    pub signing_secrets: usize,
    /// The last notice taken (or dead-lettered).
    pub position: i64,
    pub breaker: BreakerState,
    pub failures: u32,
    pub next_try: Option<DateTime<Utc>>,
}

/// A new endpoint, or a rotation: the secret is shown this once (`Debug` does not show it).
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct WithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    pub secret: String,
}

impl std::fmt::Debug for WithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The outbound webhooks service. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    http: reqwest::Client,
    guard: Arc<Guard>,
    policy: RetryPolicy,
    health: Mutex<HashMap<String, Health>>,
    changes: tokio::sync::Mutex<()>,
    wake: Arc<tokio::sync::Notify>,
    /// missive's change stream, when configured.
    stream: Option<changes::ChangeStream>,
    /// Bumped on every change an endpoint task must see at once (pause, resume, replay, a
    /// test, a rotation, a deletion): a task waiting out its breaker wakes to re-read.
    kick: tokio::sync::watch::Sender<u64>,
}

impl Webhooks {
    pub fn new(engine: Engine, config: WebhookConfig) -> Result<Self, WebhookError> {
        let guard = Arc::new(Guard {
            allow: config.allow_internal,
        });
        let http = http::client(guard.clone(), 0).map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Webhooks {
            inner: Arc::new(Inner {
                engine,
                http,
                guard,
                policy: config.retry,
                health: Mutex::new(HashMap::new()),
                changes: tokio::sync::Mutex::new(()),
                wake: Arc::new(tokio::sync::Notify::new()),
                kick: tokio::sync::watch::channel(0).0,
                stream: config.changes,
            }),
        })
    }

    fn store(&self) -> &Store {
        self.inner.engine.store()
    }

    /// The guarded HTTP client (internal addresses refused unless allowed, no redirects
    /// followed): also what the console's link check uses.
    pub fn http_client(&self) -> reqwest::Client {
        self.inner.http.clone()
    }

    /// The guard of that client: addresses written as IPs never reach the resolver, so a
    /// caller checks them with [`Guard::check_url`] before a request.
    pub fn guard(&self) -> Arc<Guard> {
        self.inner.guard.clone()
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.engine.clock().now()
    }

    /// Wakes the delivery (something was queued or an endpoint changed).
    pub fn poke(&self) {
        self.inner.wake.notify_one();
        self.inner.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) async fn load(&self, name: &str) -> Result<Option<Endpoint>, WebhookError> {
        let Some(doc) = self
            .store()
            .documents()
            .get_document(DocumentKind::Webhook, name)
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_value(doc.body)
            .map(Some)
            .map_err(|e| WebhookError::Corrupt(name.to_owned(), e.to_string()))
    }

    async fn load_existing(&self, name: &str) -> Result<Endpoint, WebhookError> {
        self.load(name)
            .await?
            .ok_or_else(|| WebhookError::NotFound(name.to_owned()))
    }

    async fn save(&self, e: &Endpoint) -> Result<(), WebhookError> {
        let body =
            serde_json::to_value(e).map_err(|err| WebhookError::Corrupt(e.name.clone(), err.to_string()))?;
        self.store()
            .documents()
            .put_documents(vec![DocumentRecord {
                kind: DocumentKind::Webhook,
                name: e.name.clone(),
                version: 0,
                body,
                updated_at: self.now(),
            }])
            .await?;
        self.poke();
        Ok(())
    }

    /// Every endpoint, by name.
    pub(crate) async fn endpoints(&self) -> Result<Vec<Endpoint>, WebhookError> {
        missive_store::all_documents(self.store().documents().as_ref(), DocumentKind::Webhook)
            .await?
            .into_iter()
            .map(|doc| {
                serde_json::from_value(doc.body).map_err(|e| WebhookError::Corrupt(doc.name, e.to_string()))
            })
            .collect()
    }

    async fn view(&self, e: &Endpoint) -> Result<EndpointView, WebhookError> {
        let position = self
            .store()
            .webhooks()
            .webhook_position(&WebhookPosition::Endpoint(&e.name).key())
            .await?;
        let health = self.health(&e.name);
        let now = Utc::now();
        Ok(EndpointView {
            name: e.name.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            segments: e.segments.clone(),
            journeys: e.journeys.clone(),
            personal_data: e.personal_data.clone(),
            rate_per_second: e.rate_per_second,
            timeout_ms: e.timeout_ms,
            paused: e.paused,
            created_at: e.created_at,
            signing_secrets: e.signing_secrets(now).len(),
            position,
            breaker: health.state(&self.inner.policy, now),
            failures: health.failures,
            next_try: health.next_try,
        })
    }

    pub(crate) fn health(&self, name: &str) -> Health {
        self.inner
            .health
            .lock()
            .map(|h| h.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Creates an endpoint; it receives what is queued from now on.
    pub async fn create(&self, req: EndpointIn) -> Result<WithSecret, WebhookError> {
        let _one = self.inner.changes.lock().await;
        let e = req.into_endpoint(self.now(), |p| missive_core::Purpose::parse(p).is_some())?;
        if self.load(&e.name).await?.is_some() {
            return Err(WebhookError::Exists(e.name));
        }
        let start = self.store().webhooks().last_webhook_seq().await?;
        self.store()
            .webhooks()
            .set_webhook_position(&WebhookPosition::Endpoint(&e.name).key(), start)
            .await?;
        self.save(&e).await?;
        let secret = e.secrets.last().map(|s| s.secret.clone()).unwrap_or_default();
        Ok(WithSecret {
            endpoint: self.view(&e).await?,
            secret,
        })
    }

    pub async fn list(&self) -> Result<Vec<EndpointView>, WebhookError> {
        let mut out = Vec::new();
        for e in self.endpoints().await? {
            out.push(self.view(&e).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, name: &str) -> Result<EndpointView, WebhookError> {
        let e = self.load_existing(name).await?;
        self.view(&e).await
    }

    /// Deletes an endpoint; what it had not taken is dropped with it.
    pub async fn delete(&self, name: &str) -> Result<(), WebhookError> {
        let _one = self.inner.changes.lock().await;
        if !self
            .store()
            .documents()
            .delete_document(DocumentKind::Webhook, name)
            .await?
        {
            return Err(WebhookError::NotFound(name.to_owned()));
        }
        self.store().webhooks().forget_webhook_endpoint(name).await?;
        if let Ok(mut h) = self.inner.health.lock() {
            h.remove(name);
        }
        self.poke();
        Ok(())
    }

    /// Pauses or resumes an endpoint. A paused endpoint keeps its position: on resume it
    /// receives everything queued meanwhile, in order.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<EndpointView, WebhookError> {
        let _one = self.inner.changes.lock().await;
        let mut e = self.load_existing(name).await?;
        e.paused = paused;
        self.save(&e).await?;
        if !paused && let Ok(mut h) = self.inner.health.lock() {
            // An operator resuming an endpoint means "try now".
            h.remove(name);
        }
        self.view(&e).await
    }

    /// Rotates the signing secret: the old one keeps signing for `overlap_hours` (24 by
    /// default) so that receivers can switch without losing a delivery.
    pub async fn rotate(
        &self,
        name: &str,
        secret: Option<String>,
        overlap_hours: Option<i64>,
    ) -> Result<WithSecret, WebhookError> {
        let _one = self.inner.changes.lock().await;
        let mut e = self.load_existing(name).await?;
        let hours = overlap_hours.unwrap_or(DEFAULT_ROTATION_OVERLAP_HOURS);
        if !(0..=24 * 30).contains(&hours) {
            return Err(EndpointError {
                field: "overlap_hours",
                why: "use 0 to 720 hours".into(),
            }
            .into());
        }
        // Rotation is a wall-clock matter: the signatures it changes are checked against it.
        let secret = e.rotate(secret, Duration::hours(hours), Utc::now())?;
        self.save(&e).await?;
        Ok(WithSecret {
            endpoint: self.view(&e).await?,
            secret,
        })
    }

    /// Queues a sample (`webhook.test`) for this endpoint alone. Returns its position.
    pub async fn test(&self, name: &str) -> Result<i64, WebhookError> {
        self.load_existing(name).await?;
        let now = self.now();
        let key = format!("test:{name}:{}", uuid::Uuid::new_v4());
        self.store()
            .webhooks()
            .enqueue_webhooks(
                vec![WebhookNotice {
                    seq: 0,
                    kind: EventType::Test.as_str().into(),
                    key,
                    profile_id: None,
                    endpoint: Some(name.to_owned()),
                    data: serde_json::json!({"message": "a sample from missive"}),
                    at: now,
                }],
                vec![],
            )
            .await?;
        let seq = self.store().webhooks().last_webhook_seq().await?;
        self.poke();
        Ok(seq)
    }

    /// An endpoint's recent attempts, newest first.
    pub async fn attempts(&self, name: &str, limit: u32) -> Result<Vec<WebhookAttempt>, WebhookError> {
        self.load_existing(name).await?;
        Ok(self.store().webhooks().webhook_attempts(name, limit).await?)
    }

    pub async fn dead_letters(&self, name: &str, limit: u32) -> Result<Vec<DeadLetter>, WebhookError> {
        self.load_existing(name).await?;
        Ok(self.store().webhooks().dead_letters(name, limit).await?)
    }

    /// Queues the dead letters named (or all) again for this endpoint. Returns how many.
    pub async fn replay(&self, name: &str, seqs: Option<Vec<i64>>) -> Result<u64, WebhookError> {
        self.load_existing(name).await?;
        let n = self
            .store()
            .webhooks()
            .replay_dead_letters(name, seqs, self.now())
            .await?;
        self.poke();
        Ok(n)
    }
}
