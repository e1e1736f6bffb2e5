//! Privacy primitives of missive: application-level encryption of personal data.
//!
//! This crate owns:
//! - the key file and the [`Keyring`] read from it ([`Keyring::parse`]): one index key and the
//!   master keys, the last of which is active;
//! - envelope encryption: each profile gets a random [`DataKey`], stored wrapped under a master
//!   key ([`WrappedKey`]), which seals its fields into self-describing `enc:v1:…` strings;
//! - blind indexes (look an e-mail address up without storing it in clear) and pseudonyms
//!   (stable ids that reveal nothing), both keyed by the index key;
//! - keyed hashes of suppressed addresses and erased identities, under workspace secrets;
//! - hashing and checking of API-key secrets with argon2id.
//!
//! It does not own storage (which fields are sealed, where wrapped keys live, re-wrapping after a
//! rotation) nor policy (who may decrypt, retention, erasure): the store and the engine do. It is
//! pure: no I/O, no clock, no network; the binary reads the key file and passes its text in.

mod apikey;
mod envelope;
mod index;
mod keyed;
mod keys;

pub use apikey::{generate_api_secret, hash_api_secret, verify_api_secret};
pub use envelope::{DataKey, WrappedKey, is_sealed, sealed_key_label};
pub use keyed::{address_hash, identity_hash};
pub use keys::Keyring;

/// What can go wrong. No message ever contains a secret or a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("key file line {line}: {reason}")]
    KeyFileLine { line: usize, reason: String },
    #[error("key file has no index line")]
    MissingIndexKey,
    #[error("key file has no key line")]
    MissingMasterKey,
    #[error("master key {0} is not in the keyring")]
    UnknownMasterKey(String),
    #[error("data key wrapped under master key {0} does not open: wrong context or tampered")]
    UnwrapFailed(String),
    #[error("invalid key label: 1-64 characters of A-Z a-z 0-9 _ - expected")]
    InvalidKeyLabel,
    #[error("value is not sealed")]
    NotSealed,
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed value does not open: wrong data key, wrong aad or tampered")]
    OpenFailed,
    #[error("plaintext is too large to seal")]
    TooLarge,
    #[error("sealed json: {0}")]
    Json(#[source] serde_json::Error),
    #[error("api secret hashing failed: {0}")]
    Hashing(String),
}

/// 32 secret bytes, wiped on drop, never printed.
#[derive(Clone)]
struct Secret32([u8; 32]);

impl Secret32 {
    fn random() -> Self {
        Self(rand::random())
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A key id, a key label: 1 to `max` characters of `[A-Za-z0-9_-]`, so never `:`, space or NUL.
fn is_valid_id(id: &str, max: usize) -> bool {
    (1..=max).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
