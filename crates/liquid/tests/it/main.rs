//! Integration tests for missive-liquid: the golden-liquid conformance suite, e-mail filters,
//! escaping, undefined variables, sandbox limits, `block`, `variables()` and parser fuzzing.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod features;
mod fidelity;
mod fuzz;
mod golden;
mod support;
