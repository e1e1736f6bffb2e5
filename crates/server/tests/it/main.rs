//! Integration tests of the HTTP surface: the real router on a real port, a real SQLite store
//! per test, a manual clock. With `MISSIVE_TEST_APP=cluster` the same tests run against a
//! cluster node instead (`cluster_mode`; CI runs them both ways).

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audiences;
mod browser;
mod cluster_mode;
mod console;
mod console_audit;
mod console_browser;
mod console_journeys;
mod console_privacy;
mod content;
mod delivery;
mod experiments;
mod hardening;
mod ingest;
mod models;
mod openapi;
mod preferences;
mod privacy;
mod profiles;
mod recommendations;
mod schema;
mod security;
mod segments;
mod sending;
mod sources;
mod support;
mod webhooks;
