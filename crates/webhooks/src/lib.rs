//! Outbound webhooks of missive. This crate is pure: [`ssrf`] refuses internal addresses, and
//! [`signature`] signs and verifies requests
//! as the Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; HMAC-SHA256 over `id.timestamp.body`; `v1,` signatures; `whsec_`
//! secrets; several signatures while a secret is rotated). Checked against the
//! `standardwebhooks` Python package in CI (`tests/it.rs`).

pub mod signature;
pub mod ssrf;
