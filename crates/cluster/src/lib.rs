//! Cluster mode: several missive nodes sharing one PostgreSQL (and, in later stages, NATS
//! JetStream as the log), each owning some of a fixed number of partitions of the profiles.
//!
//! What is here (the first stage of docs/ARCHITECTURE.md's "Cluster mode"):
//!
//! - `partition`: the partition of an identity, by a stable hash; the count fixed at creation.
//! - `leases`: ownership by leases on PostgreSQL with fencing tokens: at most one owner per
//!   partition, expiry by the database's clock, and [`leases::verify`], which a write for a
//!   partition runs first in its transaction so that a paused former owner writes nothing.
//! - `plan`: which partitions a node claims or gives up each round, so that the live nodes
//!   share them evenly and a dead node's are taken over (pure, tested with tables).
//! - `keeper`: the loop that does it, and publishes what the node holds.
//! - `status`: what `missive cluster status` prints.
//!
//! The partition owners themselves (folding, segments, journeys and sending per partition),
//! JetStream as the log and identity merges across partitions are later stages.

pub mod keeper;
pub mod leases;
pub mod partition;
pub mod plan;
pub mod status;
pub mod stream_in;

pub use keeper::{DEFAULT_TTL, Held, Keeper};
pub use leases::{Fence, Fenced, Lease, LeaseError, Leases, verify};
pub use partition::{DEFAULT_PARTITIONS, Partition, PartitionCount};
