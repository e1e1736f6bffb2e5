//! What a node does with the leases on each round: which partitions to claim and which to give
//! up, so that every partition has an owner and the live nodes share them evenly. Pure: the
//! leases and the live nodes in, a plan out; every node computes it from the same table.
//!
//! A node wants its fair share, `ceil(partitions / live nodes)`. It claims partitions that
//! have no live owner (free, expired, or held by a node no longer alive) up to that share, the
//! lowest numbers first; and when it holds more than its share (a node came back) it gives up
//! its highest-numbered extras, which the newcomer then claims. Ownership moves only through a
//! free lease: nobody takes a partition from a live owner.

use std::collections::BTreeSet;

use crate::partition::{Partition, PartitionCount};

/// One lease as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub partition: Partition,
    /// Its owner, if any.
    pub owner: Option<String>,
    /// Whether it has expired (by the database's clock).
    pub expired: bool,
}

/// A round's decisions for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub claim: Vec<Partition>,
    pub release: Vec<Partition>,
}

/// The fair share of each of `nodes` live nodes.
pub fn share(partitions: PartitionCount, nodes: usize) -> usize {
    usize::from(partitions.get()).div_ceil(nodes.max(1))
}

/// `me`'s plan, given every lease and the live nodes (`me` among them).
pub fn plan(partitions: PartitionCount, me: &str, leases: &[LeaseRow], live: &BTreeSet<String>) -> Plan {
    let nodes = live.len().max(1);
    let fair = share(partitions, nodes);
    let held_by_live = |l: &LeaseRow| l.owner.as_ref().is_some_and(|o| !l.expired && live.contains(o));
    let mine: Vec<Partition> = leases
        .iter()
        .filter(|l| l.owner.as_deref() == Some(me) && !l.expired)
        .map(|l| l.partition)
        .collect();
    let known: BTreeSet<Partition> = leases.iter().map(|l| l.partition).collect();
    let mut open: Vec<Partition> = leases
        .iter()
        .filter(|l| !held_by_live(l))
        .map(|l| l.partition)
        .chain(partitions.all().filter(|p| !known.contains(p)))
        .collect();
    open.sort_unstable();
    open.dedup();
    let mut out = Plan::default();
    if mine.len() < fair {
        out.claim = open.into_iter().take(fair - mine.len()).collect();
    } else if mine.len() > fair {
        // Above the rounded-up share, some other live node is below it.
        let mut extra = mine;
        extra.sort_unstable();
        out.release = extra.split_off(fair);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(k: i64) -> PartitionCount {
        PartitionCount::new(k).unwrap_or_default()
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn rows(owners: &[Option<&str>]) -> Vec<LeaseRow> {
        owners
            .iter()
            .enumerate()
            .map(|(i, o)| LeaseRow {
                partition: i as Partition,
                owner: o.map(str::to_owned),
                expired: false,
            })
            .collect()
    }

    #[test]
    fn the_first_node_claims_everything() {
        let p = plan(n(4), "a", &rows(&[None, None, None, None]), &live(&["a"]));
        assert_eq!(
            p,
            Plan {
                claim: vec![0, 1, 2, 3],
                release: vec![]
            }
        );
        // Partitions not yet in the table count as free.
        let p = plan(n(4), "a", &[], &live(&["a"]));
        assert_eq!(p.claim, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_second_node_gets_half_as_the_first_gives_up_its_extras() {
        let all_a = rows(&[Some("a"), Some("a"), Some("a"), Some("a")]);
        let both = live(&["a", "b"]);
        assert_eq!(
            plan(n(4), "a", &all_a, &both),
            Plan {
                claim: vec![],
                release: vec![2, 3]
            }
        );
        assert_eq!(
            plan(n(4), "b", &all_a, &both),
            Plan::default(),
            "nothing free yet"
        );
        let half = rows(&[Some("a"), Some("a"), None, None]);
        assert_eq!(
            plan(n(4), "b", &half, &both),
            Plan {
                claim: vec![2, 3],
                release: vec![]
            }
        );
        assert_eq!(plan(n(4), "a", &half, &both), Plan::default());
    }

    #[test]
    fn a_dead_nodes_partitions_are_claimed_by_the_living() {
        let split = rows(&[Some("a"), Some("b"), Some("c"), Some("a"), Some("b"), Some("c")]);
        let without_c = live(&["a", "b"]);
        assert_eq!(plan(n(6), "a", &split, &without_c).claim, vec![2]);
        // An expired lease is free even when its owner still heartbeats.
        let mut stale = split.clone();
        stale[5].expired = true;
        assert_eq!(
            plan(n(6), "a", &stale, &live(&["a", "b", "c"])).claim,
            Vec::<Partition>::new(),
            "a holds its share"
        );
        assert_eq!(
            plan(n(6), "c", &stale, &live(&["a", "b", "c"])).claim,
            vec![5],
            "c renews what it lost"
        );
    }

    #[test]
    fn shares_round_up() {
        assert_eq!(share(n(64), 3), 22);
        assert_eq!(share(n(64), 1), 64);
        assert_eq!(share(n(2), 3), 1);
    }
}
