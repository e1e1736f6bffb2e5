//! Configuration: built-in defaults, then `missive.toml` (or `--config FILE`), then `MISSIVE_`
//! environment variables (`MISSIVE_ENGINE__HISTORY_LEN=20`), then command-line flags.
//! Validated at start-up; an error names the key.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::NaiveTime;
use serde::Deserialize;

mod cluster;
mod recommendations;
pub use cluster::ClusterSection;
pub use recommendations::RecommendationsSection;

#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Where the data is (every command but render)")]
pub struct GlobalArgs {
    /// Configuration file (default: ./missive.toml when it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store and local files (default: ./missive-data).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Store URL: postgres://user@host/db for PostgreSQL; default: SQLite in the data directory.
    #[arg(long, global = true)]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    /// `postgres://…` to use PostgreSQL; empty for the embedded SQLite store.
    pub store: Option<String>,
    pub log: LogConfig,
    pub engine: EngineSection,
    pub content: ContentSection,
    pub delivery: DeliverySection,
    pub privacy: PrivacySection,
    pub tls: TlsSection,
    pub limits: LimitsSection,
    /// Inbound sources by name: `[sources.shop] type = "shopify"`, `secret = "…"`
    /// (docs/integrations.md).
    pub sources: std::collections::BTreeMap<String, missive_sources::Source>,
    pub webhooks: WebhooksSection,
    pub recommendations: RecommendationsSection,
    /// Streams in and out (docs/integrations.md): `[streams.ingest]` reads a JetStream stream,
    /// `[streams.changes]` publishes missive's change stream to one.
    pub streams: StreamsSection,
    /// Cluster mode (docs/operations.md): NATS JetStream as the log, partitions by lease.
    pub cluster: ClusterSection,
}

/// `[streams]`: a JetStream stream as an ingest source, and missive's change stream out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsSection {
    pub ingest: Option<missive_cluster::stream_in::StreamIn>,
    pub changes: Option<missive_cluster::stream_out::StreamOut>,
}

/// Outbound webhooks and the journey webhook step (docs/integrations.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhooksSection {
    /// Internal addresses or CIDR ranges calls may reach (loopback, private networks, the
    /// metadata address are refused otherwise): for example a receiver on the same host.
    pub allow_internal: Vec<String>,
    /// How long a notice is retried before it is a dead letter.
    pub retry_hours: u32,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        Self {
            allow_internal: Vec::new(),
            retry_hours: 24,
        }
    }
}

/// Rate limits per client address.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitsSection {
    /// Tracking-API requests per second per address (0: no limit), and the burst allowed.
    pub ingest_per_second: u32,
    pub ingest_burst: u32,
    /// Failed authentications per minute per address, and the burst allowed.
    pub auth_failures_per_minute: u32,
    pub auth_failures_burst: u32,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client,
    /// for rate limits, consent evidence and the audit log. Empty: the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// A connection that has not sent a request's whole header within this many seconds is
    /// closed (slowloris: many half-open connections held to exhaust the server).
    pub header_read_timeout_seconds: u64,
}

/// A trusted proxy as written in the configuration: an address or a CIDR range.
fn parse_proxy(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            ingest_per_second: 1000,
            ingest_burst: 2000,
            auth_failures_per_minute: 10,
            auth_failures_burst: 20,
            trusted_proxies: Vec::new(),
            header_read_timeout_seconds: 10,
        }
    }
}

impl Config {
    pub fn limits(&self) -> missive_server::limits::Limits {
        use missive_server::limits::{Limits, RateLimiter};
        let l = &self.limits;
        Limits {
            ingest: (l.ingest_per_second > 0)
                .then(|| RateLimiter::new(f64::from(l.ingest_per_second), f64::from(l.ingest_burst))),
            auth_failures: RateLimiter::new(
                f64::from(l.auth_failures_per_minute.max(1)) / 60.0,
                f64::from(l.auth_failures_burst.max(1)),
            ),
            // Validated when the configuration was loaded.
            trusted_proxies: l.trusted_proxies.iter().filter_map(|p| parse_proxy(p)).collect(),
        }
    }
}

/// Encryption at rest, retention and the preference centre.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PrivacySection {
    /// Encrypt personal data at rest (AES-256-GCM, one data key per profile).
    pub encrypt: bool,
    /// The key file (master keys and the blind-index key); default `DATA_DIR/missive.keys`,
    /// generated on first start. Keep it out of the data directory's backups.
    pub key_file: Option<PathBuf>,
    /// Events older than this many days are purged every hour (0: kept).
    pub event_retention_days: u32,
    /// How long the preference-centre link in an e-mail stays valid.
    pub preference_link_ttl_days: u32,
    /// Traits that identify a person, besides the built-in ones (email, name, phone, address…).
    pub personal_traits: Vec<String>,
    /// Traits declared not personal: the only ones pseudonymized analytics (the analyst role)
    /// sees. Nothing by default.
    pub analytics_traits: Vec<String>,
    /// The topics people can decline in the preference centre (`[[privacy.topics]]`, each
    /// with `id`, `name` and `description`); a journey's or broadcast's `topic` names one.
    pub topics: Vec<missive_engine::privacy::Topic>,
    /// The privacy-policy version recorded with consent given in the preference centre.
    pub policy_version: Option<String>,
}

impl Default for PrivacySection {
    fn default() -> Self {
        Self {
            encrypt: true,
            key_file: None,
            event_retention_days: 0,
            preference_link_ttl_days: 60,
            personal_traits: Vec::new(),
            analytics_traits: Vec::new(),
            topics: Vec::new(),
            policy_version: None,
        }
    }
}

/// HTTPS: a certificate chain and its private key, both PEM. Without them, plain HTTP (put a
/// TLS-terminating proxy in front).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsSection {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("missive-data"),
            listen: "127.0.0.1:8080".into(),
            store: None,
            log: LogConfig::default(),
            engine: EngineSection::default(),
            content: ContentSection::default(),
            delivery: DeliverySection::default(),
            privacy: PrivacySection::default(),
            tls: TlsSection::default(),
            limits: LimitsSection::default(),
            sources: Default::default(),
            webhooks: WebhooksSection::default(),
            recommendations: RecommendationsSection::default(),
            streams: StreamsSection::default(),
            cluster: ClusterSection::default(),
        }
    }
}

/// Where and how e-mail goes out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DeliverySection {
    pub from_address: String,
    pub from_name: Option<String>,
    /// The envelope sender, where bounces go.
    pub bounce_address: String,
    /// The right-hand side of Message-IDs.
    pub message_id_domain: String,
    /// Messages per second over all domains (0: no limit), and per recipient domain.
    pub rate_per_second: u32,
    pub domain_rate_per_second: u32,
    /// An SMTP relay; without one, messages are written to the maildir in the data directory.
    pub smtp: Option<SmtpSection>,
    pub dkim: DkimSection,
    /// At most this many marketing e-mails per profile per `frequency_window_days` (0: none).
    pub frequency_cap: u32,
    pub frequency_window_days: u32,
    /// Local quiet hours for marketing, like "21:00-08:00"; empty for none.
    pub quiet_hours: String,
    /// The per cent of profiles that receive no marketing at all, to measure its total lift
    /// (0: none). Changing it moves people in or out of the holdout.
    pub global_holdout_percent: f64,
    /// A maildir where the bounce address's mail arrives; its reports are read every 30 s.
    pub bounce_maildir: Option<PathBuf>,
}

impl Default for DeliverySection {
    fn default() -> Self {
        let d = missive_sending::sender::SenderConfig::default();
        Self {
            from_address: d.from_address,
            from_name: None,
            bounce_address: d.bounce_address,
            message_id_domain: d.message_id_domain,
            rate_per_second: 0,
            domain_rate_per_second: 0,
            smtp: None,
            dkim: DkimSection::default(),
            frequency_cap: d.policy.frequency_cap,
            frequency_window_days: 7,
            quiet_hours: String::new(),
            global_holdout_percent: 0.0,
            bounce_maildir: None,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct SmtpSection {
    pub host: String,
    pub port: u16,
    /// "none", "starttls" or "tls".
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub pool: u32,
    pub timeout_seconds: u64,
}

impl std::fmt::Debug for SmtpSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: "starttls".into(),
            username: None,
            password: None,
            pool: 4,
            timeout_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DkimSection {
    pub selector: String,
    /// The signing domain (d=); default: the domain of `from_address`.
    pub domain: Option<String>,
    /// A PEM private key (RSA or Ed25519); default: an Ed25519 key generated into the data
    /// directory on first start.
    pub key_file: Option<PathBuf>,
}

impl Default for DkimSection {
    fn default() -> Self {
        Self {
            selector: "missive".into(),
            domain: None,
            key_file: None,
        }
    }
}

/// How e-mails are rendered.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ContentSection {
    /// ISO 4217 code used by `money` when none is given.
    pub currency: String,
    /// IANA time zone for recipients without a `timezone` trait.
    pub default_time_zone: String,
    /// The public base URL of this server, for links in e-mails.
    pub public_url: String,
    /// Sandbox: longest time one render may take, largest output, most loop iterations.
    pub max_render_ms: u64,
    pub max_output_kb: usize,
    pub max_loop_iterations: u64,
    /// Track events whose `products` count as sales (best sellers).
    pub purchase_events: Vec<String>,
    /// Products in each recommendation list.
    pub recommendations: usize,
}

impl Default for ContentSection {
    fn default() -> Self {
        let d = missive_sending::content::ContentConfig::default();
        Self {
            currency: d.currency,
            default_time_zone: "UTC".into(),
            public_url: d.public_url,
            max_render_ms: d.limits.max_duration.map_or(250, |t| t.as_millis() as u64),
            max_output_kb: d.limits.max_output_bytes / 1024,
            max_loop_iterations: d.limits.max_loop_iterations,
            purchase_events: d.purchase_events,
            recommendations: d.recommendations,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `missive_engine=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EngineSection {
    pub history_len: usize,
    pub max_batch_events: usize,
    pub profile_cache: usize,
    /// Longest time, in milliseconds, between writes of changed profiles to the store (their
    /// events are durable at once; profiles are rebuilt from them after a crash). 0 writes
    /// profiles with every batch.
    pub flush_interval_ms: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        let d = missive_engine::EngineConfig::default();
        Self {
            history_len: d.history_len,
            max_batch_events: d.max_batch_events,
            profile_cache: d.profile_cache,
            flush_interval_ms: d.flush_interval.as_millis() as u64,
        }
    }
}

impl Config {
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        Self::load_with_env(args, None, Path::new("."))
    }

    /// `load`, with the environment given (`None`: the process's) and `missive.toml` looked
    /// for in `dir`.
    fn load_with_env(
        args: &GlobalArgs,
        env: Option<std::collections::HashMap<String, String>>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut builder = ::config::Config::builder();
        match &args.config {
            Some(path) => {
                if !path.exists() {
                    bail!("configuration file {} does not exist", path.display());
                }
                builder = builder
                    .add_source(::config::File::from(path.as_path()).format(::config::FileFormat::Toml));
            }
            None => {
                builder = builder.add_source(
                    ::config::File::from(dir.join("missive.toml"))
                        .format(::config::FileFormat::Toml)
                        .required(false),
                );
            }
        }
        builder = builder.add_source(
            ::config::Environment::with_prefix("MISSIVE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                // Lists from the environment are comma-separated:
                // MISSIVE_WEBHOOKS__ALLOW_INTERNAL=127.0.0.0/8,10.20.0.0/16
                .list_separator(",")
                .with_list_parse_key("webhooks.allow_internal")
                .with_list_parse_key("limits.trusted_proxies")
                .source(env.map(|m| m.into_iter().collect())),
        );
        let mut cfg: Config = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        if let Some(d) = &args.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(s) = &args.store {
            cfg.store = Some(s.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&mut self) -> anyhow::Result<()> {
        for (name, source) in &self.sources {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("sources.{name}: a source's name is 1 to 64 letters, digits, '-' or '_'");
            }
            if let Err(why) = source.check() {
                bail!("sources.{name}.{why}");
            }
        }
        if let Some(s) = &self.store {
            if s.trim().is_empty() {
                self.store = None;
            } else if !(s.starts_with("postgres://")
                || s.starts_with("postgresql://")
                || s.starts_with("sqlite:"))
            {
                bail!(
                    "store: expected postgres://…, postgresql://… or sqlite:PATH, got a value starting {:?}",
                    s.chars().take(12).collect::<String>()
                );
            }
        }
        self.cluster.check(self.store.as_deref())?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "log.format: expected \"text\" or \"json\", got {:?}",
                self.log.format
            );
        }
        if !(1..=100_000).contains(&self.engine.max_batch_events) {
            bail!("engine.max_batch_events must be between 1 and 100000");
        }
        if self.engine.history_len > 10_000 {
            bail!("engine.history_len must be at most 10000");
        }
        let c = &self.content;
        if c.currency.len() != 3 || !c.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            bail!(
                "content.currency: expected an ISO 4217 code like \"EUR\", got {:?}",
                c.currency
            );
        }
        if missive_core::zone::zone_named(&c.default_time_zone).is_none() {
            bail!(
                "content.default_time_zone: {:?} is not an IANA time zone like \"Europe/Paris\"",
                c.default_time_zone
            );
        }
        if !(c.public_url.starts_with("http://") || c.public_url.starts_with("https://")) {
            bail!(
                "content.public_url: expected http://… or https://…, got {:?}",
                c.public_url
            );
        }
        if !(1..=60_000).contains(&c.max_render_ms) {
            bail!("content.max_render_ms must be between 1 and 60000");
        }
        if !(1..=100 * 1024).contains(&c.max_output_kb) {
            bail!("content.max_output_kb must be between 1 and 102400");
        }
        if !(1..=10_000_000).contains(&c.max_loop_iterations) {
            bail!("content.max_loop_iterations must be between 1 and 10000000");
        }
        if c.recommendations > 100 {
            bail!("content.recommendations must be at most 100");
        }
        if let Err((field, why)) = self.recommendations.filters().validate() {
            bail!("recommendations.{field}: {why}");
        }
        if let Err(why) = self.recommendations.weights() {
            bail!("recommendations.weights: {why}");
        }
        if !(self.recommendations.half_life_days.is_finite() && self.recommendations.half_life_days >= 0.0) {
            bail!("recommendations.half_life_days: 0 (no decay) or more days");
        }
        let d = &self.delivery;
        for (key, value) in [
            ("delivery.from_address", &d.from_address),
            ("delivery.bounce_address", &d.bounce_address),
        ] {
            if missive_core::EmailAddress::parse(value).is_err() && !value.ends_with("@localhost") {
                bail!("{key}: {value:?} is not an e-mail address");
            }
        }
        let domain_ok = !d.message_id_domain.is_empty()
            && d.message_id_domain.len() <= 253
            && d.message_id_domain.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !domain_ok {
            bail!(
                "delivery.message_id_domain: {:?} is not a domain name",
                d.message_id_domain
            );
        }
        if !d.quiet_hours.trim().is_empty() && parse_quiet_hours(&d.quiet_hours).is_none() {
            bail!(
                "delivery.quiet_hours: expected \"HH:MM-HH:MM\" or \"\", got {:?}",
                d.quiet_hours
            );
        }
        if !(0.0..=50.0).contains(&d.global_holdout_percent) {
            bail!(
                "delivery.global_holdout_percent: expected a per cent from 0 to 50, got {}",
                d.global_holdout_percent
            );
        }
        if let Some(smtp) = &d.smtp
            && !matches!(smtp.tls.as_str(), "none" | "starttls" | "tls")
        {
            bail!(
                "delivery.smtp.tls: expected \"none\", \"starttls\" or \"tls\", got {:?}",
                smtp.tls
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("tls.cert_file and tls.key_file go together: set both, or neither for plain HTTP");
        }
        if self.privacy.event_retention_days > 36_500 {
            bail!("privacy.event_retention_days must be at most 36500 (0 keeps events)");
        }
        for net in &self.webhooks.allow_internal {
            if parse_proxy(net).is_none() {
                bail!("webhooks.allow_internal: {net:?} is not an address or a CIDR range like 10.0.0.0/8");
            }
        }
        if !(1..=168).contains(&self.webhooks.retry_hours) {
            bail!("webhooks.retry_hours must be between 1 and 168");
        }
        for proxy in &self.limits.trusted_proxies {
            if parse_proxy(proxy).is_none() {
                bail!("limits.trusted_proxies: {proxy:?} is not an address or a CIDR range like 10.0.0.0/8");
            }
        }
        if !(1..=366).contains(&self.privacy.preference_link_ttl_days) {
            bail!("privacy.preference_link_ttl_days must be between 1 and 366");
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.privacy.topics {
            let ok = !t.id.is_empty()
                && t.id.len() <= 64
                && t.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !ok {
                bail!(
                    "privacy.topics: id {:?} must be 1 to 64 of a-z, 0-9, _ and -",
                    t.id
                );
            }
            if !seen.insert(t.id.as_str()) {
                bail!("privacy.topics: id {:?} appears twice", t.id);
            }
            if t.name.trim().is_empty() {
                bail!(
                    "privacy.topics: topic {:?} needs a name people will recognise",
                    t.id
                );
            }
        }
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("listen: {:?} is not an address like 127.0.0.1:8080", self.listen))?;
        Ok(())
    }

    pub fn validate_listen(&self, listen: &str) -> anyhow::Result<std::net::SocketAddr> {
        listen
            .parse()
            .with_context(|| format!("--listen: {listen:?} is not an address like 127.0.0.1:8080"))
    }

    /// The store URL, defaulting to the SQLite file in the data directory.
    pub fn store_url(&self) -> String {
        match &self.store {
            Some(s) => s.clone(),
            None => format!("sqlite:{}", crate::sqlite_path(&self.data_dir).display()),
        }
    }

    /// Everything [`missive_server::app::App::build`] takes from the configuration.
    pub fn app_config(&self) -> missive_server::app::AppConfig {
        missive_server::app::AppConfig {
            engine: self.engine_config(),
            content: self.content_config(),
            privacy: self.privacy_config(),
            limits: self.limits(),
            // Without a relay, mail goes to the local maildir: erasure deletes copies there.
            local_maildir: self
                .delivery
                .smtp
                .is_none()
                .then(|| self.data_dir.join("maildir")),
            bounce_maildir: self.delivery.bounce_maildir.clone(),
            poll: std::time::Duration::from_millis(250),
            sources: self.sources.clone(),
            webhooks: missive_sending::webhooks::WebhookConfig {
                allow_internal: self
                    .webhooks
                    .allow_internal
                    .iter()
                    .filter_map(|n| parse_proxy(n))
                    .collect(),
                retry: missive_webhooks::retry::RetryPolicy {
                    window: chrono::Duration::hours(i64::from(self.webhooks.retry_hours)),
                    ..Default::default()
                },
                changes: self
                    .streams
                    .changes
                    .clone()
                    .map(missive_cluster::stream_out::JetStreamChanges::change_stream),
            },
        }
    }

    pub fn engine_config(&self) -> missive_engine::EngineConfig {
        missive_engine::EngineConfig {
            history_len: self.engine.history_len,
            max_batch_events: self.engine.max_batch_events,
            profile_cache: self.engine.profile_cache,
            flush_interval: std::time::Duration::from_millis(self.engine.flush_interval_ms),
            // Validated when the configuration was loaded.
            default_time_zone: missive_core::zone::zone_named(&self.content.default_time_zone)
                .unwrap_or(missive_core::zone::Tz::UTC),
            cluster: self.cluster.enabled,
            ..missive_engine::EngineConfig::default()
        }
    }
}

impl Config {
    pub fn content_config(&self) -> missive_sending::content::ContentConfig {
        let c = &self.content;
        missive_sending::content::ContentConfig {
            limits: missive_liquid::Limits {
                max_output_bytes: c.max_output_kb * 1024,
                max_loop_iterations: c.max_loop_iterations,
                max_duration: Some(std::time::Duration::from_millis(c.max_render_ms)),
                ..missive_liquid::Limits::default()
            },
            currency: c.currency.clone(),
            public_url: c.public_url.clone(),
            purchase_events: c.purchase_events.clone(),
            recommendations: c.recommendations,
            recommendation_filters: self.recommendations.filters(),
            // Checked when the configuration was loaded.
            recommendation_weights: self.recommendations.weights().unwrap_or_default(),
            recommendation_decay: self.recommendations.decay(),
            retrain_every: (self.recommendations.retrain_every_hours > 0).then(|| {
                std::time::Duration::from_secs(u64::from(self.recommendations.retrain_every_hours) * 3600)
            }),
            ..missive_sending::content::ContentConfig::default()
        }
    }
}

/// "21:00-08:00" → (21:00, 08:00).
pub fn parse_quiet_hours(s: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (a, b) = s.trim().split_once('-')?;
    let hm = missive_core::zone::parse_time_of_day;
    Some((hm(a)?, hm(b)?))
}

impl Config {
    pub fn sender_config(&self) -> missive_sending::sender::SenderConfig {
        let d = &self.delivery;
        missive_sending::sender::SenderConfig {
            from_address: d.from_address.clone(),
            from_name: d.from_name.clone(),
            bounce_address: d.bounce_address.clone(),
            message_id_domain: d.message_id_domain.clone(),
            public_url: self.content.public_url.clone(),
            policy: missive_sending::policy::PolicyConfig {
                frequency_cap: d.frequency_cap,
                frequency_window: chrono::TimeDelta::days(i64::from(d.frequency_window_days.max(1))),
                quiet_hours: parse_quiet_hours(&d.quiet_hours),
                global_holdout_percent: d.global_holdout_percent,
            },
            preference_link_ttl: chrono::TimeDelta::days(i64::from(self.privacy.preference_link_ttl_days)),
            ..missive_sending::sender::SenderConfig::default()
        }
    }
}

impl Config {
    pub fn key_file(&self) -> PathBuf {
        self.privacy
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("missive.keys"))
    }

    pub fn privacy_config(&self) -> missive_engine::privacy::PrivacyConfig {
        let p = &self.privacy;
        let mut c = missive_engine::privacy::PrivacyConfig::default();
        c.personal_traits.extend(p.personal_traits.iter().cloned());
        c.analytics_traits = p.analytics_traits.iter().cloned().collect();
        c.event_retention =
            (p.event_retention_days > 0).then(|| chrono::TimeDelta::days(i64::from(p.event_retention_days)));
        c.topics = p.topics.clone();
        c.policy_version = p.policy_version.clone();
        c
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn args() -> GlobalArgs {
        GlobalArgs {
            config: None,
            data_dir: None,
            store: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn sources_are_read_checked_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("missive.toml"),
            "[sources.shop]\ntype = \"shopify\"\nsecret = \"shpss_0123456789abcdef\"\n\
             [sources.crm]\ntype = \"generic\"\nsecret = \"0123456789abcdef\"\nsignature_header = \"X-Signature\"\nevent = \"Lead Created\"\nemail = \"email\"\n",
        )
        .unwrap();
        let cfg = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap();
        assert_eq!(cfg.sources.len(), 2);
        assert!(!format!("{cfg:?}").contains("0123456789abcdef"));
        assert_eq!(cfg.app_config().sources.len(), 2);
        std::fs::write(
            dir.path().join("missive.toml"),
            "[sources.shop]\ntype = \"shopify\"\nsecret = \"short\"\n",
        )
        .unwrap();
        let err = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap_err();
        assert!(err.to_string().contains("sources.shop.secret"), "{err}");
    }

    #[test]
    fn recommendation_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("missive.toml"),
            "[recommendations]\nretrain_every_hours = 6\nmax_per_category = 2\nprice_max = 150.0\n\
             half_life_days = 30\n[recommendations.weights]\n\"Product Viewed\" = 0.5\n\"Size Guide Opened\" = 1\n",
        )
        .unwrap();
        let cfg = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap();
        let content = cfg.content_config();
        assert_eq!(
            content.retrain_every,
            Some(std::time::Duration::from_secs(6 * 3600))
        );
        assert_eq!(content.recommendation_filters.max_per_category, 2);
        assert_eq!(content.recommendation_filters.price_max, Some(150.0));
        assert_eq!(content.recommendation_weights.of("product viewed"), Some(0.5));
        assert_eq!(content.recommendation_weights.of("Size Guide Opened"), Some(1.0));
        assert_eq!(content.recommendation_weights.of("Order Completed"), Some(5.0));
        assert_eq!(content.recommendation_decay.half_life_days, Some(30.0));
        for (toml, field) in [
            (
                "[recommendations]\nprice_min = 10.0\nprice_max = 5.0\n",
                "recommendations.price_min",
            ),
            (
                "[recommendations.weights]\n\"Product Viewed\" = -1\n",
                "recommendations.weights",
            ),
            (
                "[recommendations]\nhalf_life_days = -3\n",
                "recommendations.half_life_days",
            ),
        ] {
            std::fs::write(dir.path().join("missive.toml"), toml).unwrap();
            let err = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap_err();
            assert!(err.to_string().contains(field), "{toml}: {err}");
        }
    }

    #[test]
    fn webhook_networks_come_from_the_file_or_a_comma_separated_variable() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_with_env(
            &args(),
            env(&[("MISSIVE_WEBHOOKS__ALLOW_INTERNAL", "127.0.0.0/8,10.20.0.5")]),
            dir.path(),
        )
        .unwrap();
        let nets = cfg.app_config().webhooks.allow_internal;
        assert_eq!(nets.len(), 2);
        assert!(nets[1].contains(&"10.20.0.5".parse::<std::net::IpAddr>().unwrap()));
        std::fs::write(
            dir.path().join("missive.toml"),
            "[webhooks]\nallow_internal = [\"not a network\"]\n",
        )
        .unwrap();
        let err = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap_err();
        assert!(err.to_string().contains("webhooks.allow_internal"), "{err}");
        std::fs::write(dir.path().join("missive.toml"), "[webhooks]\nretry_hours = 0\n").unwrap();
        let err = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap_err();
        assert!(err.to_string().contains("webhooks.retry_hours"), "{err}");
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let none = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap();
        assert_eq!(
            (none.listen.as_str(), none.engine.history_len),
            ("127.0.0.1:8080", 50)
        );

        std::fs::write(
            dir.path().join("missive.toml"),
            "listen = \"0.0.0.0:9000\"\n[engine]\nhistory_len = 20\nflush_interval_ms = 100\n",
        )
        .unwrap();
        let file = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap();
        assert_eq!(
            (file.listen.as_str(), file.engine.history_len),
            ("0.0.0.0:9000", 20)
        );

        let with_env = Config::load_with_env(
            &args(),
            env(&[
                ("MISSIVE_ENGINE__HISTORY_LEN", "7"),
                ("MISSIVE_LISTEN", "127.0.0.1:9100"),
            ]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            (with_env.listen.as_str(), with_env.engine.history_len),
            ("127.0.0.1:9100", 7)
        );
        assert_eq!(
            with_env.engine_config().flush_interval,
            std::time::Duration::from_millis(100)
        );

        let flags = GlobalArgs {
            data_dir: Some("elsewhere".into()),
            store: Some("postgres://db/m".into()),
            ..args()
        };
        let with_flags =
            Config::load_with_env(&flags, env(&[("MISSIVE_DATA_DIR", "ignored")]), dir.path()).unwrap();
        assert_eq!(with_flags.data_dir, PathBuf::from("elsewhere"));
        assert_eq!(with_flags.store_url(), "postgres://db/m");
    }

    #[test]
    fn preference_topics_and_policy_version_reach_the_privacy_and_sender_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("missive.toml"),
            "[privacy]\npreference_link_ttl_days = 14\npolicy_version = \"2026-05\"\n\
             [[privacy.topics]]\nid = \"offers\"\nname = \"Offers\"\n",
        )
        .unwrap();
        let cfg = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap();
        let privacy = cfg.privacy_config();
        assert_eq!(privacy.topics.len(), 1);
        assert_eq!(
            (
                privacy.topics[0].id.as_str(),
                privacy.topics[0].description.as_str()
            ),
            ("offers", "")
        );
        assert_eq!(privacy.policy_version.as_deref(), Some("2026-05"));
        assert_eq!(
            cfg.sender_config().preference_link_ttl,
            chrono::TimeDelta::days(14)
        );

        std::fs::write(
            dir.path().join("missive.toml"),
            "[[privacy.topics]]\nid = \"offers\"\nname = \"Offers\"\ncolour = \"red\"\n",
        )
        .unwrap();
        let err = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
        for (toml, wants) in [
            ("[[privacy.topics]]\nid = \"Big Offers\"\nname = \"x\"\n", "a-z"),
            (
                "[[privacy.topics]]\nid = \"a\"\nname = \"x\"\n[[privacy.topics]]\nid = \"a\"\nname = \"y\"\n",
                "twice",
            ),
            (
                "[privacy]\npreference_link_ttl_days = 100000\n",
                "between 1 and 366",
            ),
        ] {
            std::fs::write(dir.path().join("missive.toml"), toml).unwrap();
            let err = Config::load_with_env(&args(), env(&[]), dir.path()).unwrap_err();
            assert!(format!("{err:#}").contains(wants), "{toml}: {err:#}");
        }
    }

    #[test]
    fn bad_values_fail_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            Config::load_with_env(&args(), env(&[("MISSIVE_LOG__FORMAT", "xml")]), dir.path()).unwrap_err();
        assert!(err.to_string().contains("log.format"), "{err:#}");
        let err =
            Config::load_with_env(&args(), env(&[("MISSIVE_LISTEN", "localhost")]), dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("listen"), "{err:#}");
        let err = Config::load_with_env(
            &args(),
            env(&[("MISSIVE_ENGINE__HISTORY_LEN", "many")]),
            dir.path(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("history_len"), "{err:#}");
        let missing = GlobalArgs {
            config: Some("/nonexistent/missive.toml".into()),
            ..args()
        };
        let err = Config::load_with_env(&missing, env(&[]), dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err:#}");
    }
}
