//! Store conformance: every case of `missive_store::conformance` against SQLite, and against
//! PostgreSQL when `MISSIVE_TEST_POSTGRES_URL` is set (each test in its own schema), each bare
//! and behind the encrypting store. When the variable is set and the server cannot be reached,
//! the PostgreSQL tests fail.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod encrypted;

mod sqlite {

    use missive_store::{SqliteStore, Store};

    async fn make() -> Option<Store> {
        // The directory is leaked on purpose: it must outlive the store within the test.
        let dir = tempfile::tempdir().unwrap().keep();
        Some(Store::new(
            SqliteStore::open(dir.join("missive.db")).await.unwrap(),
        ))
    }

    missive_store::conformance_cases!(make());

    #[tokio::test]
    async fn the_audit_log_refuses_updates_and_deletes_even_in_sql() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
        store
            .access()
            .append_audit(vec![missive_store::AuditEntry {
                seq: 0,
                at: chrono::Utc::now(),
                actor: "key:a".into(),
                role: "admin".into(),
                action: "template.save".into(),
                target: "template:cart".into(),
                status: 200,
                detail: String::new(),
            }])
            .await
            .unwrap();
        let c = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        let update = c.execute("UPDATE audit_log SET actor = 'someone else'", []);
        assert!(format!("{update:?}").contains("append-only"), "{update:?}");
        let delete = c.execute("DELETE FROM audit_log", []);
        assert!(format!("{delete:?}").contains("append-only"), "{delete:?}");
    }

    /// A class this version does not know (written by hand or by a newer version) reads as
    /// marketing, the stricter rules, instead of failing every page of due messages.
    #[tokio::test]
    async fn an_unknown_stored_message_class_reads_as_marketing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
        let p = missive_core::ProfileId::generate();
        let now = chrono::Utc::now();
        let m = missive_store::OutboxMessage {
            id: "msg_c".into(),
            idempotency_key: "c:1".into(),
            profile_id: p,
            template: "t".into(),
            class: missive_core::MessageClass::Transactional,
            source: missive_core::MessageSource::Journey("j".into()),
            step: None,
            context: serde_json::json!({}),
            status: missive_store::OutboxStatus::Queued,
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
            sent_at: None,
            recipient: None,
            detail: None,
        };
        store
            .delivery()
            .commit_journey(missive_store::JourneyCommit {
                outbox: vec![m],
                ..Default::default()
            })
            .await
            .unwrap();
        let c = rusqlite::Connection::open(dir.path().join("m.delivery.db")).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c.execute("UPDATE outbox SET class = 'promo' WHERE id = 'msg_c'", [])
            .unwrap();
        drop(c);
        let due = store
            .delivery()
            .due_outbox(now + chrono::TimeDelta::seconds(1), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].class, missive_core::MessageClass::Marketing);
    }

    #[tokio::test]
    async fn a_second_writer_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SqliteStore::open(dir.path().join("m.db")).await.unwrap();
        let second = SqliteStore::open(dir.path().join("m.db")).await;
        assert!(matches!(second, Err(missive_store::StoreError::Locked(_))));
    }
}

mod postgres {

    use missive_store::{PostgresStore, Store};

    async fn make() -> Option<Store> {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            eprintln!("MISSIVE_TEST_POSTGRES_URL is not set: PostgreSQL conformance not run");
            return None;
        };
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let store = PostgresStore::connect(&url, Some(&schema))
            .await
            .unwrap_or_else(|e| panic!("MISSIVE_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e}"));
        Some(Store::new(store))
    }

    missive_store::conformance_cases!(make());

    #[tokio::test]
    async fn the_audit_log_refuses_updates_and_deletes_even_in_sql() {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            return;
        };
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let _store = PostgresStore::connect(&url, Some(&schema)).await.unwrap();
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "SET search_path TO {schema}; INSERT INTO audit_log (at, actor, role, action, target, status, detail)
                 VALUES (0, 'a', 'admin', 'x', 'y', 200, '')"
            ))
            .await
            .unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'b'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ] {
            let e = client.batch_execute(sql).await.unwrap_err();
            assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
        }
    }
}

mod encrypted_sqlite {
    use std::sync::Arc;

    use missive_store::{EncryptedStore, SqliteStore, Store};

    async fn make() -> Option<Store> {
        let dir = tempfile::tempdir().unwrap().keep();
        let inner = Store::new(SqliteStore::open(dir.join("missive.db")).await.unwrap());
        let keyring = Arc::new(missive_privacy::Keyring::generate());
        Some(EncryptedStore::new(inner, keyring).store())
    }

    missive_store::conformance_cases!(make());
}

mod encrypted_postgres {
    use std::sync::Arc;

    use missive_store::{EncryptedStore, PostgresStore, Store};

    async fn make() -> Option<Store> {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            return None;
        };
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let inner = PostgresStore::connect(&url, Some(&schema))
            .await
            .unwrap_or_else(|e| panic!("MISSIVE_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e}"));
        let keyring = Arc::new(missive_privacy::Keyring::generate());
        Some(EncryptedStore::new(Store::new(inner), keyring).store())
    }

    missive_store::conformance_cases!(make());
}
