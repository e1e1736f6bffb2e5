//! Which due messages a round of the sender takes (pure; the sender does the I/O).
//!
//! The sender runs a loop per lane (triggered and bulk), and each loop pipelines its rounds:
//! while one round's outcomes are written, the next is sent. Until that write commits, the
//! round's messages are still queued in the store, and the marketing sends it made are not yet
//! counted by the frequency checks (which read stored sends). So a round leaves out its own
//! loop's messages being written, and the marketing messages of anyone who has one in flight
//! or being written in either loop: a person's marketing message is *claimed* when a round
//! takes it and released once its outcome is stored. That also keeps one marketing message per
//! person per round. What is left out stays queued and due, and a later round takes it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use missive_core::{MessageClass, ProfileId};
use missive_store::OutboxMessage;

/// The people with a marketing message in flight or being written, shared by the lanes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Claims(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    claimed: Mutex<HashSet<ProfileId>>,
    released: tokio::sync::Notify,
}

impl Claims {
    /// [`take_round`] under the claims' lock; what it claims is released when the returned
    /// [`Claimed`] is dropped.
    pub fn take_round(
        &self,
        due: Vec<OutboxMessage>,
        writing: Option<&HashSet<String>>,
        batch: usize,
    ) -> Option<(Vec<OutboxMessage>, Claimed)> {
        let mut claimed = self.0.claimed.lock().unwrap_or_else(|p| p.into_inner());
        take_round(due, writing, &mut claimed, batch).map(|(round, profiles)| {
            (
                round,
                Claimed {
                    claims: self.clone(),
                    profiles,
                },
            )
        })
    }

    /// Completes when claims are next released.
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.released.notified()
    }
}

/// What a round claimed: released when dropped (once its outcomes are stored, or when the round
/// is given up, a panic included).
#[derive(Debug)]
pub(crate) struct Claimed {
    claims: Claims,
    profiles: Vec<ProfileId>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.profiles.is_empty() {
            return;
        }
        {
            let mut claimed = self.claims.0.claimed.lock().unwrap_or_else(|p| p.into_inner());
            for p in &self.profiles {
                claimed.remove(p);
            }
        }
        self.claims.0.released.notify_waiters();
    }
}

/// How many due messages to ask the store for, so that `batch` remain once the `writing`
/// ones are left out.
pub(crate) fn due_limit(batch: u32, writing: Option<&HashSet<String>>) -> u32 {
    let extra = writing.map_or(0, HashSet::len);
    batch.saturating_add(u32::try_from(extra).unwrap_or(u32::MAX))
}

/// The round to send from `due` (one lane's, soonest first), leaving out the ids `writing`:
/// `None` when nothing else is due (the loop stops); otherwise at most `batch` messages, which
/// may be none when all are marketing for people `claimed` already. Gives back the people it
/// claimed (added to `claimed`).
pub(crate) fn take_round(
    due: Vec<OutboxMessage>,
    writing: Option<&HashSet<String>>,
    claimed: &mut HashSet<ProfileId>,
    batch: usize,
) -> Option<(Vec<OutboxMessage>, Vec<ProfileId>)> {
    let due: Vec<OutboxMessage> = due
        .into_iter()
        .filter(|m| writing.is_none_or(|w| !w.contains(&m.id)))
        .take(batch)
        .collect();
    if due.is_empty() {
        return None;
    }
    let mut mine = Vec::new();
    let round = due
        .into_iter()
        .filter(|m| {
            if m.class == MessageClass::Transactional {
                return true;
            }
            if claimed.insert(m.profile_id.clone()) {
                mine.push(m.profile_id.clone());
                return true;
            }
            false
        })
        .collect();
    Some((round, mine))
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

    /// Whether `f` is ready when polled now.
    fn ready<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx).is_ready()
    }

    fn ids(round: Option<Vec<OutboxMessage>>) -> Option<Vec<String>> {
        round.map(|r| r.into_iter().map(|m| m.id).collect())
    }

    #[test]
    fn a_round_leaves_out_what_is_being_written_and_people_with_a_marketing_message_claimed() {
        let (ann, bob, cid) = (
            ProfileId::generate(),
            ProfileId::generate(),
            ProfileId::generate(),
        );
        use MessageClass::{Marketing as M, Transactional as T};
        let writing: HashSet<String> = ["w1".to_string(), "w2".to_string()].into();
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
        let claims = |who: &[&ProfileId]| who.iter().map(|p| (*p).clone()).collect::<HashSet<_>>();
        for (writing, claimed, batch, expected, claims_after) in [
            // Nothing written or claimed: one marketing message per person, every
            // transactional.
            (
                None,
                claims(&[]),
                10,
                Some(vec!["w1", "a3", "b2", "c1", "w2"]),
                claims(&[&ann, &bob, &cid]),
            ),
            // The batch counts the messages taken, before the claims.
            (None, claims(&[]), 2, Some(vec!["w1"]), claims(&[&ann])),
            // Being written: its messages are left out. Ann's marketing waits for her claimed
            // message (this loop's or the other's); transactional messages are never held.
            (
                Some(&writing),
                claims(&[&ann]),
                10,
                Some(vec!["a3", "b2", "c1"]),
                claims(&[&ann, &bob, &cid]),
            ),
            // The batch counts after the written messages are left out.
            (
                Some(&writing),
                claims(&[&ann]),
                2,
                Some(vec!["a3"]),
                claims(&[&ann]),
            ),
            // A round may be empty while messages are due.
            (Some(&writing), claims(&[&ann]), 1, Some(vec![]), claims(&[&ann])),
        ] {
            let mut claimed = claimed;
            let before = claimed.clone();
            let round = take_round(due(), writing, &mut claimed, batch);
            let taken: Vec<ProfileId> = round.as_ref().map(|r| r.1.clone()).unwrap_or_default();
            assert_eq!(
                ids(round.map(|r| r.0)),
                expected.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>()),
                "batch {batch}, writing: {}",
                writing.is_some()
            );
            assert_eq!(claimed, claims_after, "batch {batch}");
            // What the round gives back to release is exactly what it claimed.
            assert_eq!(
                taken.into_iter().collect::<HashSet<_>>(),
                claimed.difference(&before).cloned().collect::<HashSet<_>>()
            );
        }
        // Only what is being written is due: the loop stops.
        let mut claimed = HashSet::new();
        assert!(
            take_round(
                vec![m("w1", &ann, M), m("w2", &bob, T)],
                Some(&writing),
                &mut claimed,
                10
            )
            .is_none()
        );
        assert!(take_round(vec![], None, &mut claimed, 10).is_none());
        // Released (the round's claim dropped), a person's next marketing message can be
        // taken, and a loop waiting for a release is woken.
        let shared = Claims::default();
        let (round, taken) = shared.take_round(vec![m("a1", &ann, M)], None, 10).unwrap();
        assert_eq!(round.len(), 1);
        assert!(
            shared
                .take_round(vec![m("a2", &ann, M)], None, 10)
                .unwrap()
                .0
                .is_empty()
        );
        let released = shared.released();
        tokio::pin!(released);
        released.as_mut().enable();
        assert!(!ready(released.as_mut()), "nothing released yet");
        drop(taken);
        assert!(ready(released.as_mut()), "a release wakes whoever waits for one");
        assert_eq!(
            shared
                .take_round(vec![m("a2", &ann, M)], None, 10)
                .unwrap()
                .0
                .len(),
            1
        );
    }
}
