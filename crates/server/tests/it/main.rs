//! Integration tests of the HTTP surface: the real router on a real port, a real SQLite store
//! per test, a manual clock.

mod content;
mod delivery;
mod ingest;
mod profiles;
mod segments;
mod sending;
mod support;
