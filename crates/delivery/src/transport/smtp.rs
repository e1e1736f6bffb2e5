use std::error::Error as _;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::{Envelope, SendOutcome, Transport, enhanced_status};
use crate::DeliveryError;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text; only for a relay on the same host or a trusted private network.
    None,
    /// Plain text upgraded with STARTTLS, which the relay must offer (usually port 587).
    StartTls,
    /// TLS from the first byte (implicit TLS, usually port 465).
    Required,
}

#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Most connections kept open to the relay.
    pub pool_max: u32,
    /// Per SMTP command and connection attempt.
    pub timeout: Duration,
    /// The EHLO name; the default is the address literal of localhost.
    pub hello_name: Option<String>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool_max", &self.pool_max)
            .field("timeout", &self.timeout)
            .field("hello_name", &self.hello_name)
            .finish()
    }
}

/// Sends through an SMTP relay over a pool of kept-alive connections.
///
/// The pool is missive's own around lettre's `AsyncSmtpConnection`, so that plain and STARTTLS
/// connections are opened with `TCP_NODELAY`: lettre writes a message's final `.` line in a
/// write of its own, and with Nagle's algorithm that write waits for the relay's delayed ACK,
/// about 40 ms per message.
pub struct SmtpTransport {
    host: String,
    port: u16,
    timeout: Duration,
    mode: Mode,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Kept-alive connections and when each was last used.
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, std::time::Instant)>>,
    slots: tokio::sync::Semaphore,
}

/// A kept-alive connection idle longer than this is checked with NOOP before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(5);

enum Mode {
    Plain,
    StartTls(TlsParameters),
    Implicit(TlsParameters),
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Prepares the pool; no connection is opened until the first send.
    pub fn new(config: &SmtpConfig) -> Result<Self, DeliveryError> {
        if config.host.trim().is_empty() {
            return Err(DeliveryError::SmtpConfig("host is empty".into()));
        }
        if config.pool_max == 0 {
            return Err(DeliveryError::SmtpConfig("pool_max must be at least 1".into()));
        }
        let mode = match config.tls {
            Tls::None => Mode::Plain,
            Tls::StartTls => Mode::StartTls(tls_parameters(&config.host)?),
            Tls::Required => Mode::Implicit(tls_parameters(&config.host)?),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(username), Some(password)) => Some(Credentials::new(username.clone(), password.clone())),
            (None, None) => None,
            _ => {
                return Err(DeliveryError::SmtpConfig(
                    "username and password go together".into(),
                ));
            }
        };
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(Self {
            host: config.host.clone(),
            port: config.port,
            timeout: config.timeout,
            mode,
            credentials,
            hello,
            idle: std::sync::Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(config.pool_max as usize),
        })
    }

    /// Connects as a send would (TLS and authentication as configured), then says goodbye:
    /// whether the relay can be used, for `missive doctor`. The error is the relay's answer.
    pub async fn check(&self) -> Result<(), String> {
        let mut conn = self.connect().await.map_err(|o| match o {
            SendOutcome::Transient { message, code, .. } | SendOutcome::Permanent { message, code, .. } => {
                match code {
                    Some(c) => format!("{c} {message}"),
                    None => message,
                }
            }
            SendOutcome::Delivered { response } => response,
        })?;
        let _ = conn.quit().await;
        Ok(())
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendOutcome> {
        let transient = |message: String| SendOutcome::Transient {
            code: None,
            enhanced: None,
            message,
        };
        let mut conn = match &self.mode {
            Mode::Implicit(params) => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(params.clone()),
                None,
            )
            .await
            .map_err(|e| outcome_of_error(&e))?,
            Mode::Plain | Mode::StartTls(_) => {
                let tcp = tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| transient(format!("connecting to {}:{} timed out", self.host, self.port)))?
                .map_err(|e| transient(format!("connecting to {}:{}: {e}", self.host, self.port)))?;
                tcp.set_nodelay(true)
                    .map_err(|e| transient(format!("setting TCP_NODELAY: {e}")))?;
                tokio::time::timeout(
                    self.timeout,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                )
                .await
                .map_err(|_| transient("the relay's greeting timed out".into()))?
                .map_err(|e| outcome_of_error(&e))?
            }
        };
        if let Mode::StartTls(params) = &self.mode {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| outcome_of_error(&e))?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| outcome_of_error(&e))?;
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<(AsyncSmtpConnection, std::time::Instant)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((conn, std::time::Instant::now()));
    }

    /// A connection to send on: a kept-alive one (checked with NOOP when it has been idle a
    /// while, since relays close idle sessions), else a new one. The whole connect, STARTTLS
    /// and AUTH is bounded by the timeout.
    async fn connection(&self) -> Result<AsyncSmtpConnection, SendOutcome> {
        while let Some((mut conn, since)) = self.take_idle() {
            if since.elapsed() < IDLE_CHECK_AFTER {
                return Ok(conn);
            }
            if matches!(
                tokio::time::timeout(self.timeout, conn.test_connected()).await,
                Ok(true)
            ) {
                return Ok(conn);
            }
        }
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(result) => result,
            Err(_) => Err(SendOutcome::Transient {
                code: None,
                enhanced: None,
                message: format!(
                    "connecting to {}:{} took longer than {:?}",
                    self.host, self.port, self.timeout
                ),
            }),
        }
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, DeliveryError> {
    TlsParameters::new(host.to_owned())
        .map_err(|err| DeliveryError::SmtpConfig(format!("tls: {err}").to_lowercase()))
}

fn lettre_envelope(envelope: &Envelope) -> Result<lettre::address::Envelope, String> {
    let parse =
        |a: &str| Address::from_str(a).map_err(|err| format!("invalid envelope address {a:?}: {err}"));
    let from = if envelope.from.is_empty() {
        None
    } else {
        Some(parse(&envelope.from)?)
    };
    let to = envelope
        .to
        .iter()
        .map(|a| parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    lettre::address::Envelope::new(from, to).map_err(|err| err.to_string())
}

#[async_trait]
impl Transport for SmtpTransport {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> SendOutcome {
        let envelope = match lettre_envelope(envelope) {
            Ok(envelope) => envelope,
            Err(message) => {
                return SendOutcome::Permanent {
                    code: None,
                    enhanced: None,
                    message: message.to_lowercase(),
                };
            }
        };
        let Ok(_slot) = self.slots.acquire().await else {
            return SendOutcome::Transient {
                code: None,
                enhanced: None,
                message: "transport closed".into(),
            };
        };
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        // No blind retry after a failure: the relay may have taken the message already.
        let result = tokio::time::timeout(self.timeout, conn.send(&envelope, message)).await;
        match result {
            Ok(Ok(response)) => {
                if !conn.has_broken() {
                    self.put_idle(conn);
                }
                SendOutcome::Delivered {
                    response: format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    ),
                }
            }
            Ok(Err(err)) => {
                // After a refusal lettre resets the session; a broken connection is dropped.
                if !conn.has_broken() {
                    self.put_idle(conn);
                }
                outcome_of_error(&err)
            }
            Err(_) => SendOutcome::Transient {
                code: None,
                enhanced: None,
                message: format!("the relay did not answer within {:?}", self.timeout),
            },
        }
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}

fn outcome_of_error(err: &lettre::transport::smtp::Error) -> SendOutcome {
    let code = err.status().map(u16::from);
    // For a reply, the source is the server's text; otherwise the whole chain says what failed.
    let reply = err.source().map(|source| source.to_string()).unwrap_or_default();
    let enhanced = code.and_then(|_| enhanced_status(&reply));
    let message = if code.is_some() && !reply.is_empty() {
        reply
    } else {
        err.to_string()
    };
    if err.is_permanent() {
        SendOutcome::Permanent {
            code,
            enhanced,
            message,
        }
    } else {
        // 4xx, and every failure to talk to the relay at all: connection, timeout, TLS.
        SendOutcome::Transient {
            code,
            enhanced,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "relay.example".into(),
            port: 587,
            tls: Tls::StartTls,
            username: Some("apikey".into()),
            password: Some("hunter2-secret".into()),
            pool_max: 4,
            timeout: Duration::from_secs(10),
            hello_name: Some("mx.shop.example".into()),
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        let debug = format!("{:?}", config());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn username_without_password_is_refused() {
        let mut config = config();
        config.password = None;
        assert!(matches!(
            SmtpTransport::new(&config),
            Err(DeliveryError::SmtpConfig(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_relay_is_a_transient_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let transport = SmtpTransport::new(&SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: Tls::None,
            username: None,
            password: None,
            pool_max: 1,
            timeout: Duration::from_secs(5),
            hello_name: None,
        })
        .unwrap();
        let outcome = transport
            .send(
                &Envelope::new("a@shop.example", "b@example.org"),
                b"Subject: x\r\n\r\nx\r\n",
            )
            .await;
        assert!(
            matches!(outcome, SendOutcome::Transient { code: None, .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn invalid_envelope_is_a_permanent_failure() {
        let transport = SmtpTransport::new(&config()).unwrap();
        let outcome = transport
            .send(&Envelope::new("a@shop.example", "not an address"), b"x")
            .await;
        assert!(
            matches!(outcome, SendOutcome::Permanent { code: None, .. }),
            "{outcome:?}"
        );
    }
}
