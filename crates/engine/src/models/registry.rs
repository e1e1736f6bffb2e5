//! The model registry, kept as documents: one of kind `model_version` per trained version
//! (`NAME@N`: its data window, features, hyperparameters, metrics, who trained it, and the
//! model itself) and one of kind `model` per model (`NAME`: the latest version and the active
//! one, scored live or in batch, the schedule), so that listing models reads no fitted model. One version is active at a time; activating an earlier one is the rollback.

use chrono::{DateTime, Utc};
use missive_models::features::FeatureSpec;
use missive_store::{DocumentKind, DocumentRecord, Store, StoreError, all_documents};
use serde::{Deserialize, Serialize};

use super::scorer::{ActiveModel, Scorer, ScoringSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Propensity,
    Cluster,
    Clv,
    SendTime,
}

/// Where a version's training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ModelTrainingData)]
pub struct TrainingData {
    /// Features as of this instant.
    pub cutoff: DateTime<Utc>,
    /// The label's window after the cutoff (propensity), in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<i64>,
    /// The label, in the segment language, evaluated at the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub rows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positives: Option<usize>,
    /// Profiles left out: no `profiling` consent, or not yet seen at the cutoff.
    pub left_out_no_consent: usize,
    pub left_out_not_yet_seen: usize,
    /// True when the profiles were a sample (over the training budget).
    pub sampled: bool,
}

/// One trained version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u32,
    pub kind: ModelKind,
    pub trained_at: DateTime<Utc>,
    pub trained_by: String,
    pub data: TrainingData,
    pub features: FeatureSpec,
    /// The algorithm and its hyperparameters.
    pub params: serde_json::Value,
    /// The training report: cross-validation, holdout, calibration, importances (propensity);
    /// sizes, silhouette and summaries (clusters).
    pub metrics: serde_json::Value,
    /// What to train again with on schedule (absent in versions from before schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<TrainSpec>,
    /// Whether validation accepted it (a refused version cannot be activated).
    pub accepted: bool,
    pub verdict: String,
    pub scorer: Scorer,
}

/// How a version was asked for, so that the schedule can train the next one the same way
/// (with the cutoff moved to the window before now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<i64>,
    pub events: Vec<String>,
    pub traits: Vec<String>,
    /// Propensity: the options (algorithm, fixed hyperparameters or none for the grid, folds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<missive_models::classify::Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<missive_models::classify::Algorithm>,
    #[serde(default)]
    pub folds: usize,
    /// Clusters: k, or the largest k tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    #[serde(default)]
    pub max_k: usize,
    pub max_profiles: usize,
    /// Lifetime value: the horizon in months and the monthly discount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_discount: Option<f64>,
    /// Other models' scores used as features.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub score_features: Vec<String>,
    /// Send time: the prior's strength, in events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
}

/// When a model is scored and trained again by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ModelSchedule)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_every_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_every_days: Option<u32>,
}

/// A model's registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelEntry {
    pub name: String,
    pub kind: ModelKind,
    pub latest: u32,
    pub active: Option<u32>,
    /// Scored on every profile change (else in batch only). Stopping a model (deactivating or
    /// deleting it) removes its scores from every profile.
    pub live: bool,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scored: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trained: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model {0:?} does not exist")]
    NotFound(String),
    #[error("model {name:?} has no version {version}")]
    NoVersion { name: String, version: u32 },
    #[error("model {name:?} version {version} was refused by validation ({verdict}): it cannot be activated")]
    Refused {
        name: String,
        version: u32,
        verdict: String,
    },
    #[error(
        "invalid model name {0:?}: use 1 to 64 lowercase letters, digits and underscores, starting with a letter (not `cluster`, `cluster_…` nor `…_alive`)"
    )]
    InvalidName(String),
    #[error("model {name:?} is a {existing:?} model: a {new:?} model needs another name")]
    KindMismatch {
        name: String,
        existing: ModelKind,
        new: ModelKind,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored model {0:?} does not read: {1}")]
    Corrupt(String, String),
}

/// A name segments can read as `scores.NAME`.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name != "cluster"
        // `cluster_NAME` is where a clustering model named NAME writes, `NAME_alive` where a
        // lifetime-value model does.
        && !name.starts_with("cluster_")
        && !name.ends_with("_alive");
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName(name.to_owned()))
    }
}

fn version_doc(name: &str, version: u32) -> String {
    format!("{name}@{version}")
}

fn read<T: serde::de::DeserializeOwned>(d: &DocumentRecord) -> Result<T, RegistryError> {
    serde_json::from_value(d.body.clone()).map_err(|e| RegistryError::Corrupt(d.name.clone(), e.to_string()))
}

async fn put<T: Serialize>(
    store: &Store,
    kind: DocumentKind,
    name: String,
    body: &T,
    now: DateTime<Utc>,
) -> Result<(), RegistryError> {
    let body = serde_json::to_value(body).map_err(|e| RegistryError::Corrupt(name.clone(), e.to_string()))?;
    store
        .documents()
        .put_documents(vec![DocumentRecord {
            kind,
            name,
            version: 0,
            body,
            updated_at: now,
        }])
        .await?;
    Ok(())
}

pub async fn entry(store: &Store, name: &str) -> Result<Option<ModelEntry>, RegistryError> {
    match store.documents().get_document(DocumentKind::Model, name).await? {
        Some(d) => Ok(Some(read(&d)?)),
        None => Ok(None),
    }
}

/// Every model's entry, by name.
pub async fn list(store: &Store) -> Result<Vec<ModelEntry>, RegistryError> {
    all_documents(store.documents().as_ref(), DocumentKind::Model)
        .await?
        .iter()
        .map(read)
        .collect()
}

pub async fn version(store: &Store, name: &str, version: u32) -> Result<ModelVersion, RegistryError> {
    let d = store
        .documents()
        .get_document(DocumentKind::ModelVersion, &version_doc(name, version))
        .await?
        .ok_or_else(|| RegistryError::NoVersion {
            name: name.to_owned(),
            version,
        })?;
    read(&d)
}

/// Stores a new version (numbered after the latest); the entry keeps its active version.
pub async fn save(
    store: &Store,
    mut v: ModelVersion,
    now: DateTime<Utc>,
) -> Result<ModelVersion, RegistryError> {
    check_name(&v.name)?;
    let mut e = entry(store, &v.name).await?.unwrap_or(ModelEntry {
        name: v.name.clone(),
        kind: v.kind,
        latest: 0,
        active: None,
        live: false,
        schedule: Schedule::default(),
        last_scored: None,
        last_trained: None,
        updated_at: now,
    });
    if e.kind != v.kind {
        return Err(RegistryError::KindMismatch {
            name: v.name,
            existing: e.kind,
            new: v.kind,
        });
    }
    e.latest += 1;
    e.updated_at = now;
    e.last_trained = Some(now);
    v.version = e.latest;
    put(
        store,
        DocumentKind::ModelVersion,
        version_doc(&v.name, v.version),
        &v,
        now,
    )
    .await?;
    put(store, DocumentKind::Model, v.name.clone(), &e, now).await?;
    Ok(v)
}

impl ModelEntry {
    /// The active version's [`super::scorer::definition`]; `None` when none is active.
    pub fn definition(&self) -> Option<String> {
        self.active
            .map(|v| super::scorer::definition(v, self.live, self.last_scored))
    }
}

/// Makes `version` (default: the latest) the active one, scored live or in batch.
pub async fn activate(
    store: &Store,
    name: &str,
    version: Option<u32>,
    live: bool,
    schedule: Option<Schedule>,
    now: DateTime<Utc>,
) -> Result<ModelEntry, RegistryError> {
    let mut e = entry(store, name)
        .await?
        .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
    let n = version.unwrap_or(e.latest);
    let v = self::version(store, name, n).await?;
    if !v.accepted {
        return Err(RegistryError::Refused {
            name: name.to_owned(),
            version: n,
            verdict: v.verdict,
        });
    }
    e.active = Some(n);
    e.live = live;
    if let Some(s) = schedule {
        e.schedule = s;
    }
    e.last_scored = Some(now);
    e.updated_at = now;
    put(store, DocumentKind::Model, name.to_owned(), &e, now).await?;
    Ok(e)
}

/// Records when every profile was last scored with the model (`None`: never in batch).
pub async fn scored(store: &Store, name: &str, at: Option<DateTime<Utc>>) -> Result<(), RegistryError> {
    if let Some(mut e) = entry(store, name).await? {
        e.last_scored = at;
        let written = at.unwrap_or(e.updated_at);
        put(store, DocumentKind::Model, name.to_owned(), &e, written).await?;
    }
    Ok(())
}

/// Stops scoring with the model (the caller removes its scores from the profiles).
pub async fn deactivate(store: &Store, name: &str, now: DateTime<Utc>) -> Result<ModelEntry, RegistryError> {
    let mut e = entry(store, name)
        .await?
        .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
    e.active = None;
    e.updated_at = now;
    put(store, DocumentKind::Model, name.to_owned(), &e, now).await?;
    Ok(e)
}

/// Deletes the model and every version of it.
pub async fn delete(store: &Store, name: &str) -> Result<(), RegistryError> {
    let e = entry(store, name)
        .await?
        .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
    for v in 1..=e.latest {
        store
            .documents()
            .delete_document(DocumentKind::ModelVersion, &version_doc(name, v))
            .await?;
    }
    store
        .documents()
        .delete_document(DocumentKind::Model, name)
        .await?;
    Ok(())
}

/// The active send-time model, if one is (the first, by name).
pub async fn active_send_time(
    store: &Store,
) -> Result<Option<missive_models::send_time::SendTime>, RegistryError> {
    for e in list(store).await? {
        if let (ModelKind::SendTime, Some(n)) = (e.kind, e.active)
            && let Scorer::SendTime { model } = version(store, &e.name, n).await?.scorer
        {
            return Ok(Some(model));
        }
    }
    Ok(None)
}

/// The active version of every model, for the pipeline.
pub async fn scoring_set(store: &Store) -> Result<ScoringSet, RegistryError> {
    let mut models = Vec::new();
    for e in list(store).await? {
        let Some(n) = e.active else { continue };
        let v = version(store, &e.name, n).await?;
        models.push(ActiveModel {
            name: e.name,
            version: n,
            live: e.live,
            features: v.features,
            scorer: v.scorer,
            last_scored: e.last_scored,
        });
    }
    // Models whose scores others read go first, so that those read this change's scores.
    models.sort_by_key(|m| m.features.scores.len());
    Ok(ScoringSet { models })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_segments_can_read() {
        for ok in ["churn", "buy_again_30d", "clv2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Churn",
            "2x",
            "a-b",
            "cluster",
            "cluster_rfm",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
