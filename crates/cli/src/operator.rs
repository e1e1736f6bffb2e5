//! What one-shot operator commands share: the engine started on the configured store, and
//! the audit log entries their actions leave (actor `cli:USER`).

use anyhow::Context;

use crate::config::Config;
use crate::stores::open_store;

/// Starts the engine on the configured store (creating the workspace if needed), for a command
/// that reads or changes profiles.
pub async fn start_engine(cfg: &Config) -> anyhow::Result<missive_engine::Engine> {
    let store = open_store(cfg).await?;
    missive_engine::auth::ensure_workspace(&store).await?;
    Ok(missive_engine::Engine::start(
        store,
        std::sync::Arc::new(missive_core::SystemClock),
        cfg.engine_config(),
    )
    .await?)
}

/// Writes an operator's action to the audit log, as the API does for requests: the actor is
/// `cli:` and the login name, targets name profiles by id (never by e-mail address).
pub(crate) async fn audit(
    store: &missive_store::Store,
    action: &str,
    target: String,
    detail: String,
) -> anyhow::Result<()> {
    let entry = missive_store::AuditEntry {
        seq: 0,
        at: chrono::Utc::now(),
        actor: format!("cli:{}", operator_name()),
        role: "operator".into(),
        action: action.into(),
        target,
        // Recorded once the command did it: what an API request that succeeded records.
        status: 200,
        detail,
    };
    store
        .access()
        .append_audit(vec![entry])
        .await
        .context("writing the audit log")
}

/// Who runs the command: the login name (`USER`, else `LOGNAME`), else the user id
/// (`uid:1000`) where the environment names no one (a container, cron).
pub(crate) fn operator_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(uid_name)
}

#[cfg(unix)]
fn uid_name() -> String {
    use std::os::unix::fs::MetadataExt;
    // A process owns its /proc entry: its owner is the process's user.
    std::fs::metadata("/proc/self").map_or_else(|_| "unknown".into(), |m| format!("uid:{}", m.uid()))
}

#[cfg(not(unix))]
fn uid_name() -> String {
    "unknown".into()
}

/// Audits an action only when it succeeded.
pub(crate) async fn audit_success<T, E>(
    result: &Result<T, E>,
    store: &missive_store::Store,
    action: &str,
    target: String,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => audit(store, action, target, String::new()).await,
        Err(_) => Ok(()),
    }
}
