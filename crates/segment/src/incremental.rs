//! Incremental membership: which segments a profile change can affect (an index from inputs to
//! segments), re-evaluating only those, following segments that read other segments, and
//! timers for answers that change with time alone.
//!
//! The engine keeps one [`Membership`] per profile and calls [`SegmentSet::on_change`] after
//! folding events and [`SegmentSet::on_due`] when a timer falls due. Both return the entries
//! and exits, with their instant and cause. [`SegmentSet::evaluate_all`] is the from-scratch
//! answer; the property tests hold the incremental one to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use missive_core::profile::HistoryEntry;
use missive_core::{Profile, Touched};
use serde::Serialize;
use serde_json::Value as Json;

use crate::eval::{EventIndex, Facts, Shared};
use crate::plan::Slots;
use crate::types::Segment;

pub use missive_core::profile::Membership;

/// A profile entering or leaving a segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipChange {
    pub segment: String,
    pub entered: bool,
    pub at: DateTime<Utc>,
    /// `event`, `time` (a window or threshold passed) or `segment:NAME`.
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetError {
    #[error("segment {0:?} exists already")]
    Duplicate(String),
    #[error("segment {0:?} reads segment {1:?}, which does not exist")]
    UnknownDependency(String, String),
    #[error("segments {0:?} read each other in a cycle")]
    Cycle(Vec<String>),
}

/// The saved segments of a workspace, compiled and indexed by what they read.
#[derive(Debug, Default)]
pub struct SegmentSet {
    names: Vec<String>,
    segments: Vec<Segment>,
    by_name: HashMap<String, usize>,
    by_trait: HashMap<String, Vec<usize>>,
    by_event: HashMap<String, Vec<usize>>,
    on_orders: Vec<usize>,
    on_seen: Vec<usize>,
    on_scores: Vec<usize>,
    /// Segments reading `segment "NAME"`.
    dependents: HashMap<String, Vec<usize>>,
    /// Evaluation order: a segment after the segments it reads.
    order: Vec<usize>,
    rank: Vec<usize>,
    /// The segments in the order of their names.
    alphabetical: Vec<usize>,
    /// Per event name the segments count: how far back its events matter (`None`: all time).
    windows: HashMap<String, Option<chrono::TimeDelta>>,
}

/// What a re-evaluation changed: the entries and exits, and whether a timer moved (the
/// membership then needs saving even without an entry or exit).
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a moved timer means the membership must be saved"]
pub struct Reevaluation {
    pub changes: Vec<MembershipChange>,
    pub timers_moved: bool,
}

/// The inputs a change touched, beyond what [`Touched`] says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    pub scores_changed: bool,
}

impl SegmentSet {
    pub fn new(segments: Vec<(String, Segment)>) -> Result<Self, SetError> {
        let mut set = SegmentSet::default();
        let mut slots = Slots::default();
        for (name, mut seg) in segments {
            slots.assign(&mut seg.plan);
            if set.by_name.contains_key(&name) {
                return Err(SetError::Duplicate(name));
            }
            let i = set.segments.len();
            set.by_name.insert(name.clone(), i);
            let inputs = seg.inputs().clone();
            for t in &inputs.traits {
                set.by_trait.entry(t.clone()).or_default().push(i);
            }
            for e in &inputs.events {
                set.by_event.entry(e.clone()).or_default().push(i);
            }
            if inputs.orders {
                set.on_orders.push(i);
            }
            if inputs.seen {
                set.on_seen.push(i);
            }
            if inputs.scores {
                set.on_scores.push(i);
            }
            for s in &inputs.segments {
                set.dependents.entry(s.clone()).or_default().push(i);
            }
            // Only aggregates count events; `events."X".count` reads the profile's totals.
            for (e, keep) in &inputs.windows {
                let keep = *keep;
                set.windows
                    .entry(e.clone())
                    .and_modify(|w| {
                        *w = match (*w, keep) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        }
                    })
                    .or_insert(keep);
            }
            set.names.push(name);
            set.segments.push(seg);
        }
        set.order = set.topological_order()?;
        set.alphabetical = (0..set.segments.len()).collect();
        set.alphabetical.sort_by(|&a, &b| set.names[a].cmp(&set.names[b]));
        set.rank = vec![0; set.segments.len()];
        for (r, &i) in set.order.iter().enumerate() {
            set.rank[i] = r;
        }
        Ok(set)
    }

    fn topological_order(&self) -> Result<Vec<usize>, SetError> {
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut state = vec![0u8; self.segments.len()];
        let mut order = Vec::with_capacity(self.segments.len());
        fn visit(
            set: &SegmentSet,
            i: usize,
            state: &mut [u8],
            order: &mut Vec<usize>,
            path: &mut Vec<usize>,
        ) -> Result<(), SetError> {
            match state[i] {
                2 => return Ok(()),
                1 => {
                    let from = path.iter().position(|&p| p == i).unwrap_or(0);
                    return Err(SetError::Cycle(
                        path[from..].iter().map(|&p| set.names[p].clone()).collect(),
                    ));
                }
                _ => {}
            }
            state[i] = 1;
            path.push(i);
            for dep in &set.segments[i].inputs().segments {
                let Some(&j) = set.by_name.get(dep) else {
                    return Err(SetError::UnknownDependency(set.names[i].clone(), dep.clone()));
                };
                visit(set, j, state, order, path)?;
            }
            path.pop();
            state[i] = 2;
            order.push(i);
            Ok(())
        }
        for i in 0..self.segments.len() {
            visit(self, i, &mut state, &mut order, &mut Vec::new())?;
        }
        Ok(order)
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// The event names the segments count, and how far back each matters (`None`: all time).
    pub fn windows(&self) -> &HashMap<String, Option<chrono::TimeDelta>> {
        &self.windows
    }

    /// Whether events of `name` must be kept for the segments' windows.
    pub fn keeps(&self, name: &str) -> bool {
        self.windows.contains_key(name)
    }

    /// Drops window events no segment can count any more at `now`.
    pub fn prune(&self, events: &mut Vec<HistoryEntry>, now: DateTime<Utc>) {
        events.retain(|e| match self.windows.get(&e.name) {
            None => false,
            Some(None) => true,
            // An event leaves a window `w` after it happened; keep it until then.
            Some(Some(w)) => e.at.checked_add_signed(*w).is_none_or(|end| end > now),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Segment> {
        self.by_name.get(name).map(|&i| &self.segments[i])
    }

    /// The segments with their names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Segment)> {
        self.names.iter().zip(&self.segments)
    }

    /// The segments a change at `now` can affect (before following segment dependencies).
    pub fn affected(&self, touched: &Touched, extra: Extra, now: DateTime<Utc>) -> BTreeSet<usize> {
        let mut out = Vec::new();
        for t in &touched.traits {
            out.extend(self.by_trait.get(t).into_iter().flatten().copied());
        }
        for e in &touched.events {
            out.extend(self.by_event.get(e).into_iter().flatten().copied());
        }
        if touched.orders {
            out.extend(&self.on_orders);
        }
        if touched.seen {
            // `last_seen after …` that was true stays true with a later `last_seen`.
            let before = touched.seen_from.map(|p| (p, now.signed_duration_since(p)));
            out.extend(
                self.on_seen
                    .iter()
                    .filter(|&&i| !before.is_some_and(|(p, age)| self.segments[i].unmoved_by_seen(p, age))),
            );
        }
        if extra.scores_changed {
            out.extend(&self.on_scores);
        }
        out.sort_unstable();
        out.dedup();
        out.into_iter().collect()
    }

    /// Re-evaluates the segments `touched` can affect, and those that read them.
    #[allow(clippy::too_many_arguments)]
    pub fn on_change(
        &self,
        state: &mut Membership,
        profile: &Profile,
        events: &[HistoryEntry],
        scores: &BTreeMap<String, Json>,
        touched: &Touched,
        extra: Extra,
        now: DateTime<Utc>,
    ) -> Reevaluation {
        let start = self.affected(touched, extra, now);
        self.reevaluate(state, profile, events, scores, start, now, "event")
    }

    /// Re-evaluates the segments whose timers are due at `now`.
    pub fn on_due(
        &self,
        state: &mut Membership,
        profile: &Profile,
        events: &[HistoryEntry],
        scores: &BTreeMap<String, Json>,
        now: DateTime<Utc>,
    ) -> Reevaluation {
        let due: BTreeSet<usize> = state
            .timers
            .iter()
            .filter(|(_, t)| **t <= now)
            .filter_map(|(name, _)| self.by_name.get(name).copied())
            .collect();
        self.reevaluate(state, profile, events, scores, due, now, "time")
    }

    #[allow(clippy::too_many_arguments)]
    fn reevaluate(
        &self,
        state: &mut Membership,
        profile: &Profile,
        events: &[HistoryEntry],
        scores: &BTreeMap<String, Json>,
        start: BTreeSet<usize>,
        now: DateTime<Utc>,
        cause: &str,
    ) -> Reevaluation {
        let mut changes = Vec::new();
        // Built once, and only when a segment to evaluate counts events.
        let index = std::cell::OnceCell::new();
        let mut shared = Shared::default();
        let mut timers_moved = false;
        // Work in evaluation order, so that a segment sees the new membership of those it reads.
        // The cause is built only for a change: `None` is `cause`, `Some(d)` is segment `d`.
        let mut queue: BTreeMap<usize, (usize, Option<usize>)> =
            start.into_iter().map(|i| (self.rank[i], (i, None))).collect();
        while let Some((_, (i, why))) = queue.pop_first() {
            let name = &self.names[i];
            let counts_events = !self.segments[i].inputs().windows.is_empty();
            let facts = Facts {
                by_name: counts_events.then(|| index.get_or_init(|| EventIndex::new(events))),
                ..Facts::new(profile, events, &state.segments, scores)
            };
            let eval = self.segments[i].evaluate_shared(&facts, now, &mut shared);
            // A segment that cannot change with time has no timer to keep.
            if self.segments[i].inputs().time_dependent {
                match eval.next_change {
                    Some(t) => {
                        if let Some(old) = state.timers.get_mut(name) {
                            timers_moved |= *old != t;
                            *old = t;
                        } else {
                            state.timers.insert(name.clone(), t);
                            timers_moved = true;
                        }
                    }
                    None => timers_moved |= state.timers.remove(name).is_some(),
                }
            }
            let was = state.segments.contains(name);
            if eval.member == was {
                continue;
            }
            if eval.member {
                state.segments.insert(name.clone());
            } else {
                state.segments.remove(name);
            }
            changes.push(MembershipChange {
                segment: name.clone(),
                entered: eval.member,
                at: now,
                cause: match why {
                    None => cause.to_owned(),
                    Some(d) => format!("segment:{}", self.names[d]),
                },
            });
            for &d in self.dependents.get(name).into_iter().flatten() {
                queue.entry(self.rank[d]).or_insert((d, Some(i)));
            }
        }
        Reevaluation {
            changes,
            timers_moved,
        }
    }

    /// Membership from scratch: every segment, in evaluation order.
    pub fn evaluate_all(
        &self,
        profile: &Profile,
        events: &[HistoryEntry],
        scores: &BTreeMap<String, Json>,
        now: DateTime<Utc>,
    ) -> Membership {
        let index = EventIndex::new(events);
        let mut shared = Shared::default();
        if self.dependents.is_empty() {
            // No segment reads another: evaluate in any order, then build the sets at once
            // from names already in order (a bulk build, not one insertion at a time).
            let none = BTreeSet::new();
            let facts = Facts {
                by_name: Some(&index),
                ..Facts::new(profile, events, &none, scores)
            };
            let evals: Vec<_> = self
                .segments
                .iter()
                .map(|s| s.evaluate_shared(&facts, now, &mut shared))
                .collect();
            let named = || self.alphabetical.iter().map(|&i| (&self.names[i], &evals[i]));
            return Membership {
                segments: named()
                    .filter(|(_, e)| e.member)
                    .map(|(n, _)| n.clone())
                    .collect(),
                timers: named()
                    .filter_map(|(n, e)| e.next_change.map(|t| (n.clone(), t)))
                    .collect(),
            };
        }
        let mut state = Membership::default();
        for &i in &self.order {
            let facts = Facts {
                by_name: Some(&index),
                ..Facts::new(profile, events, &state.segments, scores)
            };
            let eval = self.segments[i].evaluate_shared(&facts, now, &mut shared);
            if let Some(t) = eval.next_change {
                state.timers.insert(self.names[i].clone(), t);
            }
            if eval.member {
                state.segments.insert(self.names[i].clone());
            }
        }
        state
    }
}
