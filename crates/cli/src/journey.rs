//! `missive journey` and `missive broadcast`: journeys and broadcasts from the command line, on
//! the store directly (stop `missive serve` first, or use the API), like `segment` and
//! `template`. Changes are audited as `cli:USER`.

use anyhow::Context;
use clap::Subcommand;
use missive_sending::broadcasts::{BroadcastIn, Broadcasts};
use missive_sending::journeys::{JourneyDef, Journeys};
use std::path::PathBuf;

use crate::config::Config;
use crate::operator::{audit_success, start_engine};

#[derive(Debug, Subcommand)]
pub enum JourneyCommand {
    /// Save (create or replace) a journey from a JSON definition (docs/journeys.md).
    Save {
        /// The journey's name: letters, digits, `-` and `_`.
        name: String,
        /// The JSON definition: {"trigger": …, "key": …, "steps": […]}.
        file: PathBuf,
    },
    /// List the journeys: name, version and trigger, one JSON object per line.
    List,
    /// Print a journey's definition.
    Show {
        /// The journey's name.
        name: String,
    },
    /// Delete a journey (its running instances stop at their next step).
    Delete {
        /// The journey's name.
        name: String,
    },
    /// The journey's instances, newest first, one JSON object per line.
    Instances {
        /// The journey's name.
        name: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

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

pub async fn run_journey(cfg: Config, cmd: JourneyCommand) -> anyhow::Result<()> {
    let engine = start_engine(&cfg).await?;
    let journeys = Journeys::new(engine.clone());
    let result = async {
        match cmd {
            JourneyCommand::Save { name, file } => {
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let def: JourneyDef = serde_json::from_str(&text).with_context(|| {
                    format!("{}: not a journey definition (docs/journeys.md)", file.display())
                })?;
                let saved = journeys.save(&name, def, engine.clock().now()).await;
                audit_success(&saved, engine.store(), "journey.save", format!("journey:{name}")).await?;
                println!("saved journey {name}, version {}", saved?);
            }
            JourneyCommand::List => {
                for d in journeys.definitions().await?.iter() {
                    let line =
                        serde_json::json!({"name": d.name, "version": d.version, "trigger": d.def.trigger});
                    println!("{line}");
                }
            }
            JourneyCommand::Show { name } => {
                let (doc, _) = journeys.get(&name).await?;
                println!("{}", serde_json::to_string_pretty(&doc.body)?);
            }
            JourneyCommand::Delete { name } => {
                let deleted = journeys.delete(&name).await;
                audit_success(
                    &deleted,
                    engine.store(),
                    "journey.delete",
                    format!("journey:{name}"),
                )
                .await?;
                deleted?;
                println!("deleted journey {name}");
            }
            JourneyCommand::Instances { name, limit } => {
                journeys.get(&name).await?;
                for i in journeys.instances(&name, limit.clamp(1, 10_000)).await? {
                    let line = serde_json::json!({
                        "id": i.id, "profile_id": i.profile_id.to_string(), "key": i.key, "step": i.step,
                        "status": i.status.as_str(), "wake_at": i.wake_at, "waiting_for": i.waiting_for,
                        "entered_at": i.entered_at, "updated_at": i.updated_at,
                    });
                    println!("{line}");
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    engine.shutdown().await;
    result
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
