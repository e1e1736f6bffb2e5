//! When to try an endpoint again, and when to give up: exponential backoff with jitter for
//! about a day per notice, and a circuit breaker for an endpoint that has been failing longer
//! than that. Pure: the caller passes the time and the jitter.
//!
//! Deliveries to one endpoint go in queue order, one at a time, so a failing notice holds the
//! ones behind it (that is what keeps order per profile). While it is retried the endpoint is
//! *open* (nothing else is tried before the next retry). A notice that has failed for the whole
//! window goes to the dead letters and the endpoint moves on. Once the endpoint has failed for
//! longer than the window it is *tripped*: it is probed at the longest interval, and a failed
//! probe sends everything waiting to the dead letters at once, so a dead receiver does not
//! hold a day's worth of queue per notice. One success closes it.

use chrono::{DateTime, Duration, Utc};

/// The schedule of retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub longest: Duration,
    /// How long one notice is retried before it is a dead letter.
    pub window: Duration,
}

impl Default for RetryPolicy {
    /// 5 s, 10 s, 20 s, … capped at an hour, for 24 hours: about thirty tries.
    fn default() -> Self {
        RetryPolicy {
            first: Duration::seconds(5),
            longest: Duration::hours(1),
            window: Duration::hours(24),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `failures` (1 after the first failure), scaled by
    /// `jitter` in [0, 1) to between 75 % and 100 % of the exponential step (so endpoints
    /// that failed together do not all come back together).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self
            .first
            .checked_mul(1i32 << doublings.min(20))
            .unwrap_or(self.longest)
            .min(self.longest);
        let factor = 0.75 + 0.25 * jitter.clamp(0.0, 1.0);
        Duration::milliseconds((base.num_milliseconds() as f64 * factor) as i64)
    }
}

/// What to do after a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same notice again at this time.
    RetryAt(DateTime<Utc>),
    /// This notice has failed for the whole window: dead-letter it and go on (next try at the
    /// given time).
    DeadLetter(DateTime<Utc>),
    /// The endpoint has been failing longer than the window and the probe failed:
    /// dead-letter everything waiting; probe again at the given time.
    DeadLetterAll(DateTime<Utc>),
}

/// One endpoint's health: the breaker's state, kept in memory (a restart starts closed, so
/// the first try after a restart goes out at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Consecutive failures.
    pub failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
    /// The notice being retried and its first failure.
    head: Option<(i64, DateTime<Utc>)>,
    /// Nothing is tried before this.
    pub next_try: Option<DateTime<Utc>>,
}

/// The breaker's state, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WebhookBreakerState)]
pub enum BreakerState {
    Closed,
    Open,
    Tripped,
}

impl Health {
    pub fn ready(&self, now: DateTime<Utc>) -> bool {
        self.next_try.is_none_or(|t| now >= t)
    }

    pub fn state(&self, policy: &RetryPolicy, now: DateTime<Utc>) -> BreakerState {
        match self.failing_since {
            None => BreakerState::Closed,
            Some(since) if now - since >= policy.window => BreakerState::Tripped,
            Some(_) => BreakerState::Open,
        }
    }

    pub fn on_success(&mut self) {
        *self = Health::default();
    }

    /// Records a failed delivery of notice `seq`.
    pub fn on_failure(&mut self, seq: i64, policy: &RetryPolicy, now: DateTime<Utc>, jitter: f64) -> Verdict {
        self.failures += 1;
        let since = *self.failing_since.get_or_insert(now);
        let first = match self.head {
            Some((s, at)) if s == seq => at,
            _ => {
                self.head = Some((seq, now));
                now
            }
        };
        let tripped = now - since >= policy.window;
        let verdict = if tripped && first == now && self.failures > 1 {
            // A probe of a tripped endpoint failed.
            self.head = None;
            Verdict::DeadLetterAll(now + policy.longest)
        } else if now - first >= policy.window {
            self.head = None;
            Verdict::DeadLetter(now + policy.longest)
        } else {
            Verdict::RetryAt(now + policy.delay(self.failures, jitter))
        };
        self.next_try = Some(match verdict {
            Verdict::RetryAt(t) | Verdict::DeadLetter(t) | Verdict::DeadLetterAll(t) => t,
        });
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn delays_double_to_the_cap_with_bounded_jitter() {
        let p = RetryPolicy::default();
        let secs = |n, j| p.delay(n, j).num_milliseconds() as f64 / 1000.0;
        assert_eq!(secs(1, 1.0), 5.0);
        assert_eq!(secs(2, 1.0), 10.0);
        assert_eq!(secs(3, 1.0), 20.0);
        assert_eq!(secs(1, 0.0), 3.75);
        assert_eq!(secs(12, 1.0), 3600.0);
        assert_eq!(secs(500, 1.0), 3600.0);
        assert!((2700.0..=3600.0).contains(&secs(40, 0.5)));
    }

    #[test]
    fn a_notice_is_retried_for_the_window_then_dead_lettered_and_a_dead_endpoint_trips() {
        let p = RetryPolicy::default();
        let mut h = Health::default();
        let mut now = t0();
        assert!(h.ready(now));
        let mut tries = 0;
        let dead_at = loop {
            tries += 1;
            match h.on_failure(1, &p, now, 1.0) {
                Verdict::RetryAt(t) => {
                    assert!(!h.ready(now));
                    assert_eq!(h.state(&p, now), BreakerState::Open);
                    now = t;
                }
                Verdict::DeadLetter(next) => break (now, next),
                v => panic!("{v:?}"),
            }
        };
        // About a day of tries, roughly thirty of them.
        assert!(dead_at.0 - t0() >= Duration::hours(24));
        assert!(dead_at.0 - t0() < Duration::hours(25));
        assert!((25..=40).contains(&tries), "{tries}");
        // The endpoint is tripped now: the next notice is a probe an hour later, and a
        // failed probe dead-letters everything waiting.
        now = dead_at.1;
        assert_eq!(h.state(&p, now), BreakerState::Tripped);
        assert!(
            matches!(h.on_failure(2, &p, now, 0.3), Verdict::DeadLetterAll(t) if t == now + Duration::hours(1))
        );
        // A success closes it.
        h.on_success();
        assert_eq!(h.state(&p, now), BreakerState::Closed);
        assert!(h.ready(now));
        assert!(matches!(h.on_failure(3, &p, now, 1.0), Verdict::RetryAt(_)));
    }
}
