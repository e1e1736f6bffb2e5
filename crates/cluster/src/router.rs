//! Which partition an event goes to. A profile lives in the partition of the identity it was
//! created under, and `identity_routes` in PostgreSQL records the partition of every identity
//! seen, claimed by the first event naming it (`INSERT … ON CONFLICT DO NOTHING`), so that two
//! ingest nodes cannot send one new person's first events to two partitions.
//!
//! An event goes to the partition of the first of its identities that has a route, strongest
//! first (`userId`, e-mail, `anonymousId`, then an alias's `previousId`); an event naming none
//! goes to the hash of its strongest identity. Its identities without a route are routed with
//! it. So a visitor's anonymous events and their sign-in (`identify` with `userId` and the same
//! `anonymousId`) land in one partition, and their later events by `userId` follow.
//!
//! Identities routed to different partitions in one event (two histories joined by an
//! `identify` or an `alias`) are a merge across partitions: the event goes to the strongest
//! route's partition, whose owner asks the other partition to join the two profiles through the
//! log (docs/ARCHITECTURE.md, "Identity merges across partitions"); such events are counted in
//! `missive_cluster_cross_partition_events_total`. A merge moves the merged profile's routes, so
//! later events follow the survivor.

use std::collections::HashMap;

use missive_core::{Event, IdentityKey};
use missive_store::{Store, StoreError};

use crate::partition::{Partition, PartitionCount};

/// A routing decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub partition: Partition,
    /// Identities of the event without a route, routed to `partition` by it.
    pub claims: Vec<(IdentityKey, Partition)>,
    /// The event names identities routed to different partitions.
    pub across: bool,
}

/// The identities an event is routed by, strongest first, and how many of them (the first
/// ones) it names itself; the rest are an alias's `previousId`, looked up but never claimed.
pub fn routing_keys(e: &Event) -> (Vec<IdentityKey>, usize) {
    let mut keys = e.identity_keys();
    let own = keys.len();
    if let Some(prev) = &e.previous_id {
        keys.push(IdentityKey::user_id(prev.clone()));
        keys.push(IdentityKey::anonymous_id(prev.clone()));
    }
    (keys, own)
}

/// Decides an event's partition from its routing keys (`own` of them its own) and the routes
/// known. Pure.
pub fn decide(
    keys: &[IdentityKey],
    own: usize,
    routes: &HashMap<IdentityKey, Partition>,
    partitions: PartitionCount,
) -> Decision {
    let routed: Vec<Partition> = keys.iter().filter_map(|k| routes.get(k).copied()).collect();
    let partition = match (routed.first(), keys.first()) {
        (Some(p), _) => *p,
        (None, Some(k)) => partitions.of(k.kind.as_str(), &k.value),
        (None, None) => 0,
    };
    let claims = keys
        .iter()
        .take(own)
        .filter(|k| !routes.contains_key(*k))
        .map(|k| (k.clone(), partition))
        .collect();
    Decision {
        partition,
        claims,
        across: routed.iter().any(|p| *p != partition),
    }
}

/// Routes events with the routes stored in PostgreSQL.
#[derive(Clone)]
pub struct Router {
    store: Store,
    partitions: PartitionCount,
}

impl Router {
    pub fn new(store: Store, partitions: PartitionCount) -> Router {
        Router { store, partitions }
    }

    pub fn partitions(&self) -> PartitionCount {
        self.partitions
    }

    /// The partition of each event, in order: one read of the routes, one claim of the new
    /// ones, and a second decision only if another node claimed one of them first.
    pub async fn route(&self, events: &[Event]) -> Result<Vec<Partition>, StoreError> {
        let keyed: Vec<(Vec<IdentityKey>, usize)> = events.iter().map(routing_keys).collect();
        let mut all: Vec<IdentityKey> = keyed.iter().flat_map(|(k, _)| k.iter().cloned()).collect();
        all.sort_by(|a, b| (a.kind.as_str(), &a.value).cmp(&(b.kind.as_str(), &b.value)));
        all.dedup();
        let mut routes = self.store.events().identity_routes(all).await?;
        let mut claims = Vec::new();
        let mut out = Vec::with_capacity(events.len());
        for (keys, own) in &keyed {
            // Routes claimed by an earlier event of the batch count for the later ones.
            let d = decide(keys, *own, &routes, self.partitions);
            for (k, p) in &d.claims {
                routes.insert(k.clone(), *p);
            }
            claims.extend(d.claims);
            out.push((d.partition, d.across));
        }
        if !claims.is_empty() {
            let settled = self.store.events().claim_routes(claims.clone()).await?;
            if claims.iter().any(|(k, p)| settled.get(k) != Some(p)) {
                // Another node routed one of them first: its route stands.
                routes.extend(settled);
                out = keyed
                    .iter()
                    .map(|(keys, own)| {
                        let d = decide(keys, *own, &routes, self.partitions);
                        (d.partition, d.across)
                    })
                    .collect();
            }
        }
        let across = out.iter().filter(|(_, a)| *a).count();
        if across > 0 {
            metrics::counter!("missive_cluster_cross_partition_events_total").increment(across as u64);
            tracing::debug!(
                events = across,
                "cluster: events join identities of different partitions; sent to the strongest \
                 identity's partition, which merges through the log"
            );
        }
        Ok(out.into_iter().map(|(p, _)| p).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> PartitionCount {
        PartitionCount::new(16).unwrap()
    }

    #[test]
    fn decisions() {
        let user = IdentityKey::user_id("u-1");
        let anon = IdentityKey::anonymous_id("a-1");
        let hash_user = n().of("user_id", "u-1");
        // (case, routing keys, how many are the event's own, routes known, decision)
        type Case = (
            &'static str,
            Vec<IdentityKey>,
            usize,
            Vec<(IdentityKey, u16)>,
            Decision,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing routed: the strongest identity's hash, every identity claimed",
                vec![user.clone(), anon.clone()],
                2,
                vec![],
                Decision {
                    partition: hash_user,
                    claims: vec![(user.clone(), hash_user), (anon.clone(), hash_user)],
                    across: false,
                },
            ),
            (
                "a sign-in follows the anonymous visitor's partition",
                vec![user.clone(), anon.clone()],
                2,
                vec![(anon.clone(), 3)],
                Decision {
                    partition: 3,
                    claims: vec![(user.clone(), 3)],
                    across: false,
                },
            ),
            (
                "two routes disagree: the strongest wins, the event is across",
                vec![user.clone(), anon.clone()],
                2,
                vec![(user.clone(), 5), (anon.clone(), 3)],
                Decision {
                    partition: 5,
                    claims: vec![],
                    across: true,
                },
            ),
            (
                "an alias's previousId is followed but never claimed",
                vec![
                    user.clone(),
                    IdentityKey::user_id("old"),
                    IdentityKey::anonymous_id("old"),
                ],
                1,
                vec![(IdentityKey::anonymous_id("old"), 9)],
                Decision {
                    partition: 9,
                    claims: vec![(user.clone(), 9)],
                    across: false,
                },
            ),
        ];
        for (name, keys, own, routes, want) in cases {
            let routes: HashMap<_, _> = routes.into_iter().collect();
            assert_eq!(decide(&keys, own, &routes, n()), want, "{name}");
        }
    }
}
