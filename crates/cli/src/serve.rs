//! `missive serve`: the store, the engine and the HTTP server, until SIGTERM or SIGINT; then
//! in-flight requests finish and every accepted event is committed before exit.

use std::sync::Arc;

use anyhow::Context;
use missive_core::SystemClock;
use missive_engine::Engine;
use missive_engine::auth::{InitialKeys, ensure_workspace};

use crate::config::Config;
use crate::stores::open_store_with_keys;

pub async fn run(cfg: Config, listen: Option<String>) -> anyhow::Result<()> {
    let addr = cfg.validate_listen(listen.as_deref().unwrap_or(&cfg.listen))?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    let (store, keyring) = open_store_with_keys(&cfg).await?;
    let (workspace, new_keys) = ensure_workspace(&store)
        .await
        .context("bootstrapping the workspace")?;
    let credentials = cfg.data_dir.join("credentials.json");
    if let Some(keys) = &new_keys {
        write_credentials(&credentials, keys)?;
    }

    let engine = Engine::start(store.clone(), Arc::new(SystemClock), cfg.engine_config()).await?;
    let mut state = missive_server::AppParts::new(engine.clone(), cfg.content_config());
    state.keyring = keyring;
    state.privacy_config = Arc::new(cfg.privacy_config());
    if cfg.delivery.smtp.is_none() {
        state.privacy = state.privacy.clone().with_maildir(cfg.data_dir.join("maildir"));
    }
    state.limits = Arc::new(cfg.limits());
    state.content.warm_up(engine.clock().now());
    let sender = build_sender(&cfg, &engine, &state.content).await?;
    state.journeys = state.journeys.clone().notify_queued(sender.waker());
    state.sender = Some(sender.clone());
    let (stop_background, background_stop) = tokio::sync::watch::channel(false);
    let poll = std::time::Duration::from_millis(250);
    let journeys = state.journeys.clone().spawn(poll, background_stop.clone());
    let broadcasting = state
        .broadcasts
        .clone()
        .spawn(poll, background_stop.clone(), sender.waker());
    let bounces = spawn_bounce_reader(&cfg, &engine, &sender, background_stop.clone());
    let retention = spawn_retention(&cfg, &state.privacy, background_stop.clone());
    let sending = sender.spawn(poll, background_stop);
    let app = missive_server::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let tls = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
        (Some(cert), Some(key)) => {
            // ring, as everywhere else in missive: no second crypto library in the build.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .with_context(|| {
                        format!(
                            "loading the TLS certificate {} and key {}",
                            cert.display(),
                            key.display()
                        )
                    })?,
            )
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
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
        "  key file:  {} (encryption {}; back it up apart from the data)\n",
        cfg.key_file().display(),
        if cfg.privacy.encrypt { "on" } else { "off" }
    ));
    banner.push_str(&format!(
        "missive {} listening on {scheme}://{local}\n",
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

    // Both HTTP and HTTPS go through axum-server, for its hyper builder: a connection must
    // send a request's whole header within the timeout (slowloris), and shutdown is graceful.
    let handle = axum_server::Handle::new();
    let on_signal = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let header_timeout = std::time::Duration::from_secs(cfg.limits.header_read_timeout_seconds.max(1));
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener.into_std()?)?.handle(handle);
            limit_header_reads(&mut server, header_timeout);
            server.serve(app).await.context("HTTP server")?
        }
        Some(tls) => {
            let mut server = axum_server::from_tcp_rustls(listener.into_std()?, tls)?.handle(handle);
            limit_header_reads(&mut server, header_timeout);
            server.serve(app).await.context("HTTPS server")?
        }
    }
    tracing::info!("no more requests; committing what was accepted");
    let _ = stop_background.send(true);
    for (what, task) in [
        ("journey runner", journeys),
        ("broadcaster", broadcasting),
        ("bounce reader", bounces),
        ("sender", sending),
        ("retention purge", retention),
    ] {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the {what} stopped abnormally");
        }
    }
    engine.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Closes a connection that has not sent a request's whole header within `timeout`.
fn limit_header_reads<A: axum_server::Address, Acc>(
    server: &mut axum_server::Server<A, Acc>,
    timeout: std::time::Duration,
) {
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
}

/// The transport (SMTP relay, or the maildir), the DKIM key and the sender.
async fn build_sender(
    cfg: &Config,
    engine: &Engine,
    content: &missive_sending::content::ContentService,
) -> anyhow::Result<missive_sending::sender::Sender> {
    use missive_delivery::{
        DkimSigner, MaildirTransport, Rate, SmtpConfig, SmtpTransport, Throttle, Tls, Transport,
    };
    let d = &cfg.delivery;
    let transport: Arc<dyn Transport> = match &d.smtp {
        Some(smtp) => {
            let tls = match smtp.tls.as_str() {
                "none" => Tls::None,
                "tls" => Tls::Required,
                _ => Tls::StartTls,
            };
            Arc::new(
                SmtpTransport::new(&SmtpConfig {
                    host: smtp.host.clone(),
                    port: smtp.port,
                    tls,
                    username: smtp.username.clone(),
                    password: smtp.password.clone(),
                    pool_max: smtp.pool.max(1),
                    timeout: std::time::Duration::from_secs(smtp.timeout_seconds.max(1)),
                    hello_name: Some(d.message_id_domain.clone()),
                })
                .context("delivery.smtp")?,
            )
        }
        None => {
            let dir = cfg.data_dir.join("maildir");
            tracing::info!(maildir = %dir.display(), "no SMTP relay configured: e-mail is written to the local maildir");
            Arc::new(MaildirTransport::new(&dir).with_context(|| format!("maildir {}", dir.display()))?)
        }
    };
    let domain = d
        .dkim
        .domain
        .clone()
        .or_else(|| d.from_address.rsplit_once('@').map(|(_, dom)| dom.to_string()))
        .unwrap_or_else(|| d.message_id_domain.clone());
    let dkim = match &d.dkim.key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("delivery.dkim.key_file {}", path.display()))?;
            DkimSigner::from_pem(&pem, &d.dkim.selector, &domain).context("delivery.dkim.key_file")?
        }
        None => {
            let path = cfg.data_dir.join("dkim-ed25519.pem");
            if path.exists() {
                let pem = std::fs::read_to_string(&path)?;
                DkimSigner::from_pem(&pem, &d.dkim.selector, &domain).context("the generated DKIM key")?
            } else {
                let (signer, pem) = DkimSigner::generate_ed25519(&d.dkim.selector, &domain)?;
                write_secret_file(&path, pem.as_bytes())?;
                let (name, value) = signer.dns_record();
                println!(
                    "DKIM: publish this TXT record so receivers can verify missive's signatures:\n  {name} TXT \"{value}\""
                );
                signer
            }
        }
    };
    let secrets = missive_sending::sender::SenderSecrets::load(engine.store()).await?;
    let rate = |n: u32| (n > 0).then(|| Rate::per_second(n));
    let mut throttle = Throttle::new(rate(d.rate_per_second));
    if let Some(r) = rate(d.domain_rate_per_second) {
        throttle = throttle.with_default_domain_rate(r);
    }
    Ok(missive_sending::sender::Sender::new(
        engine.clone(),
        content.clone(),
        transport,
        Some(dkim),
        secrets,
        throttle,
        cfg.sender_config(),
    ))
}

/// Reads bounce and complaint reports from `delivery.bounce_maildir` every 30 s, if set.
fn spawn_bounce_reader(
    cfg: &Config,
    engine: &Engine,
    sender: &missive_sending::sender::Sender,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let Some(dir) = cfg.delivery.bounce_maildir.clone() else {
        return tokio::spawn(async {});
    };
    let (engine, key) = (engine.clone(), Arc::new(sender.hash_key().to_vec()));
    let dir = Arc::new(dir);
    missive_engine::background::poll_until_shutdown(stop, None, move || {
        let (engine, key, dir) = (engine.clone(), key.clone(), dir.clone());
        async move {
            let now = engine.clock().now();
            match missive_sending::bounces::read_mailbox(engine.store(), &key, &dir, now).await {
                Ok(p) if p.reports + p.ignored > 0 => {
                    tracing::info!(
                        reports = p.reports,
                        ignored = p.ignored,
                        suppressed = p.suppressed,
                        "bounce mailbox read"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "bounce mailbox could not be read"),
            }
            std::time::Duration::from_secs(30)
        }
    })
}

/// Writes a secret readable by its owner only.
fn write_secret_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
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

/// Purges events past `privacy.event_retention_days` once an hour (and once at start).
fn spawn_retention(
    cfg: &Config,
    privacy: &missive_engine::privacy::Privacy,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let Some(retention) = cfg.privacy_config().event_retention else {
        return tokio::spawn(async {});
    };
    let privacy = privacy.clone();
    // Once at start, then every hour.
    missive_engine::background::poll_until_shutdown(stop, None, move || {
        let privacy = privacy.clone();
        async move {
            match privacy.purge_expired_events(retention, chrono::Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    events = n,
                    days = retention.num_days(),
                    "events past retention purged"
                ),
                Err(e) => tracing::error!(error = %e, "retention purge failed; retried in an hour"),
            }
            std::time::Duration::from_secs(3600)
        }
    })
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
