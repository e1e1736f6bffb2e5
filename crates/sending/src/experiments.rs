//! Experiments as documents (kind `experiment`): create, replace a draft, list, read, delete a
//! draft, and move through their status (missive_experiment::definition holds the rules).

use chrono::{DateTime, Utc};
use missive_experiment::definition::{self, DefinitionError, Experiment, ExperimentIn};
use missive_store::{DocumentKind, DocumentRecord, Store, StoreError};

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

    /// Creates a draft; refused when the name is taken.
    pub async fn create(&self, def: ExperimentIn, now: DateTime<Utc>) -> Result<Experiment, ExperimentError> {
        let _one_at_a_time = self.changes.lock().await;
        let e = definition::create(def, now)?;
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
        e.created_at = created_at;
        self.save(&e, now).await?;
        Ok(e)
    }

    pub async fn list(&self) -> Result<Vec<Experiment>, ExperimentError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .documents()
                .list_documents(DocumentKind::Experiment, after.clone(), 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for doc in page {
                out.push(
                    serde_json::from_value(doc.body)
                        .map_err(|e| ExperimentError::Corrupt(doc.name.clone(), e.to_string()))?,
                );
            }
        }
        Ok(out)
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
}
