//! The real-time pipeline of missive, from validated events to durable profiles:
//! deduplication by message id, identity resolution and merges, folding into profiles, version
//! diffs, segment membership and group commit to the store. It also holds the services the
//! HTTP layer and the CLI call about people: profile lookups, segments, privacy rights,
//! workspace bootstrap and API-key checks, bulk import.
//!
//! It does not parse HTTP or validate Segment messages (the core and the server do), does no
//! SQL (the store does), and sends nothing: journeys, broadcasts, the policy, the sender and
//! the content service are the sending side (`missive-sending`), which builds on this crate.

pub mod activity;
pub mod audiences;
pub mod audit;
pub mod auth;
pub mod background;
mod bloom;
pub mod consent_summary;
pub mod import;
pub mod log;
pub mod models;
mod pipeline;
pub mod privacy;
pub mod profiles;
pub mod recs;
pub mod schema;
pub mod segments;

pub use log::EventLog;
pub use pipeline::{Engine, EngineConfig, EngineError, IngestOutcome, LogPosition, logged_event};
