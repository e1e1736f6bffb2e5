//! Engine integration tests against a real SQLite store.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod backfill;
mod cache;
mod failures;
mod import;
mod models;
mod schema;
