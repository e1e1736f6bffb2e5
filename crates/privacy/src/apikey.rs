//! API-key secrets: generated here, shown once to their owner, stored only as an argon2id hash.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::PrivacyError;

/// OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// `prefix` followed by 40 random characters of `[A-Za-z0-9]` (about 238 bits).
pub fn generate_api_secret(prefix: &str) -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

/// The argon2id PHC string of `secret`, with a random salt.
pub fn hash_api_secret(secret: &str) -> Result<String, PrivacyError> {
    let hashing = |error: argon2::password_hash::Error| PrivacyError::Hashing(error.to_string());
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|e| hashing(e.into()))?;
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(hashing)?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    Ok(argon2
        .hash_password(secret.as_bytes(), &salt)
        .map_err(hashing)?
        .to_string())
}

/// Whether `secret` matches the PHC string `phc`; false for a malformed one.
pub fn verify_api_secret(secret: &str, phc: &str) -> bool {
    // The parameters come from the PHC string, so hashes made with older parameters still verify.
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_has_the_prefix_and_40_alphanumerics() {
        let secret = generate_api_secret("mk_live_");
        let random = secret.strip_prefix("mk_live_").unwrap();
        assert_eq!(random.len(), 40);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(generate_api_secret("mk_live_"), secret);
    }

    #[test]
    fn hash_verifies_the_right_secret_only() {
        let secret = generate_api_secret("mk_");
        let phc = hash_api_secret(&secret).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains(&secret));
        assert!(verify_api_secret(&secret, &phc));
        assert!(!verify_api_secret("mk_wrong", &phc));
        assert_ne!(hash_api_secret(&secret).unwrap(), phc, "salt is random");
    }

    #[test]
    fn malformed_hash_is_rejected_without_panicking() {
        for phc in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!verify_api_secret("secret", phc), "{phc}");
        }
    }
}
