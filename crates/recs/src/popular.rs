//! Best sellers: items ranked by their decayed weight over everyone's interactions.

use serde::{Deserialize, Serialize};

use crate::data::{Decay, Interactions};
use crate::topk::TopK;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popular {
    pub score: Vec<f32>,
}

impl Popular {
    pub fn fit(data: &Interactions, decay: Decay) -> Popular {
        let end = data.end();
        let mut score = vec![0f32; data.items.len()];
        for r in &data.rows {
            score[r.item as usize] += r.weight * decay.factor(r.at, end);
        }
        Popular { score }
    }

    pub fn top(&self, k: usize, skip: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let mut t = TopK::new(k);
        for (i, s) in self.score.iter().enumerate() {
            if *s > 0.0 && t.would_take(*s) && !skip(i as u32) {
                t.offer(i as u32, *s);
            }
        }
        t.into_sorted()
    }
}
