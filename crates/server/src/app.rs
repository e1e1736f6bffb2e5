//! The composition root: [`App::build`] starts the engine on a store and builds every service
//! over it (content, journeys, broadcasts, tracking, privacy, and the sender when there is
//! one); [`App::start_background`] starts the workers; [`App::shutdown`] stops them in order
//! (no new work, the workers finish their round, then the engine commits everything it
//! accepted). `missive serve`, the benchmarks and the server's tests build missive this way
//! instead of assembling it in several places.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use missive_core::Clock;
use missive_delivery::{DkimSigner, Throttle, Transport};
use missive_engine::privacy::PrivacyConfig;
use missive_engine::{Engine, EngineConfig, EngineError};
use missive_privacy::Keyring;
use missive_sending::content::ContentConfig;
use missive_sending::sender::{SendError, Sender, SenderConfig};
use missive_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::limits::Limits;
use crate::state::{AppParts, AppState};

/// How missive is set up, apart from the store and the sender's transport.
#[derive(Default)]
pub struct AppConfig {
    pub engine: EngineConfig,
    pub content: ContentConfig,
    pub privacy: PrivacyConfig,
    pub limits: Limits,
    /// The local maildir missive writes to when no relay is configured: erasure deletes the
    /// person's copies there.
    pub local_maildir: Option<PathBuf>,
    /// A maildir of delivery reports (bounces, complaints), read every 30 s.
    pub bounce_maildir: Option<PathBuf>,
    /// How long background workers sleep at most when nothing wakes them (250 ms when zero).
    pub poll: Duration,
    /// Inbound sources by name (`POST /v1/sources/{name}`).
    pub sources: std::collections::BTreeMap<String, missive_sources::Source>,
    /// Outbound webhooks: which internal networks they may reach, and their retries.
    pub webhooks: missive_sending::webhooks::WebhookConfig,
}

/// What the sender needs besides the engine and the content service.
pub struct SenderParts {
    pub transport: Arc<dyn Transport>,
    pub dkim: Option<DkimSigner>,
    pub throttle: Throttle,
    pub config: SenderConfig,
}

/// Why missive could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the sender: {0}")]
    Sender(#[from] SendError),
    #[error("outbound webhooks: {0}")]
    Webhooks(#[from] missive_sending::webhooks::WebhookError),
}

/// A built missive: its services, and the background workers once started.
pub struct App {
    engine: Engine,
    state: AppState,
    background: Background,
    running: Option<RunningBackground>,
}

/// What starts the background workers: the sending side (journeys, broadcasts, the sender,
/// outbound webhooks, bounces) and the schedules (models, recommendations, retention). The
/// embedded mode starts them once ([`App::start_background`]); a cluster node starts them
/// whenever it holds the sending lease and stops them when it loses it. Cheap to clone.
#[derive(Clone)]
pub struct Background {
    engine: Engine,
    state: AppState,
    bounce_maildir: Option<PathBuf>,
    retention: Option<chrono::TimeDelta>,
    poll: Duration,
}

/// Background workers running, until [`RunningBackground::stop`].
pub struct RunningBackground {
    stop: watch::Sender<bool>,
    workers: Vec<(&'static str, JoinHandle<()>)>,
}

impl App {
    /// Starts the engine on `store` (replaying what the last run left uncommitted) and builds
    /// every service over it; with `sender`, the sender too, which journeys wake when they
    /// queue a message. Nothing runs in the background before [`App::start_background`].
    pub async fn build(
        store: Store,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        config: AppConfig,
        sender: Option<SenderParts>,
    ) -> Result<App, AppError> {
        let retention = config.privacy.event_retention;
        let engine = Engine::start(store, clock, config.engine).await?;
        let guard = missive_sending::webhooks::Guard {
            allow: config.webhooks.allow_internal.clone(),
        };
        let webhooks = missive_sending::webhooks::Webhooks::new(engine.clone(), config.webhooks)?;
        let mut parts = AppParts::new(engine.clone(), config.content, webhooks);
        parts.journeys = parts.journeys.clone().with_webhook_guard(guard);
        parts.keyring = keyring;
        parts.privacy_config = Arc::new(config.privacy);
        parts.limits = Arc::new(config.limits);
        parts.sources = Arc::new(config.sources);
        if let Some(root) = &config.local_maildir {
            parts.privacy = parts.privacy.clone().with_maildir(root.clone());
        }
        if let Some(s) = &sender {
            let warnings = missive_sending::setup::setup_warnings(
                &s.config,
                s.dkim.as_ref().map(|d| d.domain()),
                s.transport.name() != "maildir",
            );
            for w in &warnings {
                tracing::warn!(code = ?w, "{}", w.message());
            }
            parts.setup_warnings = warnings.into();
        }
        if let Some(s) = sender {
            let sender = Sender::start(
                engine.clone(),
                parts.content.clone(),
                s.transport,
                s.dkim,
                s.throttle,
                s.config,
            )
            .await?;
            parts = parts.with_sender(sender);
        }
        let state: AppState = parts.into();
        Ok(App {
            background: Background {
                engine: engine.clone(),
                state: state.clone(),
                bounce_maildir: config.bounce_maildir,
                retention,
                poll: match config.poll {
                    Duration::ZERO => Duration::from_millis(250),
                    p => p,
                },
            },
            engine,
            state,
            running: None,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the HTTP handlers reach (the services).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The HTTP API over these services.
    pub fn router(&self) -> Router {
        crate::router(self.state.clone())
    }

    /// Starts the background workers ([`Background::start`]).
    pub fn start_background(&mut self) {
        if self.running.is_none() {
            self.running = Some(self.background.start());
        }
    }

    /// What starts and stops the background workers, for a cluster node that runs them only
    /// while it holds the sending lease.
    pub fn background(&self) -> Background {
        self.background.clone()
    }

    /// Stops the workers (each finishes its round), then the engine commits everything it
    /// accepted with a final checkpoint.
    pub async fn shutdown(self) {
        if let Some(running) = self.running {
            running.stop().await;
        }
        drop(self.state);
        drop(self.background);
        self.engine.shutdown().await;
    }
}

impl Background {
    /// Starts the workers: best sellers computed once, the journey runner, the broadcaster, the
    /// webhook delivery, and with a sender the sender
    /// and the bounce reader (when `bounce_maildir` is set); the retention purge when
    /// `privacy.event_retention` is set.
    pub fn start(&self) -> RunningBackground {
        let (stop, _) = watch::channel(false);
        let mut workers: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        let poll = self.poll;
        let s = &self.state;
        // Best sellers, so that the first preview does not wait for them.
        s.content.warm_up(self.engine.clock().now());
        // Broadcasts wake the sender's bulk loop when they queue messages.
        let queued = s.sender.as_ref().map(Sender::bulk_waker).unwrap_or_default();
        workers.push(("journey runner", s.journeys.clone().spawn(poll, stop.subscribe())));
        workers.push((
            "broadcaster",
            s.broadcasts.clone().spawn(poll, stop.subscribe(), queued),
        ));
        workers.push((
            "webhook delivery",
            s.webhooks.clone().spawn(poll, stop.subscribe()),
        ));
        if let Some(sender) = &s.sender {
            workers.push(("sender", sender.clone().spawn(poll, stop.subscribe())));
            if let Some(dir) = &self.bounce_maildir {
                workers.push((
                    "bounce reader",
                    spawn_bounce_reader(&self.engine, sender, dir, stop.subscribe()),
                ));
            }
        }
        workers.push((
            "model schedule",
            spawn_model_schedule(&self.engine, stop.subscribe()),
        ));
        if let Some(every) = s.content.config().retrain_every {
            workers.push((
                "recommendation training",
                spawn_recs_schedule(&self.engine, &s.content, every, stop.subscribe()),
            ));
        }
        if let Some(retention) = self.retention {
            workers.push((
                "retention purge",
                spawn_retention(&s.privacy, retention, stop.subscribe()),
            ));
        }
        RunningBackground { stop, workers }
    }
}

impl RunningBackground {
    /// Stops the workers; each finishes its round first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (what, task) in self.workers {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the {what} stopped abnormally");
            }
        }
    }
}

/// Reads bounce and complaint reports from `dir` every 30 s.
fn spawn_bounce_reader(
    engine: &Engine,
    sender: &Sender,
    dir: &std::path::Path,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (engine, sender) = (engine.clone(), sender.clone());
    let dir = Arc::new(dir.to_path_buf());
    missive_engine::background::poll_until_shutdown(stop, None, move || {
        let (engine, sender, dir) = (engine.clone(), sender.clone(), dir.clone());
        async move {
            let now = engine.clock().now();
            match sender.read_bounce_mailbox(&dir, now).await {
                Ok(p) if p.reports + p.ignored > 0 => {
                    tracing::info!(
                        reports = p.reports,
                        ignored = p.ignored,
                        suppressed = p.suppressed,
                        "bounce mailbox read"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "bounce mailbox could not be read"),
            }
            Duration::from_secs(30)
        }
    })
}

/// Trains again and scores the models whose schedule is due, every minute (docs/models.md).
fn spawn_model_schedule(engine: &Engine, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let engine = engine.clone();
    missive_engine::background::poll_until_shutdown(stop, None, move || {
        let models = missive_engine::models::Models::new(engine.store().clone(), engine.clone());
        let now = engine.clock().now();
        async move {
            match models.run_due(now).await {
                Ok(done) => {
                    for d in done {
                        tracing::info!(what = %d, "model schedule");
                    }
                }
                Err(e) => tracing::error!(error = %e, "model schedule failed; retried in a minute"),
            }
            Duration::from_secs(60)
        }
    })
}

/// Trains the learned recommendations at start, then every `every`; the new version replaces
/// the old whole. With nothing to learn from yet (a new shop), tries again in ten minutes.
fn spawn_recs_schedule(
    engine: &Engine,
    content: &missive_sending::content::ContentService,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (engine, content) = (engine.clone(), content.clone());
    let retry = Duration::from_secs(600).min(every);
    missive_engine::background::poll_until_shutdown(stop, None, move || {
        let (engine, content) = (engine.clone(), content.clone());
        async move {
            let now = engine.clock().now();
            if let Some(m) = content.recs().current() {
                let age = (now - m.trained_at).to_std().unwrap_or_default();
                if age < every {
                    return every - age;
                }
            }
            if let Err(e) = engine.sync().await {
                tracing::error!(error = %e, "recommendation training waits: the engine could not checkpoint");
                return retry;
            }
            match content.train_recommendations(now).await {
                Ok(m) => {
                    tracing::info!(
                        version = m.version,
                        seconds = m.seconds,
                        people = m.read.with_interactions,
                        items = m.items.len(),
                        "recommendations trained"
                    );
                    every
                }
                Err(missive_engine::recs::RecsError::NoData) => {
                    tracing::info!(
                        "recommendations: no product events with personalization consent yet; trying again later"
                    );
                    retry
                }
                Err(missive_engine::recs::RecsError::Busy) => retry,
                Err(e) => {
                    tracing::error!(error = %e, "recommendation training failed; retried later");
                    retry
                }
            }
        }
    })
}

/// Purges events past the retention period once at start, then every hour.
fn spawn_retention(
    privacy: &missive_engine::privacy::Privacy,
    retention: chrono::TimeDelta,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let privacy = privacy.clone();
    missive_engine::background::poll_until_shutdown(stop, None, move || {
        let privacy = privacy.clone();
        async move {
            match privacy.purge_expired_events(retention, chrono::Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    events = n,
                    days = retention.num_days(),
                    "events past retention purged"
                ),
                Err(e) => tracing::error!(error = %e, "retention purge failed; retried in an hour"),
            }
            Duration::from_secs(3600)
        }
    })
}
