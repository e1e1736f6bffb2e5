//! Store conformance: every case of `missive_store::conformance` against SQLite, and against
//! PostgreSQL when `MISSIVE_TEST_POSTGRES_URL` is set (each test in its own schema). When the
//! variable is set and the server cannot be reached, the PostgreSQL tests fail.

mod sqlite {
    use std::sync::Arc;

    use missive_store::{SqliteStore, Store};

    async fn make() -> Option<Arc<dyn Store>> {
        // The directory is leaked on purpose: it must outlive the store within the test.
        let dir = tempfile::tempdir().unwrap().keep();
        Some(Arc::new(SqliteStore::open(dir.join("missive.db")).await.unwrap()))
    }

    missive_store::conformance_cases!(make());

    #[tokio::test]
    async fn a_second_writer_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SqliteStore::open(dir.path().join("m.db")).await.unwrap();
        let second = SqliteStore::open(dir.path().join("m.db")).await;
        assert!(matches!(second, Err(missive_store::StoreError::Locked(_))));
    }
}

mod postgres {
    use std::sync::Arc;

    use missive_store::{PostgresStore, Store};

    async fn make() -> Option<Arc<dyn Store>> {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            eprintln!("MISSIVE_TEST_POSTGRES_URL is not set: PostgreSQL conformance not run");
            return None;
        };
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let store = PostgresStore::connect(&url, Some(&schema))
            .await
            .unwrap_or_else(|e| panic!("MISSIVE_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e}"));
        Some(Arc::new(store))
    }

    missive_store::conformance_cases!(make());
}
