//! The real-time pipeline of missive, for now from validated events to durable profiles:
//! deduplication by message id, identity resolution and merges, folding into profiles, version
//! diffs, and group commit to the store. It also holds the services the HTTP layer and the
//! CLI call: profile lookups, workspace bootstrap and API-key checks, bulk import.
//!
//! It does not parse HTTP or validate Segment messages (the core and the server do), and it
//! does no SQL (the store does).

pub mod auth;
pub mod background;
mod bloom;
pub mod bounces;
pub mod broadcasts;
pub mod content;
pub mod import;
pub mod journeys;
mod pipeline;
pub mod policy;
pub mod privacy;
pub mod profiles;
pub mod segments;
pub mod sender;

pub use pipeline::{Engine, EngineConfig, EngineError, IngestOutcome};
