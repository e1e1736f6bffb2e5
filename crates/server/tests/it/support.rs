use std::sync::Arc;

use chrono::{DateTime, Utc};
use missive_core::ManualClock;
use missive_engine::auth::ensure_workspace;
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};
use serde_json::Value;

/// The secret of the test app's Shopify source, `shop`.
pub const SHOP_SECRET: &str = "shpss_test_secret";

pub struct TestApp {
    pub base: String,
    pub write_key: String,
    pub admin_key: String,
    pub clock: ManualClock,
    pub client: reqwest::Client,
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    pub state: missive_server::AppState,
    /// How messages leave, when the test sends: a transport and its DKIM signer.
    delivery: Option<Delivery>,
    server: tokio::task::JoinHandle<()>,
    /// The cluster node this app is, with `MISSIVE_TEST_APP=cluster`.
    cluster: Option<crate::cluster_mode::Cluster>,
}

/// A transport and a DKIM signer for tests that send.
#[derive(Clone)]
pub struct Delivery {
    pub transport: Arc<dyn missive_delivery::Transport>,
    pub dkim: Arc<(String, String, String)>,
    /// The maildir messages are written to, when that is the transport.
    pub maildir: Option<std::path::PathBuf>,
    /// The sender's quiet hours (none unless a test sets them).
    pub quiet_hours: Option<(chrono::NaiveTime, chrono::NaiveTime)>,
}

impl Delivery {
    /// SMTP to `addr` (host:port), signing with a new Ed25519 key for `example.test`.
    pub fn smtp(addr: &str) -> Self {
        let (host, port) = addr.rsplit_once(':').expect("MISSIVE_TEST_SMTP is host:port");
        let transport = missive_delivery::SmtpTransport::new(&missive_delivery::SmtpConfig {
            host: host.into(),
            port: port.parse().expect("a port"),
            tls: missive_delivery::Tls::None,
            username: None,
            password: None,
            pool_max: 2,
            timeout: std::time::Duration::from_secs(10),
            hello_name: Some("missive.test".into()),
        })
        .expect("SMTP transport");
        let (signer, pem) = missive_delivery::DkimSigner::generate_ed25519("e2e", "example.test").unwrap();
        let (name, value) = signer.dns_record();
        Delivery {
            transport: Arc::new(transport),
            dkim: Arc::new((pem, name, value)),
            maildir: None,
            quiet_hours: None,
        }
    }

    /// Writes messages to a maildir at `root`.
    pub fn maildir(root: &std::path::Path) -> Self {
        let transport = missive_delivery::MaildirTransport::new(root).expect("maildir");
        let (signer, pem) = missive_delivery::DkimSigner::generate_ed25519("e2e", "example.test").unwrap();
        let (name, value) = signer.dns_record();
        Delivery {
            transport: Arc::new(transport),
            dkim: Arc::new((pem, name, value)),
            maildir: Some(root.to_path_buf()),
            quiet_hours: None,
        }
    }

    pub fn dns_record(&self) -> (String, String) {
        (self.dkim.1.clone(), self.dkim.2.clone())
    }
}

fn topic(id: &str, name: &str, description: &str) -> missive_engine::privacy::Topic {
    missive_engine::privacy::Topic {
        id: id.into(),
        name: name.into(),
        description: description.into(),
    }
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T12:00:00Z")
        .unwrap()
        .to_utc()
}

impl TestApp {
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start_time());
        Self::spawn_in(dir, clock, None, None, None).await
    }

    /// A server with these rate limits.
    pub async fn spawn_limited(limits: missive_server::limits::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start_time());
        Self::spawn_in(dir, clock, None, None, Some(limits)).await
    }

    /// A server whose sender hands messages to `delivery`.
    pub async fn spawn_sending(delivery: Delivery) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start_time());
        Self::spawn_in(dir, clock, None, Some(delivery), None).await
    }

    /// Starts on a new data directory (and, with `MISSIVE_TEST_APP=cluster`, a new cluster).
    async fn spawn_in(
        dir: tempfile::TempDir,
        clock: ManualClock,
        keys: Option<(String, String)>,
        delivery: Option<Delivery>,
        limits: Option<missive_server::limits::Limits>,
    ) -> Self {
        let place = match crate::cluster_mode::requested() {
            true => Some(crate::cluster_mode::Place::new().await),
            false => None,
        };
        Self::start(dir, clock, keys, delivery, limits, place).await
    }

    /// Starts on an existing data directory (a restart), reusing the keys; on `place`'s
    /// store and log as a cluster node, else on the directory's SQLite file.
    async fn start(
        dir: tempfile::TempDir,
        clock: ManualClock,
        keys: Option<(String, String)>,
        delivery: Option<Delivery>,
        limits: Option<missive_server::limits::Limits>,
        place: Option<crate::cluster_mode::Place>,
    ) -> Self {
        // As `missive serve` runs by default: behind the encrypting store, with a key file.
        let key_file = dir.path().join("missive.keys");
        let keyring = match std::fs::read_to_string(&key_file) {
            Ok(text) => missive_privacy::Keyring::parse(&text).unwrap(),
            Err(_) => {
                let k = missive_privacy::Keyring::generate();
                std::fs::write(&key_file, k.to_file_text()).unwrap();
                k
            }
        };
        let keyring = Arc::new(keyring);
        let bare: Store = match &place {
            Some(place) => place.store().await,
            None => Store::new(SqliteStore::open(dir.path().join("missive.db")).await.unwrap()),
        };
        let store: Store = missive_store::EncryptedStore::new(bare, keyring.clone()).store();
        let (_, minted) = ensure_workspace(&store).await.unwrap();
        let (write_key, admin_key) = match (minted, keys) {
            (Some(k), _) => (k.write_key.expose().to_owned(), k.admin_key.expose().to_owned()),
            (None, Some(k)) => k,
            (None, None) => panic!("restart without keys"),
        };
        let config = missive_server::app::AppConfig {
            engine: EngineConfig {
                history_len: 5,
                cluster: place.is_some(),
                ..EngineConfig::default()
            },
            privacy: missive_engine::privacy::PrivacyConfig {
                topics: vec![
                    topic("offers", "Offers and sales", "Discounts and seasonal sales."),
                    topic("news", "New arrivals", "Products just in."),
                ],
                policy_version: Some("2026-03".into()),
                analytics_traits: ["tier".to_owned(), "profile_meta".to_owned()].into(),
                ..Default::default()
            },
            limits: limits.unwrap_or_default(),
            local_maildir: delivery.as_ref().and_then(|d| d.maildir.clone()),
            sources: [
                (
                    "shop".to_owned(),
                    missive_sources::Source::Shopify {
                        secret: SHOP_SECRET.into(),
                    },
                ),
                (
                    "cmp".to_owned(),
                    serde_json::from_value(serde_json::json!({
                        "type": "consent", "secret": SHOP_SECRET,
                        "purposes": {"newsletter": "email_marketing"}
                    }))
                    .unwrap(),
                ),
            ]
            .into(),
            // Receivers in the tests listen on loopback; retries are quick so that a test can
            // watch a notice go from failing to dead letter.
            webhooks: missive_sending::webhooks::WebhookConfig {
                allow_internal: vec!["127.0.0.0/8".parse().unwrap()],
                retry: missive_webhooks::retry::RetryPolicy {
                    first: chrono::Duration::milliseconds(20),
                    longest: chrono::Duration::milliseconds(200),
                    window: chrono::Duration::seconds(2),
                },
                changes: None,
            },
            ..Default::default()
        };
        let sender = delivery.as_ref().map(|d| missive_server::app::SenderParts {
            transport: d.transport.clone(),
            dkim: Some(missive_delivery::DkimSigner::from_pem(&d.dkim.0, "e2e", "example.test").unwrap()),
            throttle: missive_delivery::Throttle::new(None),
            config: missive_sending::sender::SenderConfig {
                from_address: "shop@example.test".into(),
                bounce_address: "bounces@example.test".into(),
                message_id_domain: "example.test".into(),
                public_url: "https://mail.example.test".into(),
                policy: missive_sending::policy::PolicyConfig {
                    quiet_hours: d.quiet_hours,
                    ..Default::default()
                },
                ..Default::default()
            },
        });
        let missive =
            missive_server::app::App::build(store, keyring.clone(), Arc::new(clock.clone()), config, sender)
                .await
                .unwrap();
        let (engine, state) = (missive.engine().clone(), missive.state().clone());
        let app = missive.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let cluster = match place {
            Some(place) => {
                Some(crate::cluster_mode::Cluster::join(place, engine.clone(), &base, keyring).await)
            }
            None => None,
        };
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            base,
            write_key,
            admin_key,
            clock,
            client: reqwest::Client::new(),
            engine,
            dir,
            state,
            delivery,
            server,
            cluster,
        }
    }

    /// Stops the server and the engine (committing everything) and starts both again on the
    /// same store: all in-memory state is rebuilt from the store.
    pub async fn restart(mut self) -> Self {
        self.server.abort();
        let _ = (&mut self.server).await;
        let place = match self.cluster.as_mut() {
            Some(c) => {
                c.leave().await;
                Some(c.place.clone())
            }
            None => None,
        };
        let keys = (self.write_key.clone(), self.admin_key.clone());
        let (dir, clock, delivery) = (self.dir, self.clock, self.delivery);
        drop(self.state);
        self.engine.shutdown().await;
        // The stream stays for the restarted node: only the last app deletes it.
        if let Some(mut c) = self.cluster {
            c.keep_stream();
        }
        Self::start(dir, clock, Some(keys), delivery, None, place).await
    }

    /// Whether `a` and `b` are routed to different partitions (as a cluster node; never in
    /// the embedded mode): their profiles' merge then takes two versions of the survivor,
    /// the sign-in's and the absorbed profile's (docs/ARCHITECTURE.md, "Identity merges
    /// across partitions").
    pub async fn routed_apart(&self, a: missive_core::IdentityKey, b: missive_core::IdentityKey) -> bool {
        if self.cluster.is_none() {
            return false;
        }
        let routes = self
            .engine
            .store()
            .events()
            .identity_routes(vec![a.clone(), b.clone()])
            .await
            .unwrap();
        routes[&a] != routes[&b]
    }

    /// Everything the app stored, as bytes to scan: every file of the data directory (WAL and
    /// key files included) and, as a cluster node, every row of its PostgreSQL schema as text
    /// and every record of its JetStream log.
    pub async fn stored_data(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        if let Some(c) = &self.cluster {
            out.extend(c.place.tables().await);
            out.extend(c.log_records().await);
        }
        out
    }

    /// In the cluster-mode suite, waits until what was sent is in the stored profiles (the
    /// embedded mode's ingest answers once it is).
    pub async fn settle(&self) {
        if let Some(c) = &self.cluster {
            c.settle(&self.engine).await;
        }
    }

    /// A restart whose sender hands messages to `delivery` (other settings).
    pub async fn restart_with(mut self, delivery: Delivery) -> Self {
        self.delivery = Some(delivery);
        self.restart().await
    }

    /// Writes a profile checkpoint now, so that each change before it gets its own version.
    pub async fn sync(&self) {
        self.settle().await;
        self.engine.sync().await.unwrap();
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.write_key, Some(""))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        self.settle().await;
        (status, body)
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        self.settle().await;
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A management API call with the admin key.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let write = method != reqwest::Method::GET;
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        if write {
            self.settle().await;
        }
        (status, body)
    }

    /// A new API key of `role` (created with the admin key).
    pub async fn key_of_role(&self, role: &str) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/v1/keys",
                Some(serde_json::json!({"role": role, "label": format!("{role} for tests")})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }

    pub async fn profile(&self, key: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/profiles/{key}")).await;
        assert_eq!(status, 200, "profile {key}: {body}");
        body
    }

    pub fn basic(&self) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", self.write_key))
        )
    }
}
