use std::sync::Arc;
use std::time::Duration;

use missive_delivery::{Rate, Throttle};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn per_domain_rate_makes_sends_wait_for_their_token() {
    let throttle = Throttle::new(None).with_domain_rate("gmail.com", Rate::per_second(2));
    let start = Instant::now();
    for _ in 0..2 {
        throttle.acquire("gmail.com").await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
    throttle.acquire("GMAIL.com").await;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    throttle.acquire("gmail.com").await;
    assert_eq!(start.elapsed(), Duration::from_millis(1000));
}

#[tokio::test(start_paused = true)]
async fn other_domains_are_not_held_back_by_a_busy_one() {
    let throttle = Throttle::new(None).with_domain_rate("gmail.com", Rate::per_minute(1));
    let start = Instant::now();
    throttle.acquire("gmail.com").await;
    for _ in 0..100 {
        throttle.acquire("example.org").await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn global_rate_limits_all_domains_together() {
    let throttle = Arc::new(Throttle::new(Some(Rate::per_second(10).with_burst(1))));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let throttle = Arc::clone(&throttle);
        tasks.push(tokio::spawn(async move {
            throttle.acquire(&format!("d{i}.example")).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn default_domain_rate_applies_to_unlisted_domains() {
    let throttle = Throttle::new(None)
        .with_default_domain_rate(Rate::per_second(1))
        .with_domain_rate("big.example", Rate::per_second(100));
    let start = Instant::now();
    throttle.acquire("small.example").await;
    throttle.acquire("small.example").await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let start = Instant::now();
    throttle.acquire("big.example").await;
    throttle.acquire("big.example").await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}
