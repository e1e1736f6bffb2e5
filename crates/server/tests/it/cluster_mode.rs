//! The test app as a cluster node, for the whole suite run with `MISSIVE_TEST_APP=cluster`
//! (CI runs it both ways): a store in a schema of its own on the real PostgreSQL
//! (`MISSIVE_TEST_POSTGRES_URL`), a JetStream stream of its own on the real NATS
//! (`MISSIVE_TEST_NATS_URL`), and one node owning every partition and the sending lease.
//! Ingest goes through the log, so a test's write is in the profiles only once the owners
//! have folded it: the test app waits for that after each write ([`Cluster::settle`]), which
//! is what lets the embedded mode's tests run unchanged.

use std::time::{Duration, Instant};

use missive_cluster::{LogConfig, Node, NodeConfig, PartitionCount};
use missive_engine::Engine;
use missive_store::Store;
use missive_store::postgres::PostgresStore;

/// Partitions of a test cluster: several, so that a test's people are spread over them.
const PARTITIONS: u16 = 4;

/// Whether the suite runs against cluster nodes (`MISSIVE_TEST_APP=cluster`).
pub fn requested() -> bool {
    match std::env::var("MISSIVE_TEST_APP").as_deref() {
        Ok("cluster") => true,
        Ok("embedded") | Err(_) => false,
        Ok(other) => panic!("MISSIVE_TEST_APP={other:?}: use `cluster` or `embedded`"),
    }
}

/// Where a test cluster lives: its schema and stream, kept across a restart.
#[derive(Clone)]
pub struct Place {
    pub url: String,
    pub schema: String,
    pub log: LogConfig,
}

impl Place {
    /// A new schema and stream. Asked for without PostgreSQL or NATS, the test fails: a
    /// cluster-mode run must not pass as an embedded one.
    pub async fn new() -> Place {
        let (Ok(url), Ok(nats)) = (
            std::env::var("MISSIVE_TEST_POSTGRES_URL"),
            std::env::var("MISSIVE_TEST_NATS_URL"),
        ) else {
            panic!("MISSIVE_TEST_APP=cluster needs MISSIVE_TEST_POSTGRES_URL and MISSIVE_TEST_NATS_URL");
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("test_{id}");
        let client = missive_cluster::leases::connect(&url, None).await.unwrap();
        client
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .unwrap();
        let log = LogConfig {
            stream: format!("T_{id}"),
            subject_prefix: format!("t{id}"),
            ..LogConfig::new(nats)
        };
        Place { url, schema, log }
    }

    /// Every table of the schema, its rows as text (`table::text`), one entry per table.
    pub async fn tables(&self) -> Vec<(String, Vec<u8>)> {
        let client = missive_cluster::leases::connect(&self.url, None).await.unwrap();
        let names = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&self.schema],
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        for row in names {
            let table: String = row.get(0);
            let text: Option<String> = client
                .query_one(
                    &format!(
                        "SELECT string_agg(t::text, E'\\n') FROM \"{}\".\"{table}\" t",
                        self.schema
                    ),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            out.push((format!("table {table}"), text.unwrap_or_default().into_bytes()));
        }
        out
    }

    pub async fn store(&self) -> Store {
        Store::new(
            PostgresStore::connect_cluster(&self.url, Some(&self.schema))
                .await
                .unwrap(),
        )
    }
}

/// A running test node.
pub struct Cluster {
    pub place: Place,
    node: Option<Node>,
    js: async_nats::jetstream::Context,
    /// Delete the stream when dropped (not when a restart goes on with it).
    owns_stream: bool,
}

impl Cluster {
    /// Joins `engine` (started in cluster mode on `place`'s store) to the cluster as its only
    /// node, listening at `address`.
    pub async fn join(
        place: Place,
        engine: Engine,
        address: &str,
        keyring: std::sync::Arc<missive_privacy::Keyring>,
    ) -> Cluster {
        let config = NodeConfig {
            log: place.log.clone(),
            node: "test-node".into(),
            address: address.into(),
            partitions: PartitionCount::new(i64::from(PARTITIONS)).unwrap(),
            lease_ttl: Duration::from_secs(3),
            batch: 1_000,
            postgres_url: place.url.clone(),
            schema: Some(place.schema.clone()),
            keyring: Some(keyring),
        };
        let store = engine.store().clone();
        let node = Node::start(config, engine).await.unwrap();
        // The only node takes the sending lease: its sending side's writes are made under it,
        // as `missive serve --cluster` does while it holds the lease (the tests run the
        // sending side's steps themselves).
        let mut sending = node.sending();
        let fence = tokio::time::timeout(Duration::from_secs(10), sending.wait_for(Option::is_some))
            .await
            .expect("the sending lease within 10 s")
            .unwrap()
            .clone();
        store.delivery().set_leader_fence(fence);
        let js = missive_cluster::log::connect_jetstream(&place.log, "missive-test-settle")
            .await
            .unwrap();
        Cluster {
            place,
            node: Some(node),
            js,
            owns_stream: true,
        }
    }

    /// Waits until the owners have applied everything the log holds, then has the engine
    /// checkpoint it: what the test sent is in the stored profiles, and below the watermark
    /// that journeys and webhooks read up to.
    ///
    /// An owner raises an idle partition's marks to the stream's end by itself after two
    /// empty reads (about a second; `Engine::settle_idle`); this does it at once, on the same
    /// grounds: the stream's last sequence is read first, and every partition has applied
    /// every message its subject holds after that, so each has folded all of its messages
    /// up to it.
    pub async fn settle(&self, engine: &Engine) {
        let started = Instant::now();
        loop {
            let mut stream = self.js.get_stream(&self.place.log.stream).await.unwrap();
            let end = stream.info().await.unwrap().state.last_sequence as i64;
            let behind = missive_cluster::status::unsettled(
                &self.js,
                &self.place.log,
                engine.store(),
                PartitionCount::new(i64::from(PARTITIONS)).unwrap(),
            )
            .await
            .unwrap();
            if behind.is_empty() {
                for partition in 0..PARTITIONS {
                    engine
                        .settle_idle(missive_engine::LogPosition { partition, seq: end })
                        .await
                        .unwrap();
                }
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "partitions {behind:?} did not apply the log within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        engine.sync().await.unwrap();
    }

    /// Every record of the log as stored (headers and payload), one entry per record.
    pub async fn log_records(&self) -> Vec<(String, Vec<u8>)> {
        let mut stream = self.js.get_stream(&self.place.log.stream).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            // Messages a duplicate or a limit removed are gaps.
            if let Ok(m) = stream.get_raw_message(seq).await {
                let mut bytes = format!("{:?}", m.headers).into_bytes();
                bytes.extend_from_slice(&m.payload);
                out.push((format!("log record {seq}"), bytes));
            }
        }
        out
    }

    /// Keeps the stream when dropped: a restarted node goes on with it.
    pub fn keep_stream(&mut self) {
        self.owns_stream = false;
    }

    /// Leaves the cluster (every partition handed over), keeping the schema and the stream.
    pub async fn leave(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
    }
}

impl Drop for Cluster {
    /// Deletes the test's stream from the shared NATS (the schema goes with CI's next run).
    fn drop(&mut self) {
        if !self.owns_stream {
            return;
        }
        let log = self.place.log.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(js) = missive_cluster::log::connect_jetstream(&log, "missive-test-cleanup").await {
                    let _ = js.delete_stream(&log.stream).await;
                }
            });
        })
        .join();
    }
}
