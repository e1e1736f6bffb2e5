//! Where accepted events go in cluster mode: the cluster's log (NATS JetStream, in
//! `missive-cluster`) instead of this process's pipeline. [`crate::Engine::ingest`] hands them
//! to the log once one is set ([`crate::Engine::set_log`]) and answers once the log has them
//! durably; the partition owners read them back and fold them ([`crate::Engine::ingest_logged`]).

use std::future::Future;
use std::pin::Pin;

use missive_core::Event;

use crate::IngestOutcome;

/// What an append answers: what the log took, or why it could not (the caller answers 503).
pub type AppendResult = Result<IngestOutcome, String>;

/// A durable, partitioned log of accepted events.
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` and answers once the log has acknowledged every one of them.
    fn append(&self, events: Vec<Event>) -> Pin<Box<dyn Future<Output = AppendResult> + Send + '_>>;
}
