//! `[cluster]`: running as one node of a cluster on NATS JetStream and PostgreSQL
//! (`missive serve --cluster`; docs/operations.md, "Cluster mode").

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// One node's cluster settings. Every node of a cluster has the same ones but `node`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Run as a cluster node (also `missive serve --cluster`).
    pub enabled: bool,
    /// The NATS server(s) with JetStream.
    pub nats: String,
    /// This node's name, unique in the cluster and the same across its restarts (default:
    /// the host name).
    pub node: Option<String>,
    /// How many partitions the profiles are hashed into: fixed when the cluster is created.
    pub partitions: u16,
    /// How long a partition's lease lasts: a dead node's partitions move within about 1.3×.
    pub lease_ttl_seconds: u64,
    /// The JetStream stream that is the log, and its subjects' prefix.
    pub stream: String,
    pub subject_prefix: String,
    /// Copies JetStream keeps: 3 in production (a NATS cluster of 3 or 5 servers).
    pub replicas: usize,
    /// How long the log keeps events: longer than any outage a node may need to catch up from.
    pub max_age_hours: u64,
    /// JetStream drops a repeated `messageId` within this window.
    pub duplicate_window_seconds: u64,
    /// Ingest answers 503 when JetStream has not acknowledged within this.
    pub publish_timeout_ms: u64,
    /// Events a partition's owner reads per batch.
    pub batch: usize,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            enabled: false,
            nats: "nats://127.0.0.1:4222".into(),
            node: None,
            partitions: missive_cluster::DEFAULT_PARTITIONS,
            lease_ttl_seconds: missive_cluster::DEFAULT_TTL.as_secs(),
            stream: "MISSIVE_EVENTS".into(),
            subject_prefix: "missive.events".into(),
            replicas: 1,
            max_age_hours: 7 * 24,
            duplicate_window_seconds: 120,
            publish_timeout_ms: 5_000,
            batch: 1_000,
        }
    }
}

impl ClusterSection {
    /// Checked at start-up; the error names the key.
    pub fn check(&self, store: Option<&str>) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if !store.is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            bail!(
                "cluster: cluster mode needs the PostgreSQL store (store = \"postgres://…\"), shared by every node"
            );
        }
        if let Err(e) = missive_cluster::PartitionCount::new(i64::from(self.partitions)) {
            bail!("cluster.partitions: {e}");
        }
        if self.lease_ttl_seconds < 2 {
            bail!("cluster.lease_ttl_seconds: at least 2 (a round runs every third of it)");
        }
        if !(1..=5).contains(&self.replicas) {
            bail!("cluster.replicas: 1 to 5 (JetStream's limit); 3 in production");
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.stream) {
            bail!("cluster.stream: letters, digits, '-' and '_' only");
        }
        if self.subject_prefix.is_empty() || self.subject_prefix.split('.').any(|t| !name_ok(t)) {
            bail!("cluster.subject_prefix: dot-separated tokens of letters, digits, '-' and '_'");
        }
        if let Some(node) = &self.node
            && !name_ok(node)
        {
            bail!("cluster.node: letters, digits, '-' and '_' only");
        }
        Ok(())
    }

    /// The node's name: as configured, else the host's.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().replace('.', "-"))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".into())
        })
    }

    /// Where the log is and how it is kept.
    pub fn log_config(&self) -> missive_cluster::LogConfig {
        let mut log = missive_cluster::LogConfig::new(&self.nats);
        log.stream = self.stream.clone();
        log.subject_prefix = self.subject_prefix.clone();
        log.replicas = self.replicas;
        log.max_age = Duration::from_secs(self.max_age_hours * 3600);
        log.duplicate_window = Duration::from_secs(self.duplicate_window_seconds);
        log.publish_timeout = Duration::from_millis(self.publish_timeout_ms.max(100));
        log
    }

    /// The node's settings for `missive_cluster::Node::start`; `keyring` when the store is
    /// encrypted (the log is sealed too).
    pub fn node_config(
        &self,
        postgres_url: &str,
        address: &str,
        keyring: Option<std::sync::Arc<missive_privacy::Keyring>>,
    ) -> missive_cluster::NodeConfig {
        missive_cluster::NodeConfig {
            log: self.log_config(),
            node: self.node_name(),
            address: address.to_owned(),
            // Checked at start-up.
            partitions: missive_cluster::PartitionCount::new(i64::from(self.partitions)).unwrap_or_default(),
            lease_ttl: Duration::from_secs(self.lease_ttl_seconds),
            batch: self.batch,
            postgres_url: postgres_url.to_owned(),
            schema: None,
            keyring,
        }
    }
}
