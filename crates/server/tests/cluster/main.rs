//! The API suite of `tests/it` run against a cluster node: the same test files, with the test
//! app started as a node of a cluster of its own (a PostgreSQL schema, a JetStream stream,
//! one node owning every partition; `it/cluster_mode.rs`). Ingest goes through JetStream and
//! the partition owners, reads come from the shared store, and each test's assertions are
//! the embedded mode's. Without `MISSIVE_TEST_POSTGRES_URL` and `MISSIVE_TEST_NATS_URL` the
//! tests run in the embedded mode and say so; CI sets both.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The test app joins a cluster.
pub const CLUSTER: bool = true;

#[path = "../it/audiences.rs"]
mod audiences;
#[path = "../it/browser.rs"]
mod browser;
#[path = "../it/cluster_mode.rs"]
mod cluster_mode;
#[path = "../it/console.rs"]
mod console;
#[path = "../it/console_audit.rs"]
mod console_audit;
#[path = "../it/console_browser.rs"]
mod console_browser;
#[path = "../it/console_journeys.rs"]
mod console_journeys;
#[path = "../it/console_privacy.rs"]
mod console_privacy;
#[path = "../it/content.rs"]
mod content;
#[path = "../it/delivery.rs"]
mod delivery;
#[path = "../it/experiments.rs"]
mod experiments;
#[path = "../it/hardening.rs"]
mod hardening;
#[path = "../it/ingest.rs"]
mod ingest;
#[path = "../it/models.rs"]
mod models;
#[path = "../it/openapi.rs"]
mod openapi;
#[path = "../it/preferences.rs"]
mod preferences;
#[path = "../it/privacy.rs"]
mod privacy;
#[path = "../it/profiles.rs"]
mod profiles;
#[path = "../it/recommendations.rs"]
mod recommendations;
#[path = "../it/schema.rs"]
mod schema;
#[path = "../it/security.rs"]
mod security;
#[path = "../it/segments.rs"]
mod segments;
#[path = "../it/sending.rs"]
mod sending;
#[path = "../it/sources.rs"]
mod sources;
#[path = "../it/support.rs"]
mod support;
#[path = "../it/webhooks.rs"]
mod webhooks;
