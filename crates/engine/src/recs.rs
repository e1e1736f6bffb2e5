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
