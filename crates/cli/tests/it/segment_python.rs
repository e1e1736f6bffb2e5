//! Real tracking libraries against the real server: Segment's official Python library and
//! RudderStack's Python SDK (gzip), run from `MISSIVE_TEST_PYTHON`, a Python with
//! `segment-analytics-python` and `rudder-sdk-python` installed (`.ci/run` makes one).
//!
//! Without the variable the tests say they were skipped and pass, for local development;
//! with it, any problem fails them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Api, Server, python_script, run_to_completion};

const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);
/// What both libraries send as `context.library.name`; the server makes it the traits' source.
const LIBRARY_NAME: &str = "analytics-python";

fn test_python() -> Option<PathBuf> {
    let Some(python) = std::env::var_os("MISSIVE_TEST_PYTHON") else {
        println!("skipped: MISSIVE_TEST_PYTHON not set");
        return None;
    };
    let python = PathBuf::from(python);
    assert!(
        python.exists(),
        "MISSIVE_TEST_PYTHON is set to {}, which does not exist",
        python.display()
    );
    Some(python)
}

/// Runs a script of `tests/python` and returns its report (the last stdout line, JSON).
async fn run_script(python: &PathBuf, script: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(python_script(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let out = run_to_completion(cmd, SCRIPT_DEADLINE).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({})\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script} printed no JSON report ({e}):\n{stdout}\n{stderr}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

async fn profile_by(api: &Api, key: &str) -> Value {
    api.profile(key)
        .await
        .unwrap_or_else(|| panic!("no profile found by {key:?}"))
}

/// The stored message ids of a profile, sorted.
async fn stored_ids(api: &Api, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = api
        .events(key)
        .await
        .iter()
        .map(|e| e["message_id"].as_str().expect("a message_id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn assert_trait(profile: &Value, name: &str, value: &str) {
    let t = &profile["traits"][name];
    assert_eq!(t["value"], value, "trait {name} of {profile}");
    let source = t["source"].as_str().unwrap_or_default();
    assert!(
        source.contains(LIBRARY_NAME),
        "trait {name} should name the library in its source, got {source:?}"
    );
}

#[tokio::test]
async fn segment_python_library_drives_profiles_identity_and_aggregates() {
    let Some(python) = test_python() else { return };
    let server = Server::start().await;
    let api = server.api();
    let (anonymous_id, user_id, email, new_user_id) =
        ("anon-7f3a", "user-ada", "ada@example.com", "user-ada-2");

    let report = run_script(
        &python,
        "segment_client.py",
        &[
            api.base_url(),
            &api.keys().write_key,
            anonymous_id,
            user_id,
            email,
            new_user_id,
        ],
    )
    .await;
    let mut sent = strings(&report["message_ids"]);
    sent.sort();
    assert_eq!(sent.len(), 6, "the script sends six messages: {report}");

    let profile = profile_by(api, user_id).await;
    let id = profile["id"].as_str().expect("a profile id");
    for key in [anonymous_id, email, new_user_id, id] {
        assert_eq!(
            profile_by(api, key).await["id"],
            id,
            "the profile found by {key:?} is not the one found by the user id"
        );
    }
    assert_eq!(
        stored_ids(api, id).await,
        sent,
        "the profile's events are not the messages the library sent"
    );

    let identities = &profile["identities"];
    assert_eq!(strings(&identities["anonymous_ids"]), [anonymous_id]);
    let mut user_ids = strings(&identities["user_ids"]);
    user_ids.sort();
    assert_eq!(user_ids, [user_id, new_user_id]);
    assert_eq!(strings(&identities["emails"]), [email]);

    let aggregates = &profile["aggregates"];
    assert_eq!(aggregates["events"]["Product Viewed"]["count"], 1, "{aggregates}");
    assert_eq!(
        aggregates["events"]["Order Completed"]["count"], 2,
        "{aggregates}"
    );
    assert_eq!(aggregates["orders"]["count"], 2, "{aggregates}");
    assert_eq!(
        aggregates["orders"]["revenue"].as_f64(),
        Some(60.0),
        "{aggregates}"
    );

    assert_trait(&profile, "email", email);
    assert_trait(&profile, "name", "Ada Lovelace");
    let merges = profile["merges"].as_array().expect("merges is an array");
    assert!(
        !merges.is_empty(),
        "alias should have merged the first profile into the new user's: {profile}"
    );
}

#[tokio::test]
async fn rudderstack_python_sdk_sends_gzip_batches_that_are_accepted() {
    let Some(python) = test_python() else { return };
    let server = Server::start().await;
    let api = server.api();
    let (anonymous_id, user_id, email) = ("anon-rudder-1", "user-grace", "grace@example.com");

    let report = run_script(
        &python,
        "rudder_client.py",
        &[
            api.base_url(),
            &api.keys().write_key,
            anonymous_id,
            user_id,
            email,
        ],
    )
    .await;
    let mut sent = strings(&report["message_ids"]);
    sent.sort();

    let profile = profile_by(api, user_id).await;
    let id = profile["id"].as_str().expect("a profile id");
    for key in [anonymous_id, email] {
        assert_eq!(
            profile_by(api, key).await["id"],
            id,
            "the profile found by {key:?} is not the one found by the user id"
        );
    }
    assert_eq!(
        stored_ids(api, id).await,
        sent,
        "the profile's events are not the messages the SDK sent"
    );
    // The SDK sends identify traits only as context.traits.
    assert_trait(&profile, "email", email);
    assert_trait(&profile, "plan", "pro");
    let aggregates = &profile["aggregates"];
    assert_eq!(aggregates["events"]["Product Viewed"]["count"], 1, "{aggregates}");
    assert_eq!(
        aggregates["events"]["Order Completed"]["count"], 1,
        "{aggregates}"
    );
    assert_eq!(
        aggregates["orders"]["revenue"].as_f64(),
        Some(12.5),
        "{aggregates}"
    );
}
