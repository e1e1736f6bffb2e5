//! `missive cluster status` against a real PostgreSQL (`MISSIVE_TEST_POSTGRES_URL`; CI sets it):
//! a store that never ran a cluster says so; with two nodes holding leases it lists both and
//! the partitions each owns; on the embedded store it says cluster mode needs PostgreSQL.

use std::process::Command;
use std::time::Duration;

use missive_cluster::leases::connect;
use missive_cluster::{Keeper, Leases, PartitionCount};

fn status(url_with_schema: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["cluster", "status"])
        .env("MISSIVE_STORE", url_with_schema)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cluster_status_lists_nodes_and_the_partitions_they_own() {
    let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
        eprintln!("MISSIVE_TEST_POSTGRES_URL is not set: the cluster status test does not run");
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    connect(&url, None)
        .await
        .unwrap()
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let in_schema = format!("{url}{sep}options=-c%20search_path%3D{schema}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let u = in_schema.clone();
        move || status(&u)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("no cluster"), "{out}");

    let mut keepers = Vec::new();
    for node in ["node-a", "node-b"] {
        let leases = Leases::open(
            connect(&url, Some(&schema)).await.unwrap(),
            PartitionCount::new(8).unwrap(),
        )
        .await
        .unwrap();
        keepers.push(Keeper::new(
            leases,
            node,
            format!("{node}:8080"),
            Duration::from_secs(30),
        ));
    }
    for _ in 0..2 {
        for k in &mut keepers {
            k.round().await.unwrap();
        }
    }
    let (ok, out, err) = tokio::task::spawn_blocking(move || status(&in_schema))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("nodes (2):"), "{out}");
    assert!(out.contains("node-a") && out.contains("node-b:8080"), "{out}");
    assert!(out.contains("  node-a                      4  0-3"), "{out}");
    assert!(out.contains("  node-b                      4  4-7"), "{out}");
}

#[test]
fn cluster_mode_needs_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster mode runs on PostgreSQL"), "{err}");
}
