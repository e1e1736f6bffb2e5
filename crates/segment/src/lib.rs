//! The segment language of missive: micro-segments such as
//! `traits.city == "New York" and orders.count >= 2 and count(event "Product Viewed" within 7d) >= 1`.
//!
//! This crate parses a segment ([`parse`]), type-checks it against the workspace's schema of
//! traits, events and event properties ([`Schema`]: unknown names are refused with the
//! nearest known ones as a hint) and compiles it once ([`Segment::compile`]). A compiled
//! segment evaluates a profile at an instant ([`Segment::evaluate`]) and says:
//! - whether the profile is a member;
//! - why, predicate by predicate;
//! - when, without a new event, the answer can next change (a window sliding past an event).
//!
//! It also says which inputs it reads ([`Inputs`]), so that the engine re-checks only the
//! segments a change can affect.
//!
//! It is pure: no store, no clock, no I/O. The engine owns membership, timers and backfill.

mod ast;
mod eval;
mod incremental;
mod parse;
mod plan;
mod suggest;
mod types;

pub use ast::{Expr, Span};
pub use eval::{Evaluation, EventIndex, Facts, PredicateResult};
pub use incremental::{Extra, Membership, MembershipChange, Reevaluation, SegmentSet, SetError};
pub use parse::{MAX_NESTING, ParseError, parse};
pub use types::{FieldType, Inputs, Schema, Segment, SegmentError, TypeError};
