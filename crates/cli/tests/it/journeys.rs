//! `missive journey` and `missive broadcast` on a real data directory.

use std::path::Path;

use crate::support::missive_cli as missive;

fn ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = missive(dir, args);
    assert!(ok, "missive {args:?}: {err}");
    out
}

#[test]
fn journeys_and_broadcasts_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body = d.join("news.html");
    std::fs::write(
        &body,
        "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    )
    .unwrap();
    ok(
        d,
        &[
            "template",
            "save",
            "news",
            body.to_str().unwrap(),
            "--subject",
            "News",
        ],
    );
    let journey = d.join("welcome.json");
    std::fs::write(
        &journey,
        r#"{"trigger": {"event": "Signed Up"}, "steps": [{"id": "hello", "type": "send", "template": "news"}]}"#,
    )
    .unwrap();
    assert!(ok(d, &["journey", "save", "welcome", journey.to_str().unwrap()]).contains("version 1"));
    let list = ok(d, &["journey", "list"]);
    let first: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["name"].as_str(), first["version"].as_u64()),
        (Some("welcome"), Some(1))
    );
    assert!(ok(d, &["journey", "show", "welcome"]).contains("\"Signed Up\""));
    assert_eq!(ok(d, &["journey", "instances", "welcome"]), "");
    // A definition that does not check is refused, naming the problem.
    std::fs::write(
        &journey,
        r#"{"trigger": {"event": "X"}, "steps": [{"id": "w", "type": "wait", "duration": "2y"}]}"#,
    )
    .unwrap();
    let (saved, _, err) = missive(d, &["journey", "save", "bad", journey.to_str().unwrap()]);
    assert!(!saved && err.contains("duration"), "{err}");
    ok(d, &["journey", "delete", "welcome"]);
    assert_eq!(ok(d, &["journey", "list"]), "");

    ok(d, &["segment", "save", "everyone", "orders.count >= 0"]);
    let created: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "broadcast",
            "create",
            "--template",
            "news",
            "--segment",
            "everyone",
        ],
    ))
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("brd_"), "{created}");
    assert!(ok(d, &["broadcast", "list"]).contains(&id));
    let paused: serde_json::Value = serde_json::from_str(&ok(d, &["broadcast", "pause", &id])).unwrap();
    assert_eq!(paused["state"], "paused");
    ok(d, &["broadcast", "resume", &id]);
    let cancelled: serde_json::Value = serde_json::from_str(&ok(d, &["broadcast", "cancel", &id])).unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    let (created, _, err) = missive(
        d,
        &[
            "broadcast",
            "create",
            "--template",
            "news",
            "--segment",
            "everyone",
            "--topic",
            "nope",
        ],
    );
    assert!(!created && err.contains("--topic"), "{err}");
    // Every change is in the audit log.
    let audit = ok(d, &["audit", "--target", &format!("broadcast:{id}")]);
    assert_eq!(audit.lines().count(), 4, "{audit}");
}
