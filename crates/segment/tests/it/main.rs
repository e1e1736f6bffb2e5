//! Segment integration tests: compiled segments against profiles folded from real events.

mod evaluate;
mod incremental;
