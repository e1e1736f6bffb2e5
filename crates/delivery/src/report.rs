//! Bounces (RFC 3464 delivery status notifications) and complaints (RFC 5965 abuse reports),
//! read from the raw report a mailbox receives.

use std::collections::HashMap;

use mail_parser::{Message, MessageParser, MimeHeaders as _, PartType};

/// A machine-readable report about a message missive sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `multipart/report; report-type=delivery-status`
    Dsn {
        recipients: Vec<DsnRecipient>,
        /// The Message-ID of the bounced message, without angle brackets, when the report
        /// returns its headers.
        original_message_id: Option<String>,
    },
    /// `multipart/report; report-type=feedback-report` (ARF)
    Complaint {
        /// `abuse`, `fraud`, `not-spam`, …, lowercased.
        feedback_type: String,
        original_recipient: Option<String>,
        original_message_id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub address: String,
    pub action: DsnAction,
    /// The RFC 3463 status, e.g. `"5.1.1"`.
    pub status: String,
    /// The remote server's words, e.g. `"550 5.1.1 <x@y>: Recipient address rejected"`.
    pub diagnostic: Option<String>,
}

impl DsnRecipient {
    /// A permanent failure (5.x.x): the address should be suppressed.
    pub fn is_hard(&self) -> bool {
        self.status.starts_with("5.")
    }

    /// A temporary failure (4.x.x): the receiving side may accept later.
    pub fn is_soft(&self) -> bool {
        self.status.starts_with("4.")
    }
}

/// Reads a DSN or an ARF complaint; `None` for anything else (including free-text bounces).
pub fn parse_report(raw: &[u8]) -> Option<Report> {
    let message = MessageParser::default().parse(raw)?;
    let content_type = message.content_type()?;
    if !content_type.ctype().eq_ignore_ascii_case("multipart")
        || !content_type
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return None;
    }
    let report_type = content_type.attribute("report-type")?.to_ascii_lowercase();

    let mut status_fields = None;
    let mut feedback_fields = None;
    let mut original: Option<Message<'_>> = None;
    for part in message.parts.iter().skip(1) {
        let Some(part_type) = part.content_type() else {
            continue;
        };
        let ctype = part_type.ctype().to_ascii_lowercase();
        let subtype = part_type.subtype().unwrap_or_default().to_ascii_lowercase();
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                status_fields.get_or_insert_with(|| field_groups(part.contents()));
            }
            ("message", "feedback-report") => {
                feedback_fields.get_or_insert_with(|| field_groups(part.contents()));
            }
            ("message", "rfc822" | "global") | ("text", "rfc822-headers") if original.is_none() => {
                original = match &part.body {
                    PartType::Message(embedded) => Some(embedded.clone()),
                    _ => MessageParser::default()
                        .parse(part.contents())
                        .map(Message::into_owned),
                };
            }
            _ => {}
        }
    }
    let original_message_id = original
        .as_ref()
        .and_then(|m| m.message_id())
        .map(|id| id.trim_matches(['<', '>', ' ']).to_owned())
        .filter(|id| !id.is_empty());

    match report_type.as_str() {
        "delivery-status" | "global-delivery-status" => {
            let groups = status_fields?;
            // The first group describes the reporting MTA; each later one a recipient.
            let recipients = groups.iter().skip(1).filter_map(dsn_recipient).collect();
            Some(Report::Dsn {
                recipients,
                original_message_id,
            })
        }
        "feedback-report" => {
            let fields = feedback_fields?.into_iter().next().unwrap_or_default();
            let feedback_type = fields
                .get("feedback-type")
                .map(|t| t.trim().to_ascii_lowercase())
                .unwrap_or_else(|| "abuse".to_owned());
            let original_recipient = fields
                .get("original-rcpt-to")
                .map(|a| strip_address(a))
                .filter(|a| !a.is_empty())
                .or_else(|| {
                    original
                        .as_ref()
                        .and_then(|m| m.to())
                        .and_then(|to| to.first())
                        .and_then(|a| a.address())
                        .map(str::to_owned)
                });
            Some(Report::Complaint {
                feedback_type,
                original_recipient,
                original_message_id,
            })
        }
        _ => None,
    }
}

fn dsn_recipient(fields: &HashMap<String, String>) -> Option<DsnRecipient> {
    let address = fields
        .get("final-recipient")
        .or_else(|| fields.get("original-recipient"))
        .map(|value| strip_address(after_type(value)))
        .filter(|a| !a.is_empty())?;
    let status = fields
        .get("status")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let action = match fields
        .get("action")
        .map(|a| a.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("failed") => DsnAction::Failed,
        Some("delayed") => DsnAction::Delayed,
        Some("delivered") => DsnAction::Delivered,
        Some("relayed") => DsnAction::Relayed,
        Some("expanded") => DsnAction::Expanded,
        // Action is required; when a sender omits it, the status class says the same.
        _ if status.starts_with("5.") => DsnAction::Failed,
        _ if status.starts_with("4.") => DsnAction::Delayed,
        _ => DsnAction::Delivered,
    };
    let diagnostic = fields
        .get("diagnostic-code")
        .map(|d| after_type(d).to_owned())
        .filter(|d| !d.is_empty());
    Some(DsnRecipient {
        address,
        action,
        status,
        diagnostic,
    })
}

/// `rfc822; user@example.org` → `user@example.org`
fn after_type(value: &str) -> &str {
    value.split_once(';').map_or(value, |(_, rest)| rest).trim()
}

fn strip_address(value: &str) -> String {
    value.trim().trim_matches(['<', '>']).trim().to_owned()
}

/// Header-style field groups separated by blank lines (RFC 3464 §2.1, RFC 5965 §3.1), names
/// lowercased, folded lines joined; the first occurrence of a field wins.
fn field_groups(body: &[u8]) -> Vec<HashMap<String, String>> {
    let text = String::from_utf8_lossy(body);
    let mut groups = Vec::new();
    let mut group: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(std::mem::take(&mut group));
            }
            last = None;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last.as_ref().and_then(|name| group.get_mut(name)) {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if group.contains_key(&name) {
                last = None;
            } else {
                group.insert(name.clone(), value.trim().to_owned());
                last = Some(name);
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_groups_unfold_and_split_on_blank_lines() {
        let groups = field_groups(
            b"Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\nDiagnostic-Code: smtp; 550 5.1.1\r\n    user unknown\r\n",
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1]["diagnostic-code"], "smtp; 550 5.1.1 user unknown");
    }

    #[test]
    fn plain_messages_are_not_reports() {
        assert_eq!(
            parse_report(b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n"),
            None
        );
        assert_eq!(parse_report(b""), None);
    }

    #[test]
    fn status_classes_tell_hard_from_soft() {
        let mut r = DsnRecipient {
            address: "a@b.example".into(),
            action: DsnAction::Failed,
            status: "5.1.1".into(),
            diagnostic: None,
        };
        assert!(r.is_hard() && !r.is_soft());
        r.status = "4.2.2".into();
        assert!(r.is_soft() && !r.is_hard());
    }
}
