//! The sending lease on a real PostgreSQL: one holder at a time, a new token for each, and the
//! journey and outbox writes of a former holder refused once another holds it (fencing).

use std::time::Duration;

use missive_cluster::leases::connect;
use missive_cluster::service::{SENDING, ServiceLease};
use missive_store::postgres::PostgresStore;
use missive_store::{JourneyCommit, LeaderFence, Store, StoreError};

use crate::{schema, url};

const TTL: Duration = Duration::from_millis(1_500);

#[tokio::test]
async fn a_former_holder_of_the_sending_lease_writes_no_journey_progress() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let store = Store::new(PostgresStore::connect_cluster(&url, Some(&s)).await.unwrap());
    let lease = |node: &'static str| {
        let (url, s) = (url.clone(), s.clone());
        async move {
            let client = connect(&url, Some(&s)).await.unwrap();
            ServiceLease::open(client, SENDING, node, TTL).await.unwrap()
        }
    };
    let (a, b) = (lease("a").await, lease("b").await);
    let progress = |through| JourneyCommit {
        events_through: Some(through),
        ..JourneyCommit::default()
    };
    let fence = |node: &str, token| LeaderFence {
        name: SENDING.into(),
        node: node.into(),
        token,
    };

    // Without the lease, nothing is written.
    let refused = store.delivery().commit_journey(progress(3)).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");

    let first = a.claim().await.unwrap().expect("a free lease is taken");
    assert_eq!(b.claim().await.unwrap(), None, "one holder at a time");
    assert_eq!(a.claim().await.unwrap(), Some(first), "renewing keeps the token");
    store.delivery().set_leader_fence(Some(fence("a", first)));
    store.delivery().commit_journey(progress(5)).await.unwrap();
    assert_eq!(store.delivery().journey_events_through().await.unwrap(), 5);

    // a stops renewing (paused); once its lease ran out, b takes it.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let second = b.claim().await.unwrap().expect("an expired lease is taken");
    assert!(second > first, "a new holder, a new token");
    let stale = store.delivery().commit_journey(progress(9)).await;
    assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
    assert_eq!(store.delivery().journey_events_through().await.unwrap(), 5);
    assert_eq!(
        a.claim().await.unwrap(),
        None,
        "a, resumed, does not take it back"
    );

    // b's writes go through; a lease released is taken at once.
    store.delivery().set_leader_fence(Some(fence("b", second)));
    store.delivery().commit_journey(progress(9)).await.unwrap();
    b.release(second).await.unwrap();
    let third = a.claim().await.unwrap().expect("a released lease is taken");
    assert!(third > second);
}
