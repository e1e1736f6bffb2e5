//! `missive cluster status` as text: the nodes with how long since each was heard from, and
//! for each owner the partitions it holds, with the leases' tokens and time left (pure: views
//! in, text out); and the two reads of the log it rests on, each partition's lag (`lags`) and
//! whether every partition has applied all its subject holds (`unsettled`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::leases::{LeaseView, NodeView};

/// Partitions as short ranges: `0-3, 7, 9-10`.
pub fn ranges(mut parts: Vec<u16>) -> String {
    parts.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let start = parts[i];
        let mut end = start;
        while i + 1 < parts.len() && parts[i + 1] == end + 1 {
            i += 1;
            end = parts[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

/// Events each partition's owner has still to read or commit: what JetStream reports pending
/// and unacknowledged for the consumer of the partition's current tenure (`tenures`: partition
/// → lease token). Partitions whose owner has not read yet are left out.
pub async fn lags(
    config: &crate::log::LogConfig,
    tenures: &BTreeMap<u16, i64>,
) -> Result<BTreeMap<u16, u64>, String> {
    let client = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::ConnectOptions::new()
            .name("missive-cluster-status")
            .connect(&config.nats),
    )
    .await
    .map_err(|_| format!("NATS at {} did not answer within 3 s", config.nats))?
    .map_err(|e| format!("NATS at {}: {e}", config.nats))?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| format!("JetStream stream {}: {e}", config.stream))?;
    let mut out = BTreeMap::new();
    for (p, token) in tenures {
        if let Ok(info) = stream
            .consumer_info(crate::owner::consumer_name(*p, *token))
            .await
        {
            out.insert(*p, info.num_pending + info.num_ack_pending as u64);
        }
    }
    Ok(out)
}

/// The partitions whose owners have not yet applied everything the log holds for them (a
/// partition's `applied_seq` below the stream sequence of the last message on its subject):
/// none once ingest has settled. For tests and tools that wait for what they sent to be in
/// the profiles (then `Engine::sync` on the owner).
pub async fn unsettled(
    js: &async_nats::jetstream::Context,
    config: &crate::log::LogConfig,
    store: &missive_store::Store,
    partitions: crate::PartitionCount,
) -> Result<Vec<u16>, String> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| format!("JetStream stream {}: {e}", config.stream))?;
    let all: Vec<u16> = (0..partitions.get()).collect();
    let marks = store
        .events()
        .partition_marks(all.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut behind = Vec::new();
    for p in all {
        let last = match stream.get_last_raw_message_by_subject(&config.subject(p)).await {
            Ok(m) => m.sequence as i64,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => 0,
            Err(e) => return Err(format!("the last message of partition {p}: {e}")),
        };
        let applied = marks
            .iter()
            .find(|m| m.partition == p)
            .map_or(0, |m| m.applied_seq);
        if applied < last {
            behind.push(p);
        }
    }
    Ok(behind)
}

/// The lag line of the report: the total, and the partitions furthest behind.
pub fn render_lag(lags: &Result<BTreeMap<u16, u64>, String>) -> String {
    let lags = match lags {
        Err(e) => return format!("lag: not known ({e})\n"),
        Ok(l) => l,
    };
    let total: u64 = lags.values().sum();
    if total == 0 {
        return format!(
            "lag: 0 events behind in all {} partitions read so far\n",
            lags.len()
        );
    }
    let mut behind: Vec<(u16, u64)> = lags
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| (*p, *n))
        .collect();
    behind.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<String> = behind.iter().take(8).map(|(p, n)| format!("p{p} {n}")).collect();
    format!(
        "lag: {total} events behind in {} partitions (furthest: {})\n",
        behind.len(),
        top.join(", ")
    )
}

/// The status report; `alive` is how recent a heartbeat must be to count as alive.
pub fn render(nodes: &[NodeView], leases: &[LeaseView], alive: Duration) -> String {
    let alive_us = i64::try_from(alive.as_micros()).unwrap_or(i64::MAX);
    let mut out = String::new();
    let _ = writeln!(out, "nodes ({}):", nodes.len());
    for n in nodes {
        let state = if n.silent_us < alive_us { "alive" } else { "silent" };
        let _ = writeln!(
            out,
            "  {:<24} {:<22} {state:<6} last heard {:.1} s ago",
            n.node,
            n.address,
            n.silent_us as f64 / 1e6
        );
    }
    let mut by_owner: BTreeMap<String, Vec<&LeaseView>> = BTreeMap::new();
    for l in leases {
        let owner = match &l.owner {
            Some(o) if l.remaining_us > 0 => o.clone(),
            _ => "(no owner)".to_owned(),
        };
        by_owner.entry(owner).or_default().push(l);
    }
    let _ = writeln!(out, "partitions ({}):", leases.len());
    for (owner, held) in &by_owner {
        let parts: Vec<u16> = held.iter().map(|l| l.partition).collect();
        let left = held.iter().map(|l| l.remaining_us).min().unwrap_or(0).max(0);
        let _ = write!(out, "  {owner:<24} {:>4}  {}", held.len(), ranges(parts));
        if owner != "(no owner)" {
            let _ = write!(out, "  (leases end in ≥ {:.1} s)", left as f64 / 1e6);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_line_names_the_partitions_furthest_behind() {
        let lags: BTreeMap<u16, u64> = [(0, 0), (1, 40), (2, 0), (3, 80), (4, 40)].into();
        assert_eq!(
            render_lag(&Ok(lags)),
            "lag: 160 events behind in 3 partitions (furthest: p3 80, p1 40, p4 40)\n"
        );
        assert_eq!(
            render_lag(&Ok([(0, 0), (1, 0)].into())),
            "lag: 0 events behind in all 2 partitions read so far\n"
        );
        assert_eq!(
            render_lag(&Err("NATS down".into())),
            "lag: not known (NATS down)\n"
        );
    }

    #[test]
    fn partitions_print_as_ranges() {
        assert_eq!(ranges(vec![3, 0, 1, 2, 7, 9, 10]), "0-3, 7, 9-10");
        assert_eq!(ranges(vec![]), "");
        assert_eq!(ranges(vec![5]), "5");
    }

    #[test]
    fn the_report_groups_partitions_by_live_owner() {
        let nodes = vec![
            NodeView {
                node: "a".into(),
                address: "10.0.0.1:8080".into(),
                silent_us: 500_000,
            },
            NodeView {
                node: "b".into(),
                address: "10.0.0.2:8080".into(),
                silent_us: 30_000_000,
            },
        ];
        let lease = |p: u16, owner: Option<&str>, remaining_us: i64| LeaseView {
            partition: p,
            owner: owner.map(str::to_owned),
            token: 1,
            remaining_us,
        };
        let leases = vec![
            lease(0, Some("a"), 4_000_000),
            lease(1, Some("a"), 3_000_000),
            lease(2, Some("b"), -5),
            lease(3, None, 0),
        ];
        let text = render(&nodes, &leases, Duration::from_secs(6));
        assert!(
            text.contains("a                        10.0.0.1:8080          alive  last heard 0.5 s ago"),
            "{text}"
        );
        assert!(text.contains("silent last heard 30.0 s ago"), "{text}");
        assert!(
            text.contains("  a                           2  0-1  (leases end in ≥ 3.0 s)"),
            "{text}"
        );
        assert!(text.contains("  (no owner)                  2  2-3\n"), "{text}");
    }
}
