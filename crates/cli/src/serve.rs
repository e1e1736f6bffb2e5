//! `missive serve`: the store, the engine and the HTTP server, until SIGTERM or SIGINT; then
//! in-flight requests finish and every accepted event is committed before exit.

use std::sync::Arc;

use anyhow::Context;
use missive_core::SystemClock;
use missive_engine::Engine;
use missive_engine::auth::{InitialKeys, ensure_workspace};

use crate::config::{Config, open_store};

pub async fn run(cfg: Config, listen: Option<String>) -> anyhow::Result<()> {
    let addr = cfg.validate_listen(listen.as_deref().unwrap_or(&cfg.listen))?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    let store = open_store(&cfg).await?;
    let (workspace, new_keys) = ensure_workspace(&*store)
        .await
        .context("bootstrapping the workspace")?;
    let credentials = cfg.data_dir.join("credentials.json");
    if let Some(keys) = &new_keys {
        write_credentials(&credentials, keys)?;
    }

    let engine = Engine::start(store.clone(), Arc::new(SystemClock), cfg.engine_config()).await?;
    let state = missive_server::AppState::new(engine.clone(), cfg.content_config());
    state.content.warm_up(engine.clock().now());
    let app = missive_server::router(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;

    // One write, the address last: whoever waits for the "listening" line has the rest.
    let mut banner = format!(
        "  store:     {} ({})\n  workspace: {}\n",
        store.backend(),
        redact_url(&cfg.store_url()),
        workspace.id
    );
    match &new_keys {
        Some(keys) => banner.push_str(&format!(
            "  write key: {}   (Segment libraries: use it as the write key)\n  \
             admin key: {}   (profile API: Authorization: Bearer <admin key>)\n  \
             these keys were created now and saved to {} (mode 600)\n",
            keys.write_key.expose(),
            keys.admin_key.expose(),
            credentials.display()
        )),
        None => banner.push_str(&format!(
            "  keys: created at first start; see {}\n",
            credentials.display()
        )),
    }
    banner.push_str(&format!(
        "missive {} listening on http://{local}\n",
        env!("CARGO_PKG_VERSION")
    ));
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(banner.as_bytes())?;
        out.flush()?;
    }
    let engine_config = cfg.engine_config();
    tracing::info!(
        addr = %local,
        store = store.backend(),
        flush_interval_ms = engine_config.flush_interval.as_millis() as u64,
        history_len = engine_config.history_len,
        "server started"
    );

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server")?;
    tracing::info!("no more requests; committing what was accepted");
    engine.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn write_credentials(path: &std::path::Path, keys: &InitialKeys) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(keys)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// A store URL without its password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..s], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        _ = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn store_urls_are_printed_without_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/missive"),
            "postgres://app:***@db:5432/missive"
        );
        assert_eq!(
            redact_url("postgres://app@db/missive"),
            "postgres://app@db/missive"
        );
        assert_eq!(
            redact_url("sqlite:missive-data/missive.db"),
            "sqlite:missive-data/missive.db"
        );
    }
}
