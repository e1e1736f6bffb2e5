//! Wrapped per-profile data keys.

use chrono::{DateTime, Utc};
use missive_core::ProfileId;

/// A profile's data key, wrapped under a master key (the key file's): destroying it makes
/// every copy of the profile's encrypted data unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub profile_id: ProfileId,
    pub master_key_id: String,
    /// The wrapped key (base64), as `missive_privacy::WrappedKey::blob`.
    pub wrapped: String,
    pub created_at: DateTime<Utc>,
}
