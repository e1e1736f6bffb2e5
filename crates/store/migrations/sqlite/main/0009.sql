-- The console's segment list reads each segment's entries and exits since an instant.
CREATE INDEX segment_changes_by_time ON segment_changes (at);
