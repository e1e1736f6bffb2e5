//! What failed lately, summed for the people who fix it: messages the relay refused for good,
//! by the recipients' domain (a domain refusing everything is a set-up or reputation problem,
//! not a bad address), and messages that could not be composed, by template (a template or
//! block that no longer renders). The console's overview shows it under "Needs attention".
//!
//! [`summarize`] is pure; [`recent`] reads the store. Addresses never leave this module: only
//! their domains, also inside the relays' answers ([`without_addresses`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use missive_store::{OutboxMessage, Store, StoreError};

/// Messages read at most for the summary (the newest).
pub const READ_AT_MOST: u32 = 5_000;

/// Failures with one cause, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The recipients' domain, or the template.
    pub key: String,
    pub messages: u64,
    /// The newest failure's reason, as the relay or the composer said it.
    pub example: String,
}

/// Failures since an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Refused by the relay, by the recipients' domain, most first.
    pub by_domain: Vec<Group>,
    /// Not composed (the template or a block failed), by template, most first.
    pub by_template: Vec<Group>,
    /// Messages read: [`READ_AT_MOST`] means there may be more.
    pub read: usize,
}

fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("(no domain)", |(_, d)| d)
        .trim()
        .to_ascii_lowercase()
}

/// `detail` with every e-mail address in it cut to its domain (`…@example.com`): relays
/// often quote the recipient, and the overview is read by roles that see no addresses.
pub fn without_addresses(detail: &str) -> String {
    let boundary = |c: char| c.is_whitespace() || "<>()[]{},;:\"'".contains(c);
    let mut out = String::with_capacity(detail.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match word.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                out.push('…');
                out.push('@');
                out.push_str(domain);
            }
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in detail.chars() {
        if boundary(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn grouped(counts: BTreeMap<String, (u64, String)>) -> Vec<Group> {
    let mut out: Vec<Group> = counts
        .into_iter()
        .map(|(key, (messages, example))| Group {
            key,
            messages,
            example,
        })
        .collect();
    out.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.key.cmp(&b.key)));
    out
}

/// Sums `failed` (newest first): a message the relay answered has its recipient recorded;
/// one that failed before (composing it) has none.
pub fn summarize(failed: &[OutboxMessage]) -> Summary {
    let mut domains: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut templates: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for m in failed {
        let detail = without_addresses(m.detail.as_deref().unwrap_or(""));
        let (map, key) = match &m.recipient {
            Some(address) => (&mut domains, domain_of(address)),
            None => (&mut templates, m.template.clone()),
        };
        let entry = map.entry(key).or_insert((0, detail));
        entry.0 += 1;
    }
    Summary {
        by_domain: grouped(domains),
        by_template: grouped(templates),
        read: failed.len(),
    }
}

/// The failures since `since`, summed.
pub async fn recent(store: &Store, since: DateTime<Utc>) -> Result<Summary, StoreError> {
    let failed = store.delivery().recent_failures(since, READ_AT_MOST).await?;
    Ok(summarize(&failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_core::{MessageClass, MessageSource, ProfileId};
    use missive_store::OutboxStatus;

    fn failed(template: &str, recipient: Option<&str>, detail: &str) -> OutboxMessage {
        let at: DateTime<Utc> = "2026-11-28T10:00:00Z".parse().expect("a time");
        OutboxMessage {
            id: format!("m-{template}-{detail}"),
            idempotency_key: String::new(),
            profile_id: ProfileId::generate(),
            template: template.into(),
            class: MessageClass::Marketing,
            source: MessageSource::Journey("j".into()),
            step: None,
            context: serde_json::json!({}),
            status: OutboxStatus::Failed,
            attempts: 1,
            next_attempt_at: at,
            created_at: at,
            sent_at: None,
            recipient: recipient.map(str::to_owned),
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn relay_refusals_count_by_domain_and_composing_failures_by_template() {
        let s = summarize(&[
            failed("news", Some("a@Broken.example"), "550 5.1.10 newest reason"),
            failed("news", Some("b@broken.example"), "550 5.1.1 older reason"),
            failed("cart", Some("c@fine.example"), "554 5.7.1 spam"),
            failed("cart", None, "render: unknown block \"hero\""),
        ]);
        let seen = |g: &[Group]| -> Vec<(String, u64, String)> {
            g.iter()
                .map(|g| (g.key.clone(), g.messages, g.example.clone()))
                .collect()
        };
        assert_eq!(
            seen(&s.by_domain),
            vec![
                ("broken.example".into(), 2, "550 5.1.10 newest reason".into()),
                ("fine.example".into(), 1, "554 5.7.1 spam".into()),
            ]
        );
        assert_eq!(
            seen(&s.by_template),
            vec![("cart".into(), 1, "render: unknown block \"hero\"".into())]
        );
        assert_eq!(s.read, 4);
        assert_eq!(domain_of("nobody"), "(no domain)");
    }

    #[test]
    fn addresses_in_a_relays_answer_are_cut_to_their_domain() {
        assert_eq!(
            without_addresses("550 5.1.1 <bob.smith@corp.example>: user unknown (ana@x.example)"),
            "550 5.1.1 <…@corp.example>: user unknown (…@x.example)"
        );
        assert_eq!(
            without_addresses("554 5.7.1 rejected @ policy"),
            "554 5.7.1 rejected @ policy"
        );
        let s = summarize(&[failed("news", Some("a@b.example"), "550 <a@b.example> gone")]);
        assert_eq!(s.by_domain[0].example, "550 <…@b.example> gone");
    }
}
