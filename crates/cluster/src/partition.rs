//! Partitions: every profile belongs to one of a fixed number of partitions, chosen by a stable
//! hash of an identity key (`user_id`, `anonymous_id`, `email`, …). The number is set when the
//! cluster is created and never changes (docs/operations.md gives the procedure to
//! re-partition: a new cluster fed by replaying the log). The hash is xxh3-64 of
//! `kind \0 value`, a published algorithm: every node and every missive version agrees.

use std::fmt;

use twox_hash::XxHash3_64;

/// The default number of partitions: enough to spread over a few dozen nodes, few enough that
/// each carries real work.
pub const DEFAULT_PARTITIONS: u16 = 64;
/// The most partitions a cluster may have.
pub const MAX_PARTITIONS: u16 = 1024;

/// A partition's number, `0..count`.
pub type Partition = u16;

/// How many partitions a cluster has: 1 to [`MAX_PARTITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PartitionCount(u16);

/// A partition count out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partitions must be 1 to {MAX_PARTITIONS}, not {0}")]
pub struct BadPartitionCount(pub i64);

impl PartitionCount {
    pub fn new(n: i64) -> Result<Self, BadPartitionCount> {
        u16::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PARTITIONS).contains(n))
            .map(PartitionCount)
            .ok_or(BadPartitionCount(n))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// Every partition, in order.
    pub fn all(self) -> impl Iterator<Item = Partition> {
        0..self.0
    }

    /// The partition of an identity: `kind` (`user_id`, `email`, …) and its value.
    pub fn of(self, kind: &str, value: &str) -> Partition {
        let mut h = XxHash3_64::with_seed(0);
        std::hash::Hasher::write(&mut h, kind.as_bytes());
        std::hash::Hasher::write(&mut h, &[0]);
        std::hash::Hasher::write(&mut h, value.as_bytes());
        // The count is at most 1024: the remainder fits.
        (std::hash::Hasher::finish(&h) % u64::from(self.0)) as Partition
    }
}

impl Default for PartitionCount {
    fn default() -> Self {
        PartitionCount(DEFAULT_PARTITIONS)
    }
}

impl fmt::Display for PartitionCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_out_of_range_are_refused() {
        for bad in [0, -1, 1025, 70_000] {
            assert_eq!(PartitionCount::new(bad), Err(BadPartitionCount(bad)));
        }
        assert_eq!(PartitionCount::new(1).map(PartitionCount::get), Ok(1));
        assert_eq!(PartitionCount::default().get(), 64);
    }

    #[test]
    fn the_partition_of_an_identity_is_xxh3_of_kind_and_value() {
        // The reference: Python's `xxhash` (the algorithm's own library),
        // `xxhash.xxh3_64_intdigest(b"user_id\x00u-1") % 64` is 61 and
        // `xxhash.xxh3_64_intdigest(b"email\x00ana@example.com") % 64` is 26. A change here
        // would move every profile (a re-partitioning).
        let n = PartitionCount::default();
        assert_eq!(n.of("user_id", "u-1"), 61);
        assert_eq!(n.of("email", "ana@example.com"), 26);
        // The kind is part of the key.
        assert_ne!(n.of("user_id", "x"), n.of("email", "x"));
    }

    #[test]
    fn identities_spread_evenly() {
        let n = PartitionCount::new(16).unwrap_or_default();
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[usize::from(n.of("user_id", &format!("customer-{i}")))] += 1;
        }
        let (lo, hi) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        assert!(lo > 850 && hi < 1150, "{counts:?}");
    }
}
