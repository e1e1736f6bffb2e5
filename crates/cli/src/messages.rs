//! `missive messages`: what became of messages and why, per journey (and step), broadcast or
//! person: one JSON object per line, newest first; `--counts` prints the counts by state and
//! by reason instead.

use anyhow::Context;
use clap::{ArgGroup, Args};
use missive_core::MessageSource;
use missive_engine::profiles::ProfileKey;
use missive_sending::messages::Messages;

use crate::config::Config;
use crate::operator::{audit, start_engine};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("of").required(true).args(["journey", "broadcast", "profile"])))]
pub struct MessagesArgs {
    /// The messages of this journey.
    #[arg(long, value_name = "NAME")]
    journey: Option<String>,
    /// Only those this step of the journey decided.
    #[arg(long, value_name = "STEP")]
    step: Option<String>,
    /// The messages of this broadcast.
    #[arg(long, value_name = "ID")]
    broadcast: Option<String>,
    /// The messages to this person: profile id, user id, anonymous id or e-mail address.
    #[arg(long, value_name = "KEY")]
    profile: Option<String>,
    /// At most this many (at most 1,000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the journey's or broadcast's counts by state and by reason, not the messages.
    #[arg(long, conflicts_with = "profile")]
    counts: bool,
}

pub async fn run(cfg: Config, args: MessagesArgs) -> anyhow::Result<()> {
    if args.step.is_some() && args.journey.is_none() {
        anyhow::bail!("--step: only a journey has steps; name it with --journey");
    }
    let engine = start_engine(&cfg).await?;
    let messages = Messages::new(&engine);
    let result = list(&engine, &messages, args).await;
    engine.shutdown().await;
    result
}

async fn list(
    engine: &missive_engine::Engine,
    messages: &Messages,
    args: MessagesArgs,
) -> anyhow::Result<()> {
    if let Some(key) = &args.profile {
        let id = engine
            .profiles()
            .resolve(&ProfileKey::parse(key))
            .await?
            .context("--profile: no profile has that id, user id, anonymous id or e-mail address")?;
        audit(
            engine.store(),
            "messages.read",
            format!("profile:{id}"),
            String::new(),
        )
        .await?;
        for m in messages.of_profile(&id, args.limit).await? {
            println!("{}", serde_json::to_string(&m)?);
        }
        return Ok(());
    }
    let source = match (args.journey, args.broadcast) {
        (Some(name), _) => MessageSource::Journey(name),
        (None, Some(id)) => MessageSource::Broadcast(id),
        (None, None) => anyhow::bail!("name a --journey, --broadcast or --profile"),
    };
    audit(engine.store(), "messages.read", source.to_string(), String::new()).await?;
    let page = messages
        .of_source(&source, args.step.as_deref(), None, args.limit)
        .await?;
    if args.counts {
        println!("{}", serde_json::to_string_pretty(&page.counts)?);
    } else {
        for m in &page.messages {
            println!("{}", serde_json::to_string(m)?);
        }
    }
    Ok(())
}
