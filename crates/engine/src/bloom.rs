//! A scalable Bloom filter: "certainly not seen" answers without a store lookup.
//!
//! The applier asks the store whether a message id or an identity exists before folding an
//! event; for new customers and new messages (the common case) the answer is no, and a round
//! trip to the store per batch is what limits ingest. The filter answers "no" from memory;
//! "maybe" still goes to the store, so a false positive costs a lookup, never a wrong answer.
//! It grows by adding layers twice the size of the last (Almeida et al., "Scalable Bloom
//! Filters", 2007), so it needs no size up front.

use twox_hash::XxHash3_128;

/// False-positive rate of the first layer; each later layer halves it, so that the rate of the
/// whole filter stays under twice this however much it grows.
const LAYER_FP: f64 = 0.001;

pub struct ScalableBloom {
    layers: Vec<Layer>,
}

struct Layer {
    bits: Vec<u64>,
    hashes: u32,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn with_capacity(capacity: usize, fp: f64) -> Self {
        let capacity = capacity.max(1024);
        // m = -n ln p / (ln 2)^2, k = m/n ln 2
        let m = (-(capacity as f64) * fp.ln() / (std::f64::consts::LN_2.powi(2))).ceil() as usize;
        let words = m.div_ceil(64);
        let hashes = ((words * 64) as f64 / capacity as f64 * std::f64::consts::LN_2)
            .round()
            .max(1.0) as u32;
        Self {
            bits: vec![0; words],
            hashes,
            capacity,
            len: 0,
        }
    }

    fn positions(&self, h: u128) -> impl Iterator<Item = usize> + '_ {
        let (h1, h2) = (h as u64, (h >> 64) as u64 | 1);
        let m = (self.bits.len() * 64) as u64;
        (0..u64::from(self.hashes)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn contains(&self, h: u128) -> bool {
        self.positions(h)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    fn insert(&mut self, h: u128) {
        let positions: Vec<usize> = self.positions(h).collect();
        for p in positions {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.len += 1;
    }
}

impl ScalableBloom {
    /// A filter sized for `expected` items to begin with.
    pub fn new(expected: usize) -> Self {
        Self {
            layers: vec![Layer::with_capacity(expected, LAYER_FP)],
        }
    }

    fn hash(item: &[u8]) -> u128 {
        XxHash3_128::oneshot(item)
    }

    /// False means the item was certainly never inserted.
    pub fn may_contain(&self, item: &[u8]) -> bool {
        let h = Self::hash(item);
        self.layers.iter().any(|l| l.contains(h))
    }

    pub fn insert(&mut self, item: &[u8]) {
        let h = Self::hash(item);
        if self.layers.iter().any(|l| l.contains(h)) {
            return;
        }
        let last = self.layers.len() - 1;
        if self.layers[last].len >= self.layers[last].capacity {
            let capacity = self.layers[last].capacity * 2;
            let fp = LAYER_FP * 0.5f64.powi(self.layers.len() as i32);
            self.layers.push(Layer::with_capacity(capacity, fp));
        }
        let last = self.layers.len() - 1;
        self.layers[last].insert(h);
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bits.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_items_are_always_found() {
        let mut b = ScalableBloom::new(1000);
        for i in 0..50_000 {
            b.insert(format!("msg-{i}").as_bytes());
        }
        assert!((0..50_000).all(|i| b.may_contain(format!("msg-{i}").as_bytes())));
        assert!(b.layers.len() > 1, "the filter should have grown");
    }

    #[test]
    fn false_positives_stay_rare_as_the_filter_grows() {
        let mut b = ScalableBloom::new(1000);
        for i in 0..100_000 {
            b.insert(format!("in-{i}").as_bytes());
        }
        let false_positives = (0..100_000)
            .filter(|i| b.may_contain(format!("out-{i}").as_bytes()))
            .count();
        // Each layer aims at 0.1%; all layers together stay well under 1%.
        assert!(
            false_positives < 1_000,
            "{false_positives} false positives in 100,000"
        );
    }
}
