//! `missive encryption …`, `missive apikey …` and `missive privacy …`: key rotation, API keys,
//! and data-subject rights from the command line. Like the other commands that open the store,
//! they need the embedded store not to be held by a running `missive serve` (the API does the
//! same over HTTP).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use missive_engine::privacy::Privacy;
use missive_engine::profiles::ProfileKey;
use missive_store::{EncryptedStore, Role};

use crate::config::Config;
use crate::keyfile::{load_or_create_keyring, write_key_file};
use crate::operator::audit;
use crate::stores::open_store_with_keys;

#[derive(Debug, Subcommand)]
pub enum EncryptionCommand {
    /// Master keys and how many data keys each wraps.
    Status,
    /// Adds a new master key to the key file, makes it the active one, and re-wraps every data
    /// key under it. The old key stays in the file until `retire` removes it.
    Rotate,
    /// Removes a master key from the key file, once no data key is wrapped under it.
    Retire {
        /// The key id (`k1`, …), as `status` lists it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Creates a key and prints it once.
    Create {
        /// admin, marketer, analyst, privacy_officer or write.
        #[arg(long)]
        role: String,
        /// Who or what the key is for ("shop backend", "Ada (marketing)"); shown in lists
        /// and the audit log.
        #[arg(long)]
        label: String,
    },
    /// Lists keys (never their secrets).
    List,
    /// Revokes a key.
    Revoke {
        /// The key's id (`key_…`, from `missive apikey list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Writes everything stored about a person as JSON.
    Export {
        /// A profile id, user id, anonymous id or e-mail address.
        key: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erases a person: events, profile, versions, messages, journeys and their data key. Only
    /// keyed hashes stay, so that a re-import is dropped and nothing is sent to them.
    Erase {
        /// The person: a profile id, user id, anonymous id or e-mail address.
        key: String,
        /// Confirms: erasure cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Purges events older than `privacy.event_retention_days` now.
    Purge,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this actor (`key:key_…`, `cli:USER`, `link:preference-centre`, …).
    #[arg(long)]
    actor: Option<String>,
    /// Only this target (`profile:prf_…`, `key:key_…`, …).
    #[arg(long)]
    target: Option<String>,
    /// Only this action (`profile.erase`, `GET /v1/profiles/{key}`, …).
    #[arg(long)]
    action: Option<String>,
    /// At most this many entries, newest first (at most 10,000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// `missive audit`: the privacy officer's view of the audit log from the command line.
pub async fn audit_log(cfg: Config, args: AuditArgs) -> anyhow::Result<()> {
    let (store, _) = open_store_with_keys(&cfg).await?;
    let entries = store
        .access()
        .audit_entries(missive_store::AuditQuery {
            before_seq: None,
            actor: args.actor,
            target: args.target,
            action: args.action,
            limit: args.limit.clamp(1, 10_000),
        })
        .await?;
    for e in entries {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

async fn encrypted_store(cfg: &Config) -> anyhow::Result<EncryptedStore> {
    if !cfg.privacy.encrypt {
        bail!("privacy.encrypt is off: there are no data keys to manage");
    }
    let keyring = Arc::new(load_or_create_keyring(&cfg.key_file())?);
    let bare = missive_store::open(&cfg.store_url()).await?;
    Ok(EncryptedStore::new(bare, keyring))
}

pub async fn encryption(cfg: Config, what: EncryptionCommand) -> anyhow::Result<()> {
    let path = cfg.key_file();
    match what {
        EncryptionCommand::Status => {
            let store = encrypted_store(&cfg).await?;
            let keyring = store.keyring().clone();
            let counts = store.data_keys_by_master().await?;
            println!("key file: {}", path.display());
            for id in keyring.key_ids() {
                let active = if id == keyring.active_key_id() {
                    " (active)"
                } else {
                    ""
                };
                println!(
                    "  {id}{active}: wraps {} data keys",
                    counts.get(id).copied().unwrap_or(0)
                );
            }
            Ok(())
        }
        EncryptionCommand::Rotate => {
            let old = load_or_create_keyring(&path)?;
            let (rotated, new_id) = old.with_new_master_key();
            // The file first: a data key wrapped under the new key must never exist without it.
            write_key_file(&path, &rotated)?;
            let bare = missive_store::open(&cfg.store_url()).await?;
            let store = EncryptedStore::new(bare, Arc::new(rotated));
            let n = store.rewrap_all_data_keys().await?;
            audit(
                &store.store(),
                "encryption.rotate",
                format!("master_key:{new_id}"),
                format!("{n} data keys re-wrapped"),
            )
            .await?;
            println!("new active master key {new_id}; re-wrapped {n} data keys");
            println!(
                "older keys stay in {} until `missive encryption retire ID`",
                path.display()
            );
            Ok(())
        }
        EncryptionCommand::Retire { id } => {
            let store = encrypted_store(&cfg).await?;
            let keyring = store.keyring().clone();
            if id == keyring.active_key_id() {
                bail!("{id} is the active master key: rotate first");
            }
            if !keyring.key_ids().any(|k| k == id) {
                bail!("the key file has no master key {id}");
            }
            let still = store.data_keys_by_master().await?.get(&id).copied().unwrap_or(0);
            if still > 0 {
                bail!(
                    "{still} data keys are still wrapped under {id}: run `missive encryption rotate` first"
                );
            }
            let retired = keyring
                .without_master_key(&id)
                .with_context(|| format!("the key file has no older master key {id}"))?;
            write_key_file(&path, &retired)?;
            audit(
                &store.store(),
                "encryption.retire",
                format!("master_key:{id}"),
                String::new(),
            )
            .await?;
            println!("retired master key {id}");
            Ok(())
        }
    }
}

pub async fn apikey(cfg: Config, what: ApiKeyCommand) -> anyhow::Result<()> {
    let (store, _) = open_store_with_keys(&cfg).await?;
    missive_engine::auth::ensure_workspace(&store).await?;
    let auth = missive_engine::auth::Authenticator::new(store.clone());
    let now = chrono::Utc::now();
    match what {
        ApiKeyCommand::Create { role, label } => {
            let role = Role::parse(&role).with_context(|| {
                format!(
                    "unknown role {role:?}: use one of {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })?;
            let (record, secret) = auth.create_key(role, &label, now).await?;
            audit(
                &store,
                "key.create",
                format!("key:{}", record.id),
                format!("role {}", role.as_str()),
            )
            .await?;
            println!("{}  {}  {}", record.id, role.as_str(), record.label);
            println!("{}", secret.expose());
            eprintln!("the key is shown once: store it now");
        }
        ApiKeyCommand::List => {
            for k in auth.list_keys().await? {
                let state = match k.revoked_at {
                    Some(at) => format!("revoked {}", at.to_rfc3339()),
                    None => "live".into(),
                };
                println!("{}  {:<15}  {:<8}  {}", k.id, k.role.as_str(), state, k.label);
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let id = missive_core::ApiKeyId::parse(&id)?;
            if !auth.revoke_key(&id, now).await? {
                bail!("no live key has the id {id}");
            }
            audit(&store, "key.revoke", format!("key:{id}"), String::new()).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn privacy(cfg: Config, what: PrivacyCommand) -> anyhow::Result<()> {
    let engine = crate::operator::start_engine(&cfg).await?;
    let mut privacy = Privacy::new(engine.clone());
    if cfg.delivery.smtp.is_none() {
        privacy = privacy.with_maildir(cfg.data_dir.join("maildir"));
    }
    let result = async {
        match what {
            PrivacyCommand::Export { key, out } => {
                let doc = privacy.export(&ProfileKey::parse(&key)).await?;
                let id = doc["profile"]["id"].as_str().unwrap_or_default();
                audit(
                    engine.store(),
                    "profile.export",
                    format!("profile:{id}"),
                    String::new(),
                )
                .await?;
                let text = serde_json::to_string_pretty(&doc)?;
                match out {
                    Some(path) => {
                        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                        eprintln!("wrote {}", path.display());
                    }
                    None => println!("{text}"),
                }
            }
            PrivacyCommand::Erase { key, yes } => {
                if !yes {
                    bail!("erasure cannot be undone: add --yes to confirm");
                }
                let report = privacy.erase(&ProfileKey::parse(&key)).await?;
                let ids: Vec<String> = report.profiles.iter().map(|p| p.to_string()).collect();
                audit(
                    engine.store(),
                    "profile.erase",
                    format!("profile:{}", ids.first().map_or("", String::as_str)),
                    format!(
                        "{} profiles, {} events, {} versions, {} messages",
                        ids.len(),
                        report.deleted.events,
                        report.deleted.versions,
                        report.deleted.messages
                    ),
                )
                .await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            PrivacyCommand::Purge => {
                let Some(retention) = cfg.privacy_config().event_retention else {
                    bail!("privacy.event_retention_days is 0: events are kept");
                };
                let n = privacy
                    .purge_expired_events(retention, chrono::Utc::now())
                    .await?;
                audit(
                    engine.store(),
                    "retention.purge",
                    "events".into(),
                    format!("{n} events older than {} days", retention.num_days()),
                )
                .await?;
                println!("purged {n} events older than {} days", retention.num_days());
            }
        }
        anyhow::Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}
