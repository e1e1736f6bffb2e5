//! The link check of the rendering audit: each web link of an e-mail asked for its status
//! (HEAD, then GET where HEAD is refused), through the guarded client (internal addresses
//! refused unless the operator allowed them; `[webhooks] allow_internal`). Redirects are
//! reported, not followed; missive's own links (tracking, unsubscribe, preferences) are never
//! requested: following a tracking link would count a click.

use std::time::Duration;

use missive_content::clients::{Link, LinkKind};
use std::sync::Arc;

use missive_sending::webhooks::Guard;
use missive_sending::webhooks::http::refused_by_guard;

/// Links checked at most per e-mail; the rest are listed unchecked.
pub const MAX_CHECKED: usize = 40;
const TIMEOUT: Duration = Duration::from_secs(8);
const PARALLEL: usize = 6;

/// What asking a link's target gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The status, and where a redirect points.
    Answered { status: u16, location: Option<String> },
    /// Not asked, and why.
    NotChecked(&'static str),
    /// The guard refused its address (an internal network).
    Refused,
    /// No answer: DNS, connection, TLS or time-out.
    Failed(String),
}

impl Outcome {
    /// `ok`, `warn` or `bad`, for the page.
    pub fn tone(&self) -> &'static str {
        match self {
            Outcome::Answered { status, .. } if *status < 300 => "ok",
            Outcome::Answered { status, .. } if *status < 400 => "warn",
            Outcome::NotChecked(_) => "idle",
            _ => "bad",
        }
    }
}

/// Checks the web links among `links` (at most [`MAX_CHECKED`], a few at a time). `guard`
/// refuses internal addresses written as IPs (names are refused by the client's resolver).
pub async fn check(client: &reqwest::Client, guard: Arc<Guard>, links: Vec<Link>) -> Vec<(Link, Outcome)> {
    let mut out: Vec<(Link, Outcome)> = Vec::with_capacity(links.len());
    let mut tasks = tokio::task::JoinSet::new();
    let mut web = 0usize;
    for (i, link) in links.iter().enumerate() {
        let outcome = match link.kind {
            LinkKind::Web if web < MAX_CHECKED => {
                web += 1;
                let (client, guard) = (client.clone(), guard.clone());
                let href = link.href.clone();
                tasks.spawn(async move { (i, ask(&client, &guard, &href).await) });
                Outcome::NotChecked("checking")
            }
            LinkKind::Web => Outcome::NotChecked("over the limit of links checked per e-mail"),
            LinkKind::Own => Outcome::NotChecked("missive's own link: not followed"),
            LinkKind::Mail | LinkKind::Phone => Outcome::NotChecked("not a web address"),
            LinkKind::Anchor => Outcome::NotChecked("a place in the e-mail"),
            LinkKind::Broken => Outcome::NotChecked("no address: empty, or Liquid left in it"),
            LinkKind::Other => Outcome::NotChecked("not http or https"),
        };
        out.push((link.clone(), outcome));
        while tasks.len() >= PARALLEL {
            if let Some(Ok((i, o))) = tasks.join_next().await {
                out[i].1 = o;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, o)) = done {
            out[i].1 = o;
        }
    }
    out
}

async fn ask(client: &reqwest::Client, guard: &Guard, href: &str) -> Outcome {
    let Ok(url) = url::Url::parse(href) else {
        return Outcome::Failed("not a valid address".into());
    };
    if guard.check_url(&url).is_err() {
        return Outcome::Refused;
    }
    let once = |method: reqwest::Method| async {
        tokio::time::timeout(TIMEOUT, client.request(method, url.clone()).send()).await
    };
    let answer = match once(reqwest::Method::HEAD).await {
        Ok(Ok(r)) if matches!(r.status().as_u16(), 405 | 501) => once(reqwest::Method::GET).await,
        other => other,
    };
    match answer {
        Ok(Ok(r)) => Outcome::Answered {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        },
        Ok(Err(e)) if refused_by_guard(&e) => Outcome::Refused,
        Ok(Err(e)) => Outcome::Failed(describe(&e)),
        Err(_) => Outcome::Failed(format!("no answer in {} s", TIMEOUT.as_secs())),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "could not connect".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_builder() {
        "not a valid address".into()
    } else {
        "no answer".into()
    }
}
