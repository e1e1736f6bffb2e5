//! Model wiring: the active models at start, switching them, and batch scoring (every live
//! profile scored with one model, as a segment backfill evaluates every profile).

use super::*;
use crate::models::{Rescore, ScoringSet};

/// The active models in the store; none (and an error logged) when they do not read, so that
/// a damaged model cannot stop ingest.
pub(super) async fn load_models(store: &Store) -> ScoringSet {
    match crate::models::registry::scoring_set(store).await {
        Ok(set) => set,
        Err(e) => {
            tracing::error!(error = %e, "the active models do not load; none are scored");
            ScoringSet::default()
        }
    }
}

impl Applier {
    /// Takes a new set of active models; scores every live profile with the model `rescore`
    /// names, or removes that model's scores from every one.
    pub(super) async fn switch_models(
        &mut self,
        set: Arc<ScoringSet>,
        rescore: Option<Rescore>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<u64, EngineError> {
        self.scorers = set;
        let Some(rescore) = rescore else { return Ok(0) };
        let name = match &rescore {
            Rescore::With(n) | Rescore::Remove(n) => n.clone(),
        };
        self.wait_for_writers().await;
        let started = Instant::now();
        let now = self.clock.now().max(self.eval_now);
        self.eval_now = now;
        let (ids, homes) = self.live_profile_ids(None).await?;
        let total = ids.len() as u64;
        let scorers = self.scorers.clone();
        let mut scored = 0u64;
        for (n, listed) in ids.into_iter().enumerate() {
            let Some(id) = self.load_into_cache(&listed).await? else {
                continue;
            };
            let home = homes.get(&listed).copied().filter(|_| id == listed);
            if !self.adopt(&id, home).await? {
                continue;
            }
            self.backfill_ahead(&id, true).await?;
            let changed = match self.profiles.get_mut(&id) {
                Some(entry) => {
                    let changed = match &rescore {
                        Rescore::With(_) => scorers.score(&mut entry.profile, now, false, Some(&name)),
                        Rescore::Remove(_) => crate::models::scorer::remove(&mut entry.profile, &name),
                    };
                    if changed {
                        entry.last_batch = self.batch_seq;
                    }
                    changed
                }
                None => false,
            };
            scored += 1;
            if changed {
                let touched = Touched {
                    scores: true,
                    ..Touched::default()
                };
                self.pending.touched.entry(id.clone()).or_default().scores = true;
                self.pending
                    .causes
                    .entry(id.clone())
                    .or_insert_with(|| format!("model:{name}"));
                if !self.segments.is_empty() {
                    self.update_segments(&id, Some(&touched), now, "model");
                }
            }
            if let Some(p) = &progress
                && n % 500 == 0
            {
                p.send_replace((n as u64, total));
            }
        }
        tracing::info!(model = %name, profiles = scored, ms = started.elapsed().as_millis() as u64, "model scored");
        Ok(scored)
    }
}
