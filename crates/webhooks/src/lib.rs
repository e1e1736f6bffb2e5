//! Outbound webhooks of missive. This crate is pure: [`endpoint`] is what an endpoint is and
//! what it wants, [`event_type`] the kinds of change, [`payload`] the JSON it is sent,
//! [`retry`] the backoff and circuit breaker, [`ssrf`] refuses internal addresses, and
//! [`signature`] signs and verifies requests
//! as the Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; HMAC-SHA256 over `id.timestamp.body`; `v1,` signatures; `whsec_`
//! secrets; several signatures while a secret is rotated). Checked against the
//! `standardwebhooks` Python package in CI (`tests/it.rs`). The delivery itself (queue,
//! HTTP) is in `missive_sending::webhooks`.

pub mod endpoint;
pub mod event_type;
pub mod payload;
pub mod retry;
pub mod signature;
pub mod ssrf;

pub use endpoint::{Endpoint, EndpointError, EndpointIn};
pub use event_type::EventType;
