//! What every handler can reach: the engine and the services over it, the keys, the limits.

use std::sync::Arc;

use missive_engine::Engine;
use missive_engine::auth::Authenticator;
use missive_sending::content::{ContentConfig, ContentService};

use crate::{console, limits, metrics, privacy};

/// What every handler can reach. Cheap to clone (one reference count): axum clones the state
/// for every extractor and middleware of every request.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

/// The services and settings of an [`AppState`], set up before the server starts.
#[derive(Clone)]
pub struct AppParts {
    pub engine: Engine,
    pub content: ContentService,
    pub journeys: missive_sending::journeys::Journeys,
    pub broadcasts: missive_sending::broadcasts::Broadcasts,
    pub experiments: missive_sending::experiments::Experiments,
    /// Outbound webhook endpoints and their delivery.
    pub webhooks: missive_sending::webhooks::Webhooks,
    /// What became of messages and why, per journey, broadcast or profile.
    pub messages: missive_sending::messages::Messages,
    /// Recipients' clicks, opens and unsubscribes, and messages' outcomes.
    pub tracking: missive_sending::tracking::Tracking,
    /// Sends the outbox; also signs and checks tracking links. `None` in tests that do not send.
    pub sender: Option<missive_sending::sender::Sender>,
    pub auth: Authenticator,
    pub privacy: missive_engine::privacy::Privacy,
    pub privacy_config: Arc<missive_engine::privacy::PrivacyConfig>,
    /// Pseudonyms for analytics (and, with encryption, the master keys).
    pub keyring: Arc<missive_privacy::Keyring>,
    pub cursor_key: privacy::CursorKey,
    pub limits: Arc<limits::Limits>,
    pub sessions: Arc<console::Sessions>,
    pub metrics: Option<::metrics_exporter_prometheus::PrometheusHandle>,
    pub started: Arc<std::time::Instant>,
    /// What in the sending set-up makes mail unbranded or unverifiable (`/health` lists it).
    pub setup_warnings: Arc<[missive_sending::setup::SetupWarning]>,
    /// Inbound sources by name.
    pub sources: Arc<std::collections::BTreeMap<String, missive_sources::Source>>,
}

impl AppParts {
    /// Attaches the sender: journeys wake it when they queue a message, and tracking records
    /// through those journeys.
    pub fn with_sender(mut self, sender: missive_sending::sender::Sender) -> Self {
        self.journeys = self.journeys.clone().notify_queued(sender.waker());
        self.tracking = missive_sending::tracking::Tracking::new(self.engine.clone(), self.journeys.clone());
        self.sender = Some(sender);
        self
    }

    pub fn new(
        engine: Engine,
        content: ContentConfig,
        webhooks: missive_sending::webhooks::Webhooks,
    ) -> Self {
        let auth = Authenticator::for_engine(&engine);
        let journeys = missive_sending::journeys::Journeys::new(engine.clone());
        Self {
            content: ContentService::for_engine(&engine, content),
            tracking: missive_sending::tracking::Tracking::new(engine.clone(), journeys.clone()),
            journeys,
            broadcasts: missive_sending::broadcasts::Broadcasts::new(engine.clone()),
            experiments: missive_sending::experiments::Experiments::for_engine(&engine),
            webhooks,
            messages: missive_sending::messages::Messages::new(&engine),
            sender: None,
            privacy: missive_engine::privacy::Privacy::new(engine.clone()),
            privacy_config: Arc::new(Default::default()),
            keyring: Arc::new(missive_privacy::Keyring::generate()),
            cursor_key: privacy::CursorKey::new(),
            limits: Arc::new(limits::Limits::default()),
            sessions: Arc::new(console::Sessions::default()),
            engine,
            auth,
            metrics: metrics::handle(),
            started: Arc::new(std::time::Instant::now()),
            setup_warnings: Arc::from([]),
            sources: Arc::new(Default::default()),
        }
    }
}
