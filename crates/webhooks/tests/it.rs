//! missive's signatures against the Standard Webhooks organisation's Python package
//! (`standardwebhooks`, installed by `.ci/run` into the Python of `MISSIVE_TEST_PYTHON`), in
//! both directions: Python verifies what missive signs (one secret, and two during a
//! rotation), and missive verifies what Python signs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use missive_webhooks::signature::{Secret, headers, verify};
use serde_json::{Value, json};

const SCRIPT: &str = r#"
import json, sys
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook
cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    ok = []
    for secret in c["verify_with"]:
        try:
            Webhook(secret).verify(c["body"].encode(), c["headers"])
            ok.append(True)
        except Exception:
            ok.append(False)
    ts = datetime.fromtimestamp(c["timestamp"], tz=timezone.utc)
    signed = Webhook(c["verify_with"][0]).sign(c["id"], ts, c["body"])
    out.append({"verified": ok, "python_signature": signed})
print(json.dumps(out))
"#;

#[test]
fn signatures_agree_with_the_standardwebhooks_package() {
    let Some(python) = std::env::var_os("MISSIVE_TEST_PYTHON") else {
        println!("skipped: MISSIVE_TEST_PYTHON not set (CI sets it, with standardwebhooks)");
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (new, old, stranger) = (Secret::generate(), Secret::generate(), Secret::generate());
    let bodies = [
        json!({"type": "segment.entered", "data": {"segment": "vip", "profile_id": "prf_1"}}).to_string(),
        "{}".to_owned(),
        json!({"text": "ünïcødé ✓ \"quoted\" \n newline"}).to_string(),
    ];
    let mut cases = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let id = format!("msg_{i:04}");
        let rotating = i % 2 == 1;
        let secrets: Vec<&Secret> = if rotating { vec![&new, &old] } else { vec![&new] };
        let h: serde_json::Map<String, Value> = headers(&secrets, &id, now, body.as_bytes())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        cases.push(json!({
            "id": id, "timestamp": now, "body": body, "headers": h,
            "verify_with": [new.expose(), old.expose(), stranger.expose()],
            "rotating": rotating,
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    std::fs::write(&input, serde_json::to_string(&cases).unwrap()).unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = Command::new(&python).arg(&script).arg(&input).output().unwrap();
    assert!(
        out.status.success(),
        "python failed (is standardwebhooks installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), cases.len());
    for (c, a) in cases.iter().zip(&answers) {
        let rotating = c["rotating"].as_bool().unwrap();
        // The new secret always verifies; the old one only during a rotation; a stranger never.
        assert_eq!(a["verified"], json!([true, rotating, false]), "{c}");
        let python_signature = a["python_signature"].as_str().unwrap();
        let id = c["id"].as_str().unwrap();
        let body = c["body"].as_str().unwrap();
        assert_eq!(python_signature, new.sign(id, now, body.as_bytes()));
        verify(&new, id, &now.to_string(), python_signature, body.as_bytes(), now).unwrap();
    }
}
