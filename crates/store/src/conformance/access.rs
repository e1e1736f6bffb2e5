//! Access: the workspace, API keys, the append-only audit log, data keys.

use super::*;

pub async fn bootstrap_creates_the_workspace_once(store: &Store) {
    assert_eq!(store.access().workspace().await.unwrap(), None);
    let ws = Workspace {
        id: WorkspaceId::generate(),
        name: "default".into(),
        created_at: t("2026-01-01T00:00:00Z"),
    };
    let key = ApiKeyRecord {
        id: ApiKeyId::generate(),
        role: Role::Write,
        secret_hash: "h1".into(),
        label: "write key".into(),
        created_at: ws.created_at,
        revoked_at: None,
    };
    store
        .access()
        .bootstrap_workspace(ws.clone(), vec![key.clone()])
        .await
        .unwrap();
    assert_eq!(store.access().workspace().await.unwrap(), Some(ws.clone()));
    assert_eq!(store.access().api_key_by_hash("h1").await.unwrap(), Some(key));
    assert_eq!(store.access().api_key_by_hash("nope").await.unwrap(), None);
    let again = store.access().bootstrap_workspace(ws, vec![]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// Runs a named conformance case; used by the backends' test macros.
pub async fn api_keys_are_created_listed_and_revoked(store: &Store) {
    let key = |role: Role, hash: &str, at: &str| ApiKeyRecord {
        id: ApiKeyId::generate(),
        role,
        secret_hash: hash.into(),
        label: format!("{} key", role.as_str()),
        created_at: t(at),
        revoked_at: None,
    };
    let a = key(Role::Marketer, "$argon2id$a", "2026-01-01T00:00:00Z");
    let b = key(Role::PrivacyOfficer, "$argon2id$b", "2026-01-02T00:00:00Z");
    store.access().create_api_key(a.clone()).await.unwrap();
    store.access().create_api_key(b.clone()).await.unwrap();
    assert_eq!(store.access().api_key(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.access().api_key(&ApiKeyId::generate()).await.unwrap(), None);
    assert_eq!(
        store.access().list_api_keys().await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    let at = t("2026-01-03T00:00:00Z");
    assert!(store.access().revoke_api_key(&a.id, at).await.unwrap());
    assert!(
        !store.access().revoke_api_key(&a.id, at).await.unwrap(),
        "revoked once"
    );
    assert_eq!(
        store.access().api_key(&a.id).await.unwrap().unwrap().revoked_at,
        Some(at)
    );
    assert_eq!(store.access().api_key_by_hash("$argon2id$a").await.unwrap(), None);
}

pub async fn the_audit_log_is_append_only_and_queried_newest_first(store: &Store) {
    let entry = |actor: &str, action: &str, target: &str, at: &str| AuditEntry {
        seq: 0,
        at: t(at),
        actor: actor.into(),
        role: "admin".into(),
        action: action.into(),
        target: target.into(),
        status: 200,
        detail: String::new(),
    };
    store
        .access()
        .append_audit(vec![
            entry("key:a", "profile.read", "profile:p1", "2026-01-01T00:00:00Z"),
            entry("key:b", "template.save", "template:cart", "2026-01-01T00:00:01Z"),
        ])
        .await
        .unwrap();
    store
        .access()
        .append_audit(vec![entry(
            "key:a",
            "profile.erase",
            "profile:p1",
            "2026-01-01T00:00:02Z",
        )])
        .await
        .unwrap();
    let all = store
        .access()
        .audit_entries(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["profile.erase", "template.save", "profile.read"]);
    assert!(all[0].seq > all[1].seq && all[1].seq > all[2].seq);
    assert_eq!(all[2].at, t("2026-01-01T00:00:00Z"));
    assert_eq!(all[2].status, 200);

    let of_p1 = store
        .access()
        .audit_entries(AuditQuery {
            target: Some("profile:p1".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(of_p1.len(), 2);
    let page = store
        .access()
        .audit_entries(AuditQuery {
            actor: Some("key:a".into()),
            before_seq: Some(all[0].seq),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].action, "profile.read");
}

pub async fn data_keys_are_kept_once_per_profile_and_rewrapped(store: &Store) {
    let p = ProfileId::generate();
    let q = ProfileId::generate();
    let key = |id: &ProfileId, master: &str, wrapped: &str| DataKeyRecord {
        profile_id: id.clone(),
        master_key_id: master.into(),
        wrapped: wrapped.into(),
        created_at: t("2026-01-01T00:00:00Z"),
    };
    store
        .data_keys()
        .put_data_keys(vec![key(&p, "k1", "first"), key(&q, "k1", "q")])
        .await
        .unwrap();
    // A second writer racing for the same profile does not replace the first key.
    store
        .data_keys()
        .put_data_keys(vec![key(&p, "k1", "second")])
        .await
        .unwrap();
    let got = store
        .data_keys()
        .data_keys(vec![p.clone(), ProfileId::generate()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[&p].wrapped, "first");

    store
        .data_keys()
        .rewrap_data_keys(vec![key(&p, "k2", "rewrapped")])
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.data_keys().data_keys_after(after.clone(), 1).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.profile_id.clone());
        all.extend(page);
    }
    assert_eq!(all.len(), 2);
    let mine = all.iter().find(|k| k.profile_id == p).unwrap();
    assert_eq!(
        (mine.master_key_id.as_str(), mine.wrapped.as_str()),
        ("k2", "rewrapped")
    );
}
