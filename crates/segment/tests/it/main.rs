//! Segment integration tests: compiled segments against profiles folded from real events.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evaluate;
mod incremental;
