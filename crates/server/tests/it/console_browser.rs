//! The console in a real browser (Debian's headless Chromium through chromedriver, as the
//! preference-centre test): a marketer logs in, builds a segment and sees its count as they
//! type, saves it, starts a broadcast and watches its page, finds a profile by e-mail; an
//! analyst is refused that profile. A screenshot of each page is taken, checked not to be
//! blank, and kept under `target/tmp/console-screenshots/` for a developer to look at.
//! `MISSIVE_TEST_CHROMEDRIVER` is chromedriver's URL; `.ci/run` sets it.

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::json;

use crate::browser::{browser_with, press, wait_for_text};
use crate::console::shop;
use crate::support::TestApp;

const SHOTS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/console-screenshots");

/// Saves a screenshot of the page as `name.png` and checks it is not blank: a page with
/// content has many colours (anti-aliased text), and text is dark pixels on a light ground.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::create_dir_all(SHOTS).unwrap();
    std::fs::write(format!("{SHOTS}/{name}.png"), &png).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut dark = 0usize;
    for px in pixels.chunks(channels) {
        colours.insert((px[0], px[1], px[2]));
        if u32::from(px[0]) + u32::from(px[1]) + u32::from(px[2]) < 200 {
            dark += 1;
        }
    }
    assert!(
        colours.len() > 50,
        "{name}: only {} colours: a blank page?",
        colours.len()
    );
    assert!(dark > 500, "{name}: {dark} dark pixels: no text?");
}

async fn field(c: &Client, id: &str) -> fantoccini::elements::Element {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
}

async fn log_in(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    field(c, "key").await.send_keys(key).await.unwrap();
    press(c, "Log in").await;
    wait_for_text(c, "Log out").await;
}

#[tokio::test]
async fn a_marketer_works_in_the_console_in_chromium() {
    let Ok(driver) = std::env::var("MISSIVE_TEST_CHROMEDRIVER") else {
        eprintln!("MISSIVE_TEST_CHROMEDRIVER is not set: the browser test does not run (.ci/run sets it)");
        return;
    };
    let app = TestApp::spawn().await;
    shop(&app).await;
    let template = json!({"subject": "New in for you", "layout": "html",
        "body": "<html><body><p>Hello {{ customer.first_name }}</p></body></html>"});
    let (status, body) = app.admin(Method::PUT, "/v1/templates/news", Some(template)).await;
    assert_eq!(status, 200, "{body}");
    let marketer = app.key_of_role("marketer").await;
    let analyst = app.key_of_role("analyst").await;

    let c = browser_with(&driver, true).await;
    c.set_window_size(1360, 1000).await.unwrap();
    let session = c.clone();
    let base = app.base.clone();
    let result = tokio::spawn(async move {
        work(&session, &base, &marketer).await;
        // The analyst, in a fresh session.
        session.delete_all_cookies().await.unwrap();
        refused(&session, &base, &analyst).await;
    })
    .await;
    c.close().await.unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn work(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    screenshot(c, "01-login").await;
    log_in(c, base, key).await;
    let page = wait_for_text(c, "Revenue").await;
    assert!(page.contains("<svg"), "charts on the overview");
    screenshot(c, "02-overview").await;

    // A segment: the count appears as it is typed (the script), then it is saved (a form).
    c.goto(&format!("{base}/console/segments/new")).await.unwrap();
    field(c, "name").await.send_keys("repeat buyers").await.unwrap();
    field(c, "expression")
        .await
        .send_keys("orders.count >= 3")
        .await
        .unwrap();
    wait_for_text(c, "profiles match now").await;
    let panel = field(c, "check-result").await.text().await.unwrap();
    assert!(panel.contains("3 of 7 profiles match now."), "{panel}");
    screenshot(c, "03-segment-editor").await;
    // A mistake shows where it is.
    field(c, "expression").await.send_keys(" and (").await.unwrap();
    wait_for_text(c, "Line 1, column").await;
    screenshot(c, "04-segment-error").await;
    let expr = field(c, "expression").await;
    expr.clear().await.unwrap();
    expr.send_keys("orders.count >= 3").await.unwrap();
    press(c, "Save").await;
    wait_for_text(c, "Segment repeat buyers is saved").await;
    let table = c.find(Locator::Css("table")).await.unwrap().text().await.unwrap();
    assert!(table.contains("repeat buyers") && table.contains('3'), "{table}");
    screenshot(c, "05-segments").await;

    // A broadcast to it, and its page.
    c.goto(&format!("{base}/console/broadcasts")).await.unwrap();
    c.find(Locator::Css("#template option[value='news']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#segment option[value='repeat buyers']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    field(c, "rate").await.send_keys("5").await.unwrap();
    press(c, "Create broadcast").await;
    let page = wait_for_text(c, "Recipients").await;
    assert!(page.contains("Queued for sending"), "{page}");
    screenshot(c, "06-broadcast").await;
    press(c, "Pause").await;
    wait_for_text(c, ">paused<").await;
    press(c, "Resume").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.goto(&format!("{base}/console/broadcasts")).await.unwrap();
    wait_for_text(c, "repeat buyers").await;
    screenshot(c, "07-broadcasts").await;

    // The template, previewed for a person at desktop and mobile widths.
    c.goto(&format!("{base}/console/templates/edit/news"))
        .await
        .unwrap();
    field(c, "profile")
        .await
        .send_keys("c4@example.com")
        .await
        .unwrap();
    press(c, "Preview").await;
    // The h2 over the rendered preview (the form's label also starts "Preview for").
    wait_for_text(c, "<h2>Preview for").await;
    let frames = c.find_all(Locator::Css("iframe[sandbox]")).await.unwrap();
    assert_eq!(frames.len(), 2, "desktop and mobile");
    tokio::time::sleep(Duration::from_millis(500)).await;
    screenshot(c, "08-template-preview").await;

    // A profile found by e-mail.
    c.goto(&format!("{base}/console/profiles")).await.unwrap();
    field(c, "q").await.send_keys("c4@example.com").await.unwrap();
    press(c, "Find").await;
    let page = wait_for_text(c, "Mail goes to").await;
    assert!(
        page.contains("c4@example.com") && page.contains("Order Completed"),
        "{page}"
    );
    screenshot(c, "09-profile").await;

    // Keyboard: the skip link is the first stop, and leads to the content.
    c.goto(&format!("{base}/console")).await.unwrap();
    let body = c.find(Locator::Css("body")).await.unwrap();
    body.send_keys("\u{E004}").await.unwrap();
    let active = c.active_element().await.unwrap();
    assert_eq!(active.text().await.unwrap(), "Skip to content");
}

async fn refused(c: &Client, base: &str, key: &str) {
    log_in(c, base, key).await;
    c.goto(&format!("{base}/console/profiles?q=c4%40example.com"))
        .await
        .unwrap();
    let page = wait_for_text(c, "Not for your role").await;
    assert!(!page.contains("c4@example.com"), "{page}");
    screenshot(c, "10-analyst-refused").await;
}

/// The admin's and privacy officer's pages, the journeys and the rendering audit, in Chromium.
#[tokio::test]
async fn journeys_privacy_keys_and_the_rendering_audit_work_in_chromium() {
    let Ok(driver) = std::env::var("MISSIVE_TEST_CHROMEDRIVER") else {
        eprintln!("MISSIVE_TEST_CHROMEDRIVER is not set: the browser test does not run (.ci/run sets it)");
        return;
    };
    let app = TestApp::spawn().await;
    shop(&app).await;
    let template = json!({"subject": "Your cart", "layout": "html",
        "body": "<html><body><table bgcolor=\"#ffffff\"><tr><td><h1 style=\"color:#111\">Still thinking, {{ customer.first_name }}?</h1>\
                 <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></td></tr></table></body></html>"});
    let (status, body) = app.admin(Method::PUT, "/v1/templates/cart", Some(template)).await;
    assert_eq!(status, 200, "{body}");
    let journey = json!({"trigger": {"event": "Product Added"}, "key": "properties.cart_id",
        "steps": [
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true, "timeout": "4h"},
            {"id": "vip", "type": "branch", "condition": "orders.count >= 3", "then": "exit", "else": "remind"},
            {"id": "remind", "type": "send", "template": "cart"}]});
    let (status, body) = app.admin(Method::PUT, "/v1/journeys/cart", Some(journey)).await;
    assert_eq!(status, 200, "{body}");
    for (user, cart) in [("u1", "a"), ("u2", "b"), ("u3", "c")] {
        let event = json!({"userId": user, "event": "Product Added", "properties": {"cart_id": cart}});
        assert_eq!(app.post("/v1/track", event).await.0, 200);
    }
    app.sync().await;
    assert_eq!(app.admin(Method::POST, "/v1/journeys/run", None).await.0, 200);
    let admin = app.key_of_role("admin").await;

    let c = browser_with(&driver, true).await;
    c.set_window_size(1360, 1000).await.unwrap();
    let session = c.clone();
    let base = app.base.clone();
    let result = tokio::spawn(async move { admin_pages(&session, &base, &admin).await }).await;
    c.close().await.unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn admin_pages(c: &Client, base: &str, key: &str) {
    log_in(c, base, key).await;
    c.goto(&format!("{base}/console/journeys/cart")).await.unwrap();
    let page = wait_for_text(c, "3 waiting").await;
    assert!(page.contains("<svg class=\"journey\""), "{page}");
    screenshot(c, "11-journey").await;
    // The editor checks and draws a change before it is saved.
    let def = field(c, "definition").await;
    let text = def.prop("value").await.unwrap().unwrap_or_default();
    def.clear().await.unwrap();
    def.send_keys(&text.replace("\"4h\"", "\"2h\"")).await.unwrap();
    press(c, "Check and draw").await;
    wait_for_text(c, "This journey is valid").await;
    screenshot(c, "12-journey-check").await;

    c.goto(&format!(
        "{base}/console/templates/audit/cart?profile=c4%40example.com"
    ))
    .await
    .unwrap();
    let page = wait_for_text(c, "Screenshots").await;
    assert!(page.contains("Dark mode"), "{page}");
    assert_eq!(
        c.find_all(Locator::Css("figure.shot img")).await.unwrap().len(),
        3,
        "phone, desktop and dark mode (Chromium is installed where this test runs)"
    );
    screenshot(c, "13-rendering-audit").await;

    c.goto(&format!("{base}/console/privacy")).await.unwrap();
    wait_for_text(c, "Consent across").await;
    field(c, "q").await.send_keys("c2@example.com").await.unwrap();
    press(c, "Find").await;
    wait_for_text(c, "Erase this person").await;
    screenshot(c, "14-privacy-request").await;

    c.goto(&format!("{base}/console/keys")).await.unwrap();
    wait_for_text(c, "Create a key").await;
    field(c, "label").await.send_keys("Ana, CRM team").await.unwrap();
    press(c, "Create").await;
    let page = wait_for_text(c, "shown this once").await;
    assert!(page.contains("Ana, CRM team"), "{page}");
    screenshot(c, "15-keys").await;

    for (path, text, name) in [
        ("/console/experiments", "Experiments", "16-experiments"),
        ("/console/models", "Models", "17-models"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        wait_for_text(c, text).await;
        screenshot(c, name).await;
    }
}
