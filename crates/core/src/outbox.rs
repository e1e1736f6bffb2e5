//! What the outbox knows about a message besides its content: its class (which rules of the
//! send-time policy apply) and its source (what queued it). Stored as text (`marketing`,
//! `journey:cart-abandonment`), handled as types.

use serde::{Deserialize, Serialize};

/// What a message is for. Marketing needs consent and respects preferences, frequency caps
/// and quiet hours; transactional mail (receipts, password resets) only the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageClass {
    #[default]
    Marketing,
    Transactional,
}

impl MessageClass {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageClass::Marketing => "marketing",
            MessageClass::Transactional => "transactional",
        }
    }

    /// A stored class: anything but `transactional` is marketing, the stricter rules (as the
    /// sender has always read it), so a row written by hand or by a newer version still sends
    /// only with consent.
    pub fn from_stored(s: &str) -> Self {
        if s == "transactional" {
            MessageClass::Transactional
        } else {
            MessageClass::Marketing
        }
    }
}

impl std::fmt::Display for MessageClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What queued a message: a journey (by name) or a broadcast (by id). Later sources
/// (webhooks, experiments) are new variants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageSource {
    Journey(String),
    Broadcast(String),
    /// A source this version does not know (a row written by a newer version or by hand),
    /// kept as written so that it reads back and is stored back unchanged.
    Other(String),
}

impl MessageSource {
    /// `journey:NAME` or `broadcast:ID`, as stored; anything else is [`MessageSource::Other`].
    pub fn parse(s: &str) -> Self {
        match s.split_once(':') {
            Some(("journey", name)) => MessageSource::Journey(name.to_owned()),
            Some(("broadcast", id)) => MessageSource::Broadcast(id.to_owned()),
            _ => MessageSource::Other(s.to_owned()),
        }
    }

    /// The queue the message waits in ([`Lane`]).
    pub fn lane(&self) -> Lane {
        match self {
            MessageSource::Broadcast(_) => Lane::Bulk,
            MessageSource::Journey(_) | MessageSource::Other(_) => Lane::Triggered,
        }
    }

    /// The broadcast's id, when a broadcast queued the message.
    pub fn broadcast(&self) -> Option<&str> {
        match self {
            MessageSource::Broadcast(id) => Some(id),
            MessageSource::Journey(_) | MessageSource::Other(_) => None,
        }
    }
}

/// Which queue a due message waits in. The sender takes every due message of the triggered
/// lane before any of the bulk lane, so that a broadcast to a million people does not hold
/// up a cart reminder or a password reset behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Sent because of what one person did (journeys, and sources this version does not know).
    Triggered,
    /// Sent to many at once (broadcasts).
    Bulk,
}

impl Lane {
    /// In the order the sender takes them.
    pub const ALL: [Lane; 2] = [Lane::Triggered, Lane::Bulk];

    /// As stored (`outbox.lane`).
    pub fn as_i16(self) -> i16 {
        match self {
            Lane::Triggered => 0,
            Lane::Bulk => 1,
        }
    }
}

impl std::fmt::Display for MessageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageSource::Journey(name) => write!(f, "journey:{name}"),
            MessageSource::Broadcast(id) => write!(f, "broadcast:{id}"),
            MessageSource::Other(text) => f.write_str(text),
        }
    }
}

impl Serialize for MessageSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_sources_read_back_what_they_write() {
        for c in [MessageClass::Marketing, MessageClass::Transactional] {
            assert_eq!(MessageClass::from_stored(c.as_str()), c);
        }
        let cases = [
            (
                "journey:cart-abandonment",
                MessageSource::Journey("cart-abandonment".into()),
            ),
            ("broadcast:brd_1:x", MessageSource::Broadcast("brd_1:x".into())),
            ("webhook:x", MessageSource::Other("webhook:x".into())),
            ("journey", MessageSource::Other("journey".into())),
        ];
        for (text, want) in cases {
            let got = MessageSource::parse(text);
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text, "stored back as written");
        }
        assert_eq!(
            MessageClass::from_stored("transactional"),
            MessageClass::Transactional
        );
        assert_eq!(MessageClass::from_stored("promo"), MessageClass::Marketing);
        assert_eq!(MessageSource::Broadcast("b".into()).broadcast(), Some("b"));
        assert_eq!(MessageSource::Journey("j".into()).broadcast(), None);
    }
}
