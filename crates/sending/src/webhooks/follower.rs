//! The follower: turns what the committed logs record into webhook notices. It reads the
//! event log (missive's own message and experiment events, consent changes), the segment
//! changes and the merges, each from its own position, and queues the notices with the new
//! positions in one transaction, so a crash re-reads from the last commit and a notice is
//! queued once (the queue is unique per cause). Logs hold only committed changes: nothing
//! rolled back is ever queued. Only kinds some endpoint subscribes to are queued. See
//! [`follow`] for the order.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use missive_core::{EventKind, Trust};
use missive_store::{
    MergeRecord, SegmentChange, Store, StoreError, StoredEvent, WebhookNotice, WebhookPosition,
};
use missive_webhooks::EventType;
use serde_json::{Map, Value, json};

const PAGE: u32 = 1_000;
/// At most this many entries of one log per pass (the rest waits for the next).
const MAX_PER_PASS: usize = 50_000;

/// The notice an event in the log becomes, if any.
pub fn of_event(e: &StoredEvent) -> Option<WebhookNotice> {
    let props = e.body.get("properties");
    let prop = |k: &str| props.and_then(|p| p.get(k)).cloned();
    let (kind, data) = match e.kind {
        EventKind::Track => {
            let kind = EventType::of_track(&e.name)?;
            // A client may send an event of the same name: only missive's own count.
            if Trust::recorded(e.body.get(Trust::FIELD)) != Trust::Missive {
                return None;
            }
            let data = match kind {
                EventType::ExperimentViewed => json!({
                    "experiment": prop("experiment_name"),
                    "variant": prop("variation_name"),
                    "holdout": prop("holdout"),
                    "message_id": prop("message_id"),
                }),
                EventType::MessageClicked => json!({
                    "message_id": prop("message_id"),
                    "template": prop("template"),
                    "source": prop("source"),
                    "url": prop("url").as_ref().and_then(Value::as_str).map(without_query),
                }),
                _ => json!({
                    "message_id": prop("message_id"),
                    "template": prop("template"),
                    "source": prop("source"),
                }),
            };
            (kind, data)
        }
        EventKind::Identify => {
            let consent = e.body.get("traits")?.get("consent")?.as_object()?;
            let purposes: Map<String, Value> = consent
                .iter()
                .filter(|(_, v)| v.is_boolean())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if purposes.is_empty() {
                return None;
            }
            (EventType::ConsentChanged, json!({"consent": purposes}))
        }
        _ => return None,
    };
    Some(WebhookNotice {
        seq: 0,
        kind: kind.as_str().into(),
        key: e.message_id.as_str().into(),
        profile_id: Some(e.profile_id.clone()),
        endpoint: None,
        data: strip_nulls(data),
        at: e.received_at,
    })
}

/// The notice a segment entry or exit becomes.
pub fn of_change(seq: i64, c: &SegmentChange) -> WebhookNotice {
    let kind = if c.entered {
        EventType::SegmentEntered
    } else {
        EventType::SegmentExited
    };
    WebhookNotice {
        seq: 0,
        kind: kind.as_str().into(),
        key: seq.to_string(),
        profile_id: Some(c.profile_id.clone()),
        endpoint: None,
        data: json!({"segment": c.segment, "cause": c.cause}),
        at: c.at,
    }
}

/// The notice a merge becomes: about the surviving profile.
pub fn of_merge(seq: i64, m: &MergeRecord) -> WebhookNotice {
    WebhookNotice {
        seq: 0,
        kind: EventType::ProfileMerged.as_str().into(),
        key: seq.to_string(),
        profile_id: Some(m.into.clone()),
        endpoint: None,
        data: json!({"merged_profile_id": m.from.as_str(), "into_profile_id": m.into.as_str()}),
        at: m.at,
    }
}

/// A clicked link without its query and fragment, which may carry personal data.
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or("").to_string()
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}

fn wanted(wants: &HashSet<EventType>, n: &WebhookNotice) -> bool {
    EventType::parse(&n.kind).is_some_and(|k| wants.contains(&k))
}

/// One log's entries read in a pass: each with its position and the notice it became (if
/// wanted), and whether the read stopped at the cap.
struct Read {
    entries: Vec<(i64, DateTime<Utc>, Option<WebhookNotice>)>,
    capped: bool,
}

/// Reads one log from `after` through the end (or `MAX_PER_PASS` entries), with a page reader.
async fn read_log<T, F, Fut>(
    after: i64,
    mut page: F,
    notice: impl Fn(&T) -> (i64, DateTime<Utc>, Option<WebhookNotice>),
) -> Result<Read, StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut entries = Vec::new();
    let mut through = after;
    loop {
        let rows = page(through).await?;
        let full = rows.len() as u32 == PAGE;
        for r in &rows {
            entries.push(notice(r));
        }
        let Some(last) = entries.last() else { break };
        through = last.0;
        if !full {
            break;
        }
        if entries.len() >= MAX_PER_PASS {
            return Ok(Read {
                entries,
                capped: true,
            });
        }
    }
    Ok(Read {
        entries,
        capped: false,
    })
}

/// Reads every log from its position and queues what `wants` covers, in one transaction
/// with the new positions. Returns how many notices were queued.
///
/// **Order.** The logs are merged by time, so that a profile's notices keep the order in which
/// things happened to it: an event, then the segment change it caused (a change is dated when
/// it was evaluated, never before its event), then what came later. Events are read only
/// through the last profile checkpoint, whose segment changes are committed with it, so that a
/// change is never read a pass after a later event of the same profile. At equal times an
/// event comes first, then a merge, then a segment change (the cause before the effect).
pub async fn follow(store: &Store, wants: &HashSet<EventType>) -> Result<u64, StoreError> {
    let w = store.webhooks();
    let keys = [
        WebhookPosition::Source("events").key(),
        WebhookPosition::Source("merges").key(),
        WebhookPosition::Source("segments").key(),
    ];
    // The segment changes and merges are read between two reads of the profile checkpoint:
    // when both agree, no checkpoint committed meanwhile, so every change read came with a
    // checkpoint at or before it, and every event it could follow is at or before it too.
    let mut tries = 0;
    let (checkpoint, merges, changes) = loop {
        let before = store.events().profile_checkpoint().await?;
        let merges = read_log(
            w.webhook_position(&keys[1]).await?,
            |after| async move { store.events().merges_after(after, PAGE).await },
            |(seq, m): &(i64, MergeRecord)| {
                (*seq, m.at, Some(of_merge(*seq, m)).filter(|n| wanted(wants, n)))
            },
        )
        .await?;
        let changes = read_log(
            w.webhook_position(&keys[2]).await?,
            |after| async move { store.events().segment_changes_after(after, PAGE).await },
            |(seq, c): &(i64, SegmentChange)| {
                (*seq, c.at, Some(of_change(*seq, c)).filter(|n| wanted(wants, n)))
            },
        )
        .await?;
        if store.events().profile_checkpoint().await? == before {
            break (before, merges, changes);
        }
        tries += 1;
        if tries == 5 {
            // Checkpoints keep landing mid-read: the next pass tries again.
            return Ok(0);
        }
    };
    let events_from = w.webhook_position(&keys[0]).await?;
    let events = read_log(
        events_from,
        |after| async move {
            if after >= checkpoint {
                return Ok(Vec::new());
            }
            let mut page = store.events().events_after(after, PAGE).await?;
            page.retain(|e| e.seq <= checkpoint);
            Ok(page)
        },
        |e: &StoredEvent| (e.seq, e.received_at, of_event(e).filter(|n| wanted(wants, n))),
    )
    .await?;
    let logs = [events, merges, changes];
    if logs.iter().all(|l| l.entries.is_empty()) {
        return Ok(0);
    }
    // Each log's times as a running maximum, so that sorting never reorders a log itself.
    let mut merged: Vec<(DateTime<Utc>, usize, i64, Option<WebhookNotice>)> = Vec::new();
    let mut cutoff: Option<DateTime<Utc>> = None;
    for (rank, log) in logs.into_iter().enumerate() {
        let mut high = DateTime::<Utc>::MIN_UTC;
        for (seq, at, n) in log.entries {
            high = high.max(at);
            merged.push((high, rank, seq, n));
        }
        if log.capped {
            cutoff = Some(cutoff.map_or(high, |c| c.min(high)));
        }
    }
    merged.sort_by_key(|(at, rank, _, _)| (*at, *rank));
    if let Some(c) = cutoff {
        merged.retain(|(at, ..)| *at <= c);
    }
    let mut positions: Vec<(String, i64)> = Vec::new();
    for (rank, key) in keys.iter().enumerate() {
        if let Some(last) = merged.iter().filter(|m| m.1 == rank).map(|m| m.2).max() {
            positions.push((key.clone(), last));
        }
    }
    let notices: Vec<WebhookNotice> = merged.into_iter().filter_map(|m| m.3).collect();
    let queued = notices.len() as u64;
    w.enqueue_webhooks(notices, positions).await?;
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_core::{MessageId, ProfileId};

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn event(kind: EventKind, name: &str, body: Value) -> StoredEvent {
        let p = ProfileId::parse("prf_01a239c1372b75c184835d79011ab746").unwrap();
        StoredEvent {
            seq: 7,
            message_id: MessageId::parse("m-1").unwrap(),
            profile_id: p.clone(),
            origin_profile_id: p,
            kind,
            name: name.into(),
            timestamp: at(),
            received_at: at(),
            body: with_trust(body),
        }
    }

    /// Bodies are missive's own unless the case says otherwise.
    fn with_trust(mut body: Value) -> Value {
        if body.get(Trust::FIELD).is_none() {
            body[Trust::FIELD] = json!("missive");
        }
        body
    }

    #[test]
    fn the_logs_become_notices_without_personal_data() {
        let cases = [
            (
                event(
                    EventKind::Track,
                    "Email Opened",
                    json!({"properties": {"message_id": "msg_1", "ip": "1.2.3.4"}}),
                ),
                Some(("message.opened", json!({"message_id": "msg_1"}))),
            ),
            (
                event(
                    EventKind::Track,
                    "Email Link Clicked",
                    json!({"properties": {"message_id": "msg_1", "source": "journey:cart", "url": "https://shop.example/p/1?email=ada@example.com#x"}}),
                ),
                Some((
                    "message.clicked",
                    json!({"message_id": "msg_1", "source": "journey:cart", "url": "https://shop.example/p/1"}),
                )),
            ),
            (
                event(
                    EventKind::Track,
                    "Experiment Viewed",
                    json!({"properties": {"experiment_name": "subject", "variation_name": "b", "holdout": false, "message_id": "msg_2"}}),
                ),
                Some((
                    "experiment.viewed",
                    json!({"experiment": "subject", "variant": "b", "holdout": false, "message_id": "msg_2"}),
                )),
            ),
            (
                event(
                    EventKind::Identify,
                    "$identify",
                    json!({"traits": {"consent": {"email_marketing": false}, "email": "ada@example.com"}}),
                ),
                Some(("consent.changed", json!({"consent": {"email_marketing": false}}))),
            ),
            (
                event(
                    EventKind::Identify,
                    "$identify",
                    json!({"traits": {"email": "ada@example.com"}}),
                ),
                None,
            ),
            // The same name sent by a client is not missive's: no notice.
            (
                event(
                    EventKind::Track,
                    "Email Opened",
                    json!({"missiveTrust": "client", "properties": {"message_id": "msg_1"}}),
                ),
                None,
            ),
            (
                event(
                    EventKind::Track,
                    "Order Completed",
                    json!({"properties": {"total": 10}}),
                ),
                None,
            ),
        ];
        for (e, expected) in cases {
            let got = of_event(&e).map(|n| (n.kind.clone(), n.data.clone()));
            assert_eq!(got, expected.map(|(k, d)| (k.to_string(), d)), "{}", e.name);
        }
        let n = of_event(&cases_first()).unwrap();
        assert_eq!(n.key, "m-1");
        assert_eq!(
            n.profile_id.unwrap().as_str(),
            "prf_01a239c1372b75c184835d79011ab746"
        );
    }

    fn cases_first() -> StoredEvent {
        event(
            EventKind::Track,
            "Email Opened",
            json!({"properties": {"message_id": "msg_1"}}),
        )
    }

    #[test]
    fn segment_changes_and_merges_are_keyed_by_their_position() {
        let p = ProfileId::parse("prf_01a239c1372b75c184835d79011ab746").unwrap();
        let q = ProfileId::parse("prf_01a239c1372d761ea4074e200d5b5b58").unwrap();
        let c = SegmentChange {
            profile_id: p.clone(),
            segment: "vip".into(),
            entered: false,
            at: at(),
            cause: "time".into(),
        };
        let n = of_change(42, &c);
        assert_eq!((n.kind.as_str(), n.key.as_str()), ("segment.exited", "42"));
        assert_eq!(n.data, json!({"segment": "vip", "cause": "time"}));
        let m = MergeRecord {
            from: q.clone(),
            into: p.clone(),
            at: at(),
            cause: "m-9".into(),
        };
        let n = of_merge(3, &m);
        assert_eq!(n.kind, "profile.merged");
        assert_eq!(n.profile_id, Some(p));
        assert_eq!(n.data["merged_profile_id"], q.as_str());
    }
}
