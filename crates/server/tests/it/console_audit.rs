//! The rendering audit over HTTP: a template that breaks Outlook, Gmail and dark mode rules is
//! rendered for a real person; the findings name each client; every link's target is asked
//! for its status on a real local server (200, 404, a redirect reported and not followed, a
//! server refusing HEAD), missive's own links are not followed; and, where Chromium is
//! installed (always in CI, which sets MISSIVE_TEST_CHROMEDRIVER), three screenshots come
//! back as real PNGs of the widths asked.

use axum::routing::get;
use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::console::{Console, shop};
use crate::support::TestApp;

/// A site with a page, a missing page, a redirect and a server that refuses HEAD.
async fn site() -> String {
    let app = axum::Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/moved",
            get(|| async { (axum::http::StatusCode::MOVED_PERMANENTLY, [("location", "/ok")]) }),
        )
        .route(
            "/no-head",
            axum::routing::head(|| async { axum::http::StatusCode::METHOD_NOT_ALLOWED })
                .get(|| async { "fine by GET" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn screenshots(page: &str) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    for part in page.split("src=\"data:image/png;base64,").skip(1) {
        let b64 = &part[..part.find('"').unwrap()];
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let distinct: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()]
            .chunks(info.color_type.samples())
            .collect();
        assert!(distinct.len() > 5, "a screenshot with content, not a blank page");
        sizes.push((info.width, info.height));
    }
    sizes
}

#[tokio::test]
async fn the_rendering_audit_finds_client_problems_checks_links_and_takes_screenshots() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let site = site().await;
    let body = format!(
        "<html><head><style>#hero {{ color: #333 }}</style></head><body>\
         <div style=\"display:flex;background-image:url(https://cdn.example/hero.jpg)\">\
         <p style=\"color:#000\">Hello {{{{ customer.first_name }}}}</p></div>\
         <a href=\"{site}/ok\" style=\"padding:12px 20px;background:#4338ca;color:#fff\">Shop now</a>\
         <a href=\"{site}/gone\">Old page</a> <a href=\"{site}/moved\">Moved</a> <a href=\"{site}/no-head\">Picky</a>\
         <a href=\"mailto:help@shop.example\">Write to us</a> <a href=\"http://169.254.169.254/latest/meta-data\">Meta</a>\
         <a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a></body></html>"
    );
    let template = json!({"subject": "Hi {{ customer.first_name }}", "layout": "html", "body": body});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/news", Some(template)).await;
    assert_eq!(status, 200, "{res}");

    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (status, page) = c.get("/console/templates/audit/news").await;
    assert_eq!(status, 200);
    assert!(page.contains("Audit for a person"), "asks whom for: {page}");

    let (status, page) = c
        .get("/console/templates/audit/news?profile=c3%40example.com")
        .await;
    assert_eq!(status, 200, "{page}");
    for code in [
        "outlook_background_image",
        "outlook_unsupported_layout",
        "outlook_button_without_table",
        "dark_mode_undeclared",
        "dark_mode_text_without_background",
    ] {
        assert!(page.contains(&format!("<code>{code}</code>")), "{code}: {page}");
    }
    assert!(
        page.contains("Outlook desktop (Windows)") && page.contains("Dark mode"),
        "{page}"
    );
    let row = |href: &str| {
        let at = page
            .find(&format!("<code class=\"url\">{href}</code>"))
            .unwrap_or_else(|| panic!("{href} listed: {page}"));
        page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(
        row(&format!("{site}/ok")).contains(">200<"),
        "{}",
        row(&format!("{site}/ok"))
    );
    assert!(row(&format!("{site}/gone")).contains(">404<"));
    let moved = row(&format!("{site}/moved"));
    assert!(
        moved.contains(">301<") && moved.contains("→ <code class=\"url\">/ok</code>"),
        "{moved}"
    );
    assert!(
        row(&format!("{site}/no-head")).contains(">200<"),
        "GET after a refused HEAD"
    );
    assert!(row("mailto:help@shop.example").contains("not a web address"));
    assert!(
        row("http://169.254.169.254/latest/meta-data").contains(">refused<"),
        "an internal address written as an IP is never asked: {}",
        row("http://169.254.169.254/latest/meta-data")
    );
    assert!(
        page.contains("missive&#39;s own link: not followed")
            || page.contains("missive's own link: not followed"),
        "{page}"
    );
    assert!(page.contains("Shop now"), "the words on a link");

    let chromium_required = std::env::var_os("MISSIVE_TEST_CHROMEDRIVER").is_some();
    let shots = screenshots(&page);
    if chromium_required || missive_server::screenshots::Chromium::find().is_some() {
        assert_eq!(
            shots.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![375, 375, 800],
            "phone, dark mode and desktop: {page:.2000}"
        );
    } else {
        assert!(page.contains("Chromium is not installed on the server"), "{page}");
        eprintln!("chromium not installed: the screenshots of the rendering audit were not taken");
    }

    // Analysts do not fill templates with a person's data.
    let analyst = Console::login(&app, &app.key_of_role("analyst").await).await;
    let (status, page) = analyst
        .get("/console/templates/audit/news?profile=c3%40example.com")
        .await;
    assert_eq!(status, 403);
    assert!(!page.contains("c3@example.com"));
    // A missing person or template says so.
    let (status, page) = c
        .get("/console/templates/audit/news?profile=nobody%40example.com")
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Nothing to audit"), "{page}");
}

#[tokio::test]
async fn the_template_page_shows_which_block_each_segment_gets() {
    let app = TestApp::spawn().await;
    crate::content::load_examples(&app).await;
    let c = Console::login(&app, &app.key_of_role("analyst").await).await;
    let (status, page) = c.get("/console/templates/edit/cart").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Who gets which block"), "{page}");
    assert!(
        page.contains("<caption>Slot <code>hero</code></caption>"),
        "{page}"
    );
    assert!(
        page.contains("<th scope=\"row\">vip</th><td>hero-vip</td><td></td>"),
        "{page}"
    );
    assert!(
        page.contains("<th scope=\"row\">Everyone else</th><td>hero-generic</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>offer-loyalty</td>"),
        "the offer slot's expression block: {page}"
    );
}

#[tokio::test]
async fn the_overview_names_domains_refusing_mail_and_templates_that_fail() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    let profile =
        missive_core::ProfileId::parse(app.profile("c1@example.com").await["id"].as_str().unwrap()).unwrap();
    let now = app.engine.clock().now();
    let failed =
        |id: &str, template: &str, recipient: Option<&str>, detail: &str| missive_store::OutboxMessage {
            id: id.into(),
            idempotency_key: format!("k-{id}"),
            profile_id: profile.clone(),
            template: template.into(),
            class: missive_core::MessageClass::Marketing,
            source: missive_core::MessageSource::Journey("welcome".into()),
            step: None,
            context: json!({}),
            status: missive_store::OutboxStatus::Failed,
            attempts: 1,
            next_attempt_at: now - chrono::TimeDelta::hours(2),
            created_at: now - chrono::TimeDelta::hours(3),
            sent_at: None,
            recipient: recipient.map(str::to_owned),
            detail: Some(detail.into()),
        };
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (_, page) = c.get("/console").await;
    assert!(page.contains("Nothing needs attention."), "{page}");
    app.engine
        .store()
        .delivery()
        .commit_journey(missive_store::JourneyCommit {
            instances: vec![],
            outbox: vec![
                failed("m1", "news", Some("a@dead.example"), "550 5.1.2 domain not found"),
                failed("m2", "news", Some("b@dead.example"), "550 5.1.2 domain not found"),
                failed("m3", "<b>cart</b>", None, "render: the block \"hero\" failed"),
            ],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let (_, page) = c.get("/console").await;
    assert!(
        page.contains("<strong>dead.example</strong>: 2 message(s) refused for good in 7 days, e.g. <code>550 5.1.2 domain not found</code>"),
        "{page}"
    );
    assert!(
        page.contains("template <a href=\"/console/templates/edit/%3Cb%3Ecart%3C%2Fb%3E\">&lt;b&gt;cart&lt;/b&gt;</a>: 1 message(s) failed"),
        "{page}"
    );
    assert!(
        !page.contains("a@dead.example"),
        "addresses stay out of the overview"
    );
}
