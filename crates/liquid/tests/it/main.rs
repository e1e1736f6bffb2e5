//! Integration tests for missive-liquid: the golden-liquid conformance suite, e-mail filters,
//! escaping, undefined variables, sandbox limits, `block`, `variables()` and parser fuzzing.

mod features;
mod fidelity;
mod fuzz;
mod golden;
mod support;
