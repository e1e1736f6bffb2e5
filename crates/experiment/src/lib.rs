//! Experiments of missive. This crate is pure: it does no I/O and reads no clock.
//!
//! [`stats`] holds the statistics the results are made of: tests and intervals for
//! proportions (open rate, click-through, conversion) and means (revenue per recipient),
//! corrections for A/B/n, the sample-ratio-mismatch check and the Bayesian chance to beat
//! control. Each function takes counts or samples and answers a typed result, or a
//! [`stats::StatsError`] that says why there is not enough data: never a NaN.
//!
//! Every figure is checked in CI against scipy and statsmodels on the same data
//! (`tests/it/reference.rs`).

pub mod analysis;
pub mod assign;
pub mod bandit;
pub mod chart;
pub mod definition;
pub mod outcomes;
pub mod results;
pub mod stats;
