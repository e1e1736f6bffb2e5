//! `missive schema`: the workspace's schema (what `GET /v1/schema` shows), and declarations
//! of fields before data carries them.

use std::io::Write;

use anyhow::Context;
use missive_core::schema::{FieldKey, FieldType};

use crate::config::Config;
use crate::operator::audit_success;
use crate::stores::open_store;

#[derive(clap::Subcommand, Debug)]
pub enum SchemaCommand {
    /// Print every known trait, event and event property, one JSON object per line, with the
    /// type segments check it as (`null`: any) and where it is known from.
    Show,
    /// Declare a field, so that segments can name it before any data carries it.
    Declare {
        #[command(subcommand)]
        field: FieldArg,
    },
    /// Withdraw a declaration (what was observed of the field stays).
    Undeclare {
        #[command(subcommand)]
        field: FieldArg,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum FieldArg {
    /// A trait of profiles (`traits.NAME`).
    Trait {
        /// The trait's name, as sent in `identify`.
        name: String,
        /// string, number, bool, time, list or object; any type when left out.
        #[arg(long = "type", value_parser = parse_type)]
        ty: Option<FieldType>,
    },
    /// An event name (`count(event "NAME")`).
    Event {
        /// The event's name, as sent in `track`.
        name: String,
    },
    /// A property of an event (`where properties.NAME`).
    Property {
        /// The event's name.
        event: String,
        /// The property's name.
        name: String,
        /// string, number, bool, time, list or object; any type when left out.
        #[arg(long = "type", value_parser = parse_type)]
        ty: Option<FieldType>,
    },
}

fn parse_type(s: &str) -> Result<FieldType, String> {
    FieldType::parse(s)
        .ok_or_else(|| format!("{s:?} is not a type: use string, number, bool, time, list or object"))
}

impl FieldArg {
    fn key(self) -> (FieldKey, Option<FieldType>) {
        match self {
            FieldArg::Trait { name, ty } => (FieldKey::trait_(name), ty),
            FieldArg::Event { name } => (FieldKey::event(name), None),
            FieldArg::Property { event, name, ty } => (FieldKey::property(event, name), ty),
        }
    }
}

fn target(key: &FieldKey) -> String {
    match key.kind {
        missive_core::schema::FieldKind::Property => format!("schema:property:{}:{}", key.event, key.name),
        k => format!("schema:{}:{}", k.as_str(), key.name),
    }
}

pub async fn run(cfg: Config, cmd: SchemaCommand) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    match cmd {
        SchemaCommand::Show => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for f in missive_engine::schema::fields(&store).await? {
                let mut v = serde_json::to_value(&f)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), serde_json::to_value(f.check_type())?);
                }
                // A closed pipe (`| head`) ends the listing quietly.
                if writeln!(out, "{v}").is_err() {
                    return Ok(());
                }
            }
            let _ = out.flush();
            Ok(())
        }
        SchemaCommand::Declare { field } => {
            let (key, ty) = field.key();
            let at = chrono::Utc::now();
            let result = missive_engine::schema::declare(&store, key.clone(), ty, at).await;
            audit_success(&result, &store, "schema.declare", target(&key)).await?;
            let replaced = result.context("declaring the field")?;
            let ty = ty.map_or("any type", FieldType::as_str);
            let what = if replaced {
                "declaration replaced"
            } else {
                "declared"
            };
            println!("{what}: {} {:?} ({ty})", key.kind.as_str(), key.name);
            Ok(())
        }
        SchemaCommand::Undeclare { field } => {
            let (key, _) = field.key();
            let result = missive_engine::schema::undeclare(&store, key.clone()).await;
            audit_success(&result, &store, "schema.undeclare", target(&key)).await?;
            if result? {
                println!("declaration withdrawn: {} {:?}", key.kind.as_str(), key.name);
                Ok(())
            } else {
                anyhow::bail!("{} {:?} is not declared", key.kind.as_str(), key.name)
            }
        }
    }
}
