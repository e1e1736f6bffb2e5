//! What the outbox knows about a message besides its content: its class (which rules of the
//! send-time policy apply) and its source (what queued it). Stored as text (`marketing`,
//! `journey:cart-abandonment`), handled as types.

use serde::{Deserialize, Serialize};

/// What a message is for. Marketing needs consent and respects preferences, frequency caps
/// and quiet hours; transactional mail (receipts, password resets) only the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "marketing" => Some(MessageClass::Marketing),
            "transactional" => Some(MessageClass::Transactional),
            _ => None,
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
}

impl MessageSource {
    /// `journey:NAME` or `broadcast:ID`, as stored.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        match kind {
            "journey" => Some(MessageSource::Journey(name.to_owned())),
            "broadcast" => Some(MessageSource::Broadcast(name.to_owned())),
            _ => None,
        }
    }

    /// The broadcast's id, when a broadcast queued the message.
    pub fn broadcast(&self) -> Option<&str> {
        match self {
            MessageSource::Broadcast(id) => Some(id),
            MessageSource::Journey(_) => None,
        }
    }
}

impl std::fmt::Display for MessageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageSource::Journey(name) => write!(f, "journey:{name}"),
            MessageSource::Broadcast(id) => write!(f, "broadcast:{id}"),
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
            assert_eq!(MessageClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(MessageClass::parse("promo"), None);
        let cases = [
            (
                "journey:cart-abandonment",
                Some(MessageSource::Journey("cart-abandonment".into())),
            ),
            (
                "broadcast:brd_1:x",
                Some(MessageSource::Broadcast("brd_1:x".into())),
            ),
            ("webhook:x", None),
            ("journey", None),
        ];
        for (text, want) in cases {
            let got = MessageSource::parse(text);
            assert_eq!(got, want, "{text}");
            if let Some(s) = got {
                assert_eq!(s.to_string(), text);
            }
        }
        assert_eq!(MessageSource::Broadcast("b".into()).broadcast(), Some("b"));
        assert_eq!(MessageSource::Journey("j".into()).broadcast(), None);
    }
}
