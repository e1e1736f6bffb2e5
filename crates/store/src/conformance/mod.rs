//! The behaviour every [`Store`] backend must show, as plain async functions over
//! `&Store`. The store's integration tests run each one against SQLite and PostgreSQL.

// Test code: a failed unwrap is a failed conformance case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::{ApiKeyId, EventKind, IdentityKey, MessageId, Profile, ProfileId, Touched, WorkspaceId};
use serde_json::json;

use crate::{
    ActivityCount, ActivityMetric, ApiKeyRecord, AuditEntry, AuditQuery, Checkpoint, DataKeyRecord,
    DocumentKind, DocumentRecord, EventBatch, EventCursor, EventQuery, InstanceStatus, JourneyCommit,
    JourneyInstance, MergeRecord, OutboxMessage, OutboxStatus, ProfileVersion, Role, Store, StoreError,
    StoredEvent, Suppression, Workspace,
};

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

pub(super) fn event(seq: i64, id: &str, profile: &ProfileId, name: &str, at: DateTime<Utc>) -> StoredEvent {
    StoredEvent {
        seq,
        message_id: MessageId::parse(id).unwrap(),
        profile_id: profile.clone(),
        origin_profile_id: profile.clone(),
        kind: EventKind::Track,
        name: name.into(),
        timestamp: at,
        received_at: at + TimeDelta::seconds(1),
        body: json!({"type": "track", "event": name, "messageId": id, "properties": {"sku": "A-1"}}),
    }
}

pub(super) fn events(events: Vec<StoredEvent>) -> EventBatch {
    EventBatch {
        events,
        ..EventBatch::default()
    }
}

pub(super) fn ids(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.message_id.as_str()).collect()
}

pub(super) fn version(p: &Profile, cause: &str, snapshot: bool) -> ProfileVersion {
    let touched = Touched {
        seen: true,
        ..Touched::default()
    };
    ProfileVersion {
        profile_id: p.id.clone(),
        version: p.version,
        recorded_at: p.updated_at,
        cause: cause.into(),
        diff: p.diff_for(&touched),
        snapshot: snapshot.then(|| p.clone()),
    }
}

mod access;
mod delivery;
mod documents;
mod events;
mod profiles;
mod webhooks;

pub use access::*;
pub use delivery::*;
pub use documents::*;
pub use events::*;
pub use profiles::*;
pub use webhooks::*;

#[macro_export]
macro_rules! conformance_cases {
    ($make:expr) => {
        $crate::conformance_cases!(@case $make,
            bootstrap_creates_the_workspace_once,
            committed_events_profiles_and_identities_read_back,
            a_message_id_is_stored_once,
            hourly_activity_adds_up_across_commits,
            events_page_newest_first_with_a_cursor,
            merges_repoint_events_and_identities_along_a_chain,
            the_profile_checkpoint_names_the_last_event_the_profiles_include,
            message_ids_and_identity_keys_can_be_scanned_in_pages,
            identities_can_be_reindexed_in_place,
            event_bodies_keep_the_key_order_written,
            live_profiles_can_be_scanned_in_pages,
            segments_are_saved_and_checkpoints_keep_their_members,
            versions_list_newest_first_and_rebuild_from_the_nearest_snapshot,
            documents_are_versioned_listed_in_pages_and_deleted,
            recent_track_events_are_read_by_name_and_time,
            journey_progress_and_send_decisions_commit_together_once,
            journey_instances_are_counted_by_step_and_state,
            recent_failures_are_read_newest_first,
            unknown_message_sources_are_kept_as_written,
            messages_a_person_triggered_are_due_before_a_broadcasts,
            messages_list_by_source_and_step_and_count_by_reason,
            suppressions_and_metadata_are_kept,
            metadata_can_be_replaced,
            api_keys_are_created_listed_and_revoked,
            the_audit_log_is_append_only_and_queried_newest_first,
            data_keys_are_kept_once_per_profile_and_rewrapped,
            erasure_deletes_everything_about_the_profiles_and_nothing_else,
            retention_purges_events_older_than_the_cutoff,
            schema_fields_merge_observations_and_keep_declarations,
            a_segment_backfill_is_remembered_until_it_finishes,
            webhook_notices_queue_once_in_commit_order_with_their_causes,
            dead_letters_move_the_endpoint_on_and_replay_for_it_alone
        );
    };
    (@case $make:expr, $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(store) = $make.await {
                    $crate::conformance::$name(&store).await;
                }
            }
        )*
    };
}
