//! [`Store`]: one workspace's durable state, reached by area. Each area is a trait of its own
//! ([`EventStore`], [`DocumentStore`], [`DeliveryStore`], [`AccessStore`], [`DataKeyStore`],
//! [`WebhookStore`]); a backend implements all six, and a wrapper (the encrypting store, a test's failing store)
//! replaces only the areas it cares about.

use std::sync::Arc;

use crate::{
    AccessStore, DataKeyStore, DeliveryStore, DocumentStore, EventStore, PostgresStore, SqliteStore,
    StoreError, WebhookStore,
};

/// A backend: every area, and its name.
pub trait Backend:
    EventStore + DocumentStore + DeliveryStore + AccessStore + DataKeyStore + WebhookStore
{
    /// `sqlite` or `postgres`, for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Durable state of one missive workspace, by area. Cheap to clone: one reference count.
#[derive(Clone)]
pub struct Store(Arc<Areas>);

#[derive(Clone)]
struct Areas {
    backend: &'static str,
    events: Arc<dyn EventStore>,
    documents: Arc<dyn DocumentStore>,
    delivery: Arc<dyn DeliveryStore>,
    access: Arc<dyn AccessStore>,
    data_keys: Arc<dyn DataKeyStore>,
    webhooks: Arc<dyn WebhookStore>,
}

impl Store {
    /// Every area served by one backend.
    pub fn new<B: Backend>(backend: B) -> Store {
        let b = Arc::new(backend);
        Store(Arc::new(Areas {
            backend: b.name(),
            events: b.clone(),
            documents: b.clone(),
            delivery: b.clone(),
            access: b.clone(),
            data_keys: b.clone(),
            webhooks: b,
        }))
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        self.0.backend
    }

    /// The event log and the profiles folded from it.
    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.0.events
    }

    /// Documents, saved segments and metadata.
    pub fn documents(&self) -> &Arc<dyn DocumentStore> {
        &self.0.documents
    }

    /// Journeys' progress, the outbox, suppressions and bounces.
    pub fn delivery(&self) -> &Arc<dyn DeliveryStore> {
        &self.0.delivery
    }

    /// The workspace, keys and audit log.
    pub fn access(&self) -> &Arc<dyn AccessStore> {
        &self.0.access
    }

    /// Wrapped per-profile data keys.
    pub fn data_keys(&self) -> &Arc<dyn DataKeyStore> {
        &self.0.data_keys
    }

    /// Outbound webhooks' queue, positions, attempts and dead letters.
    pub fn webhooks(&self) -> &Arc<dyn WebhookStore> {
        &self.0.webhooks
    }

    /// The same store with its event area replaced (a wrapper around [`Store::events`]).
    pub fn with_events(self, events: Arc<dyn EventStore>) -> Store {
        let mut areas = (*self.0).clone();
        areas.events = events;
        Store(Arc::new(areas))
    }

    /// The same store with its delivery area replaced.
    pub fn with_delivery(self, delivery: Arc<dyn DeliveryStore>) -> Store {
        let mut areas = (*self.0).clone();
        areas.delivery = delivery;
        Store(Arc::new(areas))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.0.backend)
            .finish_non_exhaustive()
    }
}

/// Opens the store a URL names: `sqlite:PATH` / a plain path, or `postgres://…`.
/// [`open`] for a node of a cluster: PostgreSQL only, shared with the other nodes
/// ([`PostgresStore::connect_cluster`]).
pub async fn open_cluster(url: &str) -> Result<Store, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Store::new(PostgresStore::connect_cluster(url, None).await?))
    } else {
        Err(crate::events::cluster_unsupported())
    }
}

pub async fn open(url: &str) -> Result<Store, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Store::new(PostgresStore::connect(url, None).await?))
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Ok(Store::new(SqliteStore::open(path).await?))
    }
}
