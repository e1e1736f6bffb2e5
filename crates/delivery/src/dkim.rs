use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::{Canonicalization, Done};
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::DeliveryError;
use crate::message::is_valid_domain;

/// The headers every signature covers (when present): the ones a reader sees or a mailbox
/// provider acts on, so none of them can be changed or added on the way.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

enum Key {
    Rsa(mail_auth::dkim::DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(mail_auth::dkim::DkimSigner<Ed25519Key, Done>),
}

/// Signs messages for one domain and selector with relaxed/relaxed canonicalization.
pub struct DkimSigner {
    key: Key,
    selector: String,
    domain: String,
    /// The `p=` value of the DNS record: SubjectPublicKeyInfo for RSA, the raw key for Ed25519.
    public_key: Vec<u8>,
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimSigner")
            .field("algorithm", &self.algorithm())
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl DkimSigner {
    /// Reads a PEM private key: RSA as PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`), Ed25519 as PKCS#8 (v1 as OpenSSL writes it, or v2).
    pub fn from_pem(pem: &str, selector: &str, domain: &str) -> Result<Self, DeliveryError> {
        check_name("selector", selector)?;
        check_name("domain", domain)?;
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|err| DeliveryError::DkimKey(format!("not a pem private key: {err}").to_lowercase()))?;
        if let PrivateKeyDer::Pkcs8(pkcs8) = &der
            && let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
        {
            return Ok(Self::ed25519(key, selector, domain));
        }
        let key = RsaKey::<Sha256>::from_key_der(der)
            .map_err(|err| DeliveryError::DkimKey(err.to_string().to_lowercase()))?;
        let public_key = rsa_spki(&key.public_key());
        Ok(Self {
            key: Key::Rsa(with_template(key, selector, domain)),
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            public_key,
        })
    }

    /// A new Ed25519 key (RFC 8463) and its PKCS#8 PEM, to be stored as a secret.
    pub fn generate_ed25519(selector: &str, domain: &str) -> Result<(DkimSigner, String), DeliveryError> {
        check_name("selector", selector)?;
        check_name("domain", domain)?;
        let pkcs8 = Ed25519Key::generate_pkcs8()
            .map_err(|err| DeliveryError::DkimKey(err.to_string().to_lowercase()))?;
        let pem = pem_encode("PRIVATE KEY", &pkcs8);
        let key = Ed25519Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(pkcs8.as_slice()).secret_pkcs8_der())
            .map_err(|err| DeliveryError::DkimKey(err.to_string().to_lowercase()))?;
        Ok((Self::ed25519(key, selector, domain), pem))
    }

    fn ed25519(key: Ed25519Key, selector: &str, domain: &str) -> Self {
        let public_key = key.public_key();
        Self {
            key: Key::Ed25519(with_template(key, selector, domain)),
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            public_key,
        }
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `"rsa"` or `"ed25519"`, as in the DNS record's `k=` tag.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa",
            Key::Ed25519(_) => "ed25519",
        }
    }

    /// The TXT record to publish: (`{selector}._domainkey.{domain}`, `v=DKIM1; k=…; p=…`).
    pub fn dns_record(&self) -> (String, String) {
        (
            format!("{}._domainkey.{}", self.selector, self.domain),
            format!(
                "v=DKIM1; k={}; p={}",
                self.algorithm(),
                STANDARD.encode(&self.public_key)
            ),
        )
    }

    /// Returns `message` with a `DKIM-Signature` header prepended.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DeliveryError> {
        let header = match &self.key {
            Key::Rsa(signer) => signer.sign(message).map(|s| s.to_header()),
            Key::Ed25519(signer) => signer.sign(message).map(|s| s.to_header()),
        }
        .map_err(|err| DeliveryError::DkimSign(err.to_string().to_lowercase()))?;
        let mut signed = Vec::with_capacity(header.len() + message.len());
        signed.extend_from_slice(header.as_bytes());
        signed.extend_from_slice(message);
        Ok(signed)
    }
}

fn with_template<T: mail_auth::common::crypto::SigningKey<Hasher = Sha256>>(
    key: T,
    selector: &str,
    domain: &str,
) -> mail_auth::dkim::DkimSigner<T, Done> {
    mail_auth::dkim::DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

fn check_name(what: &'static str, value: &str) -> Result<(), DeliveryError> {
    if !is_valid_domain(value) {
        return Err(DeliveryError::DkimName {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form DKIM records conventionally
/// publish (what `openssl rsa -pubout` and opendkim-genkey print).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = RSA_ALGORITHM.to_vec();
    inner.extend(der_tlv(0x03, &bit_string));
    der_tlv(0x30, &inner)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The outcome of checking a message's DKIM signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimVerdict {
    /// At least one signature verified.
    Pass { domain: String, selector: String },
    /// Signatures were present but none verified; `reason` is the first failure.
    Fail { reason: String },
    /// The message carries no DKIM-Signature header.
    NoSignature,
}

/// Verifies the DKIM signatures of `message` (as delivered: headers added on top by relays, such
/// as Received or Return-Path, do not matter) against the TXT records given as
/// (`selector._domainkey.domain`, `v=DKIM1; …`) pairs, never asking DNS.
///
/// The records are preloaded into mail-auth's TXT resolver cache (`Parameters::with_txt_cache`);
/// any name not given answers "not found" from that cache, so verification finishes without
/// touching the network.
pub fn verify_dkim(message: &[u8], dns_txt: &[(String, String)]) -> Result<DkimVerdict, DeliveryError> {
    let cache = PreloadedTxt::new(dns_txt)?;
    let Some(parsed) = AuthenticatedMessage::parse(message) else {
        return Err(DeliveryError::DkimVerify("message has no headers".into()));
    };
    if parsed.dkim_headers.is_empty() && !parsed.has_dkim_errors {
        return Ok(DkimVerdict::NoSignature);
    }
    // No name servers: every lookup is answered by the cache above.
    let authenticator = MessageAuthenticator::new(
        ResolverConfig::from_parts(None, vec![], vec![]),
        ResolverOpts::default(),
    )
    .map_err(|err| DeliveryError::DkimVerify(err.to_string().to_lowercase()))?;
    let future = authenticator.verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache));
    let mut future = pin!(future);
    let outputs = match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outputs) => outputs,
        Poll::Pending => {
            return Err(DeliveryError::DkimVerify(
                "verification wanted a dns lookup the given records do not cover".into(),
            ));
        }
    };
    let mut first_failure = None;
    for output in &outputs {
        match output.result() {
            DkimResult::Pass => {
                let (domain, selector) = output
                    .signature()
                    .map(|s| (s.d.clone(), s.s.clone()))
                    .unwrap_or_default();
                return Ok(DkimVerdict::Pass { domain, selector });
            }
            DkimResult::Neutral(err)
            | DkimResult::Fail(err)
            | DkimResult::PermError(err)
            | DkimResult::TempError(err) => {
                if first_failure.is_none() {
                    let signer = output
                        .signature()
                        .map(|s| format!(" (d={}, s={})", s.d, s.s))
                        .unwrap_or_default();
                    first_failure = Some(format!("{err}{signer}").to_lowercase());
                }
            }
            DkimResult::None => {}
        }
    }
    Ok(match first_failure {
        Some(reason) => DkimVerdict::Fail { reason },
        None => DkimVerdict::NoSignature,
    })
}

/// A TXT cache holding exactly the records handed in; a miss is a definite "not found".
struct PreloadedTxt(HashMap<Box<str>, Txt>);

impl PreloadedTxt {
    fn new(records: &[(String, String)]) -> Result<Self, DeliveryError> {
        let mut map = HashMap::new();
        for (name, value) in records {
            let key = DomainKey::parse(value.as_bytes()).map_err(|err| DeliveryError::DkimRecord {
                name: name.clone(),
                reason: err.to_string().to_lowercase(),
            })?;
            map.insert(fqdn(name), Txt::DomainKey(Arc::new(key)));
        }
        Ok(Self(map))
    }
}

fn fqdn(name: &str) -> Box<str> {
    let mut name = name.trim().to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name.into_boxed_str()
}

impl ResolverCache<Box<str>, Txt> for PreloadedTxt {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(self.0.get(name).cloned().unwrap_or_else(|| {
            Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
                mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
            )))
        }))
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, _: Txt, _: std::time::Instant) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"From: a@shop.example\r\nTo: b@example.org\r\nSubject: hi\r\nDate: Sun, 15 Jun 2025 15:06:40 +0000\r\nMessage-ID: <m1@shop.example>\r\n\r\nHello\r\n";

    #[test]
    fn generated_ed25519_key_signs_and_verifies_through_its_own_record() {
        let (signer, pem) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let (name, value) = signer.dns_record();
        assert_eq!(name, "s2025._domainkey.shop.example");
        assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
        let signed = signer.sign(MESSAGE).unwrap();
        assert!(signed.starts_with(b"DKIM-Signature: "));
        assert_eq!(
            verify_dkim(&signed, &[(name, value)]).unwrap(),
            DkimVerdict::Pass {
                domain: "shop.example".into(),
                selector: "s2025".into()
            }
        );
        let reread = DkimSigner::from_pem(&pem, "s2025", "shop.example").unwrap();
        assert_eq!(reread.dns_record(), signer.dns_record());
    }

    #[test]
    fn missing_record_fails_without_asking_dns() {
        let (signer, _) = DkimSigner::generate_ed25519("s1", "shop.example").unwrap();
        let signed = signer.sign(MESSAGE).unwrap();
        assert!(matches!(
            verify_dkim(&signed, &[]).unwrap(),
            DkimVerdict::Fail { .. }
        ));
    }

    #[test]
    fn unsigned_message_has_no_signature() {
        assert_eq!(verify_dkim(MESSAGE, &[]).unwrap(), DkimVerdict::NoSignature);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let (signer, pem) = DkimSigner::generate_ed25519("s1", "shop.example").unwrap();
        let debug = format!("{signer:?}");
        assert!(debug.contains("redacted"));
        let body: String = pem.lines().nth(1).unwrap_or_default().chars().take(20).collect();
        assert!(!debug.contains(&body));
    }

    #[test]
    fn invalid_pem_and_names_are_refused() {
        assert!(matches!(
            DkimSigner::from_pem("nope", "s1", "shop.example"),
            Err(DeliveryError::DkimKey(_))
        ));
        assert!(matches!(
            DkimSigner::generate_ed25519("s 1", "shop.example"),
            Err(DeliveryError::DkimName { what: "selector", .. })
        ));
    }
}
