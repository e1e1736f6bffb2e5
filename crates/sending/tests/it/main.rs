//! Sending-side integration tests (journeys, bounces) against a real SQLite store.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod experiments;
mod journeys;
mod rounds;
