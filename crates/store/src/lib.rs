//! Storage of missive: one workspace's durable state ([`Store`]), reached by area, with two
//! backends, SQLite (the embedded default: a few files in WAL mode) and PostgreSQL, each in a
//! folder with a file per area and its migrations as `.sql` files, plus the conformance suite
//! that both must pass (`conformance`, a feature compiled for tests only).
//!
//! | area | trait | holds | personal data |
//! |---|---|---|---|
//! | events | [`EventStore`] | event log, identities, profiles, versions, merges, segment memberships | yes: encrypted at rest |
//! | documents | [`DocumentStore`] | templates, blocks, journeys, broadcasts, products, saved segments, metadata | no |
//! | delivery | [`DeliveryStore`] | journey instances, outbox, suppressions, soft bounces | yes: encrypted at rest |
//! | access | [`AccessStore`] | workspace, API keys, audit log | no |
//! | data keys | [`DataKeyStore`] | wrapped per-profile data keys | keys, not data |
//! | webhooks | [`WebhookStore`] | outbound webhooks' queue, positions, attempts, dead letters | no: ids and names only |
//!
//! The store owns durability and nothing else: it does not fold events or resolve identities
//! (the engine does), and it never decides what a profile means. One engine process writes a
//! store at a time; the backends' constructors take a writer lock to guarantee it.

#[macro_use]
mod migrations;

mod access;
#[cfg(feature = "conformance")]
pub mod conformance;
mod data_keys;
mod delivery;
mod documents;
mod encrypted;
mod error;
mod events;
pub mod postgres;
pub mod sqlite;
mod store;
mod types;
mod webhooks;

pub use access::AccessStore;
pub use data_keys::DataKeyStore;
pub use delivery::DeliveryStore;
pub use documents::{DocumentStore, all_documents};
pub use encrypted::{EncryptedStore, KeyMismatch, LOG_KEY_CONTEXT, LOG_KEY_META, log_key};
pub use error::StoreError;
pub use events::EventStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::{Backend, Store, open, open_cluster};
pub use types::*;
pub use webhooks::{WebhookStore, journey_completed, message_sent, profile_erased};
