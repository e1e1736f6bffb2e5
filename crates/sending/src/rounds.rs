//! Which due messages a round of the sender takes (pure; the sender does the I/O).
//!
//! Rounds are pipelined: while one round's outcomes are written, the next is sent. Until that
//! write commits, the round's messages are still queued in the store, and the marketing sends
//! it made are not yet counted by the frequency checks (which read stored sends). So the next
//! round leaves out the messages being written, and the marketing messages of the people they
//! went to; and, as in any round, a person gets at most one marketing message per round. What
//! is left out stays queued and due, and a later round takes it.

use std::collections::HashSet;

use missive_core::{MessageClass, ProfileId};
use missive_store::OutboxMessage;

/// What the round being written holds.
#[derive(Debug, Default)]
pub(crate) struct InWriting {
    pub ids: HashSet<String>,
    /// The recipients of its marketing messages.
    pub marketing_profiles: HashSet<ProfileId>,
}

impl InWriting {
    pub fn of(done: &[OutboxMessage]) -> Self {
        InWriting {
            ids: done.iter().map(|m| m.id.clone()).collect(),
            marketing_profiles: done
                .iter()
                .filter(|m| m.class != MessageClass::Transactional)
                .map(|m| m.profile_id.clone())
                .collect(),
        }
    }
}

/// How many due messages to ask the store for, so that `batch` remain once those being
/// written are left out.
pub(crate) fn due_limit(batch: u32, writing: Option<&InWriting>) -> u32 {
    let extra = writing.map_or(0, |w| w.ids.len());
    batch.saturating_add(u32::try_from(extra).unwrap_or(u32::MAX))
}

/// The round to send from `due` (soonest first): `None` when nothing is due but what is being
/// written (the sender stops); otherwise at most `batch` messages, which may be none when all
/// are marketing for people whose previous round is still being written.
pub(crate) fn take_round(
    due: Vec<OutboxMessage>,
    writing: Option<&InWriting>,
    batch: usize,
) -> Option<Vec<OutboxMessage>> {
    let due: Vec<OutboxMessage> = due
        .into_iter()
        .filter(|m| writing.is_none_or(|w| !w.ids.contains(&m.id)))
        .take(batch)
        .collect();
    if due.is_empty() {
        return None;
    }
    let mut marketing = HashSet::new();
    Some(
        due.into_iter()
            .filter(|m| {
                m.class == MessageClass::Transactional
                    || (writing.is_none_or(|w| !w.marketing_profiles.contains(&m.profile_id))
                        && marketing.insert(m.profile_id.clone()))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use missive_core::MessageSource;
    use missive_store::OutboxStatus;

    fn m(id: &str, profile: &ProfileId, class: MessageClass) -> OutboxMessage {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        OutboxMessage {
            id: id.into(),
            idempotency_key: id.into(),
            profile_id: profile.clone(),
            template: "t".into(),
            class,
            source: MessageSource::Broadcast("brd_1".into()),
            step: None,
            context: serde_json::json!({}),
            status: OutboxStatus::Queued,
            attempts: 0,
            next_attempt_at: at,
            created_at: at,
            sent_at: None,
            recipient: None,
            detail: None,
        }
    }

    fn ids(round: Option<Vec<OutboxMessage>>) -> Option<Vec<String>> {
        round.map(|r| r.into_iter().map(|m| m.id).collect())
    }

    #[test]
    fn a_round_leaves_out_what_is_being_written_and_those_people_s_marketing() {
        let (ann, bob, cid) = (
            ProfileId::generate(),
            ProfileId::generate(),
            ProfileId::generate(),
        );
        use MessageClass::{Marketing as M, Transactional as T};
        let written = [m("w1", &ann, M), m("w2", &bob, T)];
        let writing = InWriting::of(&written);
        assert_eq!(writing.marketing_profiles, HashSet::from([ann.clone()]));
        assert_eq!(due_limit(3, Some(&writing)), 5);
        assert_eq!(due_limit(3, None), 3);
        let due = || {
            vec![
                m("w1", &ann, M),
                m("a2", &ann, M),
                m("a3", &ann, T),
                m("b2", &bob, M),
                m("b3", &bob, M),
                m("c1", &cid, M),
                m("w2", &bob, T),
            ]
        };
        for (writing, batch, expected) in [
            // Nothing being written: one marketing message per person, every transactional.
            (None, 10, Some(vec!["w1", "a3", "b2", "c1", "w2"])),
            // The batch counts the messages taken, before the one-per-person rule.
            (None, 2, Some(vec!["w1"])),
            // Being written: its messages are left out, and so is Ann's marketing (her first
            // send is not counted yet); Bob's transactional message did not count towards the
            // cap, so his marketing goes.
            (Some(&writing), 10, Some(vec!["a3", "b2", "c1"])),
            // The batch counts after the written messages are left out.
            (Some(&writing), 2, Some(vec!["a3"])),
            // A round may be empty while messages are due: Ann's waits for her first send to
            // be written.
            (Some(&writing), 1, Some(vec![])),
        ] {
            assert_eq!(
                ids(take_round(due(), writing, batch)),
                expected.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>()),
                "batch {batch}, writing: {}",
                writing.is_some()
            );
        }
        // Only what is being written is due: the sender stops.
        assert_eq!(
            ids(take_round(
                vec![m("w1", &ann, M), m("w2", &bob, T)],
                Some(&writing),
                10
            )),
            None
        );
        assert_eq!(ids(take_round(vec![], None, 10)), None);
    }
}
