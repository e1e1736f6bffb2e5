//! `missive cluster …`: the state of a cluster of missive nodes sharing this PostgreSQL store
//! (docs/operations.md).

use anyhow::{Context, bail};
use missive_cluster::leases::{Leases, connect};

use crate::config::Config;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// The nodes (alive or silent), which partitions each owns, their leases, and how far
    /// each partition's owner is behind the log (from JetStream, at `cluster.nats`).
    Status,
}

pub async fn run(cfg: Config, what: ClusterCommand) -> anyhow::Result<()> {
    match what {
        ClusterCommand::Status => status(&cfg).await,
    }
}

async fn status(cfg: &Config) -> anyhow::Result<()> {
    let url = cfg.store_url();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "cluster mode runs on PostgreSQL: set store = \"postgres://…\" (or --store); this configuration uses the embedded store at {url}"
        );
    }
    let client = connect(&url, None)
        .await
        .with_context(|| "connecting to the store's PostgreSQL")?;
    let services = connect(&url, None)
        .await
        .with_context(|| "connecting to the store's PostgreSQL")?;
    let Some(leases) = Leases::existing(client).await? else {
        println!("no cluster: no node has run in cluster mode on this store");
        return Ok(());
    };
    let (nodes, rows) = leases.status().await?;
    let ttl = std::time::Duration::from_secs(cfg.cluster.lease_ttl_seconds);
    let tenures = rows
        .iter()
        .filter(|l| l.owner.is_some() && l.remaining_us > 0)
        .map(|l| (l.partition, l.token))
        .collect();
    let lags = missive_cluster::status::lags(&cfg.cluster.log_config(), &tenures).await;
    let sending = missive_cluster::service::holder(&services, missive_cluster::service::SENDING).await?;
    print!(
        "{}{}{}",
        missive_cluster::status::render(&nodes, &rows, ttl),
        missive_cluster::service::render_holder("sending", sending.as_ref()),
        missive_cluster::status::render_lag(&lags)
    );
    Ok(())
}
