//! HMAC-SHA256 signatures over a raw body, compared in constant time.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Encoding, SourceError};

/// Checks that `signature` (base64 or hex, as `encoding` says; a `sha256=` prefix is allowed)
/// is the HMAC-SHA256 of `body` with `secret`.
pub fn verify_hmac(
    secret: &[u8],
    body: &[u8],
    signature: &str,
    encoding: Encoding,
) -> Result<(), SourceError> {
    let text = signature.trim();
    let text = text.strip_prefix("sha256=").unwrap_or(text);
    let given = match encoding {
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        Encoding::Hex => hex::decode(text).ok(),
    }
    .ok_or(SourceError::Signature)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| SourceError::Signature)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given).map_err(|_| SourceError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn the_rfc_4231_vector_verifies_in_both_encodings() {
        let hex_mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let body = b"what do ya want for nothing?";
        assert_eq!(verify_hmac(b"Jefe", body, hex_mac, Encoding::Hex), Ok(()));
        assert_eq!(
            verify_hmac(b"Jefe", body, &format!("sha256={hex_mac}"), Encoding::Hex),
            Ok(())
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_mac).unwrap());
        assert_eq!(verify_hmac(b"Jefe", body, &b64, Encoding::Base64), Ok(()));
        for bad in ["", "not base64!", &b64[1..]] {
            assert_eq!(
                verify_hmac(b"Jefe", body, bad, Encoding::Base64),
                Err(SourceError::Signature)
            );
        }
        assert_eq!(
            verify_hmac(b"Jefe", b"what do ya want for something?", &b64, Encoding::Base64),
            Err(SourceError::Signature)
        );
    }
}
