-- Cluster mode (issue 19; docs/ARCHITECTURE.md, "Cluster mode"). The lease tables are also
-- created by `missive_cluster::Leases::open`; here so that the writers can check fences.
CREATE TABLE IF NOT EXISTS cluster_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cluster_nodes (node TEXT PRIMARY KEY, address TEXT NOT NULL,
    heartbeat_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS partition_leases (partition INTEGER PRIMARY KEY,
    owner TEXT, token BIGINT NOT NULL DEFAULT 0, expires_us BIGINT NOT NULL DEFAULT 0);

-- The partition an event was folded in (NULL in the embedded mode): a new owner replays its
-- partition's events stored after the partition's checkpoint.
ALTER TABLE events ADD COLUMN partition SMALLINT;
CREATE INDEX events_by_partition ON events (partition, seq) WHERE partition IS NOT NULL;

-- Where each partition's owner has got to in the JetStream log: the last stream sequence
-- whose event is stored (or was found a duplicate), and the last one the stored profiles
-- include.
CREATE TABLE partition_log (
    partition SMALLINT PRIMARY KEY,
    applied_seq BIGINT NOT NULL DEFAULT 0,
    checkpoint_seq BIGINT NOT NULL DEFAULT 0
);

-- The partition each identity (as the store keeps it: e-mail addresses by their blind index
-- when encrypted) is routed to: claimed by the first event that names it.
CREATE TABLE identity_routes (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    partition SMALLINT NOT NULL,
    PRIMARY KEY (kind, value)
);
