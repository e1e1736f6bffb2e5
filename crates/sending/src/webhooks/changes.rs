//! missive's change stream: the notices outbound webhooks deliver (segment entries and exits,
//! consent changes, message outcomes, merges, …) published to a message stream for other
//! systems to consume, one subject per kind (NATS JetStream, `[streams.changes]`; the sink is
//! in `missive-cluster`). It reads the webhook queue like an endpoint, with a position of its
//! own, and is delivered at least once: each message carries the notice's id (`msg_<seq>`,
//! as the `webhook-id` of a webhook), which JetStream deduplicates within its window and
//! consumers after it. It runs with the sending side, so on one node of a cluster at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use missive_webhooks::EventType;

/// What [`ChangeSink::publish`] answers: `Err` when the stream did not take the message.
pub type PublishResult = Result<(), String>;

/// Where the change stream goes.
pub trait ChangeSink: Send + Sync + 'static {
    /// Publishes one change of `kind` (for example `segment.entered`) under `id`, and answers
    /// once the stream has it durably.
    fn publish<'a>(
        &'a self,
        kind: &'a str,
        id: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = PublishResult> + Send + 'a>>;
}

/// The change stream's settings: the sink and the kinds it carries.
#[derive(Clone)]
pub struct ChangeStream {
    pub sink: Arc<dyn ChangeSink>,
    pub kinds: Vec<EventType>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// The change stream's position in the webhook queue is kept as an endpoint's, under a name
/// no endpoint can have (names are lower-case letters, digits, `-` and `_`).
pub const POSITION_NAME: &str = "stream:changes";
