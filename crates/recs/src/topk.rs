//! The k best of many scores, by a bounded min-heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(PartialEq)]
struct Entry(f32, u32);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed: the heap's top is the worst kept. Equal scores: the lower id is better.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Keeps the `k` highest scores offered, ties broken towards the lower id.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4_096) + 1),
        }
    }

    /// Whether `score` would be kept now: a cheap test before a costlier one (a filter).
    pub(crate) fn would_take(&self, score: f32) -> bool {
        score.is_finite()
            && self.k > 0
            && (self.heap.len() < self.k || self.heap.peek().is_some_and(|w| score >= w.0))
    }

    pub(crate) fn offer(&mut self, id: u32, score: f32) {
        if self.k == 0 || !score.is_finite() {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Entry(score, id));
        } else if let Some(worst) = self.heap.peek()
            && Entry(score, id) < *worst
        {
            self.heap.pop();
            self.heap.push(Entry(score, id));
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut v: Vec<(u32, f32)> = self.heap.into_iter().map(|e| (e.1, e.0)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_with_ties_to_the_lower_id() {
        let mut t = TopK::new(3);
        for (id, s) in [(5, 1.0), (1, 3.0), (2, 2.0), (9, 3.0), (4, 0.5), (3, f32::NAN)] {
            t.offer(id, s);
        }
        assert_eq!(t.into_sorted(), vec![(1, 3.0), (9, 3.0), (2, 2.0)]);
    }
}
