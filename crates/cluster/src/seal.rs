//! The log's records sealed at rest. Every payload a node publishes to the cluster's stream
//! (events, forwarded events, merge steps carrying a profile's state) is sealed under one data
//! key of the cluster's, AES-256-GCM as the store seals profiles, so NATS's store holds no
//! personal data in clear. The key is made by the first node, wrapped under the key file's
//! active master key, and kept in the store's metadata (`missive_store::LOG_KEY_META`); every
//! node has the same key file, so every owner opens what any node sealed, and a key rotation
//! rewraps it with the profiles' keys (`EncryptedStore::rewrap_all_data_keys`).
//!
//! Records in clear (a stream written before, or by nodes with encryption off) are JSON and
//! are read as they are. A sealed record a node cannot open (its encryption is off, or its key
//! file is another) stops its partition's owner rather than being dropped.
//!
//! One key seals everyone's records, so erasure cannot shred a person's records in the log:
//! no owner folds them after the erasure, and they age out with the stream's `max_age`.

use std::borrow::Cow;

use missive_privacy::{DataKey, Keyring, PrivacyError};
use missive_store::{LOG_KEY_CONTEXT, LOG_KEY_META, Store, StoreError};

/// The label sealed records carry (the store's records carry their profile's id).
const LABEL: &str = "log";
/// What a record is bound to: a value sealed elsewhere does not open as a log record.
const AAD: &[u8] = b"missive-cluster-log";

/// The cluster's log key, unwrapped.
pub struct LogSeal {
    key: DataKey,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the cluster log's data key does not open with this node's key file ({0}): every node needs the same key file (privacy.key_file)"
    )]
    Key(#[from] PrivacyError),
    #[error("the cluster log's data key, as stored, does not read: {0}")]
    Stored(#[from] serde_json::Error),
}

/// A record that could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unopened {
    #[error(
        "a log record is sealed and this node does not seal the log (privacy.encrypt is off here): turn encryption on, with the cluster's key file"
    )]
    NoKey,
    #[error("a log record is sealed under another key, or damaged: {0}")]
    Damaged(String),
}

impl LogSeal {
    /// The cluster's log key: the one in the store, or a new one (the first node's wins when
    /// several start at once).
    pub async fn open_or_create(store: &Store, keyring: &Keyring) -> Result<LogSeal, SealError> {
        let wrapped = match missive_store::log_key(store).await? {
            Some(w) => w,
            None => {
                let fresh = keyring.wrap_data_key(&DataKey::generate(), LOG_KEY_CONTEXT)?;
                let stored = store
                    .documents()
                    .meta_get_or_init(LOG_KEY_META, serde_json::to_string(&fresh)?)
                    .await?;
                serde_json::from_str(&stored)?
            }
        };
        Ok(LogSeal {
            key: keyring.unwrap_data_key(&wrapped, LOG_KEY_CONTEXT)?,
        })
    }

    /// `payload` (a record's JSON) sealed.
    pub fn seal(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.key
            .seal(LABEL, payload, AAD)
            .map(String::into_bytes)
            .map_err(|e| format!("sealing a log record: {e}"))
    }
}

/// A record's JSON: opened with `seal` when sealed, as it is when in clear.
pub fn open<'a>(seal: Option<&LogSeal>, payload: &'a [u8]) -> Result<Cow<'a, [u8]>, Unopened> {
    let sealed = match std::str::from_utf8(payload) {
        Ok(text) if missive_privacy::is_sealed(text) => text,
        _ => return Ok(Cow::Borrowed(payload)),
    };
    let Some(seal) = seal else {
        return Err(Unopened::NoKey);
    };
    seal.key
        .open(sealed, AAD)
        .map(Cow::Owned)
        .map_err(|e| Unopened::Damaged(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal() -> LogSeal {
        LogSeal {
            key: DataKey::generate(),
        }
    }

    #[test]
    fn a_sealed_record_opens_with_the_key_only() {
        let s = seal();
        let record = br#"{"kind":"identify","body":{"traits":{"email":"ann@example.com"}}}"#;
        let sealed = s.seal(record).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("ann@example.com"));
        assert_eq!(open(Some(&s), &sealed).unwrap().as_ref(), record);
        assert_eq!(open(None, &sealed), Err(Unopened::NoKey));
        assert!(matches!(open(Some(&seal()), &sealed), Err(Unopened::Damaged(_))));
    }

    #[test]
    fn a_record_in_clear_is_read_as_it_is() {
        let record = br#"{"control":"join"}"#;
        assert_eq!(open(Some(&seal()), record).unwrap().as_ref(), record);
        assert_eq!(open(None, record).unwrap().as_ref(), record);
    }
}
