//! `missive apikey`, `missive privacy` and `missive encryption` against a real data directory.

use std::path::Path;
use std::process::Command;

use crate::support::missive_cli as missive;

fn import_ann(dir: &Path) {
    let file = dir.join("ann.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"identify","userId":"ann-42","messageId":"a1","traits":{"email":"ann.quill@example.com","first_name":"Annika"}}"#,
            "\n",
            r#"{"type":"track","userId":"ann-42","messageId":"a2","event":"Order Completed","properties":{"revenue":40}}"#,
            "\n"
        ),
    )
    .unwrap();
    let (ok, _, err) = missive(dir, &["import", file.to_str().unwrap()]);
    assert!(ok, "{err}");
}

/// Who the CLI records as the operator: the login name, else the user id.
fn whoami() -> String {
    use std::os::unix::fs::MetadataExt;
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| format!("uid:{}", std::fs::metadata("/proc/self").unwrap().uid()))
}

#[test]
fn a_person_is_exported_then_erased_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let (ok, out, err) = missive(dir.path(), &["privacy", "export", "ann.quill@example.com"]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["profile"]["traits"]["first_name"]["value"], "Annika");
    assert_eq!(doc["events"].as_array().unwrap().len(), 2);

    let (ok, _, err) = missive(dir.path(), &["privacy", "erase", "ann-42"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = missive(dir.path(), &["privacy", "erase", "ann-42", "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"events\": 2"), "{out}");
    let (ok, _, err) = missive(dir.path(), &["privacy", "export", "ann-42"]);
    assert!(!ok && err.contains("not found"), "{err}");
    // Both are in the audit log, by profile id, never by address.
    let (ok, out, err) = missive(dir.path(), &["audit", "--actor", &format!("cli:{}", whoami())]);
    assert!(ok, "{err}");
    let actions: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = actions.iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(names, ["profile.erase", "profile.export"], "{out}");
    assert!(actions[0]["target"].as_str().unwrap().starts_with("profile:prf_"));
    assert!(
        actions[0]["detail"].as_str().unwrap().contains("2 events"),
        "{out}"
    );
    assert!(!out.contains("ann.quill"));
    // The data files (encrypted by default) never held the name in clear.
    for e in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"Annika"));
    }
}

#[test]
fn api_keys_are_created_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = missive(
        dir.path(),
        &["apikey", "create", "--role", "privacy_officer", "--label", "dpo"],
    );
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let id = lines
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(lines.next().unwrap().starts_with("pk_"));
    let (_, listed, _) = missive(dir.path(), &["apikey", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("privacy_officer"),
        "{listed}"
    );
    let (ok, _, err) = missive(dir.path(), &["apikey", "revoke", &id]);
    assert!(ok, "{err}");
    let (_, listed, _) = missive(dir.path(), &["apikey", "list"]);
    assert!(listed.contains("revoked"), "{listed}");
    let (_, audit, _) = missive(dir.path(), &["audit", "--target", &format!("key:{id}")]);
    let names: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["key.revoke", "key.create"], "{audit}");
    let (ok, _, err) = missive(
        dir.path(),
        &["apikey", "create", "--role", "root", "--label", "x"],
    );
    assert!(!ok && err.contains("unknown role"), "{err}");
}

#[test]
fn rotation_rewraps_the_data_keys_and_the_old_master_key_can_then_be_retired() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let (ok, out, err) = missive(dir.path(), &["encryption", "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("k1 (active): wraps 1 data keys"), "{out}");
    let (ok, _, err) = missive(dir.path(), &["encryption", "retire", "k1"]);
    assert!(!ok && err.contains("active"), "{err}");

    let (ok, out, err) = missive(dir.path(), &["encryption", "rotate"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("new active master key k2; re-wrapped 1 data keys"),
        "{out}"
    );
    let (ok, _, err) = missive(dir.path(), &["encryption", "retire", "k1"]);
    assert!(ok, "{err}");
    let (_, out, _) = missive(dir.path(), &["encryption", "status"]);
    assert!(
        out.contains("k2 (active): wraps 1 data keys") && !out.contains("k1"),
        "{out}"
    );
    // Still readable with the rotated key file alone.
    let (ok, out, err) = missive(dir.path(), &["privacy", "export", "ann-42"]);
    assert!(ok, "{err}");
    assert!(out.contains("Annika"));
}

#[test]
fn changes_and_previews_from_the_command_line_are_audited_by_id() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let body = dir.path().join("hello.html");
    std::fs::write(&body, "<p>Hello {{ customer.first_name }}</p>").unwrap();
    let runs: [&[&str]; 4] = [
        &["segment", "save", "buyers", "orders.count >= 1"],
        &[
            "template",
            "save",
            "hello",
            body.to_str().unwrap(),
            "--subject",
            "Hi",
            "--transactional",
        ],
        &[
            "template",
            "preview",
            "hello",
            "--profile",
            "email:ann.quill@example.com",
        ],
        &["segment", "delete", "buyers"],
    ];
    for args in runs {
        let (ok, _, err) = missive(dir.path(), args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, out, err) = missive(dir.path(), &["audit", "--actor", &format!("cli:{}", whoami())]);
    assert!(ok, "{err}");
    let entries: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(seen[0], ("segment.delete", "segment:buyers"), "{out}");
    assert_eq!(seen[1].0, "profile.preview");
    assert!(seen[1].1.starts_with("profile:prf_"), "by id: {out}");
    assert_eq!(seen[2], ("template.save", "template:hello"));
    assert_eq!(seen[3], ("segment.save", "segment:buyers"));
    assert!(!out.contains("ann.quill"), "no address in the audit log: {out}");
}

#[test]
fn a_store_is_never_opened_with_the_other_encryption_setting() {
    // Written without encryption: refused with encryption on, before anything is written.
    let plain = tempfile::tempdir().unwrap();
    let off = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_missive"))
            .current_dir(plain.path())
            .arg("--data-dir")
            .arg(plain.path().join("data"))
            .args(args)
            .env("MISSIVE_PRIVACY__ENCRYPT", "false")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stderr).unwrap())
    };
    let file = plain.path().join("ann.jsonl");
    std::fs::write(
        &file,
        r#"{"type":"identify","userId":"ann-42","messageId":"a1","traits":{"email":"ann.quill@example.com"}}"#,
    )
    .unwrap();
    let (ok, err) = off(&["import", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = missive(plain.path(), &["privacy", "export", "ann.quill@example.com"]);
    assert!(!ok && err.contains("written without encryption"), "{err}");
    let (ok, err) = off(&["privacy", "export", "ann.quill@example.com"]);
    assert!(ok, "still readable as it was written: {err}");

    // Written encrypted: refused with encryption off.
    let sealed = tempfile::tempdir().unwrap();
    import_ann(sealed.path());
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(sealed.path())
        .arg("--data-dir")
        .arg(sealed.path().join("data"))
        .args(["privacy", "export", "ann-42"])
        .env("MISSIVE_PRIVACY__ENCRYPT", "false")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("this store is encrypted"),
        "{err}"
    );
}

#[test]
fn messages_are_read_per_person_journey_or_broadcast_and_the_reading_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let (ok, _, err) = missive(dir.path(), &["messages"]);
    assert!(!ok && err.contains("--journey"), "{err}");
    let (ok, _, err) = missive(dir.path(), &["messages", "--step", "send", "--broadcast", "b1"]);
    assert!(!ok && err.contains("--journey"), "{err}");
    let (ok, _, err) = missive(dir.path(), &["messages", "--profile", "nobody@example.com"]);
    assert!(!ok && err.contains("no profile has that"), "{err}");
    let (ok, out, err) = missive(dir.path(), &["messages", "--profile", "ann.quill@example.com"]);
    assert!(ok, "{err}");
    assert_eq!(out, "", "Ann was sent nothing");
    let (ok, out, err) = missive(dir.path(), &["messages", "--journey", "welcome", "--counts"]);
    assert!(ok, "{err}");
    let counts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (counts["sent"].as_u64(), counts["skipped_by_reason"].clone()),
        (Some(0), serde_json::json!({}))
    );
    let (_, audit, _) = missive(dir.path(), &["audit", "--action", "messages.read"]);
    assert_eq!(audit.lines().count(), 2, "{audit}");
    assert!(
        audit.contains("profile:prf_") && audit.contains("journey:welcome"),
        "{audit}"
    );
}

#[test]
fn a_key_file_from_another_store_is_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let other = tempfile::tempdir().unwrap();
    import_ann(other.path());
    let key_file = dir.path().join("data").join("missive.keys");
    std::fs::copy(other.path().join("data").join("missive.keys"), &key_file).unwrap();
    let (ok, _, err) = missive(dir.path(), &["privacy", "export", "ann-42"]);
    assert!(!ok, "a foreign key file must not open the store");
    assert!(err.contains("the key file does not match this store"), "{err}");
    assert!(err.contains("master key \"k1\""), "{err}");
    assert!(err.contains(&key_file.display().to_string()), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
}

/// Runs when `MISSIVE_TEST_POSTGRES_URL` names a server (CI sets it).
#[test]
fn a_missing_postgres_database_is_named_with_how_to_create_it_and_nothing_is_created() {
    let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
        return;
    };
    let (server, _) = url.rsplit_once('/').expect("a database in the URL");
    let name = format!("missive_absent_{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["segment", "list"])
        .env("MISSIVE_STORE", format!("{server}/{name}"))
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("database \"{name}\" does not exist")),
        "{err}"
    );
    assert!(err.contains(&format!("createdb {name}")), "{err}");
    assert!(
        !dir.path().join("data").join("missive.keys").exists(),
        "no stray key file"
    );
}

#[test]
fn an_operator_without_a_login_name_is_audited_by_user_id_with_the_status_of_a_done_action() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["privacy", "export", "ann-42"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, audit, err) = missive(dir.path(), &["audit", "--action", "profile.export"]);
    assert!(ok, "{err}");
    let entry: serde_json::Value = serde_json::from_str(audit.lines().next().expect("an entry")).unwrap();
    let actor = entry["actor"].as_str().unwrap();
    assert!(actor.starts_with("cli:uid:"), "{entry}");
    assert!(actor["cli:uid:".len()..].parse::<u32>().is_ok(), "{entry}");
    assert_eq!(entry["status"], 200, "{entry}");
}

#[test]
fn a_segment_exports_as_a_customer_match_list_of_consenting_people() {
    let dir = tempfile::tempdir().unwrap();
    import_ann(dir.path());
    let file = dir.path().join("bo.jsonl");
    std::fs::write(
        &file,
        r#"{"type":"identify","userId":"bo-7","messageId":"b1","traits":{"email":" Bo@Example.com","consent":{"advertising":true}}}"#,
    )
    .unwrap();
    let (ok, _, err) = missive(dir.path(), &["import", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = missive(dir.path(), &["segment", "save", "everyone", "orders.count >= 0"]);
    assert!(ok, "{err}");
    let out = dir.path().join("everyone.csv");
    let (ok, _, err) = missive(
        dir.path(),
        &[
            "segment",
            "export",
            "everyone",
            "--format",
            "customer-match",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("1 member(s) written, 1 left out"), "{err}");
    // The address trimmed and lower-cased, hashed as coreutils' sha256sum hashes it.
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv, format!("Email\n{}\n", sha256_hex("bo@example.com")));
    let (ok, out, err) = missive(dir.path(), &["audit", "--actor", &format!("cli:{}", whoami())]);
    assert!(ok, "{err}");
    assert!(out.contains("segment.export"), "{out}");
    let (ok, _, err) = missive(dir.path(), &["segment", "export", "everyone", "--format", "csv"]);
    assert!(!ok);
    assert!(err.contains("name the purpose"), "{err}");
}

fn sha256_hex(text: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}
