//! Engine integration tests: bulk import against a real SQLite store.

mod import;
