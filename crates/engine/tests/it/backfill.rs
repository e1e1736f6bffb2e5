//! Segment backfills alongside ingest: events are acknowledged while a backfill runs, each
//! membership change is recorded once, and a backfill cut off by a crash resumes from its
//! last checkpoint. The segment counts events in a window, which profiles did not keep before
//! it was saved: the backfill must read them from the log.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use missive_core::message::validate_message;
use missive_core::{Event, ProfileId, SystemClock};
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};
use serde_json::json;

const SEGMENT: &str = "count(event \"Viewed\" within 30d) >= 2";

fn view(user: &str, n: u32) -> Event {
    validate_message(
        json!({"type": "track", "userId": user, "event": "Viewed", "messageId": format!("{user}-view-{n}")}),
        None,
        None,
        Utc::now(),
    )
    .unwrap()
}

/// `users` customers with one view each, and a second view for every third one.
async fn seed(engine: &Engine, users: u32) {
    let mut batch = Vec::new();
    for u in 0..users {
        batch.push(view(&format!("u-{u}"), 0));
        if u % 3 == 0 {
            batch.push(view(&format!("u-{u}"), 1));
        }
        if batch.len() >= 5_000 {
            engine.ingest(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    engine.ingest(batch).await.unwrap();
    engine.sync().await.unwrap();
}

async fn profile_id(store: &Store, user: &str) -> ProfileId {
    find_profile(store, &ProfileKey::parse(user), 1)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{user} has a profile"))
        .id
}

/// The segment's members, and every change recorded for it, by profile.
async fn members_and_changes(
    store: &Store,
    name: &str,
) -> (BTreeSet<ProfileId>, HashMap<ProfileId, Vec<bool>>) {
    let mut members = BTreeSet::new();
    let mut after = None;
    loop {
        let page = store.events().segment_members(name, after, 5_000).await.unwrap();
        let Some(last) = page.last().cloned() else { break };
        members.extend(page);
        after = Some(last);
    }
    let mut changes: HashMap<ProfileId, Vec<bool>> = HashMap::new();
    let mut position = 0;
    loop {
        let page = store
            .events()
            .segment_changes_after(position, 10_000)
            .await
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        position = *last;
        for (_, c) in page.into_iter().filter(|(_, c)| c.segment == name) {
            changes.entry(c.profile_id).or_default().push(c.entered);
        }
    }
    (members, changes)
}

/// Each member entered once and never left; nobody else has a change.
fn assert_each_change_once(members: &BTreeSet<ProfileId>, changes: &HashMap<ProfileId, Vec<bool>>) {
    for (id, seen) in changes {
        assert!(
            members.contains(id),
            "{id} is not a member but has changes {seen:?}"
        );
        assert_eq!(seen, &vec![true], "{id}: one entry, no exits, expected");
    }
    assert_eq!(changes.len(), members.len(), "every member's entry is recorded");
}

/// A segment save under way, and its progress (profiles done, profiles in all).
type Saving = (
    tokio::task::JoinHandle<Result<u64, missive_engine::segments::SegmentServiceError>>,
    tokio::sync::watch::Receiver<(u64, u64)>,
);

/// Saves a segment in a task of its own; its progress is watched.
fn save_in_background(engine: &Engine, name: &'static str, expression: &'static str) -> Saving {
    let (progress, watch) = tokio::sync::watch::channel((0, 0));
    let engine = engine.clone();
    let saving = tokio::spawn(async move {
        missive_engine::segments::save_segment(&engine, name, expression, Some(progress)).await
    });
    (saving, watch)
}

#[tokio::test]
async fn ingest_goes_on_during_a_backfill_and_each_membership_change_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = open(&dir.path().join("m.db")).await;
    let users = 20_000;
    seed(&engine, users).await;

    // Members have viewed exactly once: a profile the backfill has not reached and that an
    // event reaches first must be judged with the views it had before (read from the log),
    // or a customer with two views would seem to enter on a third and leave again.
    let (saving, mut watch) = save_in_background(&engine, "once", "count(event \"Viewed\" within 30d) == 1");
    // Once the first page is done, more events arrive: a second view for customers the
    // backfill has done, a third for customers it has not reached, and new customers.
    watch.wait_for(|(done, _)| *done >= 1_000).await.unwrap();
    let early: Vec<u32> = (1..300).step_by(3).collect();
    let late: Vec<u32> = (users - 600..users).filter(|u| u % 3 == 0).collect();
    let mut events = Vec::new();
    events.extend(early.iter().map(|u| view(&format!("u-{u}"), 1)));
    events.extend(late.iter().map(|u| view(&format!("u-{u}"), 2)));
    events.extend((0..50).map(|n| view(&format!("new-{n}"), 0)));
    let stored = engine.ingest(events).await.unwrap().stored;
    let (done, total) = *watch.borrow();
    assert!(
        done < total && !saving.is_finished(),
        "the events were acknowledged while the backfill ran ({done} of {total} done)"
    );
    assert_eq!(stored, early.len() + late.len() + 50);
    let evaluated = saving.await.unwrap().unwrap();
    assert!(
        evaluated >= u64::from(users),
        "every stored profile was evaluated: {evaluated}"
    );
    engine.sync().await.unwrap();

    let (members, changes) = members_and_changes(&store, "once").await;
    let mut expected_members = BTreeSet::new();
    for u in 0..users {
        let id = profile_id(&store, &format!("u-{u}")).await;
        let seen = changes.get(&id).cloned().unwrap_or_default();
        if early.contains(&u) {
            assert_eq!(
                seen,
                vec![true, false],
                "u-{u} entered with its view, left with its second"
            );
        } else if u % 3 == 0 {
            assert!(seen.is_empty(), "u-{u} never viewed once only: {seen:?}");
        } else {
            assert_eq!(seen, vec![true], "u-{u} entered once");
            expected_members.insert(id);
        }
    }
    for n in 0..50 {
        let id = profile_id(&store, &format!("new-{n}")).await;
        assert_eq!(changes.get(&id), Some(&vec![true]), "new-{n} entered once");
        expected_members.insert(id);
    }
    assert_eq!(members.len(), expected_members.len());
    assert!(members == expected_members, "the members are those with one view");
    assert_eq!(
        changes.len(),
        expected_members.len() + early.len(),
        "no one else changed"
    );
    assert!(store.events().unfinished_backfills().await.unwrap().is_empty());
    engine.shutdown().await;
}

/// Polls until `check` holds, or fails after a while.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..6_000 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A store and its engine, checkpointing often (so that a backfill records its progress
/// several times on the way).
async fn open(path: &Path) -> (Store, Engine) {
    let store = Store::new(SqliteStore::open(path).await.unwrap());
    let config = EngineConfig {
        flush_interval: Duration::from_millis(20),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config)
        .await
        .unwrap();
    (store, engine)
}

#[test]
fn a_backfill_cut_off_by_a_crash_resumes_where_its_last_checkpoint_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let users = 30_000;

    // The first run: the backfill is under way when every task of the process stops where it
    // is (the runtime is shut down: no graceful stop runs; a SQLite transaction in flight
    // finishes or rolls back, as at a kill -9).
    let rt = runtime();
    let (store, engine) = rt.block_on(open(&path));
    rt.block_on(seed(&engine, users));
    let saving = {
        let engine = engine.clone();
        rt.spawn(async move { missive_engine::segments::save_segment(&engine, "twice", SEGMENT, None).await })
    };
    wait_until("a checkpoint of the backfill's progress", || {
        rt.block_on(store.events().unfinished_backfills())
            .unwrap()
            .iter()
            .any(|m| m.after.is_some())
    });
    assert!(!saving.is_finished(), "the backfill was cut off before its end");
    drop((engine, store));
    rt.shutdown_timeout(Duration::from_secs(10));

    // The second run resumes the backfill on its own.
    let rt = runtime();
    let (store, engine) = rt.block_on(open(&path));
    let mark = rt.block_on(store.events().unfinished_backfills()).unwrap();
    assert_eq!(mark.len(), 1, "the interrupted backfill is remembered: {mark:?}");
    // Another segment saved while the resumed one runs waits for its turn, then is done too.
    let second = rt
        .block_on(missive_engine::segments::save_segment(
            &engine,
            "viewed",
            "count(event \"Viewed\" within 30d) >= 1",
            None,
        ))
        .unwrap();
    assert!(
        second >= u64::from(users),
        "every profile evaluated for the second: {second}"
    );
    let (viewed, viewed_changes) = rt.block_on(members_and_changes(&store, "viewed"));
    assert_eq!(viewed.len(), users as usize);
    assert_each_change_once(&viewed, &viewed_changes);
    wait_until("the resumed backfill to finish", || {
        rt.block_on(engine.sync()).unwrap();
        rt.block_on(store.events().unfinished_backfills())
            .unwrap()
            .is_empty()
    });
    let (members, changes) = rt.block_on(members_and_changes(&store, "twice"));
    assert_eq!(
        members.len(),
        (users as usize).div_ceil(3),
        "every third customer viewed twice"
    );
    assert_each_change_once(&members, &changes);
    rt.block_on(engine.shutdown());
}

/// Makes every profile checkpoint of the SQLite store at `path` fail (`on`), or work again.
fn fail_checkpoints(path: &Path, on: bool) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(if on {
        "CREATE TRIGGER injected_failure BEFORE INSERT ON meta
         WHEN NEW.key = 'profiles_through_seq'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
    } else {
        "DROP TRIGGER injected_failure;"
    })
    .unwrap();
}

#[tokio::test]
async fn a_backfill_whose_checkpoint_fails_starts_over_and_its_caller_still_gets_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let (store, engine) = open(&path).await;
    let users = 20_000;
    seed(&engine, users).await;
    let (saving, mut watch) = save_in_background(&engine, "twice", SEGMENT);
    watch.wait_for(|(done, _)| *done >= 1_000).await.unwrap();
    fail_checkpoints(&path, true);
    assert!(
        !saving.is_finished(),
        "the backfill is under way when checkpoints fail"
    );
    // Events keep coming while checkpoints fail: the engine starts over from the store.
    for n in 0..20 {
        let _ = engine.ingest(vec![view(&format!("during-{n}"), 0)]).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let synced = tokio::time::timeout(Duration::from_secs(10), engine.sync())
        .await
        .expect("sync answers while checkpoints fail");
    assert!(synced.is_err(), "checkpoints fail, and readers are told");
    fail_checkpoints(&path, false);
    let evaluated = tokio::time::timeout(Duration::from_secs(60), saving)
        .await
        .expect("the save is answered")
        .unwrap()
        .expect("the backfill went on after the failure");
    assert!(evaluated > 0);
    engine.sync().await.unwrap();
    assert!(store.events().unfinished_backfills().await.unwrap().is_empty());
    let (members, changes) = members_and_changes(&store, "twice").await;
    assert_eq!(
        members.len(),
        (users as usize).div_ceil(3),
        "every third customer viewed twice"
    );
    assert_each_change_once(&members, &changes);
    engine.shutdown().await;
}

/// A segment deleted and saved again under its name: a stored profile that was in the old one
/// and is not in the new one must be stored without it, though the backfill finds the profile
/// as it was after clearing the old membership (and so sees no change of its own).
#[tokio::test]
async fn a_membership_left_by_a_deleted_segment_of_the_same_name_is_cleared_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let (store, engine) = open(&path).await;
    seed(&engine, 30).await;
    missive_engine::segments::save_segment(&engine, "viewers", SEGMENT, None)
        .await
        .unwrap();
    engine.sync().await.unwrap();
    let id = profile_id(&store, "u-0").await;
    let stored = |store: Store, id: ProfileId| async move {
        store
            .events()
            .load_profile(&id)
            .await
            .unwrap()
            .unwrap()
            .segments
            .segments
    };
    assert!(
        stored(store.clone(), id.clone()).await.contains("viewers"),
        "u-0 viewed twice"
    );
    missive_engine::segments::delete_segment(&engine, "viewers")
        .await
        .unwrap();
    engine.shutdown().await;
    drop(store);

    // A fresh engine (nothing cached): the page reads u-0 from the store, with "viewers".
    let (store, engine) = open(&path).await;
    missive_engine::segments::save_segment(
        &engine,
        "viewers",
        // The same events kept (all time now), and no timer: nothing but the cleared
        // membership and timer differs.
        "count(event \"Viewed\") >= 5",
        None,
    )
    .await
    .unwrap();
    engine.sync().await.unwrap();
    assert!(
        !stored(store.clone(), id.clone()).await.contains("viewers"),
        "the old membership is gone from the stored profile"
    );
    engine.shutdown().await;
}
