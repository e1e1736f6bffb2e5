//! A `kill -9` in the middle of a webhook retry storm: the receiver (Python, verifying every
//! request with `standardwebhooks`) is down while segment entries pile up, the server is killed
//! while it retries, and after the restart, with the receiver back, every entry arrives, once,
//! signed.

use std::io::BufRead as _;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;

const PEOPLE: usize = 40;

struct Receiver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_retry_storm_loses_no_webhook() {
    let Some(python) = std::env::var_os("MISSIVE_TEST_PYTHON") else {
        println!("skipped: MISSIVE_TEST_PYTHON not set (CI sets it, with standardwebhooks)");
        return;
    };
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/tests/python/webhook_receiver.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .arg(secret)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let receiver = Receiver {
        port: line.trim().parse().unwrap(),
        child,
    };
    let http = reqwest::Client::new();
    let control = |v: Value| {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{}/control", receiver.port);
        async move {
            assert!(
                http.post(url)
                    .json(&v)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .is_success()
            )
        }
    };
    let records = || {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{}/records", receiver.port);
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Vec<Value>>()
                .await
                .unwrap()
        }
    };

    let mut server = Server::start_with_env(&[("MISSIVE_WEBHOOKS__ALLOW_INTERNAL", "127.0.0.0/8")]).await;
    let admin = |server: &Server, method: reqwest::Method, path: &str, body: Value| {
        let req = http
            .request(method, server.api().url(path))
            .bearer_auth(&server.api().keys().admin_key)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The schema learns `tier` from a first person; then the segment and the endpoint.
    let batch = |users: std::ops::Range<usize>, tier: &str| {
        let batch: Vec<Value> = users
            .map(|i| json!({"type": "identify", "userId": format!("storm-{i}"), "traits": {"tier": tier}}))
            .collect();
        json!({ "batch": batch })
    };
    let (status, _) = server.api().post_batch(&batch(0..1, "bronze")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, res) = admin(
        &server,
        reqwest::Method::POST,
        "/v1/segments",
        json!({"name": "gold", "expression": r#"traits.tier == "gold""#}),
    )
    .await;
    assert_eq!(status, 201, "{res}");
    let (status, res) = admin(
        &server,
        reqwest::Method::POST,
        "/v1/webhooks",
        json!({"name": "crm", "url": format!("http://127.0.0.1:{}/hook", receiver.port),
               "events": ["segment.entered"], "secret": secret, "rate_per_second": 1000}),
    )
    .await;
    assert_eq!(status, 201, "{res}");

    // The receiver is down: the first entry is retried (5 s, 10 s, …), the rest wait behind it.
    control(json!({"down": true})).await;
    let (status, _) = server.api().post_batch(&batch(0..PEOPLE, "gold")).await;
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while records().await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry seen\n{}",
            server.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = server.kill();
    assert_eq!(status.signal(), Some(9));
    let failed = records().await;
    assert!(failed.iter().all(|r| r["status"] == 503), "{failed:?}");

    // Back up, and the server restarted: everything arrives, once each, in order.
    control(json!({"down": false})).await;
    server.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let accepted = records().await.iter().filter(|r| r["status"] == 200).count();
        if accepted >= PEOPLE {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {accepted} of {PEOPLE} entries arrived\n{}",
            server.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted: Vec<Value> = records()
        .await
        .into_iter()
        .filter(|r| r["status"] == 200)
        .collect();
    assert_eq!(accepted.len(), PEOPLE, "each entry accepted once: {accepted:?}");
    let ids: std::collections::BTreeSet<&str> = accepted.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), PEOPLE);
    assert!(accepted.iter().all(|r| r["verified"] == true));
    assert!(accepted.iter().all(|r| r["body"]["type"] == "segment.entered"));
    // The first one delivered is the one that was failing before the kill.
    assert_eq!(accepted[0]["id"], failed[0]["id"]);
    let (_, attempts) = admin(
        &server,
        reqwest::Method::GET,
        "/v1/webhooks/crm/attempts?limit=500",
        Value::Null,
    )
    .await;
    assert!(attempts.as_array().unwrap().iter().any(|a| a["status"] == 200));
}
