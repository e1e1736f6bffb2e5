//! Cluster mode: several missive nodes sharing one PostgreSQL, with NATS JetStream as the
//! event log, each owning some of a fixed number of partitions of the profiles
//! (docs/ARCHITECTURE.md, "Cluster mode"; docs/operations.md).
//!
//! - `partition`: the partition of an identity, by a stable hash; the count fixed at creation.
//! - `leases`: ownership by leases on PostgreSQL with fencing tokens: at most one owner per
//!   partition, expiry by the database's clock, and [`leases::verify`].
//! - `plan`: which partitions a node claims or gives up each round (pure, tested with tables).
//! - `keeper`: the loop that does it, publishes what the node holds, and hands a partition
//!   over (through a hook) before giving its lease up on purpose.
//! - `router`: which partition an event goes to (`identity_routes`).
//! - `log`: the JetStream log: the stream, the records, and the append ingest answers after.
//! - `owner`: one partition's owner: replay, its consumer from the store's mark, fold, ack.
//! - `seal`: the log's records sealed at rest under the cluster's log key.
//! - `node`: a node: keeper, owners following its leases, and the engine's ingest on the log.
//! - `service`: work one node does for the whole cluster (the sending side), under a named
//!   lease with a fencing token.
//! - `status`: what `missive cluster status` prints, lag per partition included.
//! - `stream_in`: a JetStream stream of external producers as an ingest source.
//! - `stream_out`: missive's change stream published to JetStream.
//!
//! Identity merges across partitions travel through the log as control records, applied by
//! the engine (`missive_engine::log::Control`).

pub mod keeper;
pub mod leases;
pub mod log;
pub mod node;
pub mod owner;
pub mod partition;
pub mod plan;
pub mod router;
pub mod seal;
pub mod service;
pub mod status;
pub mod stream_in;
pub mod stream_out;

pub use keeper::{DEFAULT_TTL, Held, Keeper};
pub use leases::{Fence, Fenced, Lease, LeaseError, Leases, verify};
pub use log::{ClusterLog, LogConfig};
pub use node::{Node, NodeConfig};
pub use partition::{DEFAULT_PARTITIONS, Partition, PartitionCount};
