//! Keyed hashes under a workspace secret (not the key file's index key): what missive keeps
//! instead of an address on the suppression list, or an identity of an erased person, so that
//! the value is recognised again without being stored. The secrets live in the store's
//! metadata and never rotate: a changed secret would forget every suppression and erasure.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `message` under `key`, hex. HMAC accepts a key of any length.
fn hmac_hex(key: &[u8], message: &[&[u8]]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        // new_from_slice cannot fail for HMAC (any key length is valid).
        return String::new();
    };
    for part in message {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The keyed hash a suppressed address is kept as, the same for any case and surrounding
/// whitespace of `address`.
pub fn address_hash(key: &[u8], address: &str) -> String {
    hmac_hex(key, &[address.trim().to_ascii_lowercase().as_bytes()])
}

/// The keyed hash an erased identity is remembered by: `kind` (`user_id`, `email`, …), a NUL,
/// and the value (an e-mail address case-blind, as `email_like` says).
pub fn identity_hash(key: &[u8], kind: &str, value: &str, email_like: bool) -> String {
    let normalized;
    let value = if email_like {
        normalized = value.trim().to_ascii_lowercase();
        normalized.as_str()
    } else {
        value
    };
    hmac_hex(key, &[kind.as_bytes(), b"\0", value.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_hashes_are_keyed_and_case_blind() {
        assert_eq!(
            address_hash(b"k", "Ann@Example.com "),
            address_hash(b"k", "ann@example.com")
        );
        assert_ne!(
            address_hash(b"k", "ann@example.com"),
            address_hash(b"j", "ann@example.com")
        );
        // Python: hmac.new(b"k", b"ann@example.com", hashlib.sha256).hexdigest()
        assert_eq!(
            address_hash(b"k", "ann@example.com"),
            "812b5e65283998e47b49528ef531aea6e0a9f94ed9005c6c1cdec12579d7d459"
        );
    }

    #[test]
    fn identity_hashes_separate_kinds_and_fold_case_of_addresses_only() {
        let k = b"secret";
        assert_ne!(
            identity_hash(k, "user_id", "a", false),
            identity_hash(k, "anonymous_id", "a", false)
        );
        assert_eq!(
            identity_hash(k, "email", " A@B.co", true),
            identity_hash(k, "email", "a@b.co", true)
        );
        assert_ne!(
            identity_hash(k, "user_id", "A", false),
            identity_hash(k, "user_id", "a", false)
        );
        // Python: hmac.new(b"secret", b"user_id\x00u-1", hashlib.sha256).hexdigest()
        assert_eq!(
            identity_hash(k, "user_id", "u-1", false),
            "8b1bf32eb4691858c8b181688c5e4052ed27157e84b7d90fe213ebffc5379be1"
        );
    }
}
