//! Keyed hashes under the index key: blind indexes (find a profile by e-mail address without
//! storing the address in clear), pseudonyms (stable ids for exports and analytics that do not
//! reveal the profile id) and subkeys for other keyed hashes. Each use hashes under its own
//! prefix, so a value of one kind never equals a value of another.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Keyring;

impl Keyring {
    /// `bi_` + 32 hex characters, the same for any case and surrounding whitespace of `email`.
    pub fn blind_index_email(&self, email: &str) -> String {
        let normalized = email.trim().to_ascii_lowercase();
        format!(
            "bi_{}",
            hex::encode(&self.keyed_hash(b"email", normalized.as_bytes())[..16])
        )
    }

    /// `bu_` + 32 hex characters for a user id (exact: user ids are case-sensitive).
    pub fn blind_index_user_id(&self, user_id: &str) -> String {
        format!(
            "bu_{}",
            hex::encode(&self.keyed_hash(b"user_id", user_id.as_bytes())[..16])
        )
    }

    /// `ba_` + 32 hex characters for an anonymous id.
    pub fn blind_index_anonymous_id(&self, anonymous_id: &str) -> String {
        format!(
            "ba_{}",
            hex::encode(&self.keyed_hash(b"anonymous_id", anonymous_id.as_bytes())[..16])
        )
    }

    /// `psn_` + 32 hex characters: stable for one index key, unlinkable to `id` without it.
    pub fn pseudonymize(&self, id: &str) -> String {
        format!(
            "psn_{}",
            hex::encode(&self.keyed_hash(b"pseudonym", id.as_bytes())[..16])
        )
    }

    /// A 32-byte key for `purpose`, derived from the index key, so it never rotates either.
    pub fn derive_subkey(&self, purpose: &str) -> [u8; 32] {
        self.keyed_hash(b"subkey", purpose.as_bytes())
    }

    /// HMAC-SHA256(index key, domain || NUL || message).
    fn keyed_hash(&self, domain: &[u8], message: &[u8]) -> [u8; 32] {
        // HMAC pads a short key with zeros to the block size (RFC 2104), so this is HMAC under the
        // 32-byte key, built without the fallible `new_from_slice`.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.index_key.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        zeroize::Zeroize::zeroize(&mut block);
        mac.update(domain);
        mac.update(b"\0");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_is_hmac_sha256_under_the_32_byte_index_key() {
        let keyring = Keyring::generate();
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&keyring.index_key.0).unwrap();
        reference.update(b"email\0ada@example.com");
        let expected = hex::encode(&reference.finalize().into_bytes()[..16]);
        assert_eq!(
            keyring.blind_index_email("ada@example.com"),
            format!("bi_{expected}")
        );
    }

    #[test]
    fn blind_index_ignores_case_and_surrounding_whitespace_and_depends_on_the_index_key() {
        let keyring = Keyring::generate();
        let index = keyring.blind_index_email("ada@example.com");
        assert_eq!(index.len(), 3 + 32);
        assert_eq!(keyring.blind_index_email("  Ada@Example.COM\n"), index);
        assert_ne!(keyring.blind_index_email("bob@example.com"), index);
        assert_ne!(Keyring::generate().blind_index_email("ada@example.com"), index);
        let (rotated, _) = keyring.with_new_master_key();
        assert_eq!(
            rotated.blind_index_email("ada@example.com"),
            index,
            "master key rotation keeps indexes"
        );
    }

    #[test]
    fn pseudonyms_blind_indexes_and_subkeys_are_domain_separated() {
        let keyring = Keyring::generate();
        let pseudonym = keyring.pseudonymize("ada@example.com");
        assert!(pseudonym.starts_with("psn_") && pseudonym.len() == 4 + 32);
        assert_eq!(keyring.pseudonymize("ada@example.com"), pseudonym);
        let index = keyring.blind_index_email("ada@example.com");
        assert_ne!(index["bi_".len()..], pseudonym["psn_".len()..]);
        let subkey = hex::encode(keyring.derive_subkey("ada@example.com"));
        assert!(
            !subkey.starts_with(&index["bi_".len()..]) && !subkey.starts_with(&pseudonym["psn_".len()..])
        );
        assert_ne!(keyring.derive_subkey("a"), keyring.derive_subkey("b"));
    }
}
