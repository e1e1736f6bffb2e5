//! `missive cluster …`: the state of a cluster of missive nodes sharing this PostgreSQL store
//! (docs/operations.md).

use anyhow::{Context, bail};
use missive_cluster::leases::{Leases, connect};

use crate::config::Config;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// The nodes (alive or silent), which partitions each owns, and their leases.
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
    let Some(leases) = Leases::existing(client).await? else {
        println!("no cluster: no node has run in cluster mode on this store");
        return Ok(());
    };
    let (nodes, rows) = leases.status().await?;
    print!(
        "{}",
        missive_cluster::status::render(&nodes, &rows, missive_cluster::DEFAULT_TTL)
    );
    Ok(())
}
