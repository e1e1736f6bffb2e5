-- The workspace's schema (missive_core::schema): what ingest observed of each trait, event and
-- event property, written with each checkpoint, and what the operator declared.
CREATE TABLE schema_fields (
    kind TEXT NOT NULL,            -- trait, event or property
    event TEXT NOT NULL,           -- a property's event; '' otherwise
    name TEXT NOT NULL,
    types INTEGER,                 -- bits of TypeSet; NULL until observed
    examples TEXT,                 -- JSON array of numbers and booleans
    first_seen INTEGER,            -- microseconds since the epoch
    last_seen INTEGER,
    declared INTEGER NOT NULL DEFAULT 0,
    declared_type TEXT,            -- NULL: any type
    declared_at INTEGER,
    PRIMARY KEY (kind, event, name)
) WITHOUT ROWID;
