//! Inbound sources: the webhooks a shop or another service sends (Shopify, WooCommerce, or any
//! JSON with a configured mapping), verified by the sender's own signature scheme and mapped to
//! Segment messages (`identify` and `track`) that missive ingests like any other.
//!
//! Pure: [`verify`] checks a signature over the raw body, [`Source::map`] turns a payload into
//! messages or names the path that did not map. The HTTP endpoint (`POST /v1/sources/{name}`)
//! lives in the server.
//!
//! Each mapping is documented in docs/integrations.md. Besides the fields a mapping uses, a few
//! named top-level fields per platform are kept as properties (an allowlist: `financial_status`,
//! `payment_method`, …); everything else (notes, addresses, tokens, URLs with keys) is left out.
//!
//! Message ids come from the signed content (the order's id and state, the checkout's token and
//! update time, the receipt's id), keyed with the source's secret and name: a retry or a
//! redelivery of the same content is a duplicate, and nobody without the secret can claim an id
//! ahead of a real delivery.

mod consent;
mod generic;
mod path;
mod shopify;
mod verify;
mod woocommerce;

pub use consent::ConsentMapping;
pub use generic::{Encoding, Mapping};
pub use verify::verify_hmac;

use serde::Deserialize;
use serde_json::Value;

/// A configured source. Its `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// Shopify's webhooks, signed with `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the body
    /// with the app's shared secret).
    Shopify { secret: String },
    /// WooCommerce's webhooks, signed with `X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the
    /// body with the webhook's secret).
    Woocommerce { secret: String },
    /// Any JSON, signed with an HMAC-SHA256 of the body in a header, mapped by paths.
    Generic {
        secret: String,
        #[serde(flatten)]
        mapping: Box<Mapping>,
    },
    /// A consent-management platform's receipts (grants and withdrawals with their evidence),
    /// signed like a generic source.
    Consent {
        secret: String,
        #[serde(flatten)]
        mapping: Box<ConsentMapping>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Shopify { .. } => f.write_str("Shopify { secret: <redacted> }"),
            Source::Woocommerce { .. } => f.write_str("Woocommerce { secret: <redacted> }"),
            Source::Generic { mapping, .. } => {
                write!(f, "Generic {{ secret: <redacted>, mapping: {mapping:?} }}")
            }
            Source::Consent { mapping, .. } => {
                write!(f, "Consent {{ secret: <redacted>, mapping: {mapping:?} }}")
            }
        }
    }
}

/// What came with a delivery besides its body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery<'a> {
    /// The source's configured name.
    pub source: &'a str,
    /// The topic the sender names (`orders/create`, `order.created`), if it names one.
    pub topic: Option<&'a str>,
    /// The sender's id of this delivery, for deduplication of its retries.
    pub id: Option<&'a str>,
    /// The signature header's value.
    pub signature: Option<&'a str>,
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// No signature, or one that does not match: the sender is not who it claims.
    #[error("the signature is missing or does not match the body")]
    Signature,
    /// A topic this source does not take.
    #[error("topic {0:?} is not one this source maps; see docs/integrations.md")]
    Topic(String),
    /// A field the mapping needs is absent or of the wrong type.
    #[error("{path}: {why}")]
    Map { path: String, why: String },
}

impl SourceError {
    fn map(path: impl Into<String>, why: impl Into<String>) -> Self {
        SourceError::Map {
            path: path.into(),
            why: why.into(),
        }
    }
}

impl Source {
    /// The source's secret.
    pub fn secret(&self) -> &str {
        match self {
            Source::Shopify { secret }
            | Source::Woocommerce { secret }
            | Source::Generic { secret, .. }
            | Source::Consent { secret, .. } => secret,
        }
    }

    /// What is wrong with the configuration, if anything (beyond what deserializing checks).
    pub fn check(&self) -> Result<(), String> {
        if self.secret().len() < 16 {
            return Err("secret: at least 16 characters (the shared secret the sender signs with)".into());
        }
        match self {
            Source::Consent { mapping, .. } => mapping.check(),
            _ => Ok(()),
        }
    }

    /// The header that carries the signature.
    pub fn signature_header(&self) -> &str {
        match self {
            Source::Shopify { .. } => "x-shopify-hmac-sha256",
            Source::Woocommerce { .. } => "x-wc-webhook-signature",
            Source::Generic { mapping, .. } => &mapping.signature_header,
            Source::Consent { mapping, .. } => &mapping.signature_header,
        }
    }

    /// The header that names the topic, if the sender has one.
    pub fn topic_header(&self) -> Option<&str> {
        match self {
            Source::Shopify { .. } => Some("x-shopify-topic"),
            Source::Woocommerce { .. } => Some("x-wc-webhook-topic"),
            Source::Generic { .. } | Source::Consent { .. } => None,
        }
    }

    /// The header that carries the delivery's id, if the sender has one.
    pub fn delivery_id_header(&self) -> Option<&str> {
        match self {
            Source::Shopify { .. } => Some("x-shopify-webhook-id"),
            Source::Woocommerce { .. } => Some("x-wc-webhook-delivery-id"),
            Source::Generic { mapping, .. } => mapping.id_header.as_deref(),
            Source::Consent { .. } => None,
        }
    }

    /// Checks the delivery's signature over the raw `body`.
    pub fn verify(&self, body: &[u8], delivery: &Delivery<'_>) -> Result<(), SourceError> {
        let (secret, encoding) = match self {
            Source::Shopify { secret } | Source::Woocommerce { secret } => (secret, Encoding::Base64),
            Source::Generic { secret, mapping } => (secret, mapping.signature_encoding),
            Source::Consent { secret, mapping } => (secret, mapping.signature_encoding),
        };
        let signature = delivery.signature.ok_or(SourceError::Signature)?;
        verify_hmac(secret.as_bytes(), body, signature, encoding)
    }

    /// The Segment messages a verified payload stands for, each with a `messageId` keyed with
    /// the secret from what the content is (see the module documentation), the delivery's id
    /// when the content has no id, or else the payload itself.
    pub fn map(&self, payload: &Value, delivery: &Delivery<'_>) -> Result<Vec<Value>, SourceError> {
        let mut messages = match self {
            Source::Shopify { .. } => shopify::map(payload, delivery.topic)?,
            Source::Woocommerce { .. } => woocommerce::map(payload, delivery.topic)?,
            Source::Generic { mapping, .. } => mapping.map(payload)?,
            Source::Consent { mapping, .. } => mapping.map(payload)?,
        };
        let key = messages
            .first()
            .and_then(|m| m["messageId"].as_str().map(str::to_owned))
            .or_else(|| delivery.id.map(|d| format!("delivery-{d}")))
            .unwrap_or_else(|| format!("payload-{payload}"));
        for (i, m) in messages.iter_mut().enumerate() {
            let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(self.secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            hmac::Mac::update(&mut mac, format!("{}\n{key}\n{i}", delivery.source).as_bytes());
            let tag = hex::encode(hmac::Mac::finalize(mac).into_bytes());
            m["messageId"] = Value::from(format!("src-{}", &tag[..40]));
            m["context"]["library"] = serde_json::json!({"name": "missive-source"});
        }
        Ok(messages)
    }
}

/// The top-level strings, numbers and booleans of `payload` named in `keep`: kept as
/// properties.
fn kept_scalars(payload: &Value, keep: &[&str]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for k in keep {
        if let Some(v) = payload.get(*k)
            && matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
        {
            out.insert((*k).to_owned(), v.clone());
        }
    }
    out
}

/// A money amount sent as a string (`"199.00"`) or a number.
fn amount(v: &Value, path: &str) -> Result<Option<f64>, SourceError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| SourceError::map(path, format!("{s:?} is not an amount"))),
        _ => Err(SourceError::map(path, "not an amount")),
    }
}

/// An id sent as a number or a string, as text; `None` for absent, null, 0 or "".
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) if n.as_u64() != Some(0) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}
