//! Reading back what an ingest changed, for the few callers that answer only once a change
//! is in effect (an unsubscribe, a consent change). In the embedded mode the change is folded
//! when ingest answers, so one read does. In cluster mode ingest answers once the log has the
//! event, and the partition's owner (often another node) folds and checkpoints it shortly
//! after: the read is repeated until the change shows, within [`READ_BACK_WAIT`].

use std::future::Future;
use std::time::{Duration, Instant};

use super::Engine;

/// How long a cluster node reads a change back before it answers with what it reads.
const READ_BACK_WAIT: Duration = Duration::from_secs(10);

impl Engine {
    /// Checkpoints this node's folding, then reads with `read` until `in_effect` holds of what
    /// it reads (once in the embedded mode; every 50 ms for at most [`READ_BACK_WAIT`] in
    /// cluster mode), and answers the last read. The caller judges it.
    pub async fn read_back<T, E, F, Fut>(&self, mut read: F, in_effect: impl Fn(&T) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<std::sync::Arc<super::EngineError>>,
    {
        self.sync().await?;
        let started = Instant::now();
        loop {
            let read = read().await?;
            if in_effect(&read) || !self.config().cluster || started.elapsed() > READ_BACK_WAIT {
                return Ok(read);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
