//! Model wiring: the active models at start, switching them, and batch scoring (every live
//! profile scored with one model, as a segment backfill evaluates every profile).

use super::*;
use crate::models::{Rescore, ScoringSet};
use missive_store::BackfillKind;

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
    /// names, or removes that model's scores from every one. In cluster mode, the profiles of
    /// the partitions owned.
    pub(super) async fn switch_models(
        &mut self,
        set: Arc<ScoringSet>,
        rescore: Option<Rescore>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<u64, EngineError> {
        self.scorers = set;
        let Some(rescore) = rescore else { return Ok(0) };
        self.rescore(&rescore, None, progress).await
    }

    /// Cluster mode: after a partition is taken on, scores its profiles with every active
    /// model it was not scored with in full (a scoring its former owner did not finish, or
    /// an activation or batch scoring since), and removes the scores of models stopped since.
    pub(super) async fn finish_partition_scoring(&mut self, partition: u16) -> Result<(), EngineError> {
        let done = self.store.events().partition_backfills(partition).await?;
        let scorers = self.scorers.clone();
        // Only what this node has caught up with (as for segments): a model changed since
        // through another node is scored here when this node follows it.
        let registered: HashMap<String, Option<String>> = crate::models::registry::list(&self.store)
            .await
            .map_err(|e| EngineError::Store(StoreError::Task(e.to_string())))?
            .into_iter()
            .map(|e| (e.name.clone(), e.definition()))
            .collect();
        let current = |name: &str, definition: Option<&String>| {
            registered.get(name).cloned().flatten().as_ref() == definition
        };
        for m in &scorers.models {
            let recorded = done.get(&(BackfillKind::Model, m.name.clone()));
            if current(&m.name, Some(&m.definition())) && recorded != Some(&m.definition()) {
                tracing::info!(partition, model = %m.name, "cluster: the partition was not scored with this model in full; scoring it");
                self.rescore(&Rescore::With(m.name.clone()), Some(partition), None)
                    .await?;
            }
        }
        for (kind, name) in done.keys() {
            if *kind == BackfillKind::Model && scorers.get(name).is_none() && current(name, None) {
                self.rescore(&Rescore::Remove(name.clone()), Some(partition), None)
                    .await?;
            }
        }
        Ok(())
    }

    /// Scores with (or removes) one model every live profile (of `only`, in cluster mode);
    /// a cluster node records the partitions done.
    async fn rescore(
        &mut self,
        rescore: &Rescore,
        only: Option<u16>,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<u64, EngineError> {
        let name = match rescore {
            Rescore::With(n) | Rescore::Remove(n) => n.clone(),
        };
        self.wait_for_writers().await;
        let started = Instant::now();
        let now = self.clock.now().max(self.eval_now);
        self.eval_now = now;
        let covers: Vec<missive_store::Fence> = match only {
            Some(p) => self.owned.get(&p).cloned().into_iter().collect(),
            None => self.owned.values().cloned().collect(),
        };
        let (ids, homes) = self.live_profile_ids(only).await?;
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
                    let changed = match rescore {
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
        // Cluster mode: the partitions still owned under the lease they were scored under.
        let done = match rescore {
            Rescore::With(_) => scorers.get(&name).map(|m| m.definition()),
            Rescore::Remove(_) => None,
        };
        for fence in covers {
            if self.owned.get(&fence.partition) == Some(&fence) {
                self.pending
                    .partition_backfills
                    .push(missive_store::PartitionBackfill {
                        partition: fence.partition,
                        kind: BackfillKind::Model,
                        name: name.clone(),
                        done: done.clone(),
                    });
            }
        }
        tracing::info!(model = %name, profiles = scored, ms = started.elapsed().as_millis() as u64, "model scored");
        Ok(scored)
    }
}
