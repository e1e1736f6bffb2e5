//! The journey document as its author writes it (JSON, see docs/journeys.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A journey as its author writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyDef {
    pub trigger: Trigger,
    /// An event property path (`properties.cart_id`): one instance per value of it.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub reentry: Reentry,
    /// `marketing` (needs consent, counts towards the frequency cap) or `transactional`.
    #[serde(default)]
    pub class: MessageClass,
    /// The preference-centre topic its e-mails belong to (one of `[[preferences.topics]]`):
    /// people who declined it are not sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The most e-mails one instance (one person, one key) may send; a loop through a wait
    /// stops there. Default [`DEFAULT_MAX_SENDS_PER_INSTANCE`], at most [`MAX_SENDS_PER_INSTANCE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sends_per_instance: Option<u32>,
    pub steps: Vec<Step>,
}

/// Sends one journey instance may make unless its definition says otherwise.
pub const DEFAULT_MAX_SENDS_PER_INSTANCE: u32 = 10;
/// The ceiling of `max_sends_per_instance`: no definition can mail one person without end.
pub const MAX_SENDS_PER_INSTANCE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = JourneyTrigger)]
pub struct Trigger {
    /// The track event that starts the journey…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// …or the saved segment whose new members start it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A test on an event: `{"path": "properties.value", "op": "gte", "value": 50}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = JourneyCondition)]
pub struct Condition {
    pub path: String,
    pub op: Op,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = JourneyConditionOp)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
    Contains,
}

/// When a profile may enter a journey it is already in or has been in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = JourneyReentry)]
pub enum Reentry {
    /// Not while an instance with the same key is active (the default).
    #[default]
    AfterExit,
    /// Every trigger starts an instance.
    Always,
}

/// Which rules of the send-time policy apply (one type for journeys, broadcasts and the outbox).
pub use missive_core::MessageClass;

// No `deny_unknown_fields` here: serde cannot combine it with `flatten`; the action's own
// variants refuse unknown fields instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = JourneyStep)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
    /// The step after this one; default: the next in the list (after the last: the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = JourneyAction)]
pub enum Action {
    /// Wait a duration (`"1h"`) or until a local time of day (`"09:00"`) in the profile's
    /// time zone.
    Wait {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_time: Option<String>,
    },
    /// Wait for an event, at most `timeout`: go to `on_event` if it comes (`"exit"` ends the
    /// journey), else to `on_timeout` (default: the next step).
    WaitForEvent {
        event: String,
        #[serde(default)]
        conditions: Vec<Condition>,
        /// Only an event whose key property equals the instance's key (the same cart).
        #[serde(default)]
        match_key: bool,
        timeout: String,
        #[serde(default = "exit_step")]
        on_event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_timeout: Option<String>,
    },
    /// A segment expression on the profile, now.
    Branch {
        condition: String,
        then: String,
        #[serde(rename = "else")]
        otherwise: String,
    },
    /// A random split, stable per instance; or, when it names an experiment (of kind
    /// `branch`), each path is a variant and the person goes down their variant's path.
    Split {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        experiment: Option<String>,
        paths: Vec<SplitPath>,
    },
    /// Queues an e-mail of `template`; naming an experiment (subject, template, holdout or
    /// content) makes the message take part in it.
    Send {
        template: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        experiment: Option<String>,
        /// `best_time`: queue the message for the person's best hour (their opens and clicks,
        /// shrunk towards everyone's; docs/models.md) within `within`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<SendTiming>,
        /// The window for `at` (default 24h; 1h to 7d).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<String>,
    },
    /// Calls an external HTTP API (a loyalty service, an SMS provider) with a body rendered
    /// by Liquid from `profile`, `event` and `journey`; maps fields of a JSON answer into
    /// traits (their source recorded as `webhook:SERVICE`); then the next step, or
    /// `on_failure` when every try failed (no answer in time, or not 2xx). Addresses inside
    /// the network are refused unless the configuration allows them.
    Webhook(Box<WebhookCall>),
    Exit,
}

/// When a `send` step's message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendTiming {
    BestTime,
}

/// A journey's call to an external HTTP API (see [`Action::Webhook`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = JourneyWebhookCall)]
pub struct WebhookCall {
    pub url: String,
    /// `POST` (default), `PUT`, `PATCH`, `GET` or `DELETE`.
    #[serde(default = "post")]
    pub method: String,
    /// A Liquid template of the request body (use the `json` filter for values in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Per try: 100 to 10,000 ms (default 5,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// Tries after the first: 0 to 3 (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Trait name → JSON pointer into the answer (`"loyalty_tier": "/tier"`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub traits: std::collections::BTreeMap<String, String>,
    /// Recorded as the traits' source (`webhook:SERVICE`); default: the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Where to go when the call failed; default: the next step, as on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

fn post() -> String {
    "POST".into()
}

/// The longest a journey webhook may wait for one answer: the journey runner waits with it.
pub const MAX_WEBHOOK_TIMEOUT_MS: u32 = 10_000;

fn exit_step() -> String {
    EXIT.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = JourneySplitPath)]
pub struct SplitPath {
    /// A random split's weight.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u32,
    /// An experiment split's variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub next: String,
}

fn is_zero(w: &u32) -> bool {
    *w == 0
}

/// The step name that ends an instance.
pub const EXIT: &str = "exit";
