//! `missive demo`: builds the case study in a data directory (with its models, model-based
//! segments and the experiment of rule-based against learned recommendations), prints a login,
//! serves it, and with `--live` keeps events coming. A small shop here (the default, 20,000
//! customers, is timed in docs/BENCHMARKS.md).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden field `name`'s value in a page.
/// The served demo, killed when the test ends however it ends (a failed assertion would
/// otherwise leave it running, streaming events, after the test).
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).unwrap() + marker.len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

fn cookie(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap()
}

#[tokio::test]
async fn the_demo_builds_the_shop_serves_it_and_streams_live_events() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(root.path())
        .args([
            "demo",
            "--customers",
            "300",
            "--styles",
            "60",
            "--no-serve",
            "--data-dir",
        ])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = std::fs::read_to_string(dir.join("demo-login.txt")).unwrap();
    let login = login.trim();
    assert!(login.starts_with("mk_"), "{login}");
    assert!(stdout.contains("/console") && stdout.contains(login), "{stdout}");
    // The models that 300 customers can support (too few buy in a month to learn who will:
    // that one says why it is skipped), the recommendations, the segments on the scores, the
    // experiment.
    for line in [
        "models:    lifetime_value (BG/NBD + Gamma-Gamma",
        "models:    likely_to_buy not trained: too few rows of one class",
        "models:    rfm (K-Means",
        "recs:      trained on",
        "segments:  9 (2 on the models' scores: high-value, rfm-champions)",
        "experiment: post-purchase-recs running",
        "4 blocks, 6 templates, 2 recommendation rules, 5 journeys",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }

    // A directory that is not the demo's is never built into nor deleted.
    let other = root.path().join("real-data");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("missive.db"), b"precious").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(root.path())
        .args([
            "demo",
            "--rebuild",
            "--no-serve",
            "--customers",
            "5",
            "--data-dir",
        ])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the demo's"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(other.join("missive.db")).unwrap(), b"precious");

    // Served, with live events about the shop's own customers and styles.
    let mut child = Served(
        Command::new(env!("CARGO_BIN_EXE_missive"))
            .current_dir(root.path())
            .args([
                "demo",
                "--live",
                "--customers",
                "300",
                "--styles",
                "60",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The live stream says when its batches are taken.
    let (live_tx, live_rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("demo --live: events sent") {
                let _ = live_tx.send(Ok(()));
            } else if line.contains("demo --live") {
                let _ = live_tx.send(Err(line));
            }
        }
    });
    let lines = BufReader::new(child.0.stdout.take().unwrap());
    let mut base = None;
    let mut seen = Vec::new();
    for line in lines.lines() {
        let line = line.unwrap();
        if let Some((_, url)) = line.split_once(" listening on ") {
            base = Some(url.trim().to_owned());
            break;
        }
        seen.push(line);
    }
    let base = base.unwrap_or_else(|| panic!("no address: {seen:?}"));
    assert!(seen.iter().any(|l| l.contains("already built")), "{seen:?}");
    let result = async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = http.get(format!("{base}/console/login")).send().await.unwrap();
        let token = cookie(&page, "__Host-missive_login");
        let csrf = hidden(&page.text().await.unwrap(), "csrf");
        let res = http
            .post(format!("{base}/console/login"))
            .header("cookie", format!("__Host-missive_login={token}"))
            .form(&[("key", login), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 303);
        let session = cookie(&res, "__Host-missive_session");
        let get = |path: &str| {
            let http = http.clone();
            let url = format!("{base}{path}");
            let session = session.clone();
            async move {
                http.get(url)
                    .header("cookie", format!("__Host-missive_session={session}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        };
        // A year of orders, segments with members, the templates.
        let year = get("/console?range=90d").await;
        assert!(
            year.contains("Revenue") && !year.contains("<div class=\"value\">0.00</div>"),
            "{year}"
        );
        let segments = get("/console/segments").await;
        for name in [
            "vip",
            "lapsed",
            "browse-abandoners",
            "frequent-buyers",
            "high-value",
            "rfm-champions",
        ] {
            assert!(segments.contains(name), "{name}: {segments}");
        }
        let templates = get("/console/templates").await;
        for name in [
            "welcome",
            "cart-recovery",
            "browse-abandonment",
            "post-purchase",
            "post-purchase-predictive",
            "win-back",
        ] {
            assert!(templates.contains(name), "{name}");
        }
        // The models are active, and the experiment runs.
        let models = get("/console/models").await;
        for text in ["lifetime_value", "rfm", "active: v1"] {
            assert!(models.contains(text), "{text}: {models}");
        }
        let experiments = get("/console/experiments").await;
        assert!(
            experiments.contains("post-purchase-recs") && experiments.contains("running"),
            "{experiments}"
        );
        let credentials: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("credentials.json")).unwrap()).unwrap();
        let admin = credentials["admin_key"].as_str().unwrap();
        let api = |path: &str| {
            let request = http.get(format!("{base}{path}")).bearer_auth(admin);
            async move {
                request
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap()
            }
        };
        let listed = api("/v1/models").await;
        for name in ["lifetime_value", "rfm"] {
            let model = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap_or_else(|| panic!("{name}: {listed}"));
            assert_eq!(model["active"], 1, "{model}");
        }
        // The segments on the models' scores have members.
        for segment in ["high-value", "rfm-champions"] {
            let body = api(&format!("/v1/segments/{segment}/members")).await;
            assert!(
                !body["members"].as_array().unwrap().is_empty(),
                "{segment}: {body}"
            );
        }
        // The year's history started no journey: only what happens while serving does (a few
        // live sign-ups get the welcome).
        tokio::time::sleep(Duration::from_secs(2)).await;
        for journey in ["welcome", "win-back", "post-purchase"] {
            let body: serde_json::Value = http
                .get(format!("{base}/v1/journeys/{journey}/messages?limit=1"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let c = &body["counts"];
            let total: u64 = ["queued", "sent", "skipped", "failed"]
                .iter()
                .map(|k| c[k].as_u64().unwrap())
                .sum();
            assert!(
                total < 20,
                "{journey}: {total} messages for the year's history: {body}"
            );
        }
        // Live events are taken by the tracking API, and the last day's event count grows.
        let taken: Result<(), String> = live_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the live stream sent no batch within 30 s");
        taken.unwrap_or_else(|line| panic!("the live stream failed: {line}"));
        let count = |page: String| -> u64 {
            let marker = "<div class=\"label\">Events</div><div class=\"value\">";
            let at = page.find(marker).unwrap_or_else(|| panic!("{page}")) + marker.len();
            page[at..at + page[at..].find('<').unwrap()]
                .replace(',', "")
                .parse()
                .unwrap()
        };
        let before = count(get("/console?range=24h").await);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = count(get("/console?range=24h").await);
            if now > before {
                break;
            }
            assert!(Instant::now() < deadline, "no live events after 30 s ({before})");
        }
        // Live orders start the post-purchase journey, whose first step splits people between
        // the experiment's variants: they are counted at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let results = api("/v1/experiments/post-purchase-recs/results").await;
            let exposed: u64 = results["variants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["recipients"].as_u64().unwrap())
                .sum();
            if exposed > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no one in the experiment after 30 s of live orders: {results}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .await;
    drop(child);
    result
}
