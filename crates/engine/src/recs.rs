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
                let empty = serde_json::Value::Null;
                let props = e.body.get("properties").unwrap_or(&empty);
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
    pub trained: missive_recs::strategy::Trained,
    pub items: missive_recs::data::Interner,
    pub settings: missive_recs::strategy::Settings,
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

/// The served recommendation strategies: trained from the store, replaced whole (readers keep
/// the version they started with; a new one is swapped in atomically).
#[derive(Clone, Default)]
pub struct RecsService {
    current: std::sync::Arc<std::sync::RwLock<Option<std::sync::Arc<RecsModel>>>>,
    training: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl RecsService {
    pub fn current(&self) -> Option<std::sync::Arc<RecsModel>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Trains every strategy on the store's interactions and the given catalogue items, off
    /// the async threads, then swaps the result in. One training at a time.
    pub async fn train(
        &self,
        store: &Store,
        items: Vec<missive_recs::data::Item>,
        settings: missive_recs::strategy::Settings,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::sync::Arc<RecsModel>, RecsError> {
        let _one = self.training.try_lock().map_err(|_| RecsError::Busy)?;
        let started = std::time::Instant::now();
        let (mut data, read) = interactions(store, &EventWeights::default(), 5_000_000, |n| {
            tracing::info!(profiles = n, "recommendations: reading interactions");
        })
        .await?;
        if data.rows.is_empty() {
            return Err(RecsError::NoData);
        }
        data.add_items(items.iter().map(|i| i.id.as_str()));
        let model = tokio::task::spawn_blocking(move || {
            let mut trained = missive_recs::strategy::Trained::fit(
                &data,
                &items,
                &settings,
                &missive_recs::strategy::Strategy::ALL,
                |it| tracing::info!(iteration = it, "recommendations: factorisation"),
            );
            // Serving folds each person in from their current history: the learned people's
            // vectors are not kept (nor who they were), so nothing of a person outlives their
            // erasure or withdrawal in the served model but their share in the item factors.
            if let Some(als) = &mut trained.als {
                als.user_factors = Vec::new();
            }
            RecsModel {
                trained,
                items: data.items,
                settings,
                read,
                trained_at: now,
                seconds: started.elapsed().as_secs_f64(),
            }
        })
        .await
        .map_err(|e| RecsError::Join(e.to_string()))?;
        let model = std::sync::Arc::new(model);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(model.clone());
        Ok(model)
    }
}

/// A person's history as the strategies read it: their product events' items known to the
/// model, weighted and decayed as of `now`.
pub fn history(
    model: &RecsModel,
    events: &[missive_store::StoredEvent],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(u32, f32)> {
    let weights = EventWeights::default();
    let mut out = Vec::new();
    for e in events {
        let empty = serde_json::Value::Null;
        let props = e.body.get("properties").unwrap_or(&empty);
        for (item, w, _) in items_of_event(&e.name, props, &weights) {
            if let Some(i) = model.items.get(item) {
                let f = model
                    .settings
                    .decay
                    .factor(e.timestamp.timestamp(), now.timestamp());
                out.push((i, w * f));
            }
        }
    }
    out
}
