//! The journey definition language: what a marketer writes (a trigger, an instance key, a
//! re-entry rule and steps: `wait`, `wait_for_event`, `branch`, `split`, `send`, `exit`), how it
//! is checked (every target exists, durations and times parse, branch conditions compile, no
//! loop runs without a wait) and what it compiles to.
//!
//! Pure: no store, no clock, no network. The engine's runner executes compiled journeys
//! durably; docs/journeys.md is the user's reference.

mod compile;
mod conditions;
mod definition;
mod graph;

pub use compile::{Compiled, DefinitionError, compile, parse_duration, parse_time_of_day};
pub use conditions::{key_text, lookup, matches};
pub use definition::{
    Action, Condition, DEFAULT_MAX_SENDS_PER_INSTANCE, EXIT, JourneyDef, MAX_SENDS_PER_INSTANCE,
    MAX_WEBHOOK_TIMEOUT_MS, MessageClass, Op, Reentry, SendTiming, SplitPath, Step, Trigger, WebhookCall,
};
pub use graph::{Edge, edges, summary, trigger_summary};
