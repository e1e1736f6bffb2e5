-- Cluster mode: leases of work one node does for the whole cluster at a time (the sending
-- side: journeys, the sender, broadcasts, outbound webhooks, schedules). `token` grows with
-- every change of holder; the holder's journey and outbox writes check it in their
-- transaction, so a former holder that was paused past its lease writes nothing.
CREATE TABLE IF NOT EXISTS service_leases (
    name TEXT PRIMARY KEY,
    owner TEXT,
    token BIGINT NOT NULL DEFAULT 0,
    expires_us BIGINT NOT NULL DEFAULT 0
);
