//! Engine integration tests against a real SQLite store.

mod failures;
mod import;
mod journeys;
