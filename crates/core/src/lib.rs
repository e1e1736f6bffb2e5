//! Domain types of missive: typed ids, the clock, Segment-compatible messages and their
//! validation, customer profiles with their traits, aggregates and version diffs, a person's
//! time zone, the outbox's message class and source, and the API's error codes.
//!
//! This crate is pure: it does no I/O, reads no clock of its own (time comes in through
//! [`clock::Clock`] or as arguments) and knows nothing of storage or HTTP. The store, the
//! engine and the server build on it.

pub mod api_schema;
pub mod clock;
pub mod consent;
pub mod email;
pub mod error_code;
pub mod event;
pub mod html;
pub mod ids;
pub mod message;
pub mod money;
pub mod outbox;
pub mod preferences;
pub mod profile;
pub mod schema;
pub mod zone;

pub use clock::{Clock, ManualClock, SystemClock};
pub use consent::{ConsentChange, Purpose, PurposeConsent, Refusal};
pub use email::{EmailAddress, InvalidEmail};
pub use error_code::ErrorCode;
pub use event::{Event, EventKind, IdentityKey, IdentityKind, Trust};
pub use ids::{ApiKeyId, InvalidId, MessageId, ProfileId, WorkspaceId};
pub use money::Money;
pub use outbox::{MessageClass, MessageSource};
pub use preferences::Frequency;
pub use profile::{Profile, ProfileDiff, Touched, Trait, TraitParty, Traits};
