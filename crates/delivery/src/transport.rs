//! The seam between the engine and the outside world: one trait, with an SMTP relay and a local
//! maildir behind it, both driven by the same integration tests.

mod maildir;
mod smtp;

use async_trait::async_trait;

pub use maildir::MaildirTransport;
pub use smtp::{SmtpConfig, SmtpTransport, Tls};

/// The SMTP envelope: who bounces come back to, and who receives this copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path (`MAIL FROM`); empty for the null sender `<>`.
    pub from: String,
    /// The forward paths (`RCPT TO`); at least one.
    pub to: Vec<String>,
}

impl Envelope {
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        Self {
            from: from.into(),
            to: vec![to.into()],
        }
    }
}

/// What became of one hand-over. A failed send is an expected outcome, not an error: the engine
/// retries a transient one later and suppresses the recipient after a permanent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The next hop accepted responsibility for the message.
    Delivered { response: String },
    /// Try again later (4xx replies, connection, timeout and TLS failures).
    Transient {
        code: Option<u16>,
        /// The RFC 3463 enhanced status code, e.g. `"4.2.2"`.
        enhanced: Option<String>,
        message: String,
    },
    /// Do not try again (5xx replies, an invalid envelope).
    Permanent {
        code: Option<u16>,
        enhanced: Option<String>,
        message: String,
    },
}

impl SendOutcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, SendOutcome::Delivered { .. })
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Hands `message` (final bytes, already signed) over for the recipients in `envelope`.
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> SendOutcome;
    /// A short name for logs and metrics (`"smtp"`, `"maildir"`).
    fn name(&self) -> &'static str;
}

/// The first word of an SMTP reply text if it is an RFC 3463 enhanced status code.
pub(crate) fn enhanced_status(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits =
        |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none() && matches!(class, "2" | "4" | "5") && digits(subject, 3) && digits(detail, 3))
        .then(|| word.to_owned())
}

#[cfg(test)]
mod tests {
    use super::enhanced_status;

    #[test]
    fn enhanced_status_is_read_from_the_first_word_only() {
        assert_eq!(
            enhanced_status("5.1.1 <x@y>: User unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("4.7.0 try later").as_deref(), Some("4.7.0"));
        assert_eq!(enhanced_status("User unknown 5.1.1"), None);
        assert_eq!(enhanced_status("5.1 nope"), None);
        assert_eq!(enhanced_status(""), None);
    }
}
