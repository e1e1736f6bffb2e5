//! Row mapping of the sqlite backend: columns and conversions shared by its areas.

use super::*;

pub(super) fn api_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let (id, role): (String, String) = (r.get(0)?, r.get(1)?);
    let revoked: Option<i64> = r.get(5)?;
    let (secret_hash, label, at) = (r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?);
    Ok((|| {
        Ok(ApiKeyRecord {
            id: ApiKeyId::parse(&id).map_err(|e| corrupt("api key id", e))?,
            role: Role::parse(&role).ok_or_else(|| corrupt("api key role", &role))?,
            secret_hash,
            label,
            created_at: from_micros(at),
            revoked_at: revoked.map(from_micros),
        })
    })())
}

pub(super) fn data_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<DataKeyRecord, StoreError>> {
    let id: String = r.get(0)?;
    let (master_key_id, wrapped, at) = (r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?);
    Ok(ProfileId::parse(&id)
        .map_err(|e| corrupt("data key profile id", e))
        .map(|profile_id| DataKeyRecord {
            profile_id,
            master_key_id,
            wrapped,
            created_at: from_micros(at),
        }))
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) const INSTANCE_COLUMNS: &str = "id, journey, journey_version, profile_id, key, step, status, wake_at, waiting_for, context, entered_at, updated_at";

pub(super) fn instance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JourneyInstance, StoreError>> {
    let profile: String = r.get(3)?;
    let status: String = r.get(6)?;
    let context: String = r.get(9)?;
    let wake_at: Option<i64> = r.get(7)?;
    let partial = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(4)?,
        r.get(5)?,
        r.get(8)?,
        r.get::<_, i64>(10)?,
        r.get::<_, i64>(11)?,
    );
    Ok((|| {
        let (id, journey, journey_version, key, step, waiting_for, entered_at, updated_at) = partial;
        Ok(JourneyInstance {
            id,
            journey,
            journey_version,
            profile_id: ProfileId::parse(&profile).map_err(|e| corrupt("instance profile id", e))?,
            key,
            step,
            status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("instance status", &status))?,
            wake_at: wake_at.map(from_micros),
            waiting_for,
            context: serde_json::from_str(&context).map_err(|e| corrupt("instance context", e))?,
            entered_at: from_micros(entered_at),
            updated_at: from_micros(updated_at),
        })
    })())
}

pub(super) const OUTBOX_COLUMNS: &str = "id, idempotency_key, profile_id, template, class, source, context, status, attempts, next_attempt_at, created_at, sent_at, recipient, detail, step";

pub(super) fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<OutboxMessage, StoreError>> {
    let profile: String = r.get(2)?;
    let context: String = r.get(6)?;
    let status: String = r.get(7)?;
    let sent_at: Option<i64> = r.get(11)?;
    let (id, key, template, class, source): (String, String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?, r.get(5)?);
    let (attempts, next_at, created_at, recipient, detail): (u32, i64, i64, Option<String>, Option<String>) =
        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(12)?, r.get(13)?);
    let step: Option<String> = r.get(14)?;
    Ok((|| {
        Ok(OutboxMessage {
            id,
            idempotency_key: key,
            profile_id: ProfileId::parse(&profile).map_err(|e| corrupt("outbox profile id", e))?,
            template,
            class: missive_core::MessageClass::from_stored(&class),
            source: missive_core::MessageSource::parse(&source),
            step,
            context: serde_json::from_str(&context).map_err(|e| corrupt("outbox context", e))?,
            status: OutboxStatus::parse(&status).ok_or_else(|| corrupt("outbox status", &status))?,
            attempts,
            next_attempt_at: from_micros(next_at),
            created_at: from_micros(created_at),
            sent_at: sent_at.map(from_micros),
            recipient,
            detail,
        })
    })())
}

pub(super) type DocumentRow = (String, i64, String, i64);

pub(super) fn document_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

pub(super) fn document_from(
    kind: DocumentKind,
    (name, version, body, updated_at): DocumentRow,
) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        kind,
        name,
        version,
        body: serde_json::from_str(&body).map_err(|e| corrupt("document body", e))?,
        updated_at: from_micros(updated_at),
    })
}

/// The columns every event query selects, in this order.
pub(super) const EVENT_COLUMNS: &str =
    "seq, message_id, profile_id, origin_profile_id, kind, name, ts, received_at, body";

pub(super) fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEvent, StoreError>> {
    let (seq, message_id, profile_id, origin, kind, name, ts, received_at, body): (
        i64,
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
        String,
    ) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    );
    Ok((|| {
        Ok(StoredEvent {
            seq,
            message_id: MessageId::parse(&message_id).map_err(|e| corrupt("event message id", e))?,
            profile_id: ProfileId::parse(&profile_id).map_err(|e| corrupt("event profile id", e))?,
            origin_profile_id: ProfileId::parse(&origin)
                .map_err(|e| corrupt("event origin profile id", e))?,
            kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
            name,
            timestamp: from_micros(ts),
            received_at: from_micros(received_at),
            body: serde_json::from_str(&body)?,
        })
    })())
}

pub(super) fn collect_events(
    rows: impl Iterator<Item = rusqlite::Result<Result<StoredEvent, StoreError>>>,
) -> Result<Vec<StoredEvent>, StoreError> {
    rows.map(|r| r?).collect()
}

pub(super) type VersionRow = (String, i64, i64, String, String, Option<String>);

pub(super) fn version_from_row(row: VersionRow) -> Result<ProfileVersion, StoreError> {
    let (profile_id, version, recorded_at, cause, diff, snapshot) = row;
    Ok(ProfileVersion {
        profile_id: ProfileId::parse(&profile_id).map_err(|e| corrupt("version profile id", e))?,
        version: version as u64,
        recorded_at: from_micros(recorded_at),
        cause,
        diff: serde_json::from_str(&diff)?,
        snapshot: snapshot.map(|s| serde_json::from_str(&s)).transpose()?,
    })
}

pub(super) const VERSION_COLUMNS: &str = "profile_id, version, recorded_at, cause, diff, snapshot";

pub(super) fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}
