//! Envelope encryption: a random data key per profile seals its fields, and a master key of the
//! keyring wraps the data key. Rotating a master key re-wraps 32-byte data keys, not the data.
//!
//! Both layers are AES-256-GCM with a random 96-bit nonce. A data key is wrapped with the profile
//! id as context, so a wrapped key copied to another profile does not open. A sealed field reads
//! `enc:v1:{key_label}:{base64url(nonce || ciphertext)}`; the label says which data key sealed it
//! and is authenticated with the caller's aad, so every byte of the string is covered.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Keyring, PrivacyError, Secret32, is_valid_id};

const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The key that seals one profile's fields. Stored only wrapped ([`Keyring::wrap_data_key`]).
#[derive(Clone)]
pub struct DataKey(Secret32);

/// A data key encrypted under the master key `master_key_id`; `blob` is the standard base64 of
/// nonce || ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub master_key_id: String,
    pub blob: String,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(redacted)")
    }
}

impl Keyring {
    /// Wraps `data_key` under the active master key, bound to `context` (the profile id).
    pub fn wrap_data_key(&self, data_key: &DataKey, context: &str) -> Result<WrappedKey, PrivacyError> {
        let aad = wrap_aad(&self.active.id, context);
        let sealed = encrypt(&self.active.secret, &data_key.0.0, &aad)?;
        Ok(WrappedKey {
            master_key_id: self.active.id.clone(),
            blob: STANDARD.encode(sealed),
        })
    }

    /// Unwraps with the master key the wrapped key names, which need not be the active one.
    pub fn unwrap_data_key(&self, wrapped: &WrappedKey, context: &str) -> Result<DataKey, PrivacyError> {
        let id = &wrapped.master_key_id;
        let master = self.master_keys().find(|key| key.id == *id);
        let master = master.ok_or_else(|| PrivacyError::UnknownMasterKey(id.clone()))?;
        let sealed = STANDARD
            .decode(&wrapped.blob)
            .map_err(|_| PrivacyError::Malformed("blob is not base64"))?;
        let plain = decrypt(&master.secret, &sealed, &wrap_aad(id, context))
            .map_err(|_| PrivacyError::UnwrapFailed(id.clone()))?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| PrivacyError::Malformed("data key is not 32 bytes"))?;
        Ok(DataKey(Secret32(bytes)))
    }
}

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey(Secret32::random())
    }

    /// Seals `plaintext` into `enc:v1:{key_label}:…`. The same `aad` (e.g. the profile id and the
    /// field name) must be given to open it, so a sealed value moved elsewhere does not open.
    pub fn seal(&self, key_label: &str, plaintext: &[u8], aad: &[u8]) -> Result<String, PrivacyError> {
        if !is_valid_id(key_label, 64) {
            return Err(PrivacyError::InvalidKeyLabel);
        }
        let sealed = encrypt(&self.0, plaintext, &field_aad(key_label, aad))?;
        Ok(format!(
            "{SEALED_PREFIX}{key_label}:{}",
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a value made by [`DataKey::seal`] with the same data key and aad.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, PrivacyError> {
        let (label, payload) = split_sealed(sealed).ok_or(PrivacyError::NotSealed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| PrivacyError::Malformed("payload is not base64url"))?;
        let plain = decrypt(&self.0, &payload, &field_aad(label, aad))?;
        Ok(plain.to_vec())
    }

    /// Seals the serialized JSON of `value` (the plaintext is wiped after).
    pub fn seal_serialized<T: Serialize + ?Sized>(
        &self,
        key_label: &str,
        value: &T,
        aad: &[u8],
    ) -> Result<String, PrivacyError> {
        let plain = Zeroizing::new(serde_json::to_vec(value).map_err(PrivacyError::Json)?);
        self.seal(key_label, &plain, aad)
    }

    /// Opens what [`DataKey::seal_serialized`] sealed (the plaintext is wiped after).
    pub fn open_deserialized<T: serde::de::DeserializeOwned>(
        &self,
        sealed: &str,
        aad: &[u8],
    ) -> Result<T, PrivacyError> {
        let plain = Zeroizing::new(self.open(sealed, aad)?);
        serde_json::from_slice(&plain).map_err(PrivacyError::Json)
    }

    /// Seals the serialized JSON of `value` into a JSON string.
    pub fn seal_json(
        &self,
        key_label: &str,
        value: &serde_json::Value,
        aad: &[u8],
    ) -> Result<serde_json::Value, PrivacyError> {
        self.seal_serialized(key_label, value, aad)
            .map(serde_json::Value::String)
    }

    /// Opens a JSON string made by [`DataKey::seal_json`]. Anything else is
    /// [`PrivacyError::NotSealed`]: the caller decides whether clear values are acceptable.
    pub fn open_json(
        &self,
        sealed: &serde_json::Value,
        aad: &[u8],
    ) -> Result<serde_json::Value, PrivacyError> {
        let serde_json::Value::String(sealed) = sealed else {
            return Err(PrivacyError::NotSealed);
        };
        self.open_deserialized(sealed, aad)
    }
}

/// The key label of a sealed value, read without decrypting; `None` if `s` is not sealed.
pub fn sealed_key_label(s: &str) -> Option<&str> {
    split_sealed(s).map(|(label, _)| label)
}

pub fn is_sealed(s: &str) -> bool {
    split_sealed(s).is_some()
}

fn split_sealed(s: &str) -> Option<(&str, &str)> {
    let (label, payload) = s.strip_prefix(SEALED_PREFIX)?.split_once(':')?;
    is_valid_id(label, 64).then_some((label, payload))
}

// Ids and labels cannot hold NUL, so each aad below reads back one way only.
fn wrap_aad(master_key_id: &str, context: &str) -> Vec<u8> {
    format!("missive:wrap:v1\0{master_key_id}\0{context}").into_bytes()
}

fn field_aad(key_label: &str, aad: &[u8]) -> Vec<u8> {
    [b"missive:enc:v1\0", key_label.as_bytes(), b"\0", aad].concat()
}

fn encrypt(key: &Secret32, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let cipher = Aes256Gcm::new(&key.0.into());
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
        .map_err(|_| PrivacyError::TooLarge)?;
    Ok([nonce.as_slice(), &ciphertext].concat())
}

fn decrypt(key: &Secret32, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, PrivacyError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(PrivacyError::Malformed("too short"));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(&key.0.into());
    let plain = cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad });
    plain.map(Zeroizing::new).map_err(|_| PrivacyError::OpenFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sealed_value_opens_with_the_same_key_and_aad_only() {
        let key = DataKey::generate();
        let sealed = key.seal("dk_1", b"ada@example.com", b"prf_1/email").unwrap();
        assert!(sealed.starts_with("enc:v1:dk_1:"), "{sealed}");
        assert!(!sealed.contains("ada"));
        assert_eq!(key.open(&sealed, b"prf_1/email").unwrap(), b"ada@example.com");
        assert!(matches!(
            key.open(&sealed, b"prf_2/email"),
            Err(PrivacyError::OpenFailed)
        ));
        assert!(matches!(
            DataKey::generate().open(&sealed, b"prf_1/email"),
            Err(PrivacyError::OpenFailed)
        ));
        assert_ne!(
            key.seal("dk_1", b"ada@example.com", b"prf_1/email").unwrap(),
            sealed,
            "nonce is random"
        );
    }

    #[test]
    fn tampering_with_any_byte_of_a_sealed_value_fails() {
        let key = DataKey::generate();
        let sealed = key.seal("dk_1", b"secret", b"aad").unwrap();
        for at in 0..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(
                key.open(&tampered, b"aad").is_err(),
                "byte {at} changed: {tampered}"
            );
        }
    }

    #[test]
    fn seal_rejects_a_label_that_would_break_the_format() {
        let key = DataKey::generate();
        for label in ["", "a:b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(key.seal(label, b"x", b""), Err(PrivacyError::InvalidKeyLabel)),
                "{label:?}"
            );
        }
    }

    #[test]
    fn sealed_key_label_is_read_without_decrypting() {
        let sealed = DataKey::generate().seal("dk_7", b"x", b"").unwrap();
        assert_eq!(sealed_key_label(&sealed), Some("dk_7"));
        assert!(is_sealed(&sealed));
        for clear in [
            "ada@example.com",
            "enc:v1:",
            "enc:v2:dk:abc",
            "enc:v1:bad label:abc",
        ] {
            assert!(!is_sealed(clear), "{clear}");
        }
        assert!(matches!(
            DataKey::generate().open("hello", b""),
            Err(PrivacyError::NotSealed)
        ));
    }

    #[test]
    fn json_round_trips_and_a_clear_value_is_not_sealed() {
        let key = DataKey::generate();
        let value = json!({"city": "Paris", "orders": [1, 2]});
        let sealed = key.seal_json("dk_1", &value, b"traits").unwrap();
        assert!(sealed.as_str().is_some_and(is_sealed));
        assert_eq!(key.open_json(&sealed, b"traits").unwrap(), value);
        assert!(matches!(
            key.open_json(&json!("Paris"), b"traits"),
            Err(PrivacyError::NotSealed)
        ));
        assert!(matches!(
            key.open_json(&json!(3), b"traits"),
            Err(PrivacyError::NotSealed)
        ));
        let not_json = json!(key.seal("dk_1", b"{not json", b"traits").unwrap());
        assert!(matches!(
            key.open_json(&not_json, b"traits"),
            Err(PrivacyError::Json(_))
        ));
    }

    #[test]
    fn wrapped_key_unwraps_under_its_context_only() {
        let keyring = Keyring::generate();
        let data_key = DataKey::generate();
        let wrapped = keyring.wrap_data_key(&data_key, "prf_1").unwrap();
        assert_eq!(wrapped.master_key_id, "k1");
        let sealed = data_key.seal("dk", b"x", b"").unwrap();
        assert_eq!(
            keyring
                .unwrap_data_key(&wrapped, "prf_1")
                .unwrap()
                .open(&sealed, b"")
                .unwrap(),
            b"x"
        );
        let error = keyring.unwrap_data_key(&wrapped, "prf_2").unwrap_err();
        assert!(
            matches!(&error, PrivacyError::UnwrapFailed(id) if id == "k1"),
            "{error}"
        );
        let mut tampered = wrapped.clone();
        tampered
            .blob
            .replace_range(0..1, if tampered.blob.starts_with('A') { "B" } else { "A" });
        assert!(keyring.unwrap_data_key(&tampered, "prf_1").is_err());
        let other = Keyring::generate();
        assert!(matches!(
            other.unwrap_data_key(&wrapped, "prf_1"),
            Err(PrivacyError::UnwrapFailed(_))
        ));
    }

    #[test]
    fn rotated_keyring_unwraps_old_keys_and_wraps_under_the_new_one() {
        let old = Keyring::generate();
        let data_key = DataKey::generate();
        let wrapped_old = old.wrap_data_key(&data_key, "prf_1").unwrap();
        let (rotated, new_id) = old.with_new_master_key();
        let rotated = Keyring::parse(&rotated.to_file_text()).unwrap();
        let sealed = data_key.seal("dk", b"x", b"").unwrap();
        assert_eq!(
            rotated
                .unwrap_data_key(&wrapped_old, "prf_1")
                .unwrap()
                .open(&sealed, b"")
                .unwrap(),
            b"x"
        );
        let wrapped_new = rotated.wrap_data_key(&data_key, "prf_1").unwrap();
        assert_eq!(wrapped_new.master_key_id, new_id);
        let error = old.unwrap_data_key(&wrapped_new, "prf_1").unwrap_err();
        assert_eq!(error.to_string(), "master key k2 is not in the keyring");
    }

    #[test]
    fn wrapped_key_serializes_with_its_field_names() {
        let wrapped = Keyring::generate()
            .wrap_data_key(&DataKey::generate(), "prf_1")
            .unwrap();
        let value = serde_json::to_value(&wrapped).unwrap();
        assert_eq!(value["master_key_id"], "k1");
        assert_eq!(serde_json::from_value::<WrappedKey>(value).unwrap(), wrapped);
    }

    #[test]
    fn data_key_debug_shows_no_secret() {
        let key = DataKey::generate();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&STANDARD.encode(key.0.0)) && !debug.contains(&format!("{:?}", key.0.0)));
    }

    proptest! {
        #[test]
        fn any_plaintext_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..256),
                                     aad in proptest::collection::vec(any::<u8>(), 0..32),
                                     label in "[A-Za-z0-9_-]{1,64}") {
            let key = DataKey::generate();
            let sealed = key.seal(&label, &plain, &aad).unwrap();
            prop_assert_eq!(sealed_key_label(&sealed), Some(label.as_str()));
            prop_assert_eq!(key.open(&sealed, &aad).unwrap(), plain);
        }
    }
}
