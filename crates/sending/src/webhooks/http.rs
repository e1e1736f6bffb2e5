//! The HTTP client missive calls configured URLs with (webhook endpoints, the journey
//! webhook step), guarded against server-side request forgery: every name is resolved by
//! [`GuardedResolver`], which refuses it when any address it resolves to is internal
//! (`missive_webhooks::ssrf`) and not allowed by the configuration, and a URL naming an
//! address directly is checked before the request. Redirects are not followed (a webhook
//! answered with a redirect has failed); the journey step follows a few, each checked again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use missive_webhooks::ssrf::{self, SsrfError};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which internal addresses the operator allows (`[webhooks] allow_internal`).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    pub allow: Vec<IpNet>,
}

impl Guard {
    /// Whether the operator allowed `ip` (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Checks a URL's host when it is an address; names are checked when resolved.
    pub fn check_url(&self, url: &url::Url) -> Result<(), SsrfError> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        ssrf::check(&[ip], |a| self.allowed(a))
    }
}

/// Resolves names with the system resolver, then refuses internal answers.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            ssrf::check(&ips, |a| guard.allowed(a))
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let out: Addrs = Box::new(addrs.into_iter());
            Ok(out)
        })
    }
}

/// Whether a request failed because the guard refused an address (directly, after DNS, or
/// at a redirect): final, never worth another try.
pub fn refused_by_guard(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<SsrfError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A client that resolves through the guard, verifies TLS with the platform's roots, and
/// follows at most `redirects` redirects (each target's host checked again).
pub fn client(guard: Arc<Guard>, redirects: usize) -> Result<reqwest::Client, ClientError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    let redirect_guard = guard.clone();
    let policy = if redirects == 0 {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > redirects {
                attempt.error("too many redirects")
            } else if let Err(e) = redirect_guard.check_url(attempt.url()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        })
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // A proxy from the environment would connect wherever it is asked: the guard would
        // only ever see the proxy's own address.
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver(guard)))
        .redirect(policy)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("missive/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_addresses_reaching_inside_are_refused_unless_allowed() {
        let guard = Arc::new(Guard::default());
        let http = client(guard.clone(), 3).unwrap();
        // An address in the URL.
        for url in [
            "http://127.0.0.1:9/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
        ] {
            assert!(guard.check_url(&url::Url::parse(url).unwrap()).is_err(), "{url}");
        }
        // A name that resolves to loopback is refused at resolution.
        let err = http.get("http://localhost:9/").send().await.unwrap_err();
        assert!(refused_by_guard(&err), "{err:?}");
        assert!(
            crate::webhooks::error_chain(&err).contains("internal address"),
            "{err}"
        );
        // Allowed by the configuration, it passes the guard (and then meets a closed port).
        let open = Guard {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(
            open.check_url(&url::Url::parse("http://127.0.0.1:9/").unwrap())
                .is_ok()
        );
        let http = client(Arc::new(open), 0).unwrap();
        let err = http.get("http://localhost:9/").send().await.unwrap_err();
        assert!(!refused_by_guard(&err), "{err:?}");
    }
}
