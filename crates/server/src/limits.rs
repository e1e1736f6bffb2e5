//! Rate limits: token buckets keyed by client address.
//!
//! - **Ingest**: requests per second per client address on the tracking API (Segment's
//!   libraries batch, so a real client sends few requests); beyond it, 429 with `Retry-After`.
//! - **Failed authentication**: wrong keys per minute per client address; beyond it, every key
//!   that is not already known good gets 429 until the bucket refills. Keys verified recently
//!   are still let through, so an attacker behind a shared proxy cannot lock out its users.
//!
//! Written by hand, not with `governor`: the failed-authentication rule asks whether an
//! address still has a token *without taking one* (a request with an unknown key is refused
//! only once the address has used up its wrong guesses), and governor's keyed limiters can
//! only take. The bucket is a few lines, tested below.

use missive_core::ErrorCode;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

/// Buckets kept at most; the idle ones go first when there are more.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`; `Err(wait)` when there is none.
    pub fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        self.with_bucket(ip, |tokens| {
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Whether `ip` has a token left, without taking it.
    pub fn has_token(&self, ip: IpAddr) -> bool {
        self.with_bucket(ip, |tokens| *tokens >= 1.0).is_ok()
    }

    /// Refills `ip`'s bucket for the time passed, then lets `f` look at it.
    fn with_bucket(&self, ip: IpAddr, f: impl FnOnce(&mut f64) -> bool) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
            // A bucket idle long enough to be full again is the same as no bucket.
            let full_after = Duration::from_secs_f64(self.burst / self.per_second.max(f64::MIN_POSITIVE));
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full_after);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if f(tokens) {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - *tokens) / self.per_second).max(0.001),
            ))
        }
    }
}

/// The limits of one server.
#[derive(Debug)]
pub struct Limits {
    /// `None`: ingest is not limited.
    pub ingest: Option<RateLimiter>,
    pub auth_failures: RateLimiter,
    /// Reverse proxies whose `X-Forwarded-For` is believed: behind one, the client is the
    /// nearest address in that header that is not itself a trusted proxy. Empty: the header
    /// is ignored (a client could write anything in it).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingest: Some(RateLimiter::new(1000.0, 2000.0)),
            // 20 wrong keys at once, then one every 6 seconds.
            auth_failures: RateLimiter::new(10.0 / 60.0, 20.0),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The client's address as [`client_address`] found it (rate limits, consent evidence, the
/// audit log); `None` when the server was started without connection info.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    ip_of(&parts.extensions)
}

fn ip_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

/// The client's address, set on each request by [`client_address`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Finds the client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not a trusted proxy.
pub async fn client_address(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = forwarded_client(peer, req.headers(), &state.limits.trusted_proxies);
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

fn forwarded_client(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Each proxy appends the address it received from: read from the right, past our own
    // proxies; anything unreadable ends the trust (what is left of it could be anything).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

fn too_many(wait: Duration, what: &str) -> Response {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        what.to_owned(),
    )
    .into_response();
    let secs = wait.as_secs().max(1).to_string();
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs) {
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    res
}

/// Limits tracking-API requests per client address.
pub async fn ingest_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(limiter) = &state.limits.ingest
        && let Some(ip) = ip_of(req.extensions())
        && let Err(wait) = limiter.take(ip)
    {
        metrics::counter!("missive_rate_limited_total", "limit" => "ingest").increment(1);
        return too_many(wait, "too many requests from this address: retry later");
    }
    next.run(req).await
}

/// Refuses an unverified key from an address that has used up its failed attempts.
pub fn check_auth_allowed(state: &AppState, ip: Option<IpAddr>) -> Result<(), ApiError> {
    match ip {
        Some(ip) if !state.limits.auth_failures.has_token(ip) => {
            metrics::counter!("missive_rate_limited_total", "limit" => "auth").increment(1);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many failed authentications from this address: retry later",
            ))
        }
        _ => Ok(()),
    }
}

/// Counts a failed authentication against the address.
pub fn record_auth_failure(state: &AppState, ip: Option<IpAddr>) {
    if let Some(ip) = ip {
        let _ = state.limits.auth_failures.take(ip);
    }
}

#[cfg(test)]
mod forwarded_tests {
    use super::*;

    fn headers(xff: &[&str]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_trusted_proxy_can_name_the_client() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        // Not from a proxy: the header is the client's own words.
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &headers(&["203.0.113.9"]), &trusted),
            ip("198.51.100.1")
        );
        // From the proxy: the nearest untrusted hop, not a spoofed one further left.
        assert_eq!(
            forwarded_client(
                ip("127.0.0.1"),
                &headers(&["6.6.6.6, 203.0.113.9, 10.1.2.3"]),
                &trusted
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), &headers(&["6.6.6.6", "203.0.113.9"]), &trusted),
            ip("203.0.113.9")
        );
        // Nothing usable: the proxy itself.
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), &headers(&["junk"]), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), &headers(&[]), &[]),
            ip("127.0.0.1")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let l = RateLimiter::new(1000.0, 3.0);
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let other: IpAddr = "203.0.113.2".parse().unwrap();
        assert!(l.take(ip).is_ok() && l.take(ip).is_ok() && l.take(ip).is_ok());
        assert!(l.take(ip).is_err());
        assert!(!l.has_token(ip));
        assert!(l.take(other).is_ok(), "buckets are per address");
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.has_token(ip));
        assert!(l.take(ip).is_ok());
    }
}
