//! Where accepted events go in cluster mode: the cluster's log (NATS JetStream, in
//! `missive-cluster`) instead of this process's pipeline. [`crate::Engine::ingest`] hands them
//! to the log once one is set ([`crate::Engine::set_log`]) and answers once the log has them
//! durably; the partition owners read them back and fold them ([`crate::Engine::ingest_logged`]).
//!
//! **Merges across partitions** travel through the same log, as [`Control`] records a
//! partition's owner sends to another partition ([`Outbound`]), so that every change to a
//! partition's profiles is made by its owner, in the order of its log (docs/ARCHITECTURE.md,
//! "Identity merges across partitions"). The rule that makes them safe: what a fold or a
//! control sends out is acknowledged by the log *before* the commit that settles its cause,
//! so a node that dies in between has its cause read again and sends it again, under the same
//! message id; every receiver is idempotent.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use missive_core::{Event, IdentityKey, Profile, ProfileId};
use serde::{Deserialize, Serialize};

use crate::IngestOutcome;

/// What an append answers: what the log took, or why it could not (the caller answers 503).
pub type AppendResult = Result<IngestOutcome, String>;

/// What a send of [`Outbound`] records answers: each record's position in the log (its
/// stream sequence), in order; `Err` when the log did not acknowledge them all.
pub type SendResult = Result<Vec<i64>, String>;

/// A durable, partitioned log of accepted events.
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` and answers once the log has acknowledged every one of them.
    fn append(&self, events: Vec<Event>) -> Pin<Box<dyn Future<Output = AppendResult> + Send + '_>>;

    /// Sends records to partitions (from one partition's owner, or a node's API), and answers
    /// once the log has acknowledged every one (each under its [`Outbound::message_id`]).
    fn send(&self, records: Vec<Outbound>) -> Pin<Box<dyn Future<Output = SendResult> + Send + '_>>;

    /// The cluster's partition count.
    fn partitions(&self) -> u16;
}

/// The profile a [`Control::Join`] is about, in the receiving partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinSide {
    /// The profile this identity resolves to (an identity the event's partition found routed
    /// to the receiver).
    Identity(IdentityKey),
    /// This profile (a join sent back to the surviving profile's side), or the one it was
    /// merged into.
    Profile(ProfileId),
}

/// A record one partition's owner sends another through the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum Control {
    /// An event joined `local` (in the receiving partition) with `with`, a profile of
    /// partition `with_partition`. A known user's profile survives an anonymous one, else the
    /// older: the receiver ships its profile to `with` ([`Control::Absorb`]) when `with`
    /// survives, and otherwise sends the join back the other way.
    Join {
        local: JoinSide,
        with: ProfileId,
        with_partition: u16,
        /// The user ids `with` is known by (the event's included): two profiles of different
        /// known users are never merged.
        with_users: Vec<String>,
        /// The message id of the event that joined them.
        cause: String,
    },
    /// `state`, a profile merged away in another partition (which wrote its tombstone and
    /// moved its identities' routes here), is to be folded into `into`. Idempotent: a
    /// profile already absorbed (a merge recorded from it) is not absorbed again.
    Absorb {
        into: ProfileId,
        state: Box<Profile>,
        cause: String,
        at: DateTime<Utc>,
    },
    /// A person asked to be erased: from now on the partition drops events naming one of
    /// `identity_hashes`, and forgets `profiles` (the node that took the request deletes them
    /// from the store once every partition has settled this record).
    Erase {
        profiles: Vec<ProfileId>,
        identity_hashes: Vec<String>,
    },
}

/// A record for another partition, with the message id the log deduplicates it by. Ids are
/// derived from the record's cause (its own position in the log, or the profile merged away),
/// so a record sent again after a crash carries the same id.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// An event read by a partition that no longer holds its identities, forwarded to the one
    /// that does now.
    Forward {
        partition: u16,
        message_id: String,
        event: Box<Event>,
    },
    Control {
        partition: u16,
        message_id: String,
        control: Control,
    },
}

impl Outbound {
    /// The partition it goes to.
    pub fn partition(&self) -> u16 {
        match self {
            Outbound::Forward { partition, .. } | Outbound::Control { partition, .. } => *partition,
        }
    }

    /// The id the log drops a repeat of it by.
    pub fn message_id(&self) -> &str {
        match self {
            Outbound::Forward { message_id, .. } | Outbound::Control { message_id, .. } => message_id,
        }
    }
}
