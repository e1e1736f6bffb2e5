//! The preference centre over HTTP: the signed link every e-mail carries, what the page shows,
//! how changes are recorded (with their evidence) and enforced, forged and expired links, the
//! data download and the audit trail. `browser.rs` drives the same page in Chromium.

use chrono::TimeDelta;
use missive_core::ProfileId;
use missive_store::OutboxStatus;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Delivery, TestApp};

/// A sending app whose template does not place the preference link itself (the sender adds
/// it), one customer who consents to marketing, and a segment of them.
pub async fn app_with_customer() -> (TestApp, tempfile::TempDir) {
    let maildir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_sending(Delivery::maildir(maildir.path())).await;
    let template = json!({
        "subject": "News for {{ customer.first_name }}",
        "layout": "html",
        "body": "<html><body><p>Hello {{ customer.first_name }}</p>\
                 <a href=\"https://shop.example/sale\">Sale</a></body></html>",
    });
    let (status, res) = app.admin(Method::PUT, "/v1/templates/news", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    let traits = json!({"email": "rosa@example.com", "first_name": "Rosa", "plan": "pro",
                        "consent": {"email_marketing": true, "personalization": true}});
    let (status, _) = app
        .post("/v1/identify", json!({"userId": "rosa", "traits": traits}))
        .await;
    assert_eq!(status, 200);
    let segment = json!({"name": "pro", "expression": "traits.plan == \"pro\""});
    let (status, res) = app.admin(Method::POST, "/v1/segments", Some(segment)).await;
    assert!(status == 201 || status == 200, "{res}");
    (app, maildir)
}

/// Queues a broadcast on `topic` and runs the sender once.
pub async fn broadcast(app: &TestApp, topic: &str) {
    // A second apart, so that the outbox sorts by creation.
    app.clock.advance(TimeDelta::seconds(1));
    let (status, b) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro", "topic": topic})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let (status, res) = app.admin(Method::POST, "/v1/broadcasts/run", None).await;
    assert_eq!(status, 200, "{res}");
    app.state.sender.as_ref().unwrap().run_pending().await.unwrap();
}

/// The preference-centre path (`/preferences/…`) in the newest message of the maildir,
/// from its text part (quoted-printable soft breaks undone).
pub fn preference_path(maildir: &std::path::Path) -> String {
    let mut newest: Vec<_> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    newest.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let raw = std::fs::read_to_string(newest.last().expect("a message was sent")).unwrap();
    let text = raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let at = text
        .find("https://mail.example.test/preferences/")
        .expect("every e-mail carries a preference link");
    let url: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_/:.".contains(*c))
        .collect();
    url.trim_start_matches("https://mail.example.test").to_string()
}

async fn page(app: &TestApp, path: &str) -> (u16, String) {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The hidden anti-forgery value of the page's forms.
fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

async fn post_form(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client
        .post(format!("{}{path}", app.base))
        .header("user-agent", "prefs-test/1.0")
        .form(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The value of the page's hidden field `name`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// Where a redirect goes, resolved against the preference page it came from.
fn redirected(res: &reqwest::Response) -> String {
    format!("/preferences/{}", res.headers()["location"].to_str().unwrap())
}

async fn outbox(app: &TestApp) -> Vec<missive_store::OutboxMessage> {
    let (_, p) = app.admin(Method::GET, "/v1/profiles/rosa", None).await;
    let id = ProfileId::parse(p["id"].as_str().unwrap()).unwrap();
    let mut messages = app.engine.store().delivery().outbox_of(&id, 100).await.unwrap();
    messages.sort_by_key(|m| m.created_at);
    messages
}

#[tokio::test]
async fn the_link_in_every_email_opens_the_centre_and_choices_are_recorded_and_enforced() {
    let (app, maildir) = app_with_customer().await;
    broadcast(&app, "news").await;
    let path = preference_path(maildir.path());

    let (status, html) = page(&app, &path).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("What we hold about you"));
    assert!(html.contains("rosa@example.com"), "the page shows what is held");
    assert!(html.contains("Rosa"));
    assert!(
        html.contains("<label for=\"consent-email_marketing\">"),
        "forms are labelled"
    );
    assert!(
        html.contains("id=\"consent-email_marketing\" name=\"consent\" value=\"email_marketing\" checked")
    );
    assert!(html.contains("id=\"consent-profiling\" name=\"consent\" value=\"profiling\">"));
    assert!(html.contains("Offers and sales") && html.contains("<legend>Topics you receive</legend>"));
    assert!(!html.contains("<script"), "no JavaScript");
    let csrf = form_token(&html);

    // Forged and cross-site posts are refused and change nothing.
    let res = post_form(
        &app,
        &path,
        &[("csrf", "forged"), ("action", "unsubscribe_all")],
        &[],
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post_form(
        &app,
        &path,
        &[("csrf", &csrf), ("action", "unsubscribe_all")],
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post_form(
        &app,
        &path,
        &[("csrf", &csrf), ("action", "unsubscribe_all")],
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(res.status(), 403);
    let (_, c) = app.admin(Method::GET, "/v1/profiles/rosa/consent", None).await;
    assert_eq!(c["consent"]["email_marketing"]["granted"], true, "{c}");

    // Keep marketing, withdraw personalization, grant profiling, decline offers, weekly.
    let shown = ["shown_consent", "shown_topics", "shown_frequency"].map(|f| hidden(&html, f));
    assert_eq!(shown[0], "email_marketing,personalization");
    let res = post_form(
        &app,
        &path,
        &[
            ("csrf", &csrf),
            ("action", "save"),
            ("shown_consent", &shown[0]),
            ("shown_topics", &shown[1]),
            ("shown_frequency", &shown[2]),
            ("consent", "email_marketing"),
            ("consent", "profiling"),
            ("topic", "news"),
            ("frequency", "weekly"),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (status, html) = page(&app, &redirected(&res)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Your choices are saved"));
    assert!(
        html.contains("<title>Your e-mail preferences: saved"),
        "announced on load"
    );
    assert!(html.contains("id=\"frequency-weekly\" name=\"frequency\" value=\"weekly\" checked"));
    assert!(html.contains(
        "id=\"topic-offers\" name=\"topic\" value=\"offers\" aria-describedby=\"topic-offers-d\">"
    ));

    let (_, c) = app.admin(Method::GET, "/v1/profiles/rosa/consent", None).await;
    let c = &c["consent"];
    assert_eq!(c["personalization"]["granted"], false);
    assert_eq!(c["profiling"]["granted"], true);
    let evidence = &c["profiling"]["current"];
    assert_eq!(evidence["source"], "preference-centre");
    assert_eq!(evidence["policy_version"], "2026-03");
    assert_eq!(evidence["ip"], "127.0.0.1");
    assert_eq!(evidence["user_agent"], "prefs-test/1.0");
    assert_eq!(
        (
            c["email_marketing"]["current"]["source"].as_str(),
            c["email_marketing"]["history"].as_array().map(Vec::len)
        ),
        (Some("identify"), Some(0)),
        "an unchanged box is not a new grant: {c}"
    );
    let profile = app.profile("rosa").await;
    assert_eq!(
        profile["traits"]["email_topics_declined"]["value"],
        json!(["offers"])
    );
    assert_eq!(profile["traits"]["email_frequency"]["value"], "weekly");

    // Enforced at send time: the declined topic is skipped, and so is a second e-mail the
    // same week; a week later the wanted topic goes out again.
    broadcast(&app, "offers").await;
    broadcast(&app, "news").await;
    let reasons: Vec<(OutboxStatus, Option<String>)> = outbox(&app)
        .await
        .into_iter()
        .map(|m| (m.status, m.detail.filter(|_| m.status == OutboxStatus::Skipped)))
        .collect();
    assert_eq!(
        reasons[1..],
        [
            (OutboxStatus::Skipped, Some("topic_declined: offers".into())),
            (OutboxStatus::Skipped, Some("frequency_preference".into())),
        ]
    );
    app.clock.advance(TimeDelta::days(8));
    broadcast(&app, "news").await;
    assert_eq!(outbox(&app).await.last().unwrap().status, OutboxStatus::Sent);

    // The data download: everything, as JSON.
    let res = app
        .client
        .get(format!("{}{path}/export", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["profile"]["traits"]["first_name"]["value"], "Rosa", "{doc}");
    assert!(!doc["events"].as_array().unwrap().is_empty());

    // Unsubscribe from everything withdraws every purpose.
    let res = post_form(
        &app,
        &path,
        &[("csrf", &csrf), ("action", "unsubscribe_all")],
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (_, c) = app.admin(Method::GET, "/v1/profiles/rosa/consent", None).await;
    for purpose in [
        "email_marketing",
        "personalization",
        "profiling",
        "third_party_enrichment",
        "advertising",
    ] {
        assert_eq!(c["consent"][purpose]["granted"], false, "{purpose}: {c}");
    }

    // Every view, change and download is in the audit log.
    let (_, audit) = app.get("/v1/audit?actor=link:preference-centre").await;
    let actions: Vec<(&str, u64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["status"].as_u64().unwrap()))
        .collect();
    for want in [
        ("preferences.view", 200),
        ("preferences.update", 403),
        ("preferences.update", 303),
        ("preferences.export", 200),
    ] {
        assert!(actions.contains(&want), "{want:?} missing from {actions:?}");
    }
}

#[tokio::test]
async fn a_page_left_open_does_not_undo_a_later_unsubscribe() {
    let (app, maildir) = app_with_customer().await;
    broadcast(&app, "news").await;
    let path = preference_path(maildir.path());
    let (_, html) = page(&app, &path).await;
    // Shown with marketing consent; then the person unsubscribes elsewhere.
    let (status, _) = app
        .admin(
            Method::PUT,
            "/v1/profiles/rosa/consent",
            Some(json!({"purposes": {"email_marketing": false}, "source": "unsubscribe-link"})),
        )
        .await;
    assert_eq!(status, 200);
    // The old page is saved with only the frequency changed.
    let res = post_form(
        &app,
        &path,
        &[
            ("csrf", &form_token(&html)),
            ("action", "save"),
            ("shown_consent", &hidden(&html, "shown_consent")),
            ("shown_topics", &hidden(&html, "shown_topics")),
            ("shown_frequency", &hidden(&html, "shown_frequency")),
            ("consent", "email_marketing"),
            ("consent", "personalization"),
            ("topic", "offers"),
            ("topic", "news"),
            ("frequency", "monthly"),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (_, c) = app.admin(Method::GET, "/v1/profiles/rosa/consent", None).await;
    assert_eq!(
        c["consent"]["email_marketing"]["granted"], false,
        "not re-granted: {c}"
    );
    assert_eq!(
        c["consent"]["email_marketing"]["current"]["source"],
        "unsubscribe-link"
    );
    let profile = app.profile("rosa").await;
    assert_eq!(profile["traits"]["email_frequency"]["value"], "monthly");
    assert!(
        profile["traits"].get("email_topics_declined").is_none(),
        "unchanged topics are not written: {profile}"
    );
}

#[tokio::test]
async fn what_is_held_is_shown_escaped() {
    let (app, maildir) = app_with_customer().await;
    let (status, _) = app
        .post(
            "/v1/identify",
            json!({"userId": "rosa", "traits": {"first_name": "<script>alert(1)</script>", "nick\"><b>": "x"}}),
        )
        .await;
    assert_eq!(status, 200);
    broadcast(&app, "news").await;
    let (status, html) = page(&app, &preference_path(maildir.path())).await;
    assert_eq!(status, 200);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(html.contains("nick&quot;&gt;&lt;b&gt;"), "{html}");
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
}

#[tokio::test]
async fn two_messages_in_one_round_respect_a_weekly_choice() {
    let (app, _maildir) = app_with_customer().await;
    let (status, _) = app
        .post(
            "/v1/identify",
            json!({"userId": "rosa", "traits": {"email_frequency": "weekly"}}),
        )
        .await;
    assert_eq!(status, 200);
    // Both queued before the sender runs once.
    for _ in 0..2 {
        app.clock.advance(TimeDelta::seconds(1));
        let (status, b) = app
            .admin(
                Method::POST,
                "/v1/broadcasts",
                Some(json!({"template": "news", "segment": "pro", "topic": "news"})),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        app.admin(Method::POST, "/v1/broadcasts/run", None).await;
    }
    let stats = app.state.sender.as_ref().unwrap().run_pending().await.unwrap();
    assert_eq!((stats.sent, stats.skipped), (1, 1), "{stats:?}");
    let details: Vec<Option<String>> = outbox(&app).await.into_iter().map(|m| m.detail).collect();
    assert!(
        details.contains(&Some("frequency_preference".into())),
        "{details:?}"
    );
}

#[tokio::test]
async fn journeys_and_broadcasts_name_only_configured_topics() {
    let (app, _maildir) = app_with_customer().await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro", "topic": "offer"})),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("topic")), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("offers, news"),
        "{body}"
    );
    let mut journey = json!({"trigger": {"event": "Signed Up"}, "topic": "newz",
                             "steps": [{"id": "hello", "type": "send", "template": "news"}]});
    let (status, body) = app
        .admin(Method::PUT, "/v1/journeys/welcome", Some(journey.clone()))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("journey_invalid")),
        "{body}"
    );
    journey["topic"] = json!("news");
    let (status, body) = app
        .admin(Method::PUT, "/v1/journeys/welcome", Some(journey))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn expired_forged_and_erased_links_show_nothing() {
    let (app, maildir) = app_with_customer().await;
    broadcast(&app, "news").await;
    let path = preference_path(maildir.path());

    // One character of the signature changed (the middle of the tag, so the token still
    // decodes and only the signature is wrong).
    let mut forged: Vec<char> = path.chars().collect();
    let at = forged.len() - 8;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let (status, html) = page(&app, &forged).await;
    assert_eq!(status, 404);
    assert!(!html.contains("rosa@example.com"));
    let (status, _) = page(&app, &format!("{forged}/export")).await;
    assert_eq!(status, 404);

    // The link lives 60 days by default.
    app.clock.advance(TimeDelta::days(59));
    assert_eq!(page(&app, &path).await.0, 200);
    app.clock.advance(TimeDelta::days(2));
    let (status, html) = page(&app, &path).await;
    assert_eq!(status, 410);
    assert!(html.contains("expired") && !html.contains("rosa@example.com"));
    assert_eq!(page(&app, &format!("{path}/export")).await.0, 410);
}

#[tokio::test]
async fn after_erasure_the_link_shows_nothing() {
    let (app, maildir) = app_with_customer().await;
    broadcast(&app, "news").await;
    let path = preference_path(maildir.path());
    let (status, _) = app.admin(Method::DELETE, "/v1/profiles/rosa", None).await;
    assert_eq!(status, 200);
    let (status, html) = page(&app, &path).await;
    assert_eq!(status, 404);
    assert!(html.contains("We hold no data about you") && !html.contains("rosa@example.com"));
}
