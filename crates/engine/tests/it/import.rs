use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use missive_core::SystemClock;
use missive_engine::import::{CsvMapping, Delimiter, ImportFormat, ImportReport, import_file};
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};

async fn engine(dir: &Path) -> Engine {
    let store: Store = Store::new(SqliteStore::open(dir.join("missive.db")).await.unwrap());
    Engine::start(store, Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap()
}

fn cdnow_mapping() -> ImportFormat {
    ImportFormat::Csv(CsvMapping {
        delimiter: Delimiter::Whitespace,
        has_header: true,
        user_col: "customer_id".into(),
        time_col: "date".into(),
        time_format: Some("%Y%m%d".into()),
        amount_col: Some("dollar_value".into()),
        quantity_col: Some("number_of_cds".into()),
        event: "Order Completed".into(),
    })
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

async fn run(engine: &Engine, path: &Path, format: &ImportFormat) -> ImportReport {
    import_file(engine, path, format, |_, _| {}).await.unwrap()
}

const CDNOW_SAMPLE: &str = " customer_id  date number_of_cds  dollar_value\r
 00001 19970101  1   11.77\r
 00002 19970112  1   12.00\r
 00002 19970112  5   77.00\r
 00003 19970102  2   20.76\r
 00003 19970330  2   20.76\r
 00003 19970330  2   20.76\r
 00004 1997013X  1   10.00\r
 00005 19970101  one 10.00\r
 00006\r
";

#[tokio::test]
async fn csv_import_keeps_good_rows_and_reports_bad_lines_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let file = write_file(dir.path(), "cdnow.txt", CDNOW_SAMPLE);
    let report = run(&engine, &file, &cdnow_mapping()).await;
    assert_eq!((report.lines, report.stored, report.bad), (9, 6, 3));
    let bad: Vec<_> = report.bad_lines.iter().map(|b| b.line).collect();
    assert_eq!(bad, [8, 9, 10]);
    assert!(
        report.bad_lines[0].reason.contains("does not match"),
        "{:?}",
        report.bad_lines[0]
    );
    assert!(
        report.bad_lines[1].reason.contains("quantity"),
        "{:?}",
        report.bad_lines[1]
    );
    assert!(
        report.bad_lines[2].reason.contains("missing"),
        "{:?}",
        report.bad_lines[2]
    );

    engine.sync().await.unwrap();
    let store = engine.store().clone();
    // Two identical rows on one day are two transactions, not a duplicate.
    let p = find_profile(&store, &ProfileKey::parse("00003"), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.orders.count, 3);
    assert_eq!(p.orders.revenue.cents(), 6228);
    let p = find_profile(&store, &ProfileKey::parse("00002"), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.orders.revenue.cents(), 8900);
    assert_eq!(
        p.orders.first_at.unwrap().to_rfc3339(),
        "1997-01-12T00:00:00+00:00"
    );
}

#[tokio::test]
async fn importing_the_same_file_twice_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "cdnow.txt", CDNOW_SAMPLE);
    let engine = engine(dir.path()).await;
    let first = run(&engine, &file, &cdnow_mapping()).await;
    let second = run(&engine, &file, &cdnow_mapping()).await;
    assert_eq!((second.stored, second.duplicates), (0, first.stored));
    engine.shutdown().await;
    // And after a restart, with nothing in memory.
    let engine = self::engine(dir.path()).await;
    let third = run(&engine, &file, &cdnow_mapping()).await;
    assert_eq!((third.stored, third.duplicates), (0, 6));
    assert_eq!(engine.store().events().stats().await.unwrap().events, 6);
}

#[tokio::test]
async fn jsonl_import_validates_each_line_and_keeps_given_message_ids() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let file = write_file(
        dir.path(),
        "events.jsonl",
        concat!(
            r#"{"type":"identify","userId":"j1","messageId":"given-1","traits":{"email":"j1@example.com"}}"#,
            "\n",
            r#"{"type":"track","userId":"j1","event":"Product Viewed"}"#,
            "\n",
            "\n",
            r#"{"type":"track","event":"No identity"}"#,
            "\n",
            r#"{"type":"track","userId":"j1""#,
            "\n",
        ),
    );
    let report = run(&engine, &file, &ImportFormat::Jsonl).await;
    assert_eq!((report.lines, report.stored, report.bad), (4, 2, 2));
    assert_eq!(report.bad_lines[0].line, 4);
    assert!(
        report.bad_lines[0].reason.starts_with("userId"),
        "{:?}",
        report.bad_lines[0]
    );
    assert_eq!(report.bad_lines[1].line, 5);
    assert!(
        report.bad_lines[1].reason.starts_with("invalid JSON"),
        "{:?}",
        report.bad_lines[1]
    );
    let existing = engine
        .store()
        .events()
        .existing_message_ids(vec![missive_core::MessageId::parse("given-1").unwrap()])
        .await
        .unwrap();
    assert_eq!(existing.len(), 1);
}

#[tokio::test]
async fn an_unknown_column_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let file = write_file(dir.path(), "t.csv", "who,when\nu1,2026-01-01T00:00:00Z\n");
    let ImportFormat::Csv(mut mapping) = cdnow_mapping() else {
        unreachable!()
    };
    mapping.delimiter = Delimiter::Char(b',');
    let err = import_file(&engine, &file, &ImportFormat::Csv(mapping), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "column \"customer_id\" is not in the header");
}

/// The whole CDNOW log (shared test material): 69,659 transactions by 23,570 customers.
/// `.ci/run` sets `MISSIVE_TEST_CDNOW` to its path.
#[tokio::test]
async fn the_cdnow_log_imports_into_one_profile_per_customer() {
    let Ok(path) = std::env::var("MISSIVE_TEST_CDNOW") else {
        eprintln!("MISSIVE_TEST_CDNOW is not set: the full CDNOW import is not run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let report = run(&engine, Path::new(&path), &cdnow_mapping()).await;
    assert_eq!((report.lines, report.stored, report.bad), (69_659, 69_659, 0));
    engine.sync().await.unwrap();
    let stats = engine.store().events().stats().await.unwrap();
    assert_eq!((stats.profiles, stats.events), (23_570, 69_659));
    let again = run(&engine, Path::new(&path), &cdnow_mapping()).await;
    assert_eq!((again.stored, again.duplicates), (0, 69_659));
}
