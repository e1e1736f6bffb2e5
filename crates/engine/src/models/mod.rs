//! Models over the store: training from profiles ([`training`]), the registry of versions
//! ([`registry`]), and scoring into profiles ([`scorer`]), live on every change inside the
//! ingest pipeline or in batch over every profile. The algorithms themselves are in the pure
//! `missive-models` crate.
//!
//! Training reads the store and runs on the blocking pool, off the ingest path: the running
//! server keeps ingesting while a model trains.

pub mod registry;
pub mod scorer;
pub mod training;

use chrono::{DateTime, Duration, Utc};
use missive_models::classify::{self, TrainOptions};
use missive_models::cluster::{self, ClusterReport};
use missive_models::features::FeatureSpec;
use missive_segment::Segment;
use missive_store::Store;
use serde::Serialize;

pub use registry::{ModelEntry, ModelKind, ModelVersion, RegistryError, Schedule, TrainSpec, TrainingData};
pub use scorer::{Rescore, Scorer, ScoringSet};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Train(#[from] classify::TrainError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Features(#[from] missive_models::features::FeatureError),
    #[error("the label: {0}")]
    Label(#[from] missive_segment::SegmentError),
    #[error("the label reads segment {0:?}: a label must be about the person's own data")]
    LabelReadsSegment(String),
    #[error("no profile with `profiling` consent was seen by the cutoff: nothing to train on")]
    NoRows,
    #[error("clustering from the store supports k-means (it scores new profiles by the nearest centre)")]
    ClusterAlgorithm,
    #[error(transparent)]
    Store(#[from] missive_store::StoreError),
    #[error(transparent)]
    Engine(#[from] std::sync::Arc<crate::EngineError>),
    #[error("training stopped: {0}")]
    Join(String),
    #[error(
        "the cutoff plus the label's window ends at {ends}, after now: the label would not be known yet; choose a cutoff at least the window before now"
    )]
    Cutoff { ends: DateTime<Utc> },
    #[error(
        "the label {0}: it must look only at the window after the cutoff (events counted `within` at most the window), or it leaks what the features already say"
    )]
    LabelLeaks(String),
    #[error("another model is training: try again when it is done")]
    Busy,
    #[error("{field}: {why}")]
    Limit { field: &'static str, why: String },
    #[error(transparent)]
    Clv(#[from] missive_models::clv::FitError),
}

/// The most a request may ask for, so that one training cannot take the server's memory.
pub const MAX_PROFILES: usize = 1_000_000;
pub const MAX_FEATURE_NAMES: usize = 50;

/// Checks that `label` can be known `horizon` after the cutoff from that window alone.
fn check_label(label: &Segment, horizon: Duration) -> Result<(), ModelError> {
    let i = label.inputs();
    if let Some(s) = i.segments.iter().next() {
        return Err(ModelError::LabelReadsSegment(s.clone()));
    }
    if i.scores {
        return Err(ModelError::LabelLeaks("reads model scores".into()));
    }
    if i.orders || i.seen {
        return Err(ModelError::LabelLeaks(
            "reads all-time orders or seen times: count `event \"Order Completed\" within` the window instead".into(),
        ));
    }
    for (name, window) in &i.windows {
        match window {
            None => return Err(ModelError::LabelLeaks(format!("counts {name:?} over all time"))),
            Some(w) if *w > horizon => {
                return Err(ModelError::LabelLeaks(format!(
                    "counts {name:?} over {} days, longer than the {}-day window",
                    w.num_days(),
                    horizon.num_days()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_sizes(max_profiles: usize, events: usize, traits: usize) -> Result<(), ModelError> {
    if max_profiles == 0 || max_profiles > MAX_PROFILES {
        return Err(ModelError::Limit {
            field: "max_profiles",
            why: format!("1 to {MAX_PROFILES}"),
        });
    }
    if events > MAX_FEATURE_NAMES {
        return Err(ModelError::Limit {
            field: "events",
            why: format!("at most {MAX_FEATURE_NAMES} event names"),
        });
    }
    if traits > MAX_FEATURE_NAMES {
        return Err(ModelError::Limit {
            field: "traits",
            why: format!("at most {MAX_FEATURE_NAMES} traits"),
        });
    }
    Ok(())
}

/// A propensity model to train from the store.
#[derive(Debug, Clone)]
pub struct PropensityRequest {
    pub name: String,
    /// The label in the segment language, evaluated at cutoff + horizon.
    pub label: String,
    pub cutoff: DateTime<Utc>,
    pub horizon: Duration,
    pub features: FeatureSpec,
    pub traits: Vec<String>,
    pub options: TrainOptions,
    pub max_profiles: usize,
    pub trained_by: String,
}

/// A clustering model to train from the store (K-Means: k given, or chosen by silhouette).
#[derive(Debug, Clone)]
pub struct ClusterRequest {
    pub name: String,
    pub cutoff: DateTime<Utc>,
    pub k: Option<usize>,
    pub max_k: usize,
    pub features: FeatureSpec,
    pub traits: Vec<String>,
    pub max_profiles: usize,
    pub seed: u64,
    pub trained_by: String,
}

/// A lifetime-value model to fit on the store's orders.
#[derive(Debug, Clone)]
pub struct ClvRequest {
    pub name: String,
    /// The end of the calibration period (orders after it are the holdout check).
    pub calibration_end: DateTime<Utc>,
    pub months: u32,
    pub monthly_discount: f64,
    pub max_profiles: usize,
    pub trained_by: String,
}

/// What training reports.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ModelTrained)]
pub struct Trained {
    pub name: String,
    pub version: u32,
    pub accepted: bool,
    pub verdict: String,
    pub data: TrainingData,
    pub metrics: serde_json::Value,
}

pub struct Models {
    store: Store,
    engine: crate::Engine,
}

fn trained(v: &ModelVersion) -> Trained {
    Trained {
        name: v.name.clone(),
        version: v.version,
        accepted: v.accepted,
        verdict: v.verdict.clone(),
        data: v.data.clone(),
        metrics: v.metrics.clone(),
    }
}

impl Models {
    pub fn new(store: Store, engine: crate::Engine) -> Self {
        Self { store, engine }
    }

    /// Trains a propensity model from the store and saves it as a new version (not active:
    /// [`Models::activate`] does that, and refuses a version validation refused).
    pub async fn train_propensity(
        &self,
        r: PropensityRequest,
        schema: &missive_segment::Schema,
        now: DateTime<Utc>,
    ) -> Result<Trained, ModelError> {
        registry::check_name(&r.name)?;
        r.features.check()?;
        check_sizes(r.max_profiles, r.features.events.len(), r.traits.len())?;
        let label = Segment::compile(&r.label, schema)?;
        check_label(&label, r.horizon)?;
        if r.cutoff + r.horizon > now {
            return Err(ModelError::Cutoff {
                ends: r.cutoff + r.horizon,
            });
        }
        let scorers = std::sync::Arc::new(self.feature_scorers(&r.features).await?);
        let _permit = self.engine.try_train().ok_or(ModelError::Busy)?;
        self.engine.sync().await?;
        let table = training::StoreTable {
            scorers,
            cutoff: r.cutoff,
            label: Some((label, r.horizon)),
            features: r.features.clone(),
            traits: r.traits.clone(),
            category_cap: 20,
            max_profiles: r.max_profiles,
            seed: r.options.seed,
        };
        let (data, spec, stats) = training::build(&self.store, &table, |n| {
            tracing::info!(profiles = n, "model training: reading profiles");
        })
        .await?;
        if stats.rows == 0 {
            return Err(ModelError::NoRows);
        }
        let options = r.options.clone();
        let report = tokio::task::spawn_blocking(move || classify::train(&data, &options))
            .await
            .map_err(|e| ModelError::Join(e.to_string()))??;
        let Some(classifier) = report.model.clone() else {
            return Err(ModelError::Join("no model came out of training".into()));
        };
        let v = ModelVersion {
            name: r.name.clone(),
            version: 0,
            kind: ModelKind::Propensity,
            trained_at: now,
            trained_by: r.trained_by,
            data: TrainingData {
                cutoff: r.cutoff,
                horizon_days: Some(r.horizon.num_days()),
                label: Some(r.label.clone()),
                rows: stats.rows,
                positives: Some(stats.positives),
                left_out_no_consent: stats.no_consent,
                left_out_not_yet_seen: stats.not_yet_seen,
                sampled: stats.sampled,
            },
            features: spec,
            params: serde_json::to_value(report.params).unwrap_or_default(),
            metrics: serde_json::to_value(&report).unwrap_or_default(),
            request: Some(TrainSpec {
                label: Some(r.label.clone()),
                horizon_days: Some(r.horizon.num_days()),
                events: r.features.events.clone(),
                traits: r.traits.clone(),
                score_features: r.features.scores.clone(),
                params: r.options.params,
                algorithm: Some(r.options.algorithm),
                folds: r.options.folds,
                k: None,
                max_k: 0,
                max_profiles: r.max_profiles,
                months: None,
                monthly_discount: None,
                strength: None,
            }),
            accepted: report.verdict.accepted,
            verdict: report.verdict.reason.clone(),
            scorer: Scorer::Propensity { classifier },
        };
        let _registry = self.engine.lock_models().await;
        let v = registry::save(&self.store, v, now).await?;
        Ok(trained(&v))
    }

    /// Trains K-Means on the profiles' features as of `cutoff` and saves a new version.
    pub async fn train_cluster(&self, r: ClusterRequest, now: DateTime<Utc>) -> Result<Trained, ModelError> {
        registry::check_name(&r.name)?;
        r.features.check()?;
        check_sizes(r.max_profiles, r.features.events.len(), r.traits.len())?;
        if let Some(k) = r.k
            && !(2..=50).contains(&k)
        {
            return Err(ModelError::Limit {
                field: "k",
                why: "2 to 50 clusters".into(),
            });
        }
        if r.cutoff > now {
            return Err(ModelError::Cutoff { ends: r.cutoff });
        }
        let scorers = std::sync::Arc::new(self.feature_scorers(&r.features).await?);
        let _permit = self.engine.try_train().ok_or(ModelError::Busy)?;
        self.engine.sync().await?;
        let table = training::StoreTable {
            scorers,
            cutoff: r.cutoff,
            label: None,
            features: r.features.clone(),
            traits: r.traits.clone(),
            category_cap: 20,
            max_profiles: r.max_profiles,
            seed: r.seed,
        };
        let (data, spec, stats) = training::build(&self.store, &table, |_| {}).await?;
        if stats.rows == 0 {
            return Err(ModelError::NoRows);
        }
        let algorithm = cluster::Algorithm::KMeans {
            k: r.k,
            max_k: r.max_k,
            restarts: 4,
        };
        let seed = r.seed;
        let report: ClusterReport =
            tokio::task::spawn_blocking(move || cluster::run(&data, &algorithm, seed))
                .await
                .map_err(|e| ModelError::Join(e.to_string()))??;
        let (Some(kmeans), Some(scaler)) = (report.model.clone(), report.scaler.clone()) else {
            return Err(ModelError::ClusterAlgorithm);
        };
        let v = ModelVersion {
            name: r.name.clone(),
            version: 0,
            kind: ModelKind::Cluster,
            trained_at: now,
            trained_by: r.trained_by,
            data: TrainingData {
                cutoff: r.cutoff,
                horizon_days: None,
                label: None,
                rows: stats.rows,
                positives: None,
                left_out_no_consent: stats.no_consent,
                left_out_not_yet_seen: stats.not_yet_seen,
                sampled: stats.sampled,
            },
            features: spec,
            params: serde_json::json!({ "algorithm": "kmeans", "k": kmeans.k() }),
            metrics: serde_json::to_value(&report).unwrap_or_default(),
            request: Some(TrainSpec {
                events: r.features.events.clone(),
                traits: r.traits.clone(),
                k: r.k,
                max_k: r.max_k,
                max_profiles: r.max_profiles,
                score_features: r.features.scores.clone(),
                ..TrainSpec::default()
            }),
            accepted: report.clusters.len() > 1,
            verdict: if report.clusters.len() > 1 {
                format!(
                    "{} clusters, silhouette {:.3}",
                    report.clusters.len(),
                    report.silhouette.unwrap_or(0.0)
                )
            } else {
                "refused: one cluster only".into()
            },
            scorer: Scorer::Cluster { scaler, kmeans },
        };
        let _registry = self.engine.lock_models().await;
        let v = registry::save(&self.store, v, now).await?;
        Ok(trained(&v))
    }

    /// Fits BG/NBD and Gamma-Gamma on the consenting profiles' orders up to the calibration
    /// end, checks the expected purchases after it against the actual ones when there are
    /// any, and saves a new version.
    pub async fn train_clv(&self, r: ClvRequest, now: DateTime<Utc>) -> Result<Trained, ModelError> {
        use missive_models::clv::{bgnbd, gamma_gamma, summary, value};
        registry::check_name(&r.name)?;
        check_sizes(r.max_profiles, 0, 0)?;
        if !(1..=120).contains(&r.months) {
            return Err(ModelError::Limit {
                field: "months",
                why: "1 to 120".into(),
            });
        }
        if !(0.0..1.0).contains(&r.monthly_discount) {
            return Err(ModelError::Limit {
                field: "monthly_discount",
                why: "from 0 to below 1 (0.01 is 1 % a month)".into(),
            });
        }
        if r.calibration_end > now {
            return Err(ModelError::Cutoff {
                ends: r.calibration_end,
            });
        }
        let _permit = self.engine.try_train().ok_or(ModelError::Busy)?;
        self.engine.sync().await?;
        let (tx, stats) = training::transactions(&self.store, r.max_profiles, 7).await?;
        // The holdout runs to the last order (a history imported in bulk ends long before now).
        let last = tx.iter().map(|t| t.date).max().unwrap_or(now.date_naive());
        let (cal, end) = (r.calibration_end.date_naive(), last.min(now.date_naive()));
        let (months, discount) = (r.months, r.monthly_discount);
        let fitted = tokio::task::spawn_blocking(move || {
            let customers = summary::summarise(&tx, cal, end.max(cal));
            let bg = bgnbd::fit(&customers)?;
            let gg = gamma_gamma::fit(&customers).ok();
            let weeks = (end - cal).num_days() as f64 / 7.0;
            let check = (weeks >= 1.0).then(|| bg.holdout_check(&customers, weeks, 7));
            let total: f64 = gg.as_ref().map_or(0.0, |g| {
                customers
                    .iter()
                    .map(|c| value::lifetime_value(&bg, g, c, months, discount))
                    .sum()
            });
            Ok::<_, missive_models::clv::FitError>((customers.len(), bg, gg, check, total))
        })
        .await
        .map_err(|e| ModelError::Join(e.to_string()))??;
        let (customers, bg, gg, check, total) = fitted;
        let metrics = serde_json::json!({
            "customers": customers,
            "bg_nbd": bg,
            "gamma_gamma": gg,
            "holdout": check,
            "lifetime_value": {"months": months, "monthly_discount": discount,
                "total": (total * 100.0).round() / 100.0,
                "mean": (total / customers.max(1) as f64 * 100.0).round() / 100.0},
        });
        let v = ModelVersion {
            name: r.name.clone(),
            version: 0,
            kind: ModelKind::Clv,
            trained_at: now,
            trained_by: r.trained_by,
            data: TrainingData {
                cutoff: r.calibration_end,
                horizon_days: None,
                label: None,
                rows: customers,
                positives: None,
                left_out_no_consent: stats.no_consent,
                left_out_not_yet_seen: stats.profiles.saturating_sub(stats.no_consent + stats.rows),
                sampled: stats.sampled,
            },
            features: FeatureSpec::default(),
            params: serde_json::json!({"months": months, "monthly_discount": discount}),
            metrics,
            request: Some(TrainSpec {
                max_profiles: r.max_profiles,
                months: Some(months),
                monthly_discount: Some(discount),
                ..TrainSpec::default()
            }),
            accepted: true,
            verdict: format!(
                "BG/NBD r {:.4} α {:.4} a {:.4} b {:.4}{}",
                bg.r,
                bg.alpha,
                bg.a,
                bg.b,
                if gg.is_some() {
                    "; Gamma-Gamma fitted"
                } else {
                    "; no Gamma-Gamma (no repeat purchase of value): values are 0"
                }
            ),
            scorer: Scorer::Clv {
                bg,
                gg,
                months,
                monthly_discount: discount,
                data_end: Some(end.and_time(chrono::NaiveTime::MIN).and_utc() + Duration::days(1)),
            },
        };
        let _registry = self.engine.lock_models().await;
        let v = registry::save(&self.store, v, now).await?;
        Ok(trained(&v))
    }

    /// Learns everyone's engagement by hour of the week (opens and clicks of the consenting
    /// profiles, the last 90 days) and saves a new version; `strength` is the prior's weight in
    /// events (how many of a person's own opens count as much as everyone's).
    pub async fn train_send_time(
        &self,
        name: &str,
        strength: f64,
        max_profiles: usize,
        trained_by: String,
        now: DateTime<Utc>,
    ) -> Result<Trained, ModelError> {
        registry::check_name(name)?;
        check_sizes(max_profiles, 0, 0)?;
        if !(0.5..=1_000.0).contains(&strength) {
            return Err(ModelError::Limit {
                field: "strength",
                why: "0.5 to 1,000 events".into(),
            });
        }
        let _permit = self.engine.try_train().ok_or(ModelError::Busy)?;
        self.engine.sync().await?;
        let zone = self.engine.config().default_time_zone;
        let (histograms, stats) = training::engagement(&self.store, max_profiles, 7, zone).await?;
        let events: f64 = histograms.iter().map(|h| h.iter().sum::<f64>()).sum();
        let model = missive_models::send_time::SendTime::fit(histograms.iter(), strength, zone);
        let best = model.population_best(|_| true);
        let v = ModelVersion {
            name: name.to_owned(),
            version: 0,
            kind: ModelKind::SendTime,
            trained_at: now,
            trained_by,
            data: TrainingData {
                cutoff: now,
                horizon_days: None,
                label: None,
                rows: stats.rows,
                positives: None,
                left_out_no_consent: stats.no_consent,
                left_out_not_yet_seen: stats.profiles.saturating_sub(stats.no_consent + stats.rows),
                sampled: stats.sampled,
            },
            features: FeatureSpec::default(),
            params: serde_json::json!({"strength": strength}),
            metrics: serde_json::json!({"profiles_with_engagement": stats.rows, "events": events,
                "population_best_hour_of_week": best, "population": model.population}),
            request: Some(TrainSpec {
                max_profiles,
                strength: Some(strength),
                ..TrainSpec::default()
            }),
            accepted: true,
            verdict: format!(
                "{} profiles with {events} opens and clicks; everyone's best hour of the week: {best}",
                stats.rows
            ),
            scorer: Scorer::SendTime { model },
        };
        let _registry = self.engine.lock_models().await;
        let v = registry::save(&self.store, v, now).await?;
        Ok(trained(&v))
    }

    /// The active models whose scores `features` reads; refuses a name that is not one.
    async fn feature_scorers(&self, features: &FeatureSpec) -> Result<ScoringSet, ModelError> {
        if features.scores.is_empty() {
            return Ok(ScoringSet::default());
        }
        let active = registry::scoring_set(&self.store).await?;
        let mut models = Vec::new();
        for name in &features.scores {
            // `NAME_alive` is the P(alive) a lifetime-value model NAME writes beside its value.
            let of = |m: &&scorer::ActiveModel| {
                &m.name == name
                    || (matches!(m.scorer, Scorer::Clv { .. }) && *name == format!("{}_alive", m.name))
            };
            match active.models.iter().find(of) {
                Some(m) if matches!(m.scorer, Scorer::Cluster { .. }) => {
                    return Err(ModelError::Limit {
                        field: "score_features",
                        why: format!(
                            "{name:?} is a clustering model: its cluster number is a label, not a quantity"
                        ),
                    });
                }
                Some(m) if m.features.scores.is_empty() => models.push(m.clone()),
                Some(_) => {
                    return Err(ModelError::Limit {
                        field: "score_features",
                        why: format!("{name:?} itself reads other models' scores: use a model that does not"),
                    });
                }
                None => {
                    return Err(ModelError::Limit {
                        field: "score_features",
                        why: format!("{name:?} is not an active model"),
                    });
                }
            }
        }
        Ok(ScoringSet { models })
    }

    pub async fn list(&self) -> Result<Vec<ModelEntry>, ModelError> {
        Ok(registry::list(&self.store).await?)
    }

    /// A model's entry and its versions (newest first).
    pub async fn show(&self, name: &str) -> Result<(ModelEntry, Vec<ModelVersion>), ModelError> {
        let e = registry::entry(&self.store, name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        let mut versions = Vec::new();
        for n in (1..=e.latest).rev() {
            match registry::version(&self.store, name, n).await {
                Ok(v) => versions.push(v),
                Err(RegistryError::NoVersion { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok((e, versions))
    }

    /// Activates a version (default: the latest) and scores every profile with it; answers
    /// with the entry and the profiles scored. Activating an earlier version is the rollback.
    pub async fn activate(
        &self,
        name: &str,
        version: Option<u32>,
        live: bool,
        schedule: Option<Schedule>,
        now: DateTime<Utc>,
    ) -> Result<(ModelEntry, u64), ModelError> {
        let _registry = self.engine.lock_models().await;
        let e = registry::activate(&self.store, name, version, live, schedule, now).await?;
        let scored = self.reload(Rescore::With(name.to_owned())).await?;
        Ok((e, scored))
    }

    /// Scores every profile with the model's active version (batch scoring).
    pub async fn score(&self, name: &str) -> Result<u64, ModelError> {
        let e = registry::entry(&self.store, name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        if e.active.is_none() {
            return Err(RegistryError::NotFound(format!("{name} (no active version)")).into());
        }
        let _registry = self.engine.lock_models().await;
        // Recorded first: the set handed to the pipeline then carries it, and a cluster's
        // other nodes follow it (`follow_active`), each over its own partitions. Put back if
        // the scoring fails, so that the schedule tries again.
        registry::scored(&self.store, name, Some(self.engine.clock().now())).await?;
        let scored = self.reload(Rescore::With(name.to_owned())).await;
        if scored.is_err() {
            registry::scored(&self.store, name, e.last_scored).await?;
        }
        scored
    }

    /// Trains again and scores the models whose schedule is due (the background worker calls
    /// it). A version trained on schedule is activated when validation accepts it; otherwise
    /// the active one stays, and the reason is logged. Answers with what was done.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<Vec<String>, ModelError> {
        let mut done = Vec::new();
        for e in self.list().await? {
            let Some(active) = e.active else { continue };
            let due = |every: Option<u32>, hours: i64, last: Option<DateTime<Utc>>| {
                every.is_some_and(|n| last.is_none_or(|l| now - l >= Duration::hours(hours * i64::from(n))))
            };
            if due(e.schedule.retrain_every_days, 24, e.last_trained) {
                match self.retrain(&e.name, active, now).await {
                    Ok(t) if t.accepted => {
                        self.activate(&e.name, Some(t.version), e.live, None, now).await?;
                        done.push(format!("{} retrained: version {} active", e.name, t.version));
                    }
                    Ok(t) => done.push(format!(
                        "{} retrained: version {} refused ({})",
                        e.name, t.version, t.verdict
                    )),
                    Err(err) => done.push(format!("{} not retrained: {err}", e.name)),
                }
            } else if due(e.schedule.score_every_hours, 1, e.last_scored) {
                let n = self.score(&e.name).await?;
                done.push(format!("{} scored: {n} profiles", e.name));
            }
        }
        Ok(done)
    }

    /// Trains a new version the way version `from` was asked for, with the cutoff moved to now.
    async fn retrain(&self, name: &str, from: u32, now: DateTime<Utc>) -> Result<Trained, ModelError> {
        let v = registry::version(&self.store, name, from).await?;
        let Some(spec) = v.request else {
            return Err(ModelError::Join(format!(
                "version {from} does not say how it was trained"
            )));
        };
        let features = FeatureSpec {
            events: spec.events.clone(),
            scores: spec.score_features.clone(),
            ..FeatureSpec::default()
        };
        match v.kind {
            ModelKind::Propensity => {
                let horizon = Duration::days(spec.horizon_days.unwrap_or(30));
                let schema = crate::segments::Segments::new(self.store.clone())
                    .schema()
                    .await?;
                let req = PropensityRequest {
                    name: name.to_owned(),
                    label: spec.label.unwrap_or_default(),
                    cutoff: now - horizon,
                    horizon,
                    features,
                    traits: spec.traits,
                    options: TrainOptions {
                        algorithm: spec.algorithm.unwrap_or(classify::Algorithm::GradientBoosting),
                        params: spec.params,
                        folds: spec.folds,
                        ..TrainOptions::default()
                    },
                    max_profiles: spec.max_profiles,
                    trained_by: "schedule".into(),
                };
                self.train_propensity(req, &schema, now).await
            }
            ModelKind::SendTime => {
                let strength = spec.strength.unwrap_or(8.0);
                self.train_send_time(name, strength, spec.max_profiles, "schedule".into(), now)
                    .await
            }
            ModelKind::Clv => {
                let req = ClvRequest {
                    name: name.to_owned(),
                    calibration_end: now,
                    months: spec.months.unwrap_or(12),
                    monthly_discount: spec.monthly_discount.unwrap_or(0.01),
                    max_profiles: spec.max_profiles,
                    trained_by: "schedule".into(),
                };
                self.train_clv(req, now).await
            }
            ModelKind::Cluster => {
                let req = ClusterRequest {
                    name: name.to_owned(),
                    cutoff: now,
                    k: spec.k,
                    max_k: spec.max_k.max(2),
                    features,
                    traits: spec.traits,
                    max_profiles: spec.max_profiles,
                    seed: 7,
                    trained_by: "schedule".into(),
                };
                self.train_cluster(req, now).await
            }
        }
    }

    /// Stops scoring with the model and removes its scores from every profile.
    pub async fn deactivate(&self, name: &str, now: DateTime<Utc>) -> Result<ModelEntry, ModelError> {
        let _registry = self.engine.lock_models().await;
        let e = registry::deactivate(&self.store, name, now).await?;
        self.reload(Rescore::Remove(name.to_owned())).await?;
        Ok(e)
    }

    /// Deletes the model's versions and removes its scores from every profile.
    pub async fn delete(&self, name: &str) -> Result<(), ModelError> {
        let _registry = self.engine.lock_models().await;
        registry::delete(&self.store, name).await?;
        self.reload(Rescore::Remove(name.to_owned())).await?;
        Ok(())
    }

    /// Hands the active versions to the pipeline, and scores (or clears) every profile.
    async fn reload(&self, rescore: Rescore) -> Result<u64, ModelError> {
        let set = registry::scoring_set(&self.store).await?;
        let definitions = set.definitions();
        let scored = self.engine.use_models(set, Some(rescore), None).await?;
        *self.engine.applied_models() = definitions;
        Ok(scored)
    }
}

/// Cluster mode: makes this node score with the active models in the store when they differ
/// from those it uses (a model activated, scored in batch, deactivated or deleted through
/// another node's API). Each change is scored over (or removed from) the profiles of the
/// partitions this node owns, as the node it was made through did over its own; a partition
/// that changes hands meanwhile is finished by its next owner. Answers the models taken on.
pub async fn follow_active(engine: &crate::Engine) -> Result<Vec<String>, ModelError> {
    let _registry = engine.lock_models().await;
    // The registry's entries first (small documents): the models themselves are read only
    // when something changed.
    let wanted: std::collections::BTreeMap<String, String> = registry::list(engine.store())
        .await?
        .into_iter()
        .filter_map(|e| Some((e.name.clone(), e.definition()?)))
        .collect();
    if *engine.applied_models() == wanted {
        return Ok(Vec::new());
    }
    let set = registry::scoring_set(engine.store()).await?;
    let wanted = set.definitions();
    let changes: Vec<Rescore> = {
        let applied = engine.applied_models();
        // In the set's order: models whose scores others read are scored first.
        let mut changes: Vec<Rescore> = set
            .models
            .iter()
            .filter(|m| applied.get(&m.name) != Some(&m.definition()))
            .map(|m| Rescore::With(m.name.clone()))
            .collect();
        changes.extend(
            applied
                .keys()
                .filter(|name| !wanted.contains_key(*name))
                .map(|name| Rescore::Remove(name.clone())),
        );
        changes
    };
    let mut names = Vec::new();
    for change in changes {
        let scored = engine.use_models(set.clone(), Some(change.clone()), None).await?;
        let (Rescore::With(name) | Rescore::Remove(name)) = change;
        tracing::info!(model = %name, profiles = scored, "cluster: a model changed through another node, taken on over this node's partitions");
        names.push(name);
    }
    *engine.applied_models() = wanted;
    Ok(names)
}
