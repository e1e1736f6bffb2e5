//! What the encrypting store adds: no personal data in the files, lookups by blind index,
//! crypto-shredding and master-key rotation.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use missive_core::{EventKind, IdentityKey, MessageId, Profile, ProfileId, Touched};
use missive_store::{
    Checkpoint, EncryptedStore, EventBatch, EventQuery, ProfileVersion, SqliteStore, Store, StoredEvent,
};
use serde_json::json;

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .to_utc()
}

const EMAIL: &str = "zoe.quartermain@example.com";

async fn zoe(store: &Store) -> Profile {
    let mut p = Profile::new(ProfileId::generate(), at());
    p.version = 1;
    let email = IdentityKey {
        kind: missive_core::IdentityKind::Email,
        value: EMAIL.into(),
    };
    p.identities.insert(&email);
    p.traits.insert(
        "first_name".into(),
        missive_core::Trait {
            value: json!("Zoelle"),
            source: "identify".into(),
            party: missive_core::TraitParty::First,
            at: at(),
            consent_basis: None,
        },
    );
    let body = json!({"type": "identify", "traits": {"email": EMAIL, "first_name": "Zoelle"}});
    store
        .events()
        .commit_events(EventBatch {
            events: vec![StoredEvent {
                seq: 1,
                message_id: MessageId::parse("z-1").unwrap(),
                profile_id: p.id.clone(),
                origin_profile_id: p.id.clone(),
                kind: EventKind::Identify,
                name: "$identify".into(),
                timestamp: at(),
                received_at: at(),
                body,
            }],
            ..EventBatch::default()
        })
        .await
        .unwrap();
    let touched = Touched {
        traits: ["first_name".to_string()].into(),
        identities: vec![email.clone()],
        ..Touched::default()
    };
    store
        .events()
        .commit_checkpoint(Checkpoint {
            identities: vec![(email, p.id.clone())],
            profiles: vec![p.clone()],
            versions: vec![ProfileVersion {
                profile_id: p.id.clone(),
                version: 1,
                recorded_at: at(),
                cause: "identify".into(),
                diff: p.diff_for(&touched),
                snapshot: Some(p.clone()),
            }],
            merges: vec![],
            segment_changes: vec![],
            through_seq: 1,
            schema: vec![],
            backfills: vec![],
            ..Checkpoint::default()
        })
        .await
        .unwrap();
    p
}

fn files_contain(dir: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).ok()?;
            bytes
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
                .then(|| path.display().to_string())
        })
        .collect()
}

fn events_of(p: &ProfileId) -> EventQuery {
    EventQuery {
        profile_id: p.clone(),
        received_before: None,
        cursor: None,
        limit: 10,
    }
}

#[tokio::test]
async fn personal_data_is_not_in_the_files_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Store = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let store = EncryptedStore::new(inner.clone(), Arc::new(missive_privacy::Keyring::generate()));
    let p = zoe(&store.store()).await;

    assert_eq!(
        store.store().events().load_profile(&p.id).await.unwrap(),
        Some(p.clone())
    );
    let email = IdentityKey {
        kind: missive_core::IdentityKind::Email,
        value: EMAIL.into(),
    };
    let found = store
        .store()
        .events()
        .resolve_identities(vec![email.clone()])
        .await
        .unwrap();
    assert_eq!(
        found.get(&email),
        Some(&p.id),
        "a lookup by address finds the profile"
    );
    let events = store
        .store()
        .events()
        .profile_events(events_of(&p.id))
        .await
        .unwrap();
    assert_eq!(events[0].body["traits"]["first_name"], "Zoelle");
    let versions = store
        .store()
        .events()
        .profile_versions(&p.id, None, 10)
        .await
        .unwrap();
    assert_eq!(versions[0].snapshot.as_ref(), Some(&p));
    assert_eq!(versions[0].diff.traits["first_name"].value, json!("Zoelle"));

    // The backend itself holds ciphertext and a blind index only.
    let raw = inner.events().load_profile(&p.id).await.unwrap().unwrap();
    assert!(raw.traits.is_empty() && raw.sealed.as_deref().unwrap().starts_with("enc:v1:prf_"));
    let raw_events = inner.events().profile_events(events_of(&p.id)).await.unwrap();
    assert!(raw_events[0].body.as_str().unwrap().starts_with("enc:v1:"));
    let keys = inner.events().identity_keys_after(None, 10).await.unwrap();
    assert!(keys[0].value.starts_with("bi_"), "{keys:?}");
    assert_eq!(store.store().events().identity_index(&email), keys[0]);
    for needle in [EMAIL, "Zoelle", "quartermain"] {
        assert!(
            files_contain(dir.path(), needle).is_empty(),
            "{needle} found in the files"
        );
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path, only: impl Fn(&str) -> bool) {
    for e in std::fs::read_dir(from).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if only(&name) && !name.ends_with("-shm") && !name.ends_with(".lock") {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[tokio::test]
async fn a_backup_restored_after_an_erasure_cannot_be_read() {
    let live = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let keyring = Arc::new(missive_privacy::Keyring::generate());
    let open = |dir: std::path::PathBuf| async move {
        let inner: Store = Store::new(SqliteStore::open(dir.join("m.db")).await.unwrap());
        inner
    };
    let p = {
        let inner = open(live.path().to_path_buf()).await;
        zoe(&EncryptedStore::new(inner, keyring.clone()).store()).await
    };
    // Yesterday's backup of the data (not of the key file, which is backed up on its own).
    copy_dir(live.path(), backup.path(), |n| !n.contains(".keys."));

    {
        let inner = open(live.path().to_path_buf()).await;
        let counts = EncryptedStore::new(inner, keyring.clone())
            .store()
            .events()
            .erase_profiles(vec![p.id.clone()])
            .await
            .unwrap();
        assert_eq!((counts.profiles, counts.data_keys), (1, 1));
    }
    // The data files come back from the backup; the key file is today's.
    for e in std::fs::read_dir(live.path()).unwrap() {
        let path = e.unwrap().path();
        if !path.display().to_string().contains(".keys.") {
            std::fs::remove_file(path).unwrap();
        }
    }
    copy_dir(backup.path(), live.path(), |_| true);

    let inner = open(live.path().to_path_buf()).await;
    assert!(
        inner.events().load_profile(&p.id).await.unwrap().is_some(),
        "the restored rows are there"
    );
    let store = EncryptedStore::new(inner, keyring);
    assert_eq!(
        store.store().events().load_profile(&p.id).await.unwrap(),
        None,
        "but cannot be read"
    );
    assert!(
        store
            .store()
            .events()
            .profile_events(events_of(&p.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .store()
            .events()
            .profile_versions(&p.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn rotation_rewraps_every_data_key_under_the_new_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Store = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let old = Arc::new(missive_privacy::Keyring::generate());
    let p = zoe(&EncryptedStore::new(inner.clone(), old.clone()).store()).await;
    let (rotated, new_id) = old.with_new_master_key();
    let store = EncryptedStore::new(inner.clone(), Arc::new(rotated));
    assert_eq!(store.data_keys_by_master().await.unwrap()[old.active_key_id()], 1);
    assert_eq!(store.rewrap_all_data_keys().await.unwrap(), 1);
    assert_eq!(
        store.rewrap_all_data_keys().await.unwrap(),
        0,
        "nothing left to rewrap"
    );
    let by_master = store.data_keys_by_master().await.unwrap();
    assert_eq!(by_master.get(&new_id), Some(&1));
    assert_eq!(by_master.len(), 1);
    assert_eq!(store.store().events().load_profile(&p.id).await.unwrap(), Some(p));
}

#[tokio::test]
async fn rotation_rewraps_the_cluster_logs_data_key_too() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Store = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let old = Arc::new(missive_privacy::Keyring::generate());
    // As cluster mode keeps it: a data key wrapped under the master key, in the metadata.
    let key = missive_privacy::DataKey::generate();
    let wrapped = old.wrap_data_key(&key, missive_store::LOG_KEY_CONTEXT).unwrap();
    inner
        .documents()
        .meta_set(
            missive_store::LOG_KEY_META,
            serde_json::to_string(&wrapped).unwrap(),
        )
        .await
        .unwrap();
    let (rotated, new_id) = old.with_new_master_key();
    let rotated = Arc::new(rotated);
    let store = EncryptedStore::new(inner.clone(), rotated.clone());
    assert_eq!(
        store.data_keys_by_master().await.unwrap()[old.active_key_id()],
        1,
        "the log's key counts, so the old master key is not removed under it"
    );
    assert_eq!(store.rewrap_all_data_keys().await.unwrap(), 1);
    let now = missive_store::log_key(&inner).await.unwrap().unwrap();
    assert_eq!(now.master_key_id, new_id);
    let sealed = key.seal("log", b"record", b"aad").unwrap();
    let unwrapped = rotated
        .unwrap_data_key(&now, missive_store::LOG_KEY_CONTEXT)
        .unwrap();
    assert_eq!(
        unwrapped.open(&sealed, b"aad").unwrap(),
        b"record",
        "the same key"
    );
}

#[tokio::test]
async fn user_ids_and_anonymous_ids_are_blind_indexed_and_old_clear_ones_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Store = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let store = EncryptedStore::new(inner.clone(), Arc::new(missive_privacy::Keyring::generate()));
    let p = zoe(&store.store()).await;
    let user = IdentityKey::user_id("zoe.userid@example.com");
    let anon = IdentityKey::anonymous_id("anon-zoe-77");
    // As an older version wrote them: user and anonymous ids in clear, beside the indexed address.
    let old_user = IdentityKey::user_id("legacy-customer-4711");
    let mut cp = Checkpoint {
        identities: vec![(user.clone(), p.id.clone()), (anon.clone(), p.id.clone())],
        profiles: vec![],
        versions: vec![],
        merges: vec![],
        segment_changes: vec![],
        through_seq: 1,
        schema: vec![],
        backfills: vec![],
        ..Checkpoint::default()
    };
    store
        .store()
        .events()
        .commit_checkpoint(cp.clone())
        .await
        .unwrap();
    cp.identities = vec![(old_user.clone(), p.id.clone())];
    inner.events().commit_checkpoint(cp).await.unwrap();
    for needle in ["zoe.userid", "anon-zoe-77"] {
        assert!(
            files_contain(dir.path(), needle).is_empty(),
            "{needle} found in the files"
        );
    }
    assert!(!files_contain(dir.path(), "legacy-customer-4711").is_empty());
    let found = store
        .store()
        .events()
        .resolve_identities(vec![user.clone(), anon.clone()])
        .await
        .unwrap();
    assert_eq!((found.get(&user), found.get(&anon)), (Some(&p.id), Some(&p.id)));

    assert_eq!(store.blind_index_clear_identities().await.unwrap(), 1);
    assert_eq!(
        store.blind_index_clear_identities().await.unwrap(),
        0,
        "idempotent"
    );
    let found = store
        .store()
        .events()
        .resolve_identities(vec![old_user.clone()])
        .await
        .unwrap();
    assert_eq!(found.get(&old_user), Some(&p.id), "found under its blind index");
    for k in inner.events().identity_keys_after(None, 10).await.unwrap() {
        assert!(
            ["bi_", "bu_", "ba_"].iter().any(|p| k.value.starts_with(p)),
            "{k:?}"
        );
    }
    assert!(files_contain(dir.path(), "legacy-customer-4711").is_empty());
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("m.db");
    // A database an older version left world-readable is tightened when opened.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let events = path.with_extension("events.db");
    std::fs::write(&events, b"").unwrap();
    std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::new(SqliteStore::open(&path).await.unwrap());
    zoe(&store).await;
    let mut checked = 0;
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
        checked += 1;
    }
    assert!(
        checked >= 8,
        "db, events, delivery, keys, their WALs and the lock: {checked}"
    );
}
