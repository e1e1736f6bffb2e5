//! `missive journey`: journeys from the command line, on the store directly (stop `missive
//! serve` first, or use the API), like `segment` and `template`. Changes are audited as
//! `cli:USER`.

use anyhow::Context;
use clap::Subcommand;
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
