/// Everything that can go wrong in this crate outside a send (a send answers with a
/// [`crate::SendOutcome`] instead, because a failed send is an expected result, not a bug).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("header {field} contains a line break or nul character")]
    HeaderInjection { field: String },
    #[error("invalid {field} address {address:?}: {reason}")]
    InvalidAddress {
        field: &'static str,
        address: String,
        reason: String,
    },
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: &'static str },
    #[error("invalid message id {0:?}: only letters, digits and ._-+=~ are allowed")]
    InvalidMessageId(String),
    #[error("invalid message id domain {0:?}")]
    InvalidMessageIdDomain(String),
    #[error("invalid unsubscribe {kind}: {reason}")]
    InvalidUnsubscribe {
        kind: &'static str,
        reason: &'static str,
    },
    #[error("message could not be built: {0}")]
    Build(String),
    #[error("dkim key could not be read: {0}")]
    DkimKey(String),
    #[error("invalid dkim {what} {value:?}")]
    DkimName { what: &'static str, value: String },
    #[error("dkim signing failed: {0}")]
    DkimSign(String),
    #[error("dns txt record for {name} is not a dkim key: {reason}")]
    DkimRecord { name: String, reason: String },
    #[error("dkim verification could not run: {0}")]
    DkimVerify(String),
    #[error("invalid smtp configuration: {0}")]
    SmtpConfig(String),
    #[error("maildir {path} could not be prepared: {source}")]
    Maildir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("link signing key must be at least {min} bytes, got {got}")]
    LinkKeyTooShort { min: usize, got: usize },
    #[error("invalid tracking base url {0:?}: must start with http:// or https://")]
    InvalidBaseUrl(String),
}
