//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, "Signature scheme"):
//! the signed content is `{webhook-id}.{webhook-timestamp}.{body}`, signed with HMAC-SHA256
//! under the secret's bytes (the base64 after `whsec_`), and sent as `v1,{base64}`. While a
//! secret is rotated, the request carries one signature per secret, separated by spaces, and a
//! receiver accepts any that verifies.
//!
//! Written here over `hmac` rather than taken from the specification's own `standardwebhooks`
//! crate (1.0.1, 2024): that crate would add a second `base64` (0.21) and the `time` crate to a
//! build kept lean, for the twenty lines below. They are checked in CI against the same
//! organisation's Python package, `standardwebhooks`, in both directions (`tests/it.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a timestamp may be from now before a receiver refuses it (the specification's
/// suggestion: five minutes), against replays.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A signing secret: `whsec_` and the base64 of its bytes. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a secret is \"whsec_\" and the base64 of 24 to 64 bytes")]
    BadSecret,
    #[error("the webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the webhook-timestamp is more than {TOLERANCE_SECONDS} s away from now")]
    Stale,
    #[error("no signature matches")]
    NoMatch,
}

impl Secret {
    /// A new random secret of 32 bytes.
    pub fn generate() -> Self {
        Secret(rand::random::<[u8; 32]>().to_vec())
    }

    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let b64 = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SignatureError::BadSecret)?;
        let bytes = STANDARD.decode(b64).map_err(|_| SignatureError::BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SignatureError::BadSecret);
        }
        Ok(Secret(bytes))
    }

    /// The secret as it is shown once to the endpoint's owner and stored.
    pub fn expose(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // Any key length is accepted by HMAC: `new_from_slice` cannot fail here.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,{base64}` for this request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }
}

/// The three headers of a request signed with each of `secrets` (the new one and, during a
/// rotation, the old).
pub fn headers(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets.iter().map(|s| s.sign(id, timestamp, body)).collect();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]
}

/// What a receiver does: the timestamp is recent, and one of the `v1` signatures of the
/// `webhook-signature` header matches.
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now.abs_diff(ts) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    for s in signatures.split(' ') {
        let Some(b64) = s.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else { continue };
        // `verify_slice` compares in constant time.
        if secret.mac(id, ts, body).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's reference implementations (the Svix libraries' test
    /// vector): secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn the_reference_vector_signs_and_verifies() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let at = 1_614_265_330;
        assert_eq!(
            verify(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &sig,
                body,
                at
            ),
            Ok(())
        );
        let other = Secret::generate();
        let both = format!("{} {sig}", other.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body));
        assert_eq!(
            verify(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &both,
                body,
                at
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &sig,
                b"{}",
                at
            ),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &sig,
                body,
                at + 301
            ),
            Err(SignatureError::Stale)
        );
        assert!(!format!("{secret:?}").contains("MfKQ"));
        assert_eq!(Secret::parse(&secret.expose()), Ok(secret));
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_AAAA"] {
            assert_eq!(Secret::parse(bad), Err(SignatureError::BadSecret), "{bad}");
        }
    }
}
