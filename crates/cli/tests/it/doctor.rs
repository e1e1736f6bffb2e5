//! `missive doctor` on the defaults, on a branded set-up with an unreachable relay, and (when
//! `MISSIVE_TEST_SMTP` names one, as CI does) with the real postfix relay.

use std::path::Path;
use std::process::Command;

fn doctor(dir: &Path, config: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_missive"));
    cmd.current_dir(dir).arg("--data-dir").arg(dir.join("data"));
    if let Some(toml) = config {
        std::fs::write(dir.join("missive.toml"), toml).unwrap();
        cmd.arg("--config").arg(dir.join("missive.toml"));
    }
    let out = cmd.arg("doctor").env("NO_COLOR", "1").output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn branded(relay: &str) -> String {
    let (host, port) = relay.rsplit_once(':').unwrap();
    format!(
        r#"
[delivery]
from_address = "shop@example.com"
bounce_address = "bounces@example.com"
message_id_domain = "example.com"
[delivery.smtp]
host = "{host}"
port = {port}
tls = "none"
[content]
public_url = "https://mail.example.com"
"#
    )
}

#[test]
fn the_defaults_are_named_as_problems_with_the_settings_that_fix_them() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = doctor(dir.path(), None);
    assert!(!ok, "{out}");
    assert!(err.contains("4 problem(s)"), "{err}");
    for needle in [
        "delivery.from_address is at localhost",
        "the DKIM signing domain is localhost",
        "content.public_url is http://",
        "no SMTP relay",
        "_dmarc.localhost TXT",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
    assert!(!dir.path().join("data").exists(), "doctor creates nothing");
}

#[test]
fn an_unreachable_relay_is_a_problem_and_the_records_name_the_domain() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, out, err) = doctor(dir.path(), Some(&branded(&format!("127.0.0.1:{port}"))));
    assert!(!ok, "{out}");
    assert!(out.contains("Configuration: no findings"), "{out}");
    assert!(out.contains("Relay: ! connecting to 127.0.0.1"), "{out}");
    assert!(
        out.contains("example.com TXT \"v=spf1 a:127.0.0.1 ~all\""),
        "{out}"
    );
    assert!(err.contains("1 problem(s)"), "{err}");
}

#[test]
fn a_branded_set_up_with_a_working_relay_is_ready() {
    let Ok(relay) = std::env::var("MISSIVE_TEST_SMTP") else {
        eprintln!("MISSIVE_TEST_SMTP not set: the relay check against postfix does not run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = doctor(dir.path(), Some(&branded(&relay)));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Relay: answers"), "{out}");
    assert!(out.contains("Ready to send."), "{out}");
}
