use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Envelope, SendOutcome, Transport};
use crate::DeliveryError;

/// Delivers into a local Maildir (`cur/ new/ tmp/`): the embedded default when no relay is
/// configured, and an outbox anything that reads Maildir (a mail client, dovecot) can open.
///
/// Each message is written in `tmp/`, synced, then renamed into `new/`, so a reader never sees
/// a partial file and a crash leaves at most a stray file in `tmp/`.
#[derive(Debug, Clone)]
pub struct MaildirTransport {
    root: Arc<PathBuf>,
    sequence: Arc<AtomicU64>,
}

impl MaildirTransport {
    /// Creates `root/{cur,new,tmp}` as needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, DeliveryError> {
        let root = root.into();
        for sub in ["cur", "new", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|source| DeliveryError::Maildir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(Self {
            root: Arc::new(root),
            sequence: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `{seconds}.M{micros}P{pid}Q{sequence}R{random}.missive`: unique across processes
    /// (pid, random) and within one (sequence), as the Maildir convention asks.
    fn unique_name(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        format!(
            "{}.M{}P{}Q{}R{:016x}.missive",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.sequence.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>(),
        )
    }
}

fn write_atomically(root: &Path, name: &str, envelope: &Envelope, message: &[u8]) -> std::io::Result<()> {
    let tmp = root.join("tmp").join(name);
    let new = root.join("new").join(name);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        // What an MDA records: the envelope, which the message headers do not carry.
        let mut trace = format!("Return-Path: <{}>\r\n", envelope.from);
        for to in &envelope.to {
            trace.push_str(&format!("Delivered-To: {to}\r\n"));
        }
        file.write_all(trace.as_bytes())?;
        file.write_all(message)?;
        file.sync_all()?;
        fs::rename(&tmp, &new)?;
        // Make the rename itself durable.
        File::open(root.join("new"))?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[async_trait]
impl Transport for MaildirTransport {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> SendOutcome {
        let bad_envelope = envelope
            .to
            .iter()
            .chain(std::iter::once(&envelope.from))
            .any(|a| a.contains(['\r', '\n', '\0', '<', '>']));
        if envelope.to.is_empty() || bad_envelope {
            return SendOutcome::Permanent {
                code: None,
                enhanced: None,
                message: "invalid envelope".into(),
            };
        }
        let root = Arc::clone(&self.root);
        let name = self.unique_name();
        let envelope = envelope.clone();
        let message = message.to_vec();
        let written = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || write_atomically(&root, &name, &envelope, &message)).await
        };
        match written {
            Ok(Ok(())) => SendOutcome::Delivered {
                response: format!("maildir new/{name}"),
            },
            Ok(Err(err)) => SendOutcome::Transient {
                code: None,
                enhanced: None,
                message: format!("maildir write failed: {err}").to_lowercase(),
            },
            Err(err) => SendOutcome::Transient {
                code: None,
                enhanced: None,
                message: format!("maildir writer stopped: {err}").to_lowercase(),
            },
        }
    }

    fn name(&self) -> &'static str {
        "maildir"
    }
}
