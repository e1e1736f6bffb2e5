//! The records the store holds, by area (the same areas as the store's traits), and how
//! times are stored (microseconds since the epoch).

use chrono::{DateTime, Utc};

mod access;
mod data_keys;
mod delivery;
mod documents;
mod events;
mod schema;
mod webhooks;

pub use access::*;
pub use data_keys::*;
pub use delivery::*;
pub use documents::*;
pub use events::*;
pub(crate) use schema::*;
pub use webhooks::*;

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}
