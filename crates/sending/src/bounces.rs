//! Bounces and complaints after the hand-over: delivery status notifications (RFC 3464) and
//! feedback reports (RFC 5965) received on the inbound endpoint. A hard bounce or a complaint
//! suppresses the address; soft bounces are counted and suppress it after
//! [`SOFT_BOUNCE_LIMIT`]. A complaint about one of missive's messages is also recorded on its
//! recipient's profile as `Email Marked as Spam` (Segment's name), which experiments count as a
//! guardrail. Answers refused at send time are handled by the sender.

use chrono::{DateTime, Utc};
use missive_delivery::{DsnAction, Report, parse_report};
use missive_engine::Engine;
use missive_store::{StoreError, Suppression};
use serde::Serialize;

use crate::policy::address_hash;

/// Soft bounces after which an address is suppressed.
pub const SOFT_BOUNCE_LIMIT: u32 = 3;

/// What a report changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReportOutcome {
    /// `dsn` or `complaint`.
    pub kind: &'static str,
    pub hard_bounces: u32,
    pub soft_bounces: u32,
    pub complaints: u32,
    pub suppressed: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("not a delivery status notification or feedback report")]
    NotAReport,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies one raw report message.
pub async fn apply_report(
    engine: &Engine,
    hash_key: &[u8],
    raw: &[u8],
    now: DateTime<Utc>,
) -> Result<ReportOutcome, BounceError> {
    let store = engine.store();
    let report = parse_report(raw).ok_or(BounceError::NotAReport)?;
    // The same report read twice (after a crash) is the same notice.
    let report_key = {
        use sha2::Digest as _;
        hex::encode(&sha2::Sha256::digest(raw)[..12])
    };
    let mut out = ReportOutcome::default();
    let suppress = |address: &str, reason: &str, detail: String| Suppression {
        address_hash: address_hash(hash_key, address),
        reason: reason.into(),
        detail,
        at: now,
    };
    match report {
        Report::Dsn { recipients, .. } => {
            out.kind = "dsn";
            for r in recipients {
                // The diagnostic usually names the address; only its hash may be kept.
                let detail = format!("{} {}", r.status, r.diagnostic.as_deref().unwrap_or(""))
                    .trim()
                    .replace(&r.address, "<recipient>");
                if r.action == DsnAction::Failed && (r.is_hard() || r.is_soft()) {
                    queue_bounce(
                        store,
                        &report_key,
                        &address_hash(hash_key, &r.address),
                        r.is_hard(),
                        &r.status,
                        now,
                    )
                    .await?;
                }
                if r.action == DsnAction::Failed && r.is_hard() {
                    out.hard_bounces += 1;
                    metrics::counter!("missive_messages_bounced_total", "kind" => "hard").increment(1);
                    store
                        .delivery()
                        .suppress(suppress(&r.address, "hard_bounce", detail))
                        .await?;
                    out.suppressed += 1;
                } else if r.action == DsnAction::Failed && r.is_soft() {
                    // Delay notices are not bounces: the relay keeps trying.
                    out.soft_bounces += 1;
                    metrics::counter!("missive_messages_bounced_total", "kind" => "soft").increment(1);
                    let n = store
                        .delivery()
                        .record_soft_bounce(&address_hash(hash_key, &r.address), now)
                        .await?;
                    if n >= SOFT_BOUNCE_LIMIT {
                        store
                            .delivery()
                            .suppress(suppress(
                                &r.address,
                                "soft_bounces",
                                format!("{n} soft bounces; last: {detail}"),
                            ))
                            .await?;
                        out.suppressed += 1;
                    }
                }
            }
        }
        Report::Complaint {
            feedback_type,
            original_recipient,
            original_message_id,
        } => {
            out.kind = "complaint";
            out.complaints += 1;
            metrics::counter!("missive_messages_complaints_total").increment(1);
            // Our Message-IDs are `<msg_…@domain>`: the outbox knows the message.
            let message = match original_message_id {
                Some(id) => {
                    let id = id
                        .trim_matches(['<', '>'])
                        .split('@')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    store.delivery().outbox_message(&id).await?
                }
                None => None,
            };
            let address = original_recipient.or_else(|| message.as_ref().and_then(|m| m.recipient.clone()));
            if let Some(m) = &message {
                record_complaint(engine, m).await;
            }
            if let Some(a) = address {
                store
                    .delivery()
                    .suppress(suppress(&a, "complaint", feedback_type))
                    .await?;
                out.suppressed += 1;
            }
        }
    }
    Ok(out)
}

/// Queues `message.bounced` for outbound webhooks. A report names an address, not a message
/// or a profile: the notice carries the address's keyed hash (as the suppression list does)
/// and the DSN status. Keyed by the report's content and the address, so a report read twice
/// is one notice.
async fn queue_bounce(
    store: &missive_store::Store,
    report_key: &str,
    hash: &str,
    hard: bool,
    status: &str,
    now: DateTime<Utc>,
) -> Result<(), BounceError> {
    let kind = if hard { "hard" } else { "soft" };
    store
        .webhooks()
        .enqueue_webhooks(
            vec![missive_store::WebhookNotice {
                seq: 0,
                kind: "message.bounced".into(),
                key: format!("{report_key}:{hash}"),
                profile_id: None,
                endpoint: None,
                data: serde_json::json!({"bounce": kind, "status": status, "address_hash": hash}),
                at: now,
            }],
            vec![],
        )
        .await?;
    Ok(())
}

/// Records `Email Marked as Spam` for the message's recipient (logged when it cannot be).
async fn record_complaint(engine: &Engine, m: &missive_store::OutboxMessage) {
    let profile = match engine
        .profiles()
        .find_bare(&missive_engine::profiles::ProfileKey::Id(m.profile_id.clone()))
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "complaint: profile lookup failed");
            return;
        }
    };
    let msg = serde_json::json!({
        "type": "track",
        "event": COMPLAINT_EVENT,
        "properties": {"message_id": m.id},
        "messageId": format!("complaint-{}", m.id),
    });
    // Logged inside when it fails: the suppression, which matters most, is already written.
    let _ = crate::own_events::ingest(engine, &profile, msg, "complaint").await;
}

/// The event a complaint is recorded as (Segment's e-mail spec).
pub const COMPLAINT_EVENT: &str = "Email Marked as Spam";

/// What a pass over a bounce mailbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MailboxPass {
    pub reports: u32,
    pub ignored: u32,
    pub suppressed: u32,
}

/// Reads the messages in a maildir's `new/` (where the mail server delivers the bounce
/// address's mail): reports are applied, and every message read is moved to `cur/`, so each is
/// handled once. Messages that are not reports (auto-replies) are moved too, and counted.
pub async fn read_mailbox(
    engine: &Engine,
    hash_key: &[u8],
    maildir: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<MailboxPass, BounceError> {
    let mut pass = MailboxPass::default();
    let new = maildir.join("new");
    let cur = maildir.join("cur");
    let Ok(entries) = std::fs::read_dir(&new) else {
        return Ok(pass);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(raw) = std::fs::read(&path) else { continue };
        match apply_report(engine, hash_key, &raw, now).await {
            Ok(out) => {
                pass.reports += 1;
                pass.suppressed += out.suppressed;
            }
            Err(BounceError::NotAReport) => pass.ignored += 1,
            // Left in new/ to be read again once the store is back.
            Err(e) => return Err(e),
        }
        let name = entry.file_name();
        if let Err(e) = std::fs::create_dir_all(&cur)
            .and_then(|_| std::fs::rename(&path, cur.join(format!("{}:2,S", name.to_string_lossy()))))
        {
            tracing::error!(error = %e, file = %path.display(), "bounce mailbox: could not move a read message to cur/");
        }
    }
    Ok(pass)
}
