//! Experiments as documents (kind `experiment`): create, replace a draft, list, read, delete a
//! draft, and move through their status (missive_experiment::definition holds the rules); and
//! their results, from the events missive recorded since the start (the exposures, the opens,
//! clicks, unsubscribes and complaints of the experiment's messages, and orders), folded and
//! analysed by the pure `missive_experiment::{outcomes, results}`.

use chrono::{DateTime, Utc};
use missive_experiment::chart;
use missive_experiment::definition::{self, DefinitionError, Experiment, ExperimentIn};
use missive_experiment::outcomes::{self, Action, Engagement, Exposure, Order, Units};
use missive_experiment::results::{self, Results};
use missive_store::{DocumentKind, DocumentRecord, Store, StoreError};

use crate::bounces::COMPLAINT_EVENT;
use crate::exposure::EXPERIMENT_VIEWED;

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("no experiment is named {0:?}")]
    NotFound(String),
    #[error("an experiment named {0:?} exists already: pick another name, or replace the draft")]
    Exists(String),
    #[error("the name in the path ({path:?}) and in the body ({body:?}) differ")]
    NameMismatch { path: String, body: String },
    #[error("stored experiment {0:?} is unreadable: {1}")]
    Corrupt(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Start,
    Stop,
    Conclude { winner: Option<String> },
}

/// Changes read an experiment and write it back: one at a time in this process, so that a
/// start racing a replace, a delete or a conclusion cannot undo the other. (Only one process
/// writes a store today; several nodes will need a version check in the store.)
#[derive(Clone)]
pub struct Experiments {
    store: Store,
    changes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Experiments {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            changes: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The experiments of an engine's store.
    pub fn for_engine(engine: &missive_engine::Engine) -> Self {
        Self::new(engine.store().clone())
    }

    async fn load(&self, name: &str) -> Result<Option<Experiment>, ExperimentError> {
        let Some(doc) = self
            .store
            .documents()
            .get_document(DocumentKind::Experiment, name)
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_value(doc.body)
            .map(Some)
            .map_err(|e| ExperimentError::Corrupt(name.to_owned(), e.to_string()))
    }

    async fn save(&self, e: &Experiment, now: DateTime<Utc>) -> Result<(), ExperimentError> {
        let body = serde_json::to_value(e)
            .map_err(|err| ExperimentError::Corrupt(e.definition.name.clone(), err.to_string()))?;
        self.store
            .documents()
            .put_documents(vec![DocumentRecord {
                kind: DocumentKind::Experiment,
                name: e.definition.name.clone(),
                version: 0,
                body,
                updated_at: now,
            }])
            .await?;
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<Experiment, ExperimentError> {
        self.load(name)
            .await?
            .ok_or_else(|| ExperimentError::NotFound(name.to_owned()))
    }

    /// What a definition names must exist and parse: each variant's template, and each
    /// subject line as Liquid.
    async fn check_references(&self, e: &Experiment) -> Result<(), ExperimentError> {
        for (i, v) in e.definition.variants.iter().enumerate() {
            if let Some(subject) = &v.subject {
                missive_content::template::Subject::parse(subject).map_err(|err| {
                    ExperimentError::Definition(DefinitionError::Invalid {
                        field: format!("variants[{i}].subject"),
                        why: err.to_string(),
                    })
                })?;
            }
            if let Some(t) = &v.template
                && self
                    .store
                    .documents()
                    .get_document(DocumentKind::Template, t)
                    .await?
                    .is_none()
            {
                return Err(ExperimentError::Definition(DefinitionError::Invalid {
                    field: format!("variants[{i}].template"),
                    why: format!("template {t:?} does not exist: create it first"),
                }));
            }
        }
        Ok(())
    }

    /// Creates a draft; refused when the name is taken.
    pub async fn create(&self, def: ExperimentIn, now: DateTime<Utc>) -> Result<Experiment, ExperimentError> {
        let _one_at_a_time = self.changes.lock().await;
        let e = definition::create(def, now)?;
        self.check_references(&e).await?;
        if self.load(&e.definition.name).await?.is_some() {
            return Err(ExperimentError::Exists(e.definition.name));
        }
        self.save(&e, now).await?;
        Ok(e)
    }

    /// Replaces a draft's definition (or creates it).
    pub async fn replace(
        &self,
        name: &str,
        def: ExperimentIn,
        now: DateTime<Utc>,
    ) -> Result<Experiment, ExperimentError> {
        let _one_at_a_time = self.changes.lock().await;
        if def.name != name {
            return Err(ExperimentError::NameMismatch {
                path: name.to_owned(),
                body: def.name,
            });
        }
        let created_at = match self.load(name).await? {
            Some(old) => {
                old.editable()?;
                old.created_at
            }
            None => now,
        };
        let mut e = definition::create(def, now)?;
        self.check_references(&e).await?;
        e.created_at = created_at;
        self.save(&e, now).await?;
        Ok(e)
    }

    pub async fn list(&self) -> Result<Vec<Experiment>, ExperimentError> {
        missive_store::all_documents(self.store.documents().as_ref(), DocumentKind::Experiment)
            .await?
            .into_iter()
            .map(|doc| {
                serde_json::from_value(doc.body)
                    .map_err(|e| ExperimentError::Corrupt(doc.name, e.to_string()))
            })
            .collect()
    }

    /// Deletes a draft.
    pub async fn delete(&self, name: &str) -> Result<(), ExperimentError> {
        let _one_at_a_time = self.changes.lock().await;
        self.get(name).await?.editable()?;
        self.store
            .documents()
            .delete_document(DocumentKind::Experiment, name)
            .await?;
        Ok(())
    }

    pub async fn transition(
        &self,
        name: &str,
        t: Transition,
        now: DateTime<Utc>,
    ) -> Result<Experiment, ExperimentError> {
        let _one_at_a_time = self.changes.lock().await;
        let mut e = self.get(name).await?;
        match t {
            Transition::Start => e.start(now)?,
            Transition::Stop => e.stop(now)?,
            Transition::Conclude { winner } => e.conclude(winner, now)?,
        }
        self.save(&e, now).await?;
        Ok(e)
    }

    /// Each person's outcome in experiment `e`, from the events recorded since it started.
    pub async fn units(&self, e: &Experiment) -> Result<Units, ExperimentError> {
        self.units_from(e, None).await
    }

    /// [`Self::units`], counting only exposures from `source` (`broadcast:ID`) when given.
    /// Exposures, opens, clicks, unsubscribes and complaints count only as missive recorded
    /// them (a client key cannot forge them); a message counts as delivered when the relay
    /// accepted it.
    pub async fn units_from(&self, e: &Experiment, source: Option<&str>) -> Result<Units, ExperimentError> {
        let Some(since) = e.started_at else {
            return Ok(Units::default());
        };
        let name = e.definition.name.as_str();
        let names = [
            EXPERIMENT_VIEWED,
            "Email Opened",
            "Email Link Clicked",
            "Unsubscribed",
            COMPLAINT_EVENT,
            "Order Completed",
        ]
        .map(String::from)
        .to_vec();
        let (mut exposures, mut engagements, mut orders) = (Vec::new(), Vec::new(), Vec::new());
        let mut after = 0;
        loop {
            let page = self
                .store
                .events()
                .track_events_since(names.clone(), since, after, 5_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for ev in page {
                let props = &ev.body["properties"];
                let own = missive_core::Trust::recorded(ev.body.get(missive_core::Trust::FIELD))
                    == missive_core::Trust::Missive;
                let message = props["message_id"].as_str().map(str::to_owned);
                let engaged = |action| {
                    message.clone().filter(|_| own).map(|message_id| Engagement {
                        profile: ev.profile_id.to_string(),
                        message_id,
                        action,
                        at: ev.timestamp,
                    })
                };
                match ev.name.as_str() {
                    EXPERIMENT_VIEWED
                        if own
                            && props["experiment_name"].as_str() == Some(name)
                            && source.is_none_or(|s| props["source"].as_str() == Some(s)) =>
                    {
                        if let (Some(variant), Some(message_id)) = (props["variation_name"].as_str(), message)
                        {
                            exposures.push(Exposure {
                                profile: ev.profile_id.to_string(),
                                variant: variant.to_owned(),
                                message_id,
                                // Filled in from the outbox below.
                                sent: false,
                                at: ev.timestamp,
                            });
                        }
                    }
                    EXPERIMENT_VIEWED => {}
                    "Email Opened" => engagements.extend(engaged(Action::Opened)),
                    "Email Link Clicked" => engagements.extend(engaged(Action::Clicked)),
                    "Unsubscribed" => engagements.extend(engaged(Action::Unsubscribed)),
                    COMPLAINT_EVENT => engagements.extend(engaged(Action::Complained)),
                    _ => orders.push(Order {
                        profile: ev.profile_id.to_string(),
                        at: ev.timestamp,
                        revenue: missive_core::profile::order_revenue(
                            props.as_object().unwrap_or(&serde_json::Map::new()),
                        )
                        .as_major(),
                    }),
                }
            }
        }
        let sent = self
            .store
            .delivery()
            .sent_among(exposures.iter().map(|x| x.message_id.clone()).collect())
            .await?;
        for x in &mut exposures {
            x.sent = sent.contains(&x.message_id);
        }
        Ok(outcomes::units(
            &exposures,
            &engagements,
            &orders,
            e.attribution(),
            chrono::TimeDelta::hours(i64::from(e.definition.conversion_window_hours)),
        ))
    }

    /// The results of experiment `name` now.
    pub async fn results(&self, name: &str) -> Result<Results, ExperimentError> {
        let e = self.get(name).await?;
        let units = self.units(&e).await?;
        Ok(results::results(&e, &units))
    }

    /// The cumulative-lift chart of `variant` (default: the first variant that is not control)
    /// against control, as SVG.
    pub async fn chart(&self, name: &str, variant: Option<&str>) -> Result<String, ExperimentError> {
        let e = self.get(name).await?;
        let variant = match variant {
            Some(v) if e.variant(v).is_some() && v != e.control => v.to_owned(),
            Some(v) => {
                return Err(ExperimentError::Definition(DefinitionError::Invalid {
                    field: "variant".into(),
                    why: format!("{v:?} is not a variant other than control ({})", e.control),
                }));
            }
            None => e
                .definition
                .variants
                .iter()
                .find(|v| v.name != e.control)
                .map(|v| v.name.clone())
                .unwrap_or_default(),
        };
        let units = self.units(&e).await?;
        let metric = e.definition.primary_metric;
        let days = outcomes::daily(&units, metric, &e.control, &variant);
        let alpha = e.definition.plan.map_or(results::DEFAULT_ALPHA, |p| p.alpha);
        let points = chart::cumulative_lift(&days, alpha);
        let what = match metric {
            missive_experiment::definition::Metric::Open => "open rate",
            missive_experiment::definition::Metric::Click => "click rate",
            _ => "conversion rate",
        };
        Ok(chart::svg(
            &points,
            &format!(
                "{}: {variant} against {} ({what}, cumulative lift)",
                e.definition.name, e.control
            ),
        ))
    }

    /// What marketing adds in total: people with an e-mail address, in the global holdout of
    /// `percent` (who receive no marketing) against the rest, by whether they ordered since
    /// `since` and what they spent.
    pub async fn global_holdout(
        &self,
        percent: f64,
        since: DateTime<Utc>,
    ) -> Result<HoldoutResults, ExperimentError> {
        let mut out = HoldoutResults {
            percent,
            since,
            marketed: 0,
            held: 0,
            conversion: None,
            revenue: None,
            verdict: String::new(),
        };
        if percent <= 0.0 {
            out.verdict = "No global holdout is set (delivery.global_holdout_percent is 0): set one, and compare after some weeks.".into();
            return Ok(out);
        }
        let mut spent: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .events()
                .track_events_since(vec!["Order Completed".into()], since, after, 5_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for ev in page {
                let revenue = missive_core::profile::order_revenue(
                    ev.body["properties"]
                        .as_object()
                        .unwrap_or(&serde_json::Map::new()),
                )
                .as_major();
                *spent.entry(ev.profile_id.to_string()).or_default() += revenue;
            }
        }
        let (mut converted, mut revenue) = (Vec::new(), Vec::new());
        let mut cursor = None;
        loop {
            let page = self.store.events().profiles_after(cursor.clone(), 1_000).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id.clone());
            for p in page
                .iter()
                // Everyone with an address, whatever their consent now: people who withdrew it
                // because of the marketing stay in (consent read now would keep in the marketed
                // group only those who tolerated it, and flatter marketing).
                .filter(|p| p.merged_into.is_none() && p.email().is_some())
            {
                let held = missive_experiment::assign::in_global_holdout(p.id.as_str(), percent);
                let group = if held { "holdout" } else { "marketed" };
                out.held += u64::from(held);
                out.marketed += u64::from(!held);
                let amount = spent.get(p.id.as_str()).copied();
                converted.push((group.to_owned(), f64::from(u8::from(amount.is_some()))));
                revenue.push((group.to_owned(), amount.unwrap_or(0.0)));
            }
        }
        let planned: std::collections::BTreeMap<String, f64> = [
            ("holdout".to_owned(), percent),
            ("marketed".to_owned(), 100.0 - percent),
        ]
        .into();
        let analyse = |units: &[(String, f64)], kind| {
            missive_experiment::analysis::analyze_as(
                units,
                Some(kind),
                Some("holdout"),
                results::DEFAULT_ALPHA,
                Some(&planned),
            )
        };
        use missive_experiment::analysis::MetricKind;
        match analyse(&converted, MetricKind::Rate) {
            Ok(r) => {
                out.verdict = match r.sample_ratio.as_ref().is_some_and(|s| s.mismatch) {
                    true => r.verdict.clone(),
                    false => r
                        .comparisons
                        .first()
                        .map(|c| c.verdict.clone())
                        .unwrap_or_default(),
                };
                out.conversion = Some(r);
            }
            Err(e) => out.verdict = format!("Not enough data: {e}."),
        }
        out.revenue = analyse(&revenue, MetricKind::Mean).ok();
        Ok(out)
    }
}

/// Marketed people against the global holdout (docs/experiments.md).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct HoldoutResults {
    pub percent: f64,
    pub since: DateTime<Utc>,
    /// People with an e-mail address, outside and inside the holdout.
    pub marketed: u64,
    pub held: u64,
    /// Whether they ordered since `since` (`marketed` against `holdout`).
    pub conversion: Option<missive_experiment::analysis::Report>,
    /// What they spent since `since`, per person.
    pub revenue: Option<missive_experiment::analysis::Report>,
    pub verdict: String,
}
