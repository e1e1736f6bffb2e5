//! Merges across partitions, step by step, in one engine owning two partitions of a real
//! PostgreSQL. The log between the steps is a recorder in this test: it keeps what the engine
//! sends and the test delivers it, at positions of its choosing, so that each step, a repeat
//! of one and a late event can be fed in a known order. (`cli/tests/it/cluster_nodes.rs` runs
//! the same steps through NATS JetStream between real nodes, one of them killed mid-merge.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use missive_core::{IdentityKey, ProfileId, SystemClock};
use missive_engine::log::{AppendResult, Control, JoinSide, Outbound, SendResult};
use missive_engine::{Engine, EngineConfig, EventLog, LogPosition};
use missive_store::Store;
use missive_store::postgres::PostgresStore;

use crate::{keeper, schema, url};

#[derive(Default)]
struct Recorder(Mutex<Vec<Outbound>>);

impl EventLog for Recorder {
    fn append(
        &self,
        _: Vec<missive_core::Event>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = AppendResult> + Send + '_>> {
        Box::pin(async { Err("this test delivers by hand".to_owned()) })
    }

    fn send(
        &self,
        records: Vec<Outbound>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = SendResult> + Send + '_>> {
        let n = records.len();
        self.0.lock().unwrap().extend(records);
        Box::pin(async move { Ok(vec![0; n]) })
    }

    fn partitions(&self) -> u16 {
        2
    }
}

struct Harness {
    engine: Engine,
    store: Store,
    log: Arc<Recorder>,
    seq: i64,
}

impl Harness {
    fn at(&mut self, partition: u16) -> LogPosition {
        self.seq += 1;
        LogPosition {
            partition,
            seq: self.seq,
        }
    }

    async fn event(&mut self, partition: u16, body: serde_json::Value) {
        let e = missive_core::message::validate_message(body, None, None, chrono::Utc::now()).unwrap();
        let at = self.at(partition);
        self.engine.ingest_logged(vec![e], vec![at]).await.unwrap();
    }

    fn sent(&self) -> Vec<Outbound> {
        std::mem::take(&mut *self.log.0.lock().unwrap())
    }

    /// Delivers what was sent, and what that sends, until nothing more is; answers all of it.
    async fn deliver(&mut self) -> Vec<Outbound> {
        let mut all = Vec::new();
        for _ in 0..10 {
            let sent = self.sent();
            if sent.is_empty() {
                return all;
            }
            for record in sent {
                self.redeliver(&record).await;
                all.push(record);
            }
        }
        panic!("records still bouncing after 10 rounds: {all:?}");
    }

    async fn redeliver(&mut self, record: &Outbound) {
        let at = self.at(record.partition());
        match record {
            Outbound::Forward { event, .. } => {
                self.engine
                    .ingest_logged(vec![(**event).clone()], vec![at])
                    .await
                    .unwrap();
            }
            Outbound::Control { control, .. } => self.engine.control(control.clone(), at).await.unwrap(),
        }
    }

    async fn profile_of(&self, key: &IdentityKey) -> ProfileId {
        self.engine.sync().await.unwrap();
        let found = self
            .store
            .events()
            .resolve_identities(vec![key.clone()])
            .await
            .unwrap();
        found[key].clone()
    }

    async fn viewed(&self, id: &ProfileId) -> u64 {
        let p = self.store.events().load_profile(id).await.unwrap().unwrap();
        p.events.get("Viewed").map(|a| a.count).unwrap_or(0)
    }
}

async fn claims_more(store: &Store, key: &IdentityKey, partition: u16) {
    store
        .events()
        .claim_routes(vec![(key.clone(), partition)])
        .await
        .unwrap();
}

fn kinds(records: &[Outbound]) -> Vec<(u16, &'static str)> {
    records
        .iter()
        .map(|r| {
            let kind = match r {
                Outbound::Forward { .. } => "forward",
                Outbound::Control {
                    control: Control::Join { .. },
                    ..
                } => "join",
                Outbound::Control {
                    control: Control::Absorb { .. },
                    ..
                } => "absorb",
                Outbound::Control {
                    control: Control::Erase { .. },
                    ..
                } => "erase",
            };
            (r.partition(), kind)
        })
        .collect()
}

fn viewed(id: &str, key: (&str, &str)) -> serde_json::Value {
    let mut body = serde_json::json!({"type": "track", "event": "Viewed", "messageId": id});
    body[key.0] = key.1.into();
    body
}

#[tokio::test]
async fn profiles_in_two_partitions_merge_into_the_known_users_else_the_older_once() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let store = Store::new(PostgresStore::connect_cluster(&url, Some(&s)).await.unwrap());
    let config = EngineConfig {
        cluster: true,
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config)
        .await
        .unwrap();
    let log = Arc::new(Recorder::default());
    engine.set_log(log.clone()).unwrap();
    let mut a = keeper(&url, &s, "a", 2).await;
    a.round().await.unwrap();
    for p in [0, 1] {
        engine.own(a.fence(p).unwrap()).await.unwrap();
    }
    let mut h = Harness {
        engine,
        store: store.clone(),
        log,
        seq: 0,
    };
    let key = |kind: &str, v: &str| match kind {
        "userId" => IdentityKey::user_id(v),
        _ => IdentityKey::anonymous_id(v),
    };
    // As the router would have claimed them: users in partition 0, visitors in partition 1,
    // and the fourth user with their visitor id.
    let mut claims = vec![(key("userId", "u-4"), 1)];
    for n in 1..=4 {
        if n < 4 {
            claims.push((key("userId", &format!("u-{n}")), 0));
        }
        claims.push((key("anonymousId", &format!("a-{n}")), 1));
    }
    store.events().claim_routes(claims).await.unwrap();

    // 1. The user's profile is the older: the visitor's is shipped to it.
    h.event(0, viewed("x-1", ("userId", "u-1"))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.event(1, viewed("x-2", ("anonymousId", "a-1"))).await;
    h.event(
        0,
        serde_json::json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1", "messageId": "x-3"}),
    )
    .await;
    let steps = h.deliver().await;
    assert_eq!(kinds(&steps), vec![(1, "join"), (0, "absorb")]);
    let user = h.profile_of(&key("userId", "u-1")).await;
    let visitor = h.profile_of(&key("anonymousId", "a-1")).await;
    assert_eq!(user, visitor, "one person, one profile");
    assert_eq!(h.viewed(&user).await, 2);
    let absorbed = match &steps[1] {
        Outbound::Control {
            control: Control::Absorb { state, .. },
            ..
        } => state.id.clone(),
        other => panic!("{other:?}"),
    };
    let tombstone = store.events().load_profile(&absorbed).await.unwrap().unwrap();
    assert_eq!(tombstone.merged_into.as_ref(), Some(&user));
    let routes = store
        .events()
        .identity_routes(vec![key("anonymousId", "a-1")])
        .await
        .unwrap();
    assert_eq!(routes[&key("anonymousId", "a-1")], 0, "the visitor's route moved");
    let merges = store.events().merges_of(&absorbed).await.unwrap();
    assert_eq!(merges.len(), 1);
    let version = store.events().load_profile(&user).await.unwrap().unwrap().version;

    // Both steps delivered again (a node died after sending them): nothing changes.
    for record in &steps {
        h.redeliver(record).await;
    }
    let again = h.deliver().await;
    assert_eq!(
        kinds(&again),
        vec![(0, "join")],
        "the repeated join follows the route to partition 0"
    );
    h.engine.sync().await.unwrap();
    assert_eq!(h.viewed(&user).await, 2);
    assert_eq!(
        store.events().load_profile(&user).await.unwrap().unwrap().version,
        version,
        "a repeat wrote a new version"
    );
    assert_eq!(store.events().merges_of(&absorbed).await.unwrap().len(), 1);

    // A visitor's event routed to partition 1 before the move is forwarded to the profile.
    h.event(1, viewed("x-4", ("anonymousId", "a-1"))).await;
    assert_eq!(kinds(&h.deliver().await), vec![(0, "forward")]);
    h.engine.sync().await.unwrap();
    assert_eq!(h.viewed(&user).await, 3);

    // An absorb that arrives before its former partition committed the tombstone waits: it
    // changes nothing, and is to be read again.
    claims_more(&store, &key("anonymousId", "a-5"), 1).await;
    h.event(1, viewed("x-11", ("anonymousId", "a-5"))).await;
    let early = h.profile_of(&key("anonymousId", "a-5")).await;
    let state = store.events().load_profile(&early).await.unwrap().unwrap();
    let at = h.at(0);
    let waited = h
        .engine
        .control(
            Control::Absorb {
                into: user.clone(),
                state: Box::new(state),
                cause: "x-12".into(),
                at: chrono::Utc::now(),
            },
            at,
        )
        .await;
    assert!(
        matches!(
            waited.as_ref().map_err(|e| &**e),
            Err(missive_engine::EngineError::NotYet(_))
        ),
        "{waited:?}"
    );
    h.engine.sync().await.unwrap();
    assert_eq!(h.viewed(&user).await, 3);
    assert!(store.events().merges_of(&early).await.unwrap().is_empty());

    // 2. The visitor's profile is the older, and still the user's survives (as the embedded
    // mode merges a visitor into the known user): the visitor's is shipped to it.
    h.event(1, viewed("x-5", ("anonymousId", "a-2"))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.event(0, viewed("x-6", ("userId", "u-2"))).await;
    h.event(
        0,
        serde_json::json!({"type": "identify", "userId": "u-2", "anonymousId": "a-2", "messageId": "x-7"}),
    )
    .await;
    let visitor_before = h.profile_of(&key("anonymousId", "a-2")).await;
    let user = h.profile_of(&key("userId", "u-2")).await;
    assert!(visitor_before < user, "the visitor's profile is the older");
    let steps = h.deliver().await;
    assert_eq!(kinds(&steps), vec![(1, "join"), (0, "absorb")]);
    assert_eq!(h.profile_of(&key("anonymousId", "a-2")).await, user);
    assert_eq!(h.viewed(&user).await, 2);

    // 2b. Two visitors' profiles (an address and a device): the older survives, so the join
    // goes back, and the newer is shipped to it.
    let address = missive_core::EmailAddress::parse("m-2@example.com").unwrap();
    claims_more(&store, &IdentityKey::email(&address), 0).await;
    claims_more(&store, &key("anonymousId", "a-8"), 0).await;
    h.event(1, viewed("x-21", ("anonymousId", "a-3"))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.event(
        0,
        serde_json::json!({"type": "track", "event": "Viewed", "anonymousId": "a-8", "messageId": "x-22",
                           "context": {"traits": {"email": "m-2@example.com"}}}),
    )
    .await;
    h.event(
        0,
        serde_json::json!({"type": "identify", "anonymousId": "a-3", "messageId": "x-23",
                           "traits": {"email": "m-2@example.com"}}),
    )
    .await;
    let steps = h.deliver().await;
    assert_eq!(kinds(&steps), vec![(1, "join"), (0, "join"), (1, "absorb")]);
    assert!(matches!(
        &steps[1],
        Outbound::Control {
            control: Control::Join {
                local: JoinSide::Profile(_),
                ..
            },
            ..
        }
    ));
    let visitor = h.profile_of(&key("anonymousId", "a-3")).await;
    assert_eq!(h.profile_of(&IdentityKey::email(&address)).await, visitor);
    assert_eq!(h.profile_of(&key("anonymousId", "a-8")).await, visitor);
    assert_eq!(h.viewed(&visitor).await, 2);

    // 3. Two known users are never merged, whatever the event says.
    h.event(0, viewed("x-8", ("userId", "u-3"))).await;
    h.event(
        1,
        serde_json::json!({"type": "identify", "userId": "u-4", "anonymousId": "a-4", "messageId": "x-9"}),
    )
    .await;
    h.event(
        0,
        serde_json::json!({"type": "identify", "userId": "u-3", "anonymousId": "a-4", "messageId": "x-10"}),
    )
    .await;
    assert_eq!(kinds(&h.deliver().await), vec![(1, "join")]);
    assert_ne!(
        h.profile_of(&key("userId", "u-3")).await,
        h.profile_of(&key("anonymousId", "a-4")).await
    );

    // 4. A join whose survivor is another known user's when the state arrives: the shipped
    // profile is kept apart, live in its partition. The protocol does not make such a join
    // (a known user's profile is shipped only to the same user's); this one names user ids
    // that do not hold, to check the absorb's own guard.
    claims_more(&store, &key("userId", "u-6"), 0).await;
    claims_more(&store, &key("userId", "u-7"), 1).await;
    claims_more(&store, &key("anonymousId", "a-7"), 1).await;
    h.event(0, viewed("x-13", ("userId", "u-6"))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.event(
        1,
        serde_json::json!({"type": "identify", "userId": "u-7", "anonymousId": "a-7", "messageId": "x-14"}),
    )
    .await;
    let u6 = h.profile_of(&key("userId", "u-6")).await;
    let w = h.profile_of(&key("userId", "u-7")).await;
    let at = h.at(1);
    h.engine
        .control(
            Control::Join {
                local: JoinSide::Identity(key("anonymousId", "a-7")),
                with: u6.clone(),
                with_partition: 0,
                with_users: vec!["u-7".into()],
                cause: "x-15".into(),
            },
            at,
        )
        .await
        .unwrap();
    assert_eq!(kinds(&h.deliver().await), vec![(0, "absorb")]);
    assert_eq!(h.profile_of(&key("anonymousId", "a-7")).await, w, "kept apart");
    assert_eq!(h.profile_of(&key("userId", "u-7")).await, w);
    let kept = store.events().load_profile(&w).await.unwrap().unwrap();
    assert_eq!(kept.merged_into, None, "its tombstone undone");
    assert_eq!(h.viewed(&u6).await, 1);
    assert!(store.events().merges_of(&w).await.unwrap().is_empty());
    h.engine.shutdown().await;
}
