//! Rendering real e-mails end to end: the example cart-abandonment template (MJML, two block
//! slots, cart items, recommendations) for different recipients, escaping, fallbacks, the
//! sandbox and lint.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod emails;
mod lint;
mod sandbox;
