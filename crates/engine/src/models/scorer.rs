//! Scoring profiles with the active models: the pure part, shared by the live path (every
//! profile change, inside the ingest pipeline's fold) and batch scoring (every profile, on
//! activation or on demand).
//!
//! What a model writes into `profile.scores`:
//! - a propensity model named `NAME`: `scores.NAME`, the probability (four decimals);
//! - a clustering model named `NAME`: `scores.cluster_NAME` and `scores.cluster` (read as
//!   `model.cluster`), the cluster number;
//! - a lifetime-value model named `NAME`: `scores.NAME`, the value over its horizon (two
//!   decimals, 0 before a first order), and `scores.NAME_alive`, the probability that the
//!   customer is still active;
//! - a send-time model named `NAME`: `scores.NAME`, the person's best hour of the week (0 is
//!   Monday 00:00 UTC);
//! - `scores._versions.NAME`: the version that wrote it.
//!
//! A profile without `profiling` consent is never scored, and loses its scores (docs/privacy.md).

use chrono::{DateTime, Utc};
use missive_core::{Profile, Purpose};
use missive_models::classify::Classifier;
use missive_models::cluster::kmeans::KMeans;
use missive_models::clv::bgnbd::BgNbd;
use missive_models::clv::gamma_gamma::GammaGamma;
use missive_models::clv::summary::Customer;
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
    Propensity {
        classifier: Classifier,
    },
    Cluster {
        scaler: Standardizer,
        kmeans: KMeans,
    },
    /// Send time: everyone's engagement by hour of the week.
    SendTime {
        model: missive_models::send_time::SendTime,
    },
    /// Lifetime value: BG/NBD and Gamma-Gamma over `months`, discounted monthly.
    Clv {
        bg: BgNbd,
        gg: Option<GammaGamma>,
        months: u32,
        monthly_discount: f64,
        /// The last order the fit saw. A profile is scored as of the later of this and its own
        /// last event (not after now): a history imported in bulk, which ended long ago, is
        /// judged as of its end, not as years of silence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_end: Option<DateTime<Utc>>,
    },
}

/// A profile's purchase summary for the lifetime-value models, from its order aggregate:
/// repeat purchases are orders after the first (orders, not days: two orders on one day
/// count twice), the mean value that of all orders.
pub fn clv_summary(p: &Profile, now: DateTime<Utc>) -> Option<Customer> {
    let o = &p.orders;
    let (first, last) = (o.first_at?, o.last_at?);
    let weeks = |d: chrono::TimeDelta| d.num_seconds() as f64 / (7.0 * 86_400.0);
    let x = o.count.saturating_sub(1) as u32;
    Some(Customer {
        id: p.id.to_string(),
        x,
        t_x: if x > 0 { weeks(last - first) } else { 0.0 },
        t: weeks(now - first).max(0.0),
        mean_value: o.revenue.0 as f64 / 100.0 / o.count.max(1) as f64,
        holdout_x: 0,
    })
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
    /// When every profile was last scored with it in batch (activation included).
    pub last_scored: Option<DateTime<Utc>>,
}

impl ActiveModel {
    /// What scoring every profile with it means, as a cluster records it per partition and
    /// follows it across nodes: its version, live or batch, and the last batch scoring.
    pub fn definition(&self) -> String {
        definition(self.version, self.live, self.last_scored)
    }
}

/// What scoring every profile with a model's active `version` means (its
/// [`ActiveModel::definition`]), from what the registry records of it.
pub fn definition(version: u32, live: bool, last_scored: Option<DateTime<Utc>>) -> String {
    format!(
        "v{version} {} {}",
        if live { "live" } else { "batch" },
        last_scored.map_or(0, |t| t.timestamp_micros())
    )
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
    changed |= p.scores.remove(&format!("{name}_alive")).is_some();
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
    /// Each model's [`ActiveModel::definition`], by name.
    pub fn definitions(&self) -> std::collections::BTreeMap<String, String> {
        self.models
            .iter()
            .map(|m| (m.name.clone(), m.definition()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&ActiveModel> {
        self.models.iter().find(|m| m.name == name)
    }

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
                Scorer::SendTime { model } => {
                    let own = model.engagement_of(p);
                    let hour = model.best_hour(&own, |_| true);
                    changed |= set(p, &m.name, json!(hour));
                }
                Scorer::Clv {
                    bg,
                    gg,
                    months,
                    monthly_discount,
                    data_end,
                } => {
                    let as_of = data_end.map_or(now, |end| end.max(p.last_seen.unwrap_or(end)).min(now));
                    let (value, alive) = match clv_summary(p, as_of) {
                        Some(c) => (
                            gg.as_ref().map_or(0.0, |g| {
                                missive_models::clv::value::lifetime_value(
                                    bg,
                                    g,
                                    &c,
                                    *months,
                                    *monthly_discount,
                                )
                            }),
                            bg.p_alive(&c),
                        ),
                        None => (0.0, 0.0),
                    };
                    changed |= set(p, &m.name, json!((value * 100.0).round() / 100.0));
                    changed |= set(
                        p,
                        &format!("{}_alive", m.name),
                        json!((alive * 1e4).round() / 1e4),
                    );
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
