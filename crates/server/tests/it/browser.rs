//! The preference centre in a real browser: Debian's headless Chromium driven through
//! WebDriver (chromedriver), with JavaScript switched off, as a person would use it from the
//! link in an e-mail. `MISSIVE_TEST_CHROMEDRIVER` is chromedriver's URL
//! (`http://127.0.0.1:9515`); `.ci/run` installs `chromium` and `chromium-driver` and sets it.
//! Without it the test says so and does nothing.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;

use crate::preferences::{app_with_customer, broadcast, preference_path};

pub(crate) async fn browser(url: &str) -> Client {
    browser_with(url, false).await
}

/// A headless Chromium session; with `javascript`, scripts run (the console's live checks).
pub(crate) async fn browser_with(url: &str, javascript: bool) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("MISSIVE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            // Without `javascript` the page must work with none: the browser runs none.
            "prefs": {"profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }},
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("chromedriver at {url} (MISSIVE_TEST_CHROMEDRIVER): {e}"))
}

/// Clicks the control a label names, as a person does.
pub(crate) async fn click_label(c: &Client, text: &str) {
    let xpath = format!("//label[normalize-space()={text:?}]");
    c.find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no label {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn checked(c: &Client, id: &str) -> bool {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.prop("checked").await.unwrap().as_deref() == Some("true")
}

pub(crate) async fn press(c: &Client, button: &str) {
    let xpath = format!("//button[normalize-space()={button:?}]");
    c.find(Locator::XPath(&xpath))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub(crate) async fn wait_for_text(c: &Client, text: &str) -> String {
    for _ in 0..50 {
        let source = c.source().await.unwrap();
        if source.contains(text) {
            return source;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {text:?}: {}", c.source().await.unwrap());
}

#[tokio::test]
async fn a_person_changes_their_preferences_in_chromium_without_javascript() {
    let Ok(driver) = std::env::var("MISSIVE_TEST_CHROMEDRIVER") else {
        eprintln!("MISSIVE_TEST_CHROMEDRIVER is not set: the browser test does not run (.ci/run sets it)");
        return;
    };
    let (app, maildir) = app_with_customer().await;
    broadcast(&app, "news").await;
    let path = preference_path(maildir.path());

    let c = browser(&driver).await;
    // Run in a task so that a failed assertion still closes the browser session (chromedriver
    // would otherwise keep Chromium running).
    let session = c.clone();
    let result = tokio::spawn(async move { use_the_page(&session, &app, &path).await }).await;
    c.close().await.unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn use_the_page(c: &Client, app: &crate::support::TestApp, path: &str) {
    {
        c.goto(&format!("{}{path}", app.base)).await.unwrap();
        assert_eq!(c.title().await.unwrap(), "Your e-mail preferences · missive");
        let heading = c.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
        assert_eq!(heading, "Your e-mail preferences");
        let held = c.find(Locator::Css("table")).await.unwrap().text().await.unwrap();
        assert!(
            held.contains("rosa@example.com") && held.contains("To send you e-mail."),
            "{held}"
        );

        // Every control is labelled: a label names each input by its id.
        let inputs = c
            .find_all(Locator::Css("input:not([type=hidden])"))
            .await
            .unwrap();
        assert!(inputs.len() >= 9, "4 purposes, 2 topics, 3 frequencies");
        for input in inputs {
            let id = input.attr("id").await.unwrap().expect("every input has an id");
            let label = c.find(Locator::Css(&format!("label[for='{id}']"))).await;
            assert!(label.is_ok(), "input #{id} has no label");
        }
        assert!(checked(c, "consent-email_marketing").await);
        assert!(!checked(c, "consent-profiling").await);

        click_label(
            c,
            "Use your purchases in statistical models that group customers and predict interest.",
        )
        .await;
        click_label(c, "Offers and sales").await;
        click_label(c, "At most one e-mail a month").await;
        assert!(checked(c, "consent-profiling").await);
        assert!(!checked(c, "topic-offers").await);
        press(c, "Save my choices").await;
        wait_for_text(c, "Your choices are saved").await;
        assert_eq!(
            c.title().await.unwrap(),
            "Your e-mail preferences: saved · missive"
        );
        assert!(
            checked(c, "consent-profiling").await,
            "the saved page shows the new choice"
        );
        assert!(checked(c, "frequency-monthly").await);
        assert!(!checked(c, "topic-offers").await);
        assert!(checked(c, "topic-news").await);

        // The download link serves the data as JSON.
        let link = c
            .find(Locator::LinkText("Download all data we hold about you (JSON)"))
            .await
            .unwrap();
        // The resolved URL, as the browser would follow it.
        let url = link.prop("href").await.unwrap().unwrap();
        assert!(url.starts_with(&app.base) && url.ends_with("/export"), "{url}");
        let doc: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        assert_eq!(doc["profile"]["traits"]["email_frequency"]["value"], "monthly");

        // The consent was recorded with the browser's evidence.
        let (_, consent) = app.admin(Method::GET, "/v1/profiles/rosa/consent", None).await;
        let evidence = &consent["consent"]["profiling"]["current"];
        assert_eq!(evidence["source"], "preference-centre", "{consent}");
        assert_eq!(evidence["ip"], "127.0.0.1");
        assert!(
            evidence["user_agent"].as_str().unwrap().contains("Chrome"),
            "{evidence}"
        );
        let profile = app.profile("rosa").await;
        assert_eq!(
            profile["traits"]["email_topics_declined"]["value"],
            json!(["offers"])
        );

        press(c, "Unsubscribe from everything").await;
        wait_for_text(c, "You are unsubscribed from everything").await;
        let (_, consent) = app.admin(Method::GET, "/v1/profiles/rosa/consent", None).await;
        for purpose in [
            "email_marketing",
            "personalization",
            "profiling",
            "third_party_enrichment",
            "advertising",
        ] {
            assert_eq!(consent["consent"][purpose]["granted"], false, "{purpose}");
        }
    }
}
