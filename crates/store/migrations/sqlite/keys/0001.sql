CREATE TABLE data_keys (
    profile_id TEXT PRIMARY KEY, master_key_id TEXT NOT NULL, wrapped TEXT NOT NULL, created_at INTEGER NOT NULL
) WITHOUT ROWID;
