//! The kinds of change an endpoint can subscribe to, and the missive events they come from.

use serde::{Deserialize, Serialize};

/// What happened, as an endpoint subscribes to it and as a payload's `type` names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[schema(as = WebhookEventType)]
pub enum EventType {
    #[serde(rename = "segment.entered")]
    SegmentEntered,
    #[serde(rename = "segment.exited")]
    SegmentExited,
    #[serde(rename = "profile.merged")]
    ProfileMerged,
    #[serde(rename = "profile.erased")]
    ProfileErased,
    #[serde(rename = "consent.changed")]
    ConsentChanged,
    #[serde(rename = "message.sent")]
    MessageSent,
    #[serde(rename = "message.bounced")]
    MessageBounced,
    #[serde(rename = "message.opened")]
    MessageOpened,
    #[serde(rename = "message.clicked")]
    MessageClicked,
    #[serde(rename = "message.unsubscribed")]
    MessageUnsubscribed,
    #[serde(rename = "message.complained")]
    MessageComplained,
    #[serde(rename = "journey.completed")]
    JourneyCompleted,
    #[serde(rename = "experiment.viewed")]
    ExperimentViewed,
    /// A sample an operator asked for (`missive webhook test`): always delivered.
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::SegmentEntered,
        EventType::SegmentExited,
        EventType::ProfileMerged,
        EventType::ProfileErased,
        EventType::ConsentChanged,
        EventType::MessageSent,
        EventType::MessageBounced,
        EventType::MessageOpened,
        EventType::MessageClicked,
        EventType::MessageUnsubscribed,
        EventType::MessageComplained,
        EventType::JourneyCompleted,
        EventType::ExperimentViewed,
        EventType::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SegmentEntered => "segment.entered",
            EventType::SegmentExited => "segment.exited",
            EventType::ProfileMerged => "profile.merged",
            EventType::ProfileErased => "profile.erased",
            EventType::ConsentChanged => "consent.changed",
            EventType::MessageSent => "message.sent",
            EventType::MessageBounced => "message.bounced",
            EventType::MessageOpened => "message.opened",
            EventType::MessageClicked => "message.clicked",
            EventType::MessageUnsubscribed => "message.unsubscribed",
            EventType::MessageComplained => "message.complained",
            EventType::JourneyCompleted => "journey.completed",
            EventType::ExperimentViewed => "experiment.viewed",
            EventType::Test => "webhook.test",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event type a tracked event in the log becomes, if any: missive's own events
    /// about messages and experiments.
    pub fn of_track(name: &str) -> Option<EventType> {
        Some(match name {
            "Email Opened" => EventType::MessageOpened,
            "Email Link Clicked" => EventType::MessageClicked,
            "Unsubscribed" => EventType::MessageUnsubscribed,
            "Email Marked as Spam" => EventType::MessageComplained,
            "Experiment Viewed" => EventType::ExperimentViewed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, t.as_str());
            assert_eq!(serde_json::from_value::<EventType>(json).unwrap(), t);
        }
        assert_eq!(EventType::parse("segment.enter"), None);
        assert_eq!(
            EventType::of_track("Email Opened"),
            Some(EventType::MessageOpened)
        );
        assert_eq!(EventType::of_track("Order Completed"), None);
    }
}
