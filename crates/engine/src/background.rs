//! The one loop every background worker runs: a pass, then a sleep that ends early when the
//! worker is poked or the process shuts down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Spawns a task that runs `pass` until `shutdown` turns true. After each pass it sleeps for
/// the time the pass returned, or less: until `wake` is notified (new work) or `shutdown`
/// changes. A pass reports its own errors; the loop carries on.
pub fn poll_until_shutdown<F, Fut>(
    mut shutdown: watch::Receiver<bool>,
    wake: Option<Arc<Notify>>,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Duration> + Send,
{
    tokio::spawn(async move {
        while !*shutdown.borrow() {
            let sleep_for = pass().await;
            let woken = async {
                match &wake {
                    Some(w) => w.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = woken => {}
                _ = shutdown.changed() => {}
            }
        }
    })
}
