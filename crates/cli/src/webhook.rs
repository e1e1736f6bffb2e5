//! `missive webhook`: outbound webhook endpoints on the store, as the API manages them
//! (`/v1/webhooks`): create, list, show, test, pause, resume, rotate, attempts, dead letters
//! and their replay, delete. Changes are audited (actor `cli:USER`). Deliveries themselves are
//! made by `missive serve`; `test` and `replay` queue for it.

use std::path::PathBuf;

use anyhow::Context;
use missive_sending::webhooks::Webhooks;

use crate::config::Config;
use crate::operator::{audit_success, start_engine};

#[derive(clap::Subcommand, Debug)]
pub enum WebhookCommand {
    /// Create an endpoint from a JSON file (name, url, events, and optionally segments,
    /// journeys, personal_data, rate_per_second, timeout_ms, secret; docs/integrations.md).
    /// Prints it with its signing secret, shown this once.
    Create {
        /// The endpoint's JSON file.
        #[arg(long)]
        file: PathBuf,
    },
    /// List endpoints, one JSON object per line (no secrets).
    List,
    /// Print one endpoint and where its delivery stands.
    Show {
        /// The endpoint's name.
        name: String,
    },
    /// Queue a sample (`webhook.test`) for the endpoint.
    Test {
        /// The endpoint's name.
        name: String,
    },
    /// Stop delivering to the endpoint; what is queued waits for `resume`.
    Pause {
        /// The endpoint's name.
        name: String,
    },
    /// Deliver again, starting with what waited.
    Resume {
        /// The endpoint's name.
        name: String,
    },
    /// Rotate the signing secret; the old one keeps signing for the overlap. Prints the new
    /// secret, shown this once.
    Rotate {
        /// The endpoint's name.
        name: String,
        /// Hours the old secret keeps signing.
        #[arg(long, default_value_t = 24)]
        overlap_hours: i64,
    },
    /// The endpoint's recent attempts, newest first, one JSON object per line.
    Attempts {
        /// The endpoint's name.
        name: String,
        /// How many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Notices the endpoint did not take within the retry window, one JSON object per line.
    DeadLetters {
        /// The endpoint's name.
        name: String,
        /// How many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Queue dead letters again for the endpoint: those named with --seq, or all.
    Replay {
        /// The endpoint's name.
        name: String,
        /// A dead letter's `seq` (repeat for several; none: all).
        #[arg(long = "seq")]
        seqs: Vec<i64>,
    },
    /// Delete the endpoint (what it had not taken is dropped).
    Delete {
        /// The endpoint's name.
        name: String,
    },
}

pub async fn run(cfg: Config, cmd: WebhookCommand) -> anyhow::Result<()> {
    let engine = start_engine(&cfg).await?;
    let webhooks = Webhooks::new(engine.clone(), cfg.app_config().webhooks)?;
    let store = engine.store().clone();
    let result: anyhow::Result<()> = async {
        match cmd {
            WebhookCommand::Create { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let req: missive_webhooks::EndpointIn = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not a webhook endpoint (docs/integrations.md)",
                        file.display()
                    )
                })?;
                let name = req.name.clone();
                let r = webhooks.create(req).await;
                audit_success(&r, &store, "webhook.create", format!("webhook:{name}")).await?;
                println!("{}", serde_json::to_string_pretty(&r?)?);
            }
            WebhookCommand::List => {
                for e in webhooks.list().await? {
                    println!("{}", serde_json::to_string(&e)?);
                }
            }
            WebhookCommand::Show { name } => {
                println!("{}", serde_json::to_string_pretty(&webhooks.get(&name).await?)?)
            }
            WebhookCommand::Test { name } => {
                let seq = webhooks.test(&name).await?;
                println!("queued webhook.test as msg_{seq}; `missive serve` delivers it");
            }
            WebhookCommand::Pause { name } => {
                let r = webhooks.set_paused(&name, true).await;
                audit_success(&r, &store, "webhook.pause", format!("webhook:{name}")).await?;
                println!("{}", serde_json::to_string(&r?)?);
            }
            WebhookCommand::Resume { name } => {
                let r = webhooks.set_paused(&name, false).await;
                audit_success(&r, &store, "webhook.resume", format!("webhook:{name}")).await?;
                println!("{}", serde_json::to_string(&r?)?);
            }
            WebhookCommand::Rotate { name, overlap_hours } => {
                let r = webhooks.rotate(&name, None, Some(overlap_hours)).await;
                audit_success(&r, &store, "webhook.rotate", format!("webhook:{name}")).await?;
                println!("{}", serde_json::to_string_pretty(&r?)?);
            }
            WebhookCommand::Attempts { name, limit } => {
                for a in webhooks.attempts(&name, limit).await? {
                    let line = serde_json::json!({
                        "seq": a.seq, "webhook_id": a.webhook_id, "type": a.kind, "status": a.status,
                        "error": a.error, "at": a.at, "duration_ms": a.duration_ms,
                    });
                    println!("{line}");
                }
            }
            WebhookCommand::DeadLetters { name, limit } => {
                for l in webhooks.dead_letters(&name, limit).await? {
                    let line = serde_json::json!({
                        "seq": l.notice.seq, "type": l.notice.kind, "profile_id": l.notice.profile_id,
                        "data": l.notice.data, "reason": l.reason, "at": l.at,
                    });
                    println!("{line}");
                }
            }
            WebhookCommand::Replay { name, seqs } => {
                let r = webhooks.replay(&name, (!seqs.is_empty()).then_some(seqs)).await;
                audit_success(&r, &store, "webhook.replay", format!("webhook:{name}")).await?;
                println!("replayed {} dead letters; `missive serve` delivers them", r?);
            }
            WebhookCommand::Delete { name } => {
                let r = webhooks.delete(&name).await;
                audit_success(&r, &store, "webhook.delete", format!("webhook:{name}")).await?;
                r?;
                println!("deleted webhook endpoint {name}");
            }
        }
        Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}
