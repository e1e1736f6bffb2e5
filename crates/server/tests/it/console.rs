//! The console over HTTP: pages per role, the segment editor's checks, broadcasts, escaping of
//! stored input, forged forms, long inputs, and work kept across an expired session. The same
//! pages in a real browser are in `console_browser`.

use reqwest::Method;
use serde_json::json;

use crate::security::{hidden_csrf, set_cookie};
use crate::support::TestApp;

/// A person logged in to the console: their session cookie and its CSRF token.
pub(crate) struct Console {
    client: reqwest::Client,
    base: String,
    pub session: String,
    pub csrf: String,
}

impl Console {
    pub async fn login(app: &TestApp, key: &str) -> Console {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client
            .get(format!("{}/console/login", app.base))
            .send()
            .await
            .unwrap();
        let (token, _) = set_cookie(&page, "__Host-missive_login").unwrap();
        let csrf = hidden_csrf(&page.text().await.unwrap());
        let res = client
            .post(format!("{}/console/login", app.base))
            .header("cookie", format!("__Host-missive_login={token}"))
            .form(&[("key", key), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 303);
        let session = set_cookie(&res, "__Host-missive_session").unwrap().0;
        let mut c = Console {
            client,
            base: app.base.clone(),
            session,
            csrf: String::new(),
        };
        let (_, home) = c.get("/console").await;
        c.csrf = hidden_csrf(&home);
        c
    }

    /// A page that redirects: its status and where to.
    pub async fn redirect(&self, path: &str) -> (u16, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("__Host-missive_session={}", self.session))
            .send()
            .await
            .unwrap();
        let to = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status().as_u16(), to.unwrap_or_default())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("__Host-missive_session={}", self.session))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Posts a form with the session's token; answers the status, the page and where it
    /// redirects.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let mut form: Vec<(&str, &str)> = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("__Host-missive_session={}", self.session))
            .form(form)
            .send()
            .await
            .unwrap();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status().as_u16(), res.text().await.unwrap(), location)
    }
}

/// A shop with a few customers, one with a hostile name, and orders.
pub(crate) async fn shop(app: &TestApp) {
    let mut batch = Vec::new();
    for i in 0..6 {
        batch.push(json!({"type": "identify", "userId": format!("u{i}"),
            "traits": {"email": format!("c{i}@example.com"), "first_name": format!("Customer {i}")},
            "context": {"consent": {"email_marketing": true}}}));
        for k in 0..i {
            batch.push(
                json!({"type": "track", "userId": format!("u{i}"), "event": "Order Completed",
                "messageId": format!("o-{i}-{k}"), "properties": {"revenue": 40 + k}}),
            );
        }
    }
    batch.push(json!({"type": "identify", "userId": "mallory",
        "traits": {"email": "mallory@example.com", "first_name": "<script>alert(1)</script><img src=x onerror=alert(2)>"}}));
    let (status, body) = app.post("/v1/batch", json!({"batch": batch})).await;
    assert_eq!(status, 200, "{body}");
    app.sync().await;
}

#[tokio::test]
async fn each_role_sees_its_pages_and_an_analyst_no_personal_data() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let analyst = Console::login(&app, &app.key_of_role("analyst").await).await;
    let marketer = Console::login(&app, &app.key_of_role("marketer").await).await;
    let officer = Console::login(&app, &app.key_of_role("privacy_officer").await).await;

    let (status, profile_url) = marketer.redirect("/console/profiles?q=c3%40example.com").await;
    assert_eq!(status, 303);
    assert!(profile_url.starts_with("/console/profiles/prf_"), "{profile_url}");
    let (status, page) = marketer.get(&profile_url).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("c3@example.com") && page.contains("Order Completed"),
        "{page}"
    );
    assert!(page.contains("email_marketing"), "consent is shown");

    // The analyst is refused the profile, and the page carries no address.
    for path in [profile_url.as_str(), "/console/profiles?q=c3%40example.com"] {
        let (status, page) = analyst.get(path).await;
        assert_eq!(status, 403, "{path}");
        assert!(!page.contains("c3@example.com"), "{page}");
        assert!(page.contains("pseudonymized"), "{page}");
    }
    // The analyst reads the overview and the segment list, without a link to change them.
    let (status, page) = analyst.get("/console").await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("href=\"/console/profiles\""),
        "no Profiles link for analysts"
    );
    let (status, page) = analyst.get("/console/segments").await;
    assert_eq!(status, 200);
    assert!(!page.contains("New segment"), "{page}");
    let (status, _) = analyst.get("/console/segments/new").await;
    assert_eq!(status, 403);
    let (status, _, _) = analyst
        .post(
            "/console/segments/save",
            &[("name", "x"), ("expression", "orders.count >= 1")],
        )
        .await;
    assert_eq!(status, 403);

    // The privacy officer reads the audit log: the marketer's profile view is in it, by id.
    let (status, page) = officer.get("/console/audit").await;
    assert_eq!(status, 200);
    let id = profile_url.trim_start_matches("/console/profiles/");
    assert!(
        page.contains(&format!("profile:{id}")) && page.contains("console.profile"),
        "{page}"
    );
    let (status, _) = marketer.get("/console/audit").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_overview_charts_activity_from_the_events() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let marketer = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (status, page) = marketer.get("/console?range=24h").await;
    assert_eq!(status, 200, "{page}");
    // 15 orders of 40 + k: revenue 40·15 + (0+0+1+0+1+2+…) = 600 + 20 = 620.
    assert!(page.contains("<div class=\"value\">15</div>"), "orders: {page}");
    assert!(page.contains("620.00"), "revenue: {page}");
    assert!(
        page.contains("<div class=\"label\">Profiles</div><div class=\"value\">7</div>"),
        "profiles: {page}"
    );
    assert!(page.contains("<svg") && page.contains("role=\"img\""), "charts");
    let (status, _) = marketer.get("/console?range=1y").await;
    assert_eq!(status, 400, "an unknown range is refused");
}

#[tokio::test]
async fn the_segment_editor_shows_errors_where_they_are_counts_and_saves() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;

    let (status, page, _) = c
        .post(
            "/console/segments/check",
            &[("name", "buyers"), ("expression", "orders.count >=\n  oops(")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Line 2, column"), "{page}");
    assert!(
        page.contains("<pre class=\"source\">  oops("),
        "the line is shown: {page}"
    );
    assert!(
        page.contains("orders.count &gt;=\n  oops(</textarea>"),
        "the draft is kept: {page}"
    );

    let (status, page, _) = c
        .post(
            "/console/segments/check",
            &[("name", "buyers"), ("expression", "orders.count >= 3")],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<strong>3</strong> of 7 profiles match now."),
        "{page}"
    );

    // The script's live check answers with the panel alone.
    let (status, fragment, _) = c
        .post(
            "/console/segments/check",
            &[
                ("name", "buyers"),
                ("expression", "orders.count >= 3"),
                ("fragment", "1"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(fragment.starts_with("<p class=\"alert ok\""), "{fragment}");

    let (status, _, location) = c
        .post(
            "/console/segments/save",
            &[("name", "buyers"), ("expression", "orders.count >= 3")],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/segments?saved=buyers"))
    );
    let (_, list) = c.get("/console/segments?saved=buyers").await;
    assert!(list.contains("Segment buyers is saved"), "{list}");
    assert!(list.contains("<td class=\"num\">3</td>"), "members: {list}");

    // A name the engine refuses keeps the draft, with the reason.
    let (status, page, _) = c
        .post(
            "/console/segments/save",
            &[("name", " "), ("expression", "orders.count >= 1")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("Not saved: invalid segment name: it must not be empty"),
        "{page}"
    );
    assert!(page.contains("orders.count &gt;= 1</textarea>"));

    // Too long: a clear message, nothing compiled.
    let long = "orders.count >= 1 and ".repeat(2_000);
    let (status, page, _) = c
        .post(
            "/console/segments/check",
            &[("name", "big"), ("expression", &long)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("at most 20000 are taken"),
        "{}",
        &page[..500.min(page.len())]
    );
}

#[tokio::test]
async fn stored_html_is_shown_escaped_everywhere() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (_, page) = c.get("/console/profiles?q=mallory").await;
    let id = app.profile("mallory").await["id"].as_str().unwrap().to_owned();
    let (status, page2) = c.get(&format!("/console/profiles/{id}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page2.contains("<script>alert(1)") && !page2.contains("<img src=x"),
        "{page2}"
    );
    assert!(page2.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page2}");

    // A segment named with markup is saved as written and shown escaped, its link encoded.
    let name = "<b onmouseover=alert(3)>x</b>";
    let (status, _, _) = c
        .post(
            "/console/segments/save",
            &[("name", name), ("expression", "orders.count >= 1")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, list) = c.get("/console/segments").await;
    assert!(!list.contains("<b onmouseover"), "{list}");
    assert!(
        list.contains("&lt;b onmouseover=alert(3)&gt;x&lt;/b&gt;"),
        "{list}"
    );
    assert!(
        list.contains("href=\"/console/segments/edit/%3Cb%20onmouseover%3Dalert%283%29%3Ex%3C%2Fb%3E\""),
        "{list}"
    );
    let (status, page) = c
        .get("/console/segments/edit/%3Cb%20onmouseover%3Dalert%283%29%3Ex%3C%2Fb%3E")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("value=\"&lt;b onmouseover=alert(3)&gt;x&lt;/b&gt;\""),
        "{page}"
    );
}

#[tokio::test]
async fn forged_forms_are_refused_and_expired_sessions_keep_the_work() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (status, page, _) = c
        .post_raw(
            "/console/segments/save",
            &[
                ("csrf", &"f".repeat(64)),
                ("name", "forged"),
                ("expression", "orders.count >= 1"),
            ],
        )
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("security token does not match"), "{page}");
    let (_, list) = c.get("/console/segments").await;
    assert!(!list.contains("forged"), "nothing saved");

    // The session ends (a logout elsewhere) while a segment is being written.
    let gone = Console {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: app.base.clone(),
        session: "0".repeat(64),
        csrf: c.csrf.clone(),
    };
    // A hostile page posting in the person's name arrives without the session (SameSite):
    // refused outright, never kept to be offered back after a login.
    let res = gone
        .client
        .post(format!("{}/console/templates/save", app.base))
        .header("sec-fetch-site", "cross-site")
        .form(&[("name", "welcome"), ("subject", "Phish"), ("body", "<p>x</p>")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("sent from another site") && !page.contains("kept_body"),
        "{page}"
    );
    let draft = "orders.count >= 2 and traits.first_name exists";
    let (status, page, _) = gone
        .post(
            "/console/segments/save",
            &[("name", "kept"), ("expression", draft)],
        )
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("what you were sending is kept"), "{page}");
    assert!(
        page.contains("name=\"kept_action\" value=\"/console/segments/save\""),
        "{page}"
    );
    // Logging in from that page brings the work back, to send again with the new token.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = set_cookie_from_page(&app, &login).await;
    let kept_body = html_attr(&page, "kept_body");
    let res = login
        .post(format!("{}/console/login", app.base))
        .header("cookie", format!("__Host-missive_login={}", token.0))
        .form(&[
            ("key", app.key_of_role("marketer").await.as_str()),
            ("csrf", token.1.as_str()),
            ("kept_action", "/console/segments/save"),
            ("kept_body", kept_body.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("Send it again"), "{page}");
    assert!(page.contains("action=\"/console/segments/save\""), "{page}");
    assert!(
        page.contains("value=\"orders.count &gt;= 2 and traits.first_name exists\""),
        "the draft is in the form: {page}"
    );

    // A kept form may only go back to a console page.
    let res = login
        .post(format!("{}/console/login", app.base))
        .header("cookie", format!("__Host-missive_login={}", token.0))
        .form(&[
            ("key", app.key_of_role("marketer").await.as_str()),
            ("csrf", token.1.as_str()),
            ("kept_action", "https://evil.example/steal"),
            ("kept_body", "a=b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/console");
}

/// A fresh login page's double-submit token: (cookie, hidden field).
async fn set_cookie_from_page(app: &TestApp, client: &reqwest::Client) -> (String, String) {
    let page = client
        .get(format!("{}/console/login", app.base))
        .send()
        .await
        .unwrap();
    let (token, _) = set_cookie(&page, "__Host-missive_login").unwrap();
    let csrf = hidden_csrf(&page.text().await.unwrap());
    (token, csrf)
}

/// The value of the hidden input named `name`, unescaped.
fn html_attr(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).unwrap() + marker.len();
    let end = page[at..].find('"').unwrap();
    page[at..at + end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn a_broadcast_is_created_followed_and_paused_from_the_console() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let (status, body) = app
        .admin(
            Method::PUT,
            "/v1/templates/news",
            Some(json!({"subject": "News", "layout": "html", "body": "<html><body><p>Hello</p></body></html>"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "buyers", "expression": "orders.count >= 1"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (_, page) = c.get("/console/broadcasts").await;
    assert!(
        page.contains("<option value=\"news\">") && page.contains("<option value=\"buyers\">"),
        "{page}"
    );

    let (status, page, _) = c
        .post(
            "/console/broadcasts",
            &[
                ("template", "news"),
                ("segment", "buyers"),
                ("send_at", "someday"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Send at must be a date and time"), "{page}");
    assert!(
        page.contains("<option value=\"news\" selected>"),
        "the form keeps its values: {page}"
    );

    let (status, _, location) = c
        .post(
            "/console/broadcasts",
            &[
                ("template", "news"),
                ("segment", "buyers"),
                ("send_at", "2099-01-01T09:00"),
                ("rate", "10"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    let (status, page) = c.get(&location).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("scheduled") && page.contains("http-equiv=\"refresh\""),
        "{page}"
    );
    let (status, _, _) = c.post(&format!("{location}/pause"), &[]).await;
    assert_eq!(status, 303);
    let (_, page) = c.get(&location).await;
    assert!(page.contains(">paused<") && page.contains(">Resume<"), "{page}");
    let (status, page, _) = c.post(&format!("{location}/pause"), &[]).await;
    assert_eq!(status, 409, "{page}");
    let (status, _, _) = c.post(&format!("{location}/explode"), &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_template_is_edited_and_previewed_for_a_person_in_a_sandboxed_frame() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let body = "<html><body><p>Hello {{ customer.first_name }}</p><script>alert(1)</script></body></html>";
    let (status, page, location) = c
        .post(
            "/console/templates/save",
            &[
                ("name", "welcome"),
                ("layout", "html"),
                ("subject", "Welcome, {{ customer.first_name }}"),
                ("body", body),
            ],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/templates?saved=welcome")),
        "{page}"
    );
    let (_, list) = c.get("/console/templates").await;
    assert!(list.contains("Welcome, {{ customer.first_name }}"), "{list}");

    // A Liquid mistake keeps the draft, with the reason.
    let (status, page, _) = c
        .post(
            "/console/templates/save",
            &[
                ("name", "broken"),
                ("layout", "html"),
                ("subject", "Hi"),
                ("body", "<p>{% if x %}never closed</p>"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Not saved:"), "{page}");
    assert!(
        page.contains("{% if x %}never closed"),
        "the draft is kept: {page}"
    );

    let (status, page) = c
        .get("/console/templates/edit/welcome?profile=c2%40example.com")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Welcome, Customer 2"), "subject rendered: {page}");
    assert!(page.contains("sandbox=\"\""), "{page}");
    assert!(page.contains("customer.first_name"), "data used: {page}");
    let src = {
        let at = page.find("src=\"/console/templates/render/").unwrap() + 5;
        page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&")
    };
    // The frame's document: the e-mail, under its own policy.
    let res = reqwest::Client::new()
        .get(format!("{}{src}", app.base))
        .header("cookie", format!("__Host-missive_session={}", c.session))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("sandbox") && csp.contains("frame-ancestors 'self'") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = res.text().await.unwrap();
    assert!(html.contains("Hello Customer 2"), "{html}");

    // Previews show personal data: not to analysts.
    let analyst = Console::login(&app, &app.key_of_role("analyst").await).await;
    let (status, page) = analyst
        .get("/console/templates/edit/welcome?profile=c2%40example.com")
        .await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("Customer 2") && page.contains("which your role does not read"),
        "{page}"
    );
    let (status, _) = analyst.get(&src).await;
    assert_eq!(status, 403);
}

/// A page's table row: its header cell and the numbers after it, as the console writes them.
fn row(head: &str, numbers: &[u64]) -> String {
    let cells: String = numbers
        .iter()
        .map(|n| format!("<td class=\"num\">{n}</td>"))
        .collect();
    format!("<th scope=\"row\">{head}</th>{cells}")
}

#[tokio::test]
async fn experiments_and_models_show_what_the_engine_reports_escaped() {
    let (app, _maildir) = crate::sending::sending_app().await;
    crate::sending::customers(&app, 20, true).await;
    let marketer = Console::login(&app, &app.key_of_role("marketer").await).await;

    // Nothing yet: said plainly, with how to make one.
    let (status, page) = marketer.get("/console/experiments").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("No experiments yet.") && page.contains("POST /v1/experiments"),
        "{page}"
    );
    let (status, page) = marketer.get("/console/models").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("No models yet.") && page.contains("Not trained since the server started"),
        "{page}"
    );

    // A holdout with markup in its hypothesis and in a variant's name, sent by a broadcast.
    let (status, e) = app
        .admin(
            Method::POST,
            "/v1/experiments",
            Some(json!({
                "name": "news-holdout", "hypothesis": "<script>alert(1)</script>",
                "varies": "holdout", "primary_metric": "conversion",
                "variants": [{"name": "sent", "weight": 50}, {"name": "<i>held</i>", "weight": 50, "holdout": true}]
            })),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    let (status, e) = app
        .admin(Method::POST, "/v1/experiments/news-holdout/start", None)
        .await;
    assert_eq!(status, 200, "{e}");
    let (status, b) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro", "experiment": "news-holdout"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    crate::sending::step(&app).await;
    // Six of them buy an hour later: conversions in both arms (counted after the exposure).
    app.clock.advance(chrono::TimeDelta::hours(1));
    for i in 0..6 {
        let (status, _) = app
            .post(
                "/v1/track",
                json!({"userId": format!("c{i}"), "event": "Order Completed",
                       "properties": {"order_id": format!("o{i}"), "revenue": 30}}),
            )
            .await;
        assert_eq!(status, 200);
    }
    app.sync().await;

    let (status, r) = app.get("/v1/experiments/news-holdout/results").await;
    assert_eq!(status, 200, "{r}");
    let figures = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    let variants = r["variants"].as_array().unwrap();
    assert_eq!(
        variants.iter().map(|v| figures(v, "recipients")).sum::<u64>(),
        20,
        "{r}"
    );
    assert_eq!(
        variants.iter().map(|v| figures(v, "conversions")).sum::<u64>(),
        6,
        "{r}"
    );

    let (status, list) = marketer.get("/console/experiments").await;
    assert_eq!(status, 200);
    assert!(
        list.contains("href=\"/console/experiments/news-holdout\"") && list.contains(">running<"),
        "{list}"
    );
    assert!(
        !list.contains("<i>held</i>") && list.contains("&lt;i&gt;held&lt;/i&gt;"),
        "{list}"
    );

    let (status, page) = marketer.get("/console/experiments/news-holdout").await;
    assert_eq!(status, 200, "{page}");
    // Each variant's exposed, delivered, opened, clicked and converted people, as the API says.
    for (v, head) in [
        (&variants[0], "sent <span class=\"badge idle\">control</span>"),
        (&variants[1], "&lt;i&gt;held&lt;/i&gt;"),
    ] {
        let want = row(
            head,
            &["recipients", "delivered", "opens", "clicks", "conversions"].map(|k| figures(v, k)),
        );
        assert!(page.contains(&want), "{want} in {page}");
    }
    assert_eq!(
        figures(&variants[1], "delivered"),
        0,
        "the holdout is sent nothing"
    );
    assert!(
        page.contains(r["verdict"].as_str().unwrap_or("no verdict")),
        "the engine's verdict: {page}"
    );
    // The rates drawn with their intervals, the engine's lift chart, nothing inline.
    assert!(
        page.contains("class=\"whisker\"") && page.contains("95 % interval"),
        "{page}"
    );
    assert!(page.contains("src=\"data:image/svg+xml;base64,"), "{page}");
    assert!(
        !page.contains("<script>alert(1)") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("<i>held</i>") && !page.contains(" style="),
        "{page}"
    );
    assert_eq!(
        page.matches("<script").count(),
        1,
        "only the console's own script"
    );

    // A name that is not an experiment's is said back, escaped.
    let (status, page) = marketer
        .get("/console/experiments/%3Cscript%3Ealert(3)%3C%2Fscript%3E")
        .await;
    assert_eq!(status, 404);
    assert!(
        !page.contains("<script>alert(3)")
            && page.contains("No experiment is named &quot;&lt;script&gt;alert(3)"),
        "{page}"
    );

    // A clustering model of the people who consent to profiling: its sizes as the API says.
    for i in 0..20 {
        let (status, _) = app
            .post(
                "/v1/identify",
                json!({"userId": format!("c{i}"), "traits": {"consent": {"profiling": true}}}),
            )
            .await;
        assert_eq!(status, 200);
    }
    app.sync().await;
    let (status, trained) = app
        .admin(
            Method::POST,
            "/v1/models/groups/train",
            Some(json!({"kind": "cluster", "k": 2})),
        )
        .await;
    assert_eq!(status, 201, "{trained}");
    let clusters = trained["metrics"]["clusters"].as_array().unwrap();
    assert_eq!(
        clusters.iter().map(|c| c["size"].as_u64().unwrap()).sum::<u64>(),
        20,
        "{trained}"
    );
    let (status, page) = marketer.get("/console/models").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains("No models yet.") && page.contains(">groups "),
        "{page}"
    );
    for c in clusters {
        let want = row(
            &format!("Cluster {}", c["cluster"]),
            &[c["size"].as_u64().unwrap()],
        );
        assert!(page.contains(&want), "{want} in {page}");
    }
    assert!(
        page.contains(&format!(
            "{:.3}",
            trained["metrics"]["silhouette"].as_f64().unwrap()
        )),
        "the silhouette: {page}"
    );
    assert!(!page.contains(" style="), "{page}");

    // Analysts read reports: both pages, and both in their navigation.
    let analyst = Console::login(&app, &app.key_of_role("analyst").await).await;
    for path in ["/console/experiments/news-holdout", "/console/models"] {
        let (status, page) = analyst.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            page.contains("href=\"/console/experiments\"") && page.contains("href=\"/console/models\""),
            "{page}"
        );
    }
}

#[tokio::test]
async fn a_profile_page_lists_what_the_recommender_would_give_now() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (_, customer) = c.redirect("/console/profiles?q=c3%40example.com").await;
    let (status, page) = c.get(&customer).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<h2>Recommendations</h2>") && page.contains("No catalogue:"),
        "{page}"
    );

    let product = |id: &str, title: &str, category: &str| json!({"id": id, "title": title, "categories": [category], "price": 50, "in_stock": true});
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/catalog/products",
            Some(json!([
                product("dress-0", "Linen dress", "Dresses"),
                product("dress-1", "Silk dress", "Dresses"),
                product("dress-2", "<b>Wrap</b> dress", "Dresses"),
                product("boot-0", "Chelsea boot", "Boots"),
            ])),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    // People who view dresses together, and some who view boots; "fan" viewed two dresses.
    let view = |user: String, product: &str| json!({"type": "track", "userId": user, "event": "Product Viewed", "properties": {"product_id": product}});
    let mut batch = Vec::new();
    for u in 0..12 {
        let user = format!("p{u}");
        batch.push(
            json!({"type": "identify", "userId": user, "traits": {"consent": {"personalization": true}}}),
        );
        if u % 3 == 0 {
            batch.push(view(user, "boot-0"));
        } else {
            for d in ["dress-0", "dress-1", "dress-2"] {
                batch.push(view(user.clone(), d));
            }
        }
    }
    batch.push(json!({"type": "identify", "userId": "fan", "traits": {"email": "fan@example.com", "consent": {"personalization": true}}}));
    batch.push(view("fan".into(), "dress-0"));
    batch.push(view("fan".into(), "dress-1"));
    let (status, body) = app.post("/v1/batch", json!({"batch": batch})).await;
    assert_eq!(status, 200, "{body}");
    app.sync().await;

    // Without personalization consent: nothing from the person's history, and why.
    let (_, page) = c.get(&customer).await;
    assert!(page.contains("No personalization consent"), "{page}");

    let (_, fan) = c.redirect("/console/profiles?q=fan").await;
    let (_, page) = c.get(&fan).await;
    assert!(page.contains("No learned model is served"), "{page}");
    let (status, res) = app.admin(Method::POST, "/v1/recommendations/train", None).await;
    assert_eq!(status, 200, "{res}");
    let (status, api) = app.get("/v1/profiles/fan/recommendations?strategy=for_you").await;
    assert_eq!(status, 200, "{api}");
    let items = api["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{api}");
    let (status, page) = c.get(&fan).await;
    assert_eq!(status, 200);
    // The same list as the API's, in its order, each with its score and what chose it.
    let mut from = 0;
    for item in items {
        let title = item["title"]
            .as_str()
            .unwrap()
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let want = format!(
            "<th scope=\"row\">{title} <code>{}</code></th><td class=\"num\">{:.3}</td><td>{}</td>",
            item["product_id"].as_str().unwrap(),
            item["score"].as_f64().unwrap() as f32,
            item["source"].as_str().unwrap()
        );
        let at = page[from..]
            .find(&want)
            .unwrap_or_else(|| panic!("{want} after {from} in {page}"));
        from += at + want.len();
    }
    assert!(
        page.contains("dress-2") && !page.contains("<b>Wrap</b>"),
        "{page}"
    );
    assert!(page.contains("Learned model version 1"), "{page}");
}
