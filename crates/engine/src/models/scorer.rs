//! Scoring profiles with the active models: the pure part, shared by the live path (every
//! profile change, inside the ingest pipeline's fold) and batch scoring (every profile, on
//! activation or on demand).
//!
//! What a model writes into `profile.scores`:
//! - a propensity model named `NAME`: `scores.NAME`, the probability (four decimals);
//! - a clustering model named `NAME`: `scores.cluster_NAME` and `scores.cluster` (read as
//!   `model.cluster`), the cluster number;
//! - `scores._versions.NAME`: the version that wrote it.
//!
//! A profile without `profiling` consent is never scored, and loses its scores (docs/privacy.md).

use chrono::{DateTime, Utc};
use missive_core::{Profile, Purpose};
use missive_models::classify::Classifier;
use missive_models::cluster::kmeans::KMeans;
use missive_models::features::FeatureSpec;
use missive_models::scale::Standardizer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where the versions that wrote the scores are kept.
pub const VERSIONS_KEY: &str = "_versions";

/// What a trained model computes from a profile's features.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scorer {
    Propensity { classifier: Classifier },
    Cluster { scaler: Standardizer, kmeans: KMeans },
}

/// A model version in use.
#[derive(Debug, Clone)]
pub struct ActiveModel {
    pub name: String,
    pub version: u32,
    /// Scored on every profile change, not only in batch.
    pub live: bool,
    pub features: FeatureSpec,
    pub scorer: Scorer,
}

/// What a change of the models does to every profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rescore {
    /// Score every profile with this model (activated, or batch scoring).
    With(String),
    /// Remove this model's scores from every profile (deactivated or deleted).
    Remove(String),
}

/// Removes what model `name` wrote; true when the profile had any of it.
pub fn remove(p: &mut Profile, name: &str) -> bool {
    let mut changed = p.scores.remove(name).is_some();
    if p.scores.remove(&format!("cluster_{name}")).is_some() {
        p.scores.remove("cluster");
        changed = true;
    }
    if let Some(map) = p.scores.get_mut(VERSIONS_KEY).and_then(|v| v.as_object_mut()) {
        changed |= map.remove(name).is_some();
        if map.is_empty() {
            p.scores.remove(VERSIONS_KEY);
        }
    }
    changed
}

/// The active version of every model.
#[derive(Debug, Clone, Default)]
pub struct ScoringSet {
    pub models: Vec<ActiveModel>,
}

impl ScoringSet {
    pub fn has_live(&self) -> bool {
        self.models.iter().any(|m| m.live)
    }

    /// Scores `p` as of `now` with the live models (or all, `live_only: false`), and with
    /// `only` just the model of that name; true when its scores changed.
    pub fn score(&self, p: &mut Profile, now: DateTime<Utc>, live_only: bool, only: Option<&str>) -> bool {
        if !p.consents(Purpose::Profiling) {
            let had = !p.scores.is_empty();
            p.scores.clear();
            return had;
        }
        let mut changed = false;
        for m in &self.models {
            if (live_only && !m.live) || only.is_some_and(|n| n != m.name) {
                continue;
            }
            let x = m.features.extract(p, now);
            match &m.scorer {
                Scorer::Propensity { classifier } => {
                    let v = (classifier.predict(&x) * 1e4).round() / 1e4;
                    changed |= set(p, &m.name, json!(v));
                }
                Scorer::Cluster { scaler, kmeans } => {
                    let mut x = x;
                    scaler.transform_row(&mut x);
                    let c = kmeans.predict(&x);
                    changed |= set(p, &format!("cluster_{}", m.name), json!(c));
                    changed |= set(p, "cluster", json!(c));
                }
            }
            let versions = p
                .scores
                .entry(VERSIONS_KEY.to_owned())
                .or_insert_with(|| json!({}));
            if let Some(map) = versions.as_object_mut()
                && map.get(&m.name) != Some(&json!(m.version))
            {
                map.insert(m.name.clone(), json!(m.version));
                changed = true;
            }
        }
        changed
    }
}

fn set(p: &mut Profile, key: &str, v: Value) -> bool {
    if p.scores.get(key) == Some(&v) {
        return false;
    }
    p.scores.insert(key.to_owned(), v);
    true
}
