//! The sending side of missive, above the profile pipeline ([`missive_engine`]): what is sent,
//! to whom, when, and what it says.
//!
//! - [`journeys`]: the runner of event- and segment-triggered journeys (their definition
//!   language is the pure crate `missive-journey`);
//! - [`broadcasts`]: one message to every member of a segment, queued in pages;
//! - [`policy`]: the send-time policy, a pure decision over facts loaded by the sender;
//! - [`sender`]: takes due messages from the outbox, applies the policy, composes, signs and
//!   hands them over (SMTP or a maildir);
//! - [`bounces`]: delivery reports turned into suppressions;
//! - [`content`]: templates, blocks, the catalogue and the one place a message is composed;
//! - [`messages`]: what became of each message and why, per journey, broadcast or profile;
//! - [`setup`]: what in the sending settings makes mail unbranded or unverifiable;
//! - [`test_send`]: a marketer's test send to their own address;
//! - [`tracking`]: clicks, opens, unsubscribes and a message's outcome;
//! - [`experiments`]: experiments as documents and their results; [`exposure`]: the variant a
//!   message gets at send time and the exposure it records.
//!
//! It reads profiles and segments through the engine and writes only the delivery and
//! document areas of the store.

pub mod bounces;
pub mod broadcasts;
pub mod content;
pub mod experiments;
pub mod exposure;
pub mod failures;
pub mod journeys;
pub mod messages;
mod own_events;
pub mod policy;
mod relay_answers;
mod rounds;
pub mod sender;
pub mod setup;
pub mod test_send;
pub mod tracking;
pub mod webhooks;
