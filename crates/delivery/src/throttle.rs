//! Rate limits and retry backoff, in memory: a process restart forgets them, which only means
//! the first sends after a restart start with full buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

/// How many attempts a message gets before it is given up: with [`retry_delay`] that spans about
/// three days, as long as most MTAs keep a message queued.
pub const MAX_ATTEMPTS: u32 = 20;

const FIRST_RETRY: Duration = Duration::from_secs(60);
const LONGEST_RETRY: Duration = Duration::from_secs(6 * 60 * 60);

/// The delay before retry number `attempt` (1 after the first failure): 1 min, 2, 4, … capped at
/// 6 h, without jitter.
pub fn retry_base_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(1u32 << doublings).min(LONGEST_RETRY)
}

/// [`retry_base_delay`] with ±10 % jitter, so messages that failed together do not all come
/// back together; never above the 6 h cap.
pub fn retry_delay(attempt: u32) -> Duration {
    let base = retry_base_delay(attempt);
    let factor = rand::rng().random_range(0.9..=1.1);
    base.mul_f64(factor).min(LONGEST_RETRY)
}

/// A sustained rate with a burst: `burst` sends at once, then one every `period / count`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// `count` sends per `period`, with a burst of `count`.
    pub fn new(count: u32, period: Duration) -> Self {
        let count = count.max(1);
        let seconds = period.as_secs_f64().max(f64::MIN_POSITIVE);
        Self {
            per_second: f64::from(count) / seconds,
            burst: f64::from(count),
        }
    }

    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    pub fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// The same rate with a different burst (at least 1).
    pub fn with_burst(self, burst: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            ..self
        }
    }
}

#[derive(Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.updated = now;
    }

    /// Zero when a token is there, otherwise how long until one is.
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second)
        }
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.rate.burst
    }
}

#[derive(Debug)]
struct State {
    global: Option<Bucket>,
    domains: HashMap<String, Bucket>,
}

/// Token buckets: one for all sends, one per recipient domain. A send takes a token from both.
///
/// Written by hand, not with `governor`: a send must take the global and the domain token
/// together or neither (two governor limiters would spend a global token on a send its domain
/// then refuses), and waiting goes through `tokio::time`, so the tests can run on paused time.
#[derive(Debug)]
pub struct Throttle {
    domain_rates: HashMap<String, Rate>,
    default_domain_rate: Option<Rate>,
    state: Mutex<State>,
}

/// Beyond this many tracked domains, full buckets (idle domains) are forgotten.
const PRUNE_ABOVE: usize = 10_000;

impl Throttle {
    /// `global: None` means no global limit.
    pub fn new(global: Option<Rate>) -> Self {
        Self {
            domain_rates: HashMap::new(),
            default_domain_rate: None,
            state: Mutex::new(State {
                global: global.map(|rate| Bucket::new(rate, Instant::now())),
                domains: HashMap::new(),
            }),
        }
    }

    /// A limit for one recipient domain (e.g. `gmail.com`), matched case-insensitively.
    pub fn with_domain_rate(mut self, domain: &str, rate: Rate) -> Self {
        self.domain_rates.insert(domain.to_ascii_lowercase(), rate);
        self
    }

    /// The limit for every domain without its own.
    pub fn with_default_domain_rate(mut self, rate: Rate) -> Self {
        self.default_domain_rate = Some(rate);
        self
    }

    /// Waits until a send to `domain` is allowed, then takes its tokens.
    pub async fn acquire(&self, domain: &str) {
        let domain = domain.to_ascii_lowercase();
        let rate = self
            .domain_rates
            .get(&domain)
            .copied()
            .or(self.default_domain_rate);
        loop {
            let wait = self.try_acquire(&domain, rate);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the tokens and returns zero, or returns how long to wait before trying again.
    fn try_acquire(&self, domain: &str, rate: Option<Rate>) -> Duration {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let State { global, domains } = &mut *state;
        if domains.len() > PRUNE_ABOVE {
            domains.retain(|_, bucket| {
                bucket.refill(now);
                !bucket.is_full()
            });
        }
        let mut wait = Duration::ZERO;
        if let Some(global) = global.as_mut() {
            global.refill(now);
            wait = wait.max(global.wait());
        }
        let mut domain_bucket = rate.map(|rate| {
            domains
                .entry(domain.to_owned())
                .or_insert_with(|| Bucket::new(rate, now))
        });
        if let Some(bucket) = domain_bucket.as_mut() {
            bucket.refill(now);
            wait = wait.max(bucket.wait());
        }
        if !wait.is_zero() {
            return wait;
        }
        if let Some(global) = global.as_mut() {
            global.tokens -= 1.0;
        }
        if let Some(bucket) = domain_bucket {
            bucket.tokens -= 1.0;
        }
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_one_minute_up_to_six_hours() {
        let minutes: Vec<u64> = (1..=11).map(|a| retry_base_delay(a).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360]);
        assert_eq!(retry_base_delay(0), FIRST_RETRY);
        assert_eq!(retry_base_delay(u32::MAX), LONGEST_RETRY);
    }

    #[test]
    fn retry_jitter_stays_within_ten_percent_and_under_the_cap() {
        for attempt in 1..=MAX_ATTEMPTS {
            let base = retry_base_delay(attempt).as_secs_f64();
            let delay = retry_delay(attempt).as_secs_f64();
            assert!(
                delay >= base * 0.9 - 1e-6 && delay <= base * 1.1 + 1e-6,
                "{attempt}: {delay}"
            );
            assert!(delay <= LONGEST_RETRY.as_secs_f64());
        }
    }

    #[test]
    fn all_attempts_span_about_three_days() {
        let total: Duration = (1..MAX_ATTEMPTS).map(retry_base_delay).sum();
        assert!(
            total > Duration::from_secs(2 * 86_400) && total < Duration::from_secs(4 * 86_400),
            "{total:?}"
        );
    }
}
