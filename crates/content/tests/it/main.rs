//! Rendering real e-mails end to end: the example cart-abandonment template (MJML, two block
//! slots, cart items, recommendations) for different recipients, escaping, fallbacks, the
//! sandbox and lint.

mod support;

mod emails;
mod lint;
mod sandbox;
