//! What in the sending set-up makes mail look unbranded, fail authentication or lose
//! features: checked at start (logged loudly, and listed by `/health` and `missive doctor`).
//! Pure: it reads the settings only.

use serde::Serialize;

use crate::sender::SenderConfig;

/// One finding about the sending set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupWarning {
    /// `delivery.from_address` is at `localhost` (or has no real domain).
    LocalFromAddress,
    /// The DKIM signing domain is `localhost` (or has no real domain).
    LocalDkimDomain,
    /// `content.public_url` is plain http: e-mails carry no `List-Unsubscribe` header.
    PlainHttpPublicUrl,
    /// `content.public_url` points at this machine: recipients cannot follow its links.
    LocalPublicUrl,
    /// No SMTP relay: mail is written to the local maildir, not sent.
    NoRelay,
}

impl SetupWarning {
    /// What is wrong and which setting fixes it.
    pub fn message(self) -> &'static str {
        match self {
            SetupWarning::LocalFromAddress => {
                "delivery.from_address is at localhost: receivers reject or spam-file such mail; set your own address (and delivery.bounce_address, delivery.message_id_domain)"
            }
            SetupWarning::LocalDkimDomain => {
                "the DKIM signing domain is localhost: no receiver can verify the signature; set delivery.from_address (or delivery.dkim.domain) to your domain and publish the DKIM record"
            }
            SetupWarning::PlainHttpPublicUrl => {
                "content.public_url is http://: e-mails carry no List-Unsubscribe header (one-click unsubscribe, RFC 8058, needs https; Gmail and Yahoo require it of bulk senders); serve missive over https and set the https URL"
            }
            SetupWarning::LocalPublicUrl => {
                "content.public_url points at this machine (localhost): recipients cannot open tracking, unsubscribe or preference links; set the URL recipients can reach"
            }
            SetupWarning::NoRelay => {
                "no SMTP relay (delivery.smtp): e-mail is written to the local maildir, not sent"
            }
        }
    }
}

/// Whether `domain` is one no receiver on the internet can check (`localhost`, no dot,
/// `*.localhost`, `*.local`, an address literal).
fn is_local_domain(domain: &str) -> bool {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    d.is_empty()
        || !d.contains('.')
        || d.ends_with(".localhost")
        || d.ends_with(".local")
        || d.starts_with('[')
        || d.parse::<std::net::IpAddr>().is_ok()
}

/// The host of an `http(s)://host[:port]/…` URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.split_once(']').map_or(host_port, |(h, _)| &h[1..]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// The findings for these settings: `dkim_domain` is the signing domain (`None`: not signing),
/// `relay` whether an SMTP relay is configured.
pub fn setup_warnings(config: &SenderConfig, dkim_domain: Option<&str>, relay: bool) -> Vec<SetupWarning> {
    let mut out = Vec::new();
    let from_domain = config.from_address.rsplit_once('@').map_or("", |(_, d)| d);
    if is_local_domain(from_domain) {
        out.push(SetupWarning::LocalFromAddress);
    }
    if dkim_domain.is_none_or(is_local_domain) {
        out.push(SetupWarning::LocalDkimDomain);
    }
    if !config.public_url.starts_with("https://") {
        out.push(SetupWarning::PlainHttpPublicUrl);
    }
    let host = url_host(&config.public_url);
    if host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    {
        out.push(SetupWarning::LocalPublicUrl);
    }
    if !relay {
        out.push(SetupWarning::NoRelay);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use SetupWarning::*;

    fn config(from: &str, url: &str) -> SenderConfig {
        SenderConfig {
            from_address: from.into(),
            public_url: url.into(),
            ..SenderConfig::default()
        }
    }

    #[test]
    fn the_defaults_are_flagged_and_a_real_set_up_is_not() {
        let defaults = SenderConfig::default();
        assert_eq!(
            setup_warnings(&defaults, Some("localhost"), false),
            [
                LocalFromAddress,
                LocalDkimDomain,
                PlainHttpPublicUrl,
                LocalPublicUrl,
                NoRelay
            ]
        );
        let real = config("shop@mail.example.com", "https://mail.example.com");
        assert_eq!(setup_warnings(&real, Some("example.com"), true), []);
    }

    #[test]
    fn each_finding_on_its_own() {
        let https = "https://mail.example.com";
        for (from, url, dkim, relay, expected) in [
            (
                "shop@example.com",
                "http://mail.example.com",
                Some("example.com"),
                true,
                vec![PlainHttpPublicUrl],
            ),
            (
                "shop@example.com",
                "https://127.0.0.1:8443/x",
                Some("example.com"),
                true,
                vec![LocalPublicUrl],
            ),
            (
                "shop@example.com",
                "https://[::1]:8443",
                Some("example.com"),
                true,
                vec![LocalPublicUrl],
            ),
            ("shop@example.com", https, None, true, vec![LocalDkimDomain]),
            (
                "shop@example.com",
                https,
                Some("box.local"),
                true,
                vec![LocalDkimDomain],
            ),
            (
                "shop@mailhost",
                https,
                Some("example.com"),
                true,
                vec![LocalFromAddress],
            ),
            (
                "shop@[192.0.2.1]",
                https,
                Some("example.com"),
                true,
                vec![LocalFromAddress],
            ),
            (
                "shop@example.com",
                https,
                Some("example.com"),
                false,
                vec![NoRelay],
            ),
        ] {
            assert_eq!(
                setup_warnings(&config(from, url), dkim, relay),
                expected,
                "{from} {url} {dkim:?} {relay}"
            );
        }
    }
}
