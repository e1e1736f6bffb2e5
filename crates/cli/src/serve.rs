//! `missive serve`: the store, the engine and the HTTP server, until SIGTERM or SIGINT; then
//! in-flight requests finish and every accepted event is committed before exit.

use std::sync::Arc;

use anyhow::Context;
use missive_core::SystemClock;
use missive_engine::auth::{InitialKeys, ensure_workspace};
use missive_server::app::{App, SenderParts};

use crate::config::Config;
use crate::stores::open_store_with_keys;

/// Serves until a signal; `on_listening` is told the address (`http://127.0.0.1:8080`) once
/// bound.
pub async fn run(
    cfg: Config,
    listen: Option<String>,
    on_listening: Option<tokio::sync::oneshot::Sender<String>>,
) -> anyhow::Result<()> {
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

    let sender = sender_parts(&cfg)?;
    // The cluster's log is sealed as the store is.
    let log_keyring = cfg.privacy.encrypt.then(|| keyring.clone());
    let mut missive = App::build(
        store.clone(),
        keyring,
        Arc::new(SystemClock),
        cfg.app_config(),
        Some(sender),
    )
    .await?;
    // A cluster node runs the sending side only while it holds the sending lease (below).
    if !cfg.cluster.enabled {
        missive.start_background();
    }
    // A JetStream stream as an ingest source (`[streams.ingest]`), stopped before the engine.
    let (stop_streams, streams_stopped) = tokio::sync::watch::channel(false);
    let stream_in = cfg
        .streams
        .ingest
        .clone()
        .map(|s| missive_cluster::stream_in::spawn(s, missive.state().engine.clone(), streams_stopped));
    let app = missive
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
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
    let node = match cfg.cluster.enabled {
        true => Some(
            missive_cluster::Node::start(
                cfg.cluster
                    .node_config(&cfg.store_url(), &format!("{scheme}://{local}"), log_keyring),
                missive.state().engine.clone(),
            )
            .await
            .context("joining the cluster")?,
        ),
        false => None,
    };
    let (stop_sending, sending_stopped) = tokio::sync::watch::channel(false);
    let sending = node.as_ref().map(|n| {
        tokio::spawn(follow_sending_lease(
            n.sending(),
            missive.background(),
            store.clone(),
            sending_stopped,
        ))
    });

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
    if cfg.cluster.enabled {
        banner.push_str(&format!(
            "  cluster:   node {} of {} partitions; log {} on {}\n",
            cfg.cluster.node_name(),
            cfg.cluster.partitions,
            cfg.cluster.stream,
            redact_url(&cfg.cluster.nats)
        ));
    }
    banner.push_str(&format!(
        "  key file:  {} (encryption {}; back it up apart from the data)\n",
        cfg.key_file().display(),
        if cfg.privacy.encrypt { "on" } else { "off" }
    ));
    let warnings = &missive.state().setup_warnings;
    if !warnings.is_empty() {
        banner.push_str(&format!(
            "  sending:   NOT READY for real mail, {} finding(s) (in the log above, in /health, and \
             explained by `missive doctor`):\n",
            warnings.len()
        ));
        for w in warnings.iter() {
            banner.push_str(&format!("             - {}\n", w.message()));
        }
    }
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
    if let Some(tx) = on_listening {
        let _ = tx.send(format!("{scheme}://{local}"));
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
    let _ = stop_streams.send(true);
    if let Some(task) = stream_in {
        let _ = task.await;
    }
    // The sending side stops (each worker finishing its round, outcomes recorded) before the
    // sending lease is released: the next holder must not send again what this one handed
    // to the relay.
    let _ = stop_sending.send(true);
    if let Some(task) = sending {
        let _ = task.await;
    }
    if let Some(node) = node {
        // Hands every partition over (checkpointed, then released) before the engine stops,
        // and releases the sending lease.
        node.stop().await;
    }
    missive.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Cluster mode: runs the sending side (journeys, the sender, broadcasts, outbound webhooks,
/// the schedules) while this node holds the sending lease, with its journey and outbox writes
/// fenced by it, and stops it when the lease goes (to another node, or as the node leaves).
async fn follow_sending_lease(
    mut lease: tokio::sync::watch::Receiver<Option<missive_store::LeaderFence>>,
    background: missive_server::app::Background,
    store: missive_store::Store,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut running: Option<missive_server::app::RunningBackground> = None;
    while !*stop.borrow() {
        let fence = lease.borrow_and_update().clone();
        match fence {
            Some(fence) => {
                let token = fence.token;
                store.delivery().set_leader_fence(Some(fence));
                if running.is_none() {
                    tracing::info!(token, "cluster: this node runs the sending side");
                    running = Some(background.start());
                }
            }
            None => {
                if let Some(r) = running.take() {
                    tracing::info!("cluster: the sending lease is gone; stopping the sending side");
                    r.stop().await;
                }
                store.delivery().set_leader_fence(None);
            }
        }
        tokio::select! {
            changed = lease.changed() => if changed.is_err() { break },
            _ = stop.changed() => {}
        }
    }
    if let Some(r) = running {
        r.stop().await;
    }
    store.delivery().set_leader_fence(None);
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

/// The transport (SMTP relay, or the maildir), the DKIM key, the throttle and the settings
/// of the sender.
/// The SMTP relay of `delivery.smtp`, if one is configured.
pub fn smtp_transport(cfg: &Config) -> anyhow::Result<Option<missive_delivery::SmtpTransport>> {
    use missive_delivery::{SmtpConfig, SmtpTransport, Tls};
    let d = &cfg.delivery;
    let Some(smtp) = &d.smtp else { return Ok(None) };
    let tls = match smtp.tls.as_str() {
        "none" => Tls::None,
        "tls" => Tls::Required,
        _ => Tls::StartTls,
    };
    Ok(Some(
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
    ))
}

/// The DKIM signing domain: `delivery.dkim.domain`, else the domain of the from address.
pub fn dkim_domain(cfg: &Config) -> String {
    let d = &cfg.delivery;
    d.dkim
        .domain
        .clone()
        .or_else(|| d.from_address.rsplit_once('@').map(|(_, dom)| dom.to_string()))
        .unwrap_or_else(|| d.message_id_domain.clone())
}

/// The DKIM key's file: `delivery.dkim.key_file`, else the one generated in the data directory.
pub fn dkim_key_file(cfg: &Config) -> std::path::PathBuf {
    cfg.delivery
        .dkim
        .key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("dkim-ed25519.pem"))
}

fn sender_parts(cfg: &Config) -> anyhow::Result<SenderParts> {
    use missive_delivery::{DkimSigner, MaildirTransport, Rate, Throttle, Transport};
    let d = &cfg.delivery;
    let transport: Arc<dyn Transport> = match smtp_transport(cfg)? {
        Some(smtp) => Arc::new(smtp),
        None => {
            let dir = cfg.data_dir.join("maildir");
            tracing::info!(maildir = %dir.display(), "no SMTP relay configured: e-mail is written to the local maildir");
            Arc::new(MaildirTransport::new(&dir).with_context(|| format!("maildir {}", dir.display()))?)
        }
    };
    let domain = dkim_domain(cfg);
    let path = dkim_key_file(cfg);
    let dkim = if d.dkim.key_file.is_some() {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("delivery.dkim.key_file {}", path.display()))?;
        DkimSigner::from_pem(&pem, &d.dkim.selector, &domain).context("delivery.dkim.key_file")?
    } else if path.exists() {
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
    };
    let rate = |n: u32| (n > 0).then(|| Rate::per_second(n));
    let mut throttle = Throttle::new(rate(d.rate_per_second));
    if let Some(r) = rate(d.domain_rate_per_second) {
        throttle = throttle.with_default_domain_rate(r);
    }
    Ok(SenderParts {
        transport,
        dkim: Some(dkim),
        throttle,
        config: cfg.sender_config(),
    })
}

/// Writes a secret readable by its owner only.
pub(crate) fn write_secret_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
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

pub(crate) fn write_credentials(path: &std::path::Path, keys: &InitialKeys) -> anyhow::Result<()> {
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
