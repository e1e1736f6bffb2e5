//! Screenshots of an e-mail by headless Chromium on the server, for the console's rendering
//! audit: a phone (375 px), a desktop client (800 px) and dark mode (as clients that darken
//! e-mails show it). Chromium is found on the `PATH` (`chromium`, `chromium-browser`,
//! `google-chrome`) or named by `MISSIVE_CHROMIUM`; without it the audit says so and shows
//! the rest.
//!
//! The e-mail is untrusted markup, so each run is shut in: a fresh profile in a temporary
//! directory, every host name resolving nowhere (no request leaves the machine: remote images
//! are not shown, as a client that blocks images would), and a Content-Security-Policy put
//! first in the document that allows only inline styles and `data:` images: no script runs,
//! and no `file:` frame or image can show the server's files. (Chromium's own switch for
//! scripts, `--blink-settings=scriptEnabled=false`, also stops headless screenshots.) A run
//! that takes longer than [`TIMEOUT`] is killed.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest one screenshot may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What a screenshot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shot {
    Mobile,
    Desktop,
    Dark,
}

impl Shot {
    pub const ALL: [Shot; 3] = [Shot::Mobile, Shot::Dark, Shot::Desktop];

    pub fn label(self) -> &'static str {
        match self {
            Shot::Mobile => "Phone, 375 px",
            Shot::Desktop => "Desktop, 800 px",
            Shot::Dark => "Dark mode, 375 px",
        }
    }

    /// The window: width and height in CSS pixels.
    pub fn size(self) -> (u32, u32) {
        match self {
            Shot::Mobile | Shot::Dark => (375, 1400),
            Shot::Desktop => (800, 1400),
        }
    }
}

/// Why there is no screenshot.
#[derive(Debug, thiserror::Error)]
pub enum ShotError {
    #[error("could not run Chromium: {0}")]
    Run(std::io::Error),
    #[error("Chromium took longer than {} s", TIMEOUT.as_secs())]
    Timeout,
    #[error("Chromium wrote no screenshot (exit {0}): {1}")]
    NoImage(String, String),
}

/// The policy put first in the head of every document shot: inline styles and `data:`
/// images only.
const SHOT_CSP: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
                        style-src 'unsafe-inline'; img-src data:; font-src data:\">";

/// A Chromium to take screenshots with.
#[derive(Debug, Clone)]
pub struct Chromium {
    path: PathBuf,
}

impl Chromium {
    /// `MISSIVE_CHROMIUM`, else the first of the usual names on the `PATH`.
    pub fn find() -> Option<Chromium> {
        if let Some(p) = std::env::var_os("MISSIVE_CHROMIUM").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(p);
            return path.is_file().then_some(Chromium { path });
        }
        let dirs = std::env::var_os("PATH")?;
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            for dir in std::env::split_paths(&dirs) {
                let path = dir.join(name);
                if path.is_file() {
                    return Some(Chromium { path });
                }
            }
        }
        None
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A PNG of `html` as `shot` shows it.
    pub async fn screenshot(&self, html: &str, shot: Shot) -> Result<Vec<u8>, ShotError> {
        let dir = tempfile::tempdir().map_err(ShotError::Run)?;
        let page = dir.path().join("email.html");
        let image = dir.path().join("shot.png");
        tokio::fs::write(&page, shut_in(html))
            .await
            .map_err(ShotError::Run)?;
        let (w, h) = shot.size();
        let mut cmd = tokio::process::Command::new(&self.path);
        // Nothing of the server's environment (its store URL, its secrets) reaches Chromium.
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir.path());
        cmd.arg("--headless")
            .arg("--disable-gpu")
            .arg("--hide-scrollbars")
            .arg("--mute-audio")
            .arg("--no-first-run")
            .arg("--no-default-browser-check")
            .arg("--disable-extensions")
            .arg("--disable-sync")
            .arg("--disable-background-networking")
            .arg("--host-resolver-rules=MAP * ~NOTFOUND")
            // Addresses written as IPs skip the resolver: every request goes to a proxy that
            // is not there.
            .arg("--proxy-server=socks5://127.0.0.1:9")
            .arg("--proxy-bypass-list=<-loopback>")
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--window-size={w},{h}"))
            .arg(format!("--screenshot={}", image.display()));
        if shot == Shot::Dark {
            cmd.arg("--force-dark-mode")
                .arg("--enable-features=WebContentsForceDark");
        }
        if running_as_root() {
            // Chromium's sandbox refuses root; scripts and the network are off regardless.
            cmd.arg("--no-sandbox");
        }
        let Ok(target) = url::Url::from_file_path(&page) else {
            return Err(ShotError::Run(std::io::Error::other(
                "the temporary path is not absolute",
            )));
        };
        let _permit = RUNNING
            .acquire()
            .await
            .map_err(|_| ShotError::Run(std::io::Error::other("shutting down")))?;
        cmd.arg(target.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(ShotError::Run)?;
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| ShotError::Timeout)?
            .map_err(ShotError::Run)?;
        match tokio::fs::read(&image).await {
            Ok(png) if !png.is_empty() => Ok(png),
            _ => {
                let said = String::from_utf8_lossy(&out.stderr);
                let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                Err(ShotError::NoImage(
                    out.status.code().map_or("by signal".into(), |c| c.to_string()),
                    last.chars().take(300).collect(),
                ))
            }
        }
    }
}

/// Chromiums running at once, over every request: each takes a few hundred MB.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The e-mail as it is shot: every `<meta http-equiv>` removed (a `refresh` would navigate the
/// page, to a `file:` URL for instance: a policy does not stop navigation), and the policy put
/// first in the head (after the doctype, so that the page renders in standards mode as in a
/// client).
pub fn shut_in(html: &str) -> String {
    let mut doc = scraper::Html::parse_document(html);
    let metas: Vec<_> = scraper::Selector::parse("meta[http-equiv]")
        .map(|s| doc.select(&s).map(|e| e.id()).collect())
        .unwrap_or_default();
    for id in metas {
        if let Some(mut node) = doc.tree.get_mut(id) {
            node.detach();
        }
    }
    let out = doc.html();
    match out
        .find("<head")
        .and_then(|at| out[at..].find('>').map(|end| at + end + 1))
    {
        Some(at) => format!("{}{SHOT_CSP}{}", &out[..at], &out[at..]),
        None => format!("{SHOT_CSP}{out}"),
    }
}

/// Whether this process runs as root (read from `/proc`; elsewhere: no).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigation_is_removed_and_the_policy_leads_the_head() {
        let shot = shut_in(
            "<!DOCTYPE html><html><head><META HTTP-EQUIV=\"refresh\" content=\"0;url=file:///etc/hostname\"><title>x</title></head><body><p>Hi</p></body></html>",
        );
        assert!(!shot.to_ascii_lowercase().contains("refresh"), "{shot}");
        assert!(
            shot.starts_with("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\""),
            "{shot}"
        );
        assert!(shot.contains("<p>Hi</p>"), "{shot}");
        // A fragment without a head still gets one, with the policy.
        let bare = shut_in("<p>Hi</p>");
        assert!(
            bare.contains("<head><meta http-equiv=\"Content-Security-Policy\""),
            "{bare}"
        );
    }
}
