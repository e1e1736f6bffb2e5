//! The experiment crate's statistics against scipy and statsmodels.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod reference;
mod rng;
mod sequential;
