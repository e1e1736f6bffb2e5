//! missive-delivery owns the last step of a send: turning a rendered e-mail into a signed
//! RFC 5322 message and handing it over, plus the pieces around delivery that need no database.
//!
//! It owns:
//! - [`build_message`]: the MIME message (multipart/alternative, one-click unsubscribe headers),
//!   refusing header injection;
//! - [`DkimSigner`] and [`verify_dkim`]: DKIM signing (RSA or Ed25519, relaxed/relaxed) and
//!   verification against TXT records handed in, never the network;
//! - [`Transport`]: the seam between the engine and the outside world, with [`SmtpTransport`]
//!   (a pooled relay connection) and [`MaildirTransport`] (the embedded default: a local outbox);
//! - [`Throttle`] and [`retry_delay`]: in-memory rate limits and backoff;
//! - [`LinkSigner`]: stateless HMAC tokens for click, open and unsubscribe URLs, and
//!   [`LinkSigner::rewrite_html`] to track a rendered body;
//! - [`parse_report`]: bounce (RFC 3464 DSN) and complaint (RFC 5965 ARF) parsing.
//!
//! It does not own the outbox, suppression lists, consent or scheduling: the engine decides what
//! to send and when, stores outcomes, and calls into this crate. Nothing here touches a database,
//! and no other missive crate is a dependency.

mod dkim;
mod error;
mod message;
mod report;
mod throttle;
mod tracking;
mod transport;

pub use dkim::{DkimSigner, DkimVerdict, SIGNED_HEADERS, verify_dkim};
pub use error::DeliveryError;
pub use message::{OutgoingEmail, build_message};
pub use report::{DsnAction, DsnRecipient, Report, parse_report};
pub use throttle::{MAX_ATTEMPTS, Rate, Throttle, retry_base_delay, retry_delay};
pub use tracking::{
    Click, LinkSigner, Open, PreferenceLink, TokenError, Unsubscribe, insert_before_body_end,
};
pub use transport::{Envelope, MaildirTransport, SendOutcome, SmtpConfig, SmtpTransport, Tls, Transport};
