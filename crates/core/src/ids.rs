//! Typed identifiers. Ids missive mints carry a prefix (`prf_`, `wsp_`, `key_`) so that a
//! stray id in a log or a URL says what it names; ids that clients send (`messageId`) are
//! validated but kept as given.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub reason: &'static str,
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $kind:literal) => {
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id (UUIDv7 under the prefix).
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// A time-ordered id derived from a place in a log (a UUIDv7 of `unix_ms`, whose
            /// other bits are `partition` and `seq`): what a cluster's partition owner folding
            /// that log position creates, the same each time it folds it again.
            pub fn from_log(unix_ms: u64, partition: u16, seq: i64) -> Self {
                let mut bits = [0u8; 10];
                bits[..2].copy_from_slice(&partition.to_be_bytes());
                bits[2..].copy_from_slice(&seq.to_be_bytes());
                let id = uuid::Builder::from_unix_timestamp_millis(unix_ms, &bits).into_uuid();
                Self(format!("{}{}", $prefix, id.simple()))
            }

            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let Some(rest) = s.strip_prefix($prefix) else {
                    return Err(InvalidId {
                        kind: $kind,
                        reason: concat!("must start with ", $prefix),
                    });
                };
                if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(InvalidId {
                        kind: $kind,
                        reason: "must be the prefix and 32 hex digits",
                    });
                }
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                crate::api_schema::prefixed_id($prefix, $kind)
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(ProfileId, "prf_", "profile");
prefixed_id!(WorkspaceId, "wsp_", "workspace");
prefixed_id!(ApiKeyId, "key_", "api key");

/// A message id as the client sent it (Segment's `messageId`), the unit of deduplication.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

impl MessageId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.is_empty() {
            return Err(InvalidId {
                kind: "message",
                reason: "must not be empty",
            });
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidId {
                kind: "message",
                reason: "must be at most 256 bytes",
            });
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidId {
                kind: "message",
                reason: "must not contain control characters",
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh id for a message that came without one (it cannot be deduplicated).
    pub fn generate() -> Self {
        Self(format!("msv-{}", uuid::Uuid::now_v7()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MessageId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        Self::parse(&s)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_a_log_position_are_the_same_each_time_and_ordered_by_time() {
        let a = ProfileId::from_log(1_700_000_000_000, 3, 42);
        assert_eq!(a, ProfileId::from_log(1_700_000_000_000, 3, 42));
        assert_ne!(a, ProfileId::from_log(1_700_000_000_000, 3, 43));
        assert_ne!(a, ProfileId::from_log(1_700_000_000_000, 4, 42));
        assert!(
            ProfileId::from_log(1_700_000_000_001, 0, 0) > a,
            "later is greater"
        );
        assert_eq!(ProfileId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn generated_profile_ids_round_trip_through_parse_and_serde() {
        let id = ProfileId::generate();
        assert!(id.as_str().starts_with("prf_"));
        assert_eq!(ProfileId::parse(id.as_str()).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ProfileId>(&json).unwrap(), id);
    }

    #[test]
    fn profile_id_parse_refuses_wrong_prefix_and_length() {
        assert!(ProfileId::parse("wsp_0123456789abcdef0123456789abcdef").is_err());
        assert!(ProfileId::parse("prf_123").is_err());
        assert!(ProfileId::parse("prf_0123456789abcdef0123456789abcdeg").is_err());
    }

    #[test]
    fn message_id_refuses_empty_long_and_control_characters() {
        assert!(MessageId::parse("").is_err());
        assert!(MessageId::parse(&"x".repeat(257)).is_err());
        assert!(MessageId::parse("a\nb").is_err());
        assert!(MessageId::parse("ajs-123").is_ok());
    }
}
