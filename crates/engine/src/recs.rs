//! Recommendations' interactions from the store: the product events of every live profile
//! whose consent includes `personalization` (recommendations are content chosen from the
//! person's history; see docs/privacy.md), read profile by profile in pages, so that memory
//! holds the interactions, not the events. An erased person's events are gone from the store,
//! so they leave every training set.

use missive_core::Purpose;
use missive_recs::data::{EventWeights, Interactions, items_of_event};
use missive_store::{Store, StoreError};

use crate::profiles::all_events;

/// What was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Read {
    pub profiles: usize,
    /// Left out: no `personalization` consent.
    pub no_consent: usize,
    /// Profiles with at least one interaction.
    pub with_interactions: usize,
    pub interactions: usize,
    /// Stopped at the limit of interactions (the rest of the profiles were not read).
    pub truncated: bool,
}

/// The interactions of the consenting profiles (user: the profile id), at most
/// `max_interactions`; `progress` is called with the profiles read so far, every 1,000.
pub async fn interactions(
    store: &Store,
    weights: &EventWeights,
    max_interactions: usize,
    mut progress: impl FnMut(usize),
) -> Result<(Interactions, Read), StoreError> {
    let mut data = Interactions::default();
    let mut read = Read::default();
    let mut after = None;
    'pages: loop {
        let page = store.events().profiles_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for p in page {
            read.profiles += 1;
            if !p.consents(Purpose::Personalization) {
                read.no_consent += 1;
                continue;
            }
            let user = p.id.to_string();
            let before = data.rows.len();
            for e in all_events(store, &p.id).await? {
                let empty = serde_json::Map::new();
                let props = e
                    .body
                    .get("properties")
                    .and_then(serde_json::Value::as_object)
                    .unwrap_or(&empty);
                for (item, w, basket) in items_of_event(&e.name, props, weights) {
                    data.push(&user, item, w, e.timestamp.timestamp(), basket);
                }
            }
            if data.rows.len() > before {
                read.with_interactions += 1;
            }
            if data.rows.len() >= max_interactions {
                data.rows.truncate(max_interactions);
                read.truncated = true;
                break 'pages;
            }
        }
        progress(read.profiles);
    }
    read.interactions = data.rows.len();
    Ok((data, read))
}

/// Trained strategies with the ids they were trained on, as served.
pub struct RecsModel {
    /// Counts up from 1 with each training since the process started.
    pub version: u64,
    pub trained: missive_recs::strategy::Trained,
    pub items: missive_recs::data::Interner,
    pub settings: missive_recs::strategy::Settings,
    /// The event weights it was trained with, which serving reads histories with.
    pub weights: EventWeights,
    pub read: Read,
    pub trained_at: chrono::DateTime<chrono::Utc>,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecsError {
    #[error("recommendations are training already; try again when that is done")]
    Busy,
    #[error("no product events of people who consented to personalization: nothing to learn from")]
    NoData,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("training stopped: {0}")]
    Join(String),
}

/// Where a training is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RecsTrainingPhase)]
pub enum Phase {
    ReadingInteractions,
    Fitting,
}

/// A training under way.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = RecsTrainingProgress)]
pub struct Progress {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub phase: Phase,
    pub profiles_read: usize,
    /// Factorisation iterations done.
    pub iterations: usize,
}

/// The last training that failed, and why.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = RecsTrainingFailure)]
pub struct Failure {
    pub at: chrono::DateTime<chrono::Utc>,
    pub error: String,
}

#[derive(Default)]
struct Status {
    training: Option<Progress>,
    last_failure: Option<Failure>,
    versions: u64,
}

/// What one training learns from besides the store's events, and how.
pub struct Training {
    /// The catalogue, for content and for products no one has had yet.
    pub items: Vec<missive_recs::data::Item>,
    pub settings: missive_recs::strategy::Settings,
    pub weights: EventWeights,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The served recommendation strategies: trained from the store, replaced whole (readers keep
/// the version they started with; a new one is swapped in atomically).
#[derive(Clone, Default)]
pub struct RecsService {
    current: std::sync::Arc<std::sync::RwLock<Option<std::sync::Arc<RecsModel>>>>,
    training: std::sync::Arc<tokio::sync::Mutex<()>>,
    status: std::sync::Arc<std::sync::Mutex<Status>>,
}

impl RecsService {
    pub fn current(&self) -> Option<std::sync::Arc<RecsModel>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The training under way, if one is.
    pub fn progress(&self) -> Option<Progress> {
        self.status().training.clone()
    }

    /// The last training that failed, unless one succeeded since.
    pub fn last_failure(&self) -> Option<Failure> {
        self.status().last_failure.clone()
    }

    /// Trains every strategy on the store's interactions and the given catalogue items, off
    /// the async threads, then swaps the result in. One training at a time; its progress is
    /// [`progress`](Self::progress) meanwhile. It runs as a task of its own: a caller that
    /// goes away (a closed connection) does not stop it half-way.
    pub async fn train(&self, store: &Store, job: Training) -> Result<std::sync::Arc<RecsModel>, RecsError> {
        let (this, store) = (self.clone(), store.clone());
        tokio::spawn(async move { this.train_once(&store, job).await })
            .await
            .map_err(|e| RecsError::Join(e.to_string()))?
    }

    async fn train_once(&self, store: &Store, job: Training) -> Result<std::sync::Arc<RecsModel>, RecsError> {
        let _one = self.training.try_lock().map_err(|_| RecsError::Busy)?;
        let now = job.now;
        self.status().training = Some(Progress {
            started_at: now,
            phase: Phase::ReadingInteractions,
            profiles_read: 0,
            iterations: 0,
        });
        let result = self.train_now(store, job).await;
        let mut status = self.status();
        status.training = None;
        match &result {
            Ok(_) => status.last_failure = None,
            Err(e) => {
                status.last_failure = Some(Failure {
                    at: now,
                    error: e.to_string(),
                })
            }
        }
        result
    }

    async fn train_now(&self, store: &Store, job: Training) -> Result<std::sync::Arc<RecsModel>, RecsError> {
        let Training {
            items,
            settings,
            weights,
            now,
        } = job;
        let started = std::time::Instant::now();
        let (mut data, read) = interactions(store, &weights, 5_000_000, |n| {
            if let Some(p) = &mut self.status().training {
                p.profiles_read = n;
            }
            tracing::info!(profiles = n, "recommendations: reading interactions");
        })
        .await?;
        if data.rows.is_empty() {
            return Err(RecsError::NoData);
        }
        if let Some(p) = &mut self.status().training {
            p.profiles_read = read.profiles;
            p.phase = Phase::Fitting;
        }
        data.add_items(items.iter().map(|i| i.id.as_str()));
        let status = self.status.clone();
        let model = tokio::task::spawn_blocking(move || {
            let mut trained = missive_recs::strategy::Trained::fit(
                &data,
                &items,
                &settings,
                &missive_recs::strategy::Strategy::ALL,
                |it| {
                    if let Some(p) = &mut status.lock().unwrap_or_else(|p| p.into_inner()).training {
                        p.iterations = it;
                    }
                    tracing::info!(iteration = it, "recommendations: factorisation");
                },
            );
            // Serving folds each person in from their current history: the learned people's
            // vectors are not kept (nor who they were), so nothing of a person outlives their
            // erasure or withdrawal in the served model but their share in the item factors.
            if let Some(als) = &mut trained.als {
                als.user_factors = Vec::new();
            }
            RecsModel {
                version: 0,
                trained,
                items: data.items,
                settings,
                weights,
                read,
                trained_at: now,
                seconds: started.elapsed().as_secs_f64(),
            }
        })
        .await
        .map_err(|e| RecsError::Join(e.to_string()))?;
        let mut model = model;
        model.version = {
            let mut s = self.status();
            s.versions += 1;
            s.versions
        };
        let model = std::sync::Arc::new(model);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(model.clone());
        Ok(model)
    }
}

/// A person's history as the strategies read it: the items of their product events (name,
/// properties, time) that the model knows, weighted and decayed as of `now`.
pub fn history<'a>(
    model: &RecsModel,
    events: impl IntoIterator<
        Item = (
            &'a str,
            &'a serde_json::Map<String, serde_json::Value>,
            chrono::DateTime<chrono::Utc>,
        ),
    >,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(u32, f32)> {
    let mut out = Vec::new();
    for (name, props, at) in events {
        for (item, w, _) in items_of_event(name, props, &model.weights) {
            if let Some(i) = model.items.get(item) {
                let f = model.settings.decay.factor(at.timestamp(), now.timestamp());
                out.push((i, w * f));
            }
        }
    }
    out
}

/// A stored event as [`history`] reads it.
pub fn stored_event(
    e: &missive_store::StoredEvent,
) -> Option<(
    &str,
    &serde_json::Map<String, serde_json::Value>,
    chrono::DateTime<chrono::Utc>,
)> {
    let props = e.body.get("properties")?.as_object()?;
    Some((e.name.as_str(), props, e.timestamp))
}
