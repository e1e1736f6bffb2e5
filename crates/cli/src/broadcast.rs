//! `missive broadcast`: broadcasts from the command line, on the store directly (stop `missive
//! serve` first, or use the API); the running server sends them. Changes are audited as
//! `cli:USER`.

use clap::Subcommand;
use missive_sending::broadcasts::{BroadcastIn, Broadcasts};

use crate::config::Config;
use crate::operator::{audit_success, start_engine};

#[derive(Debug, Subcommand)]
pub enum BroadcastCommand {
    /// Create a broadcast of a template to a saved segment; the running server sends it.
    Create {
        /// The template to send.
        #[arg(long)]
        template: String,
        /// The saved segment whose members receive it.
        #[arg(long)]
        segment: String,
        /// Messages per second (0: as fast as the sender goes).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// A preference-centre topic: people who declined it are skipped.
        #[arg(long)]
        topic: Option<String>,
        /// An experiment every message takes part in (subject, template, holdout or content).
        #[arg(long)]
        experiment: Option<String>,
        /// Each message waits for its recipient's best hour (the send-time model) within this
        /// window (1h to 7d), e.g. `24h`.
        #[arg(long, value_name = "WITHIN")]
        best_time: Option<String>,
    },
    /// List the broadcasts, one JSON object per line.
    List,
    /// A broadcast's state and its messages by state and reason.
    Show {
        /// The broadcast's id (`brd_…`).
        id: String,
    },
    /// Pause a broadcast: what it queued is held.
    Pause {
        /// The broadcast's id.
        id: String,
    },
    /// Resume a paused broadcast.
    Resume {
        /// The broadcast's id.
        id: String,
    },
    /// Cancel a broadcast: what it queued is skipped.
    Cancel {
        /// The broadcast's id.
        id: String,
    },
}

pub async fn run_broadcast(cfg: Config, cmd: BroadcastCommand) -> anyhow::Result<()> {
    let engine = start_engine(&cfg).await?;
    let broadcasts = Broadcasts::new(engine.clone());
    let result = async {
        let show = |p: &missive_sending::broadcasts::Progress| -> anyhow::Result<()> {
            println!("{}", serde_json::to_string_pretty(p)?);
            Ok(())
        };
        match cmd {
            BroadcastCommand::Create {
                template,
                segment,
                rate,
                topic,
                experiment,
                best_time,
            } => {
                cfg.privacy_config()
                    .check_topic(topic.as_deref())
                    .map_err(|m| anyhow::anyhow!("--topic: {m}"))?;
                let created = broadcasts
                    .create(BroadcastIn {
                        template,
                        segment,
                        send_at: None,
                        rate_per_second: rate,
                        class: Default::default(),
                        topic,
                        experiment,
                        at: best_time
                            .is_some()
                            .then_some(missive_sending::broadcasts::SendTiming::BestTime),
                        within: best_time,
                    })
                    .await;
                let target = created
                    .as_ref()
                    .map_or(String::new(), |p| format!("broadcast:{}", p.broadcast.id));
                audit_success(&created, engine.store(), "broadcast.create", target).await?;
                show(&created?)?;
            }
            BroadcastCommand::List => {
                for b in broadcasts.list().await? {
                    println!("{}", serde_json::to_string(&b)?);
                }
            }
            BroadcastCommand::Show { id } => show(&broadcasts.get(&id).await?)?,
            BroadcastCommand::Pause { id } => {
                let r = broadcasts.pause(&id).await;
                audit_success(&r, engine.store(), "broadcast.pause", format!("broadcast:{id}")).await?;
                show(&r?)?;
            }
            BroadcastCommand::Resume { id } => {
                let r = broadcasts.resume(&id).await;
                audit_success(&r, engine.store(), "broadcast.resume", format!("broadcast:{id}")).await?;
                show(&r?)?;
            }
            BroadcastCommand::Cancel { id } => {
                let r = broadcasts.cancel(&id).await;
                audit_success(&r, engine.store(), "broadcast.cancel", format!("broadcast:{id}")).await?;
                show(&r?)?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}
