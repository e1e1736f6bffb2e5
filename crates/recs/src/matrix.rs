//! A compressed sparse row matrix of confidences (users × items, or its transpose).

use crate::data::{Decay, Interactions};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    pub rows: usize,
    pub cols: usize,
    /// Row `r`'s entries are `indices[indptr[r]..indptr[r + 1]]`, ascending.
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Csr {
    /// From `(row, col, value)` triples; duplicates are summed.
    pub fn from_triples(rows: usize, cols: usize, mut t: Vec<(u32, u32, f32)>) -> Csr {
        t.sort_unstable_by_key(|&(r, c, _)| (r, c));
        let mut indptr = vec![0usize; rows + 1];
        let mut indices = Vec::with_capacity(t.len());
        let mut values: Vec<f32> = Vec::with_capacity(t.len());
        let mut last: Option<(u32, u32)> = None;
        for (r, c, v) in t {
            if last == Some((r, c)) {
                if let Some(x) = values.last_mut() {
                    *x += v;
                }
                continue;
            }
            last = Some((r, c));
            indptr[r as usize + 1] += 1;
            indices.push(c);
            values.push(v);
        }
        for r in 0..rows {
            indptr[r + 1] += indptr[r];
        }
        Csr {
            rows,
            cols,
            indptr,
            indices,
            values,
        }
    }

    /// Users × items, each cell the decayed sum of the weights, as of the data's end.
    pub fn of(data: &Interactions, decay: Decay) -> Csr {
        let end = data.end();
        let t = data
            .rows
            .iter()
            .map(|r| (r.user, r.item, r.weight * decay.factor(r.at, end)))
            .collect();
        Csr::from_triples(data.users.len(), data.items.len(), t)
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    pub fn transpose(&self) -> Csr {
        let mut t = Vec::with_capacity(self.nnz());
        for r in 0..self.rows {
            let (c, v) = self.row(r);
            t.extend(c.iter().zip(v).map(|(c, v)| (*c, r as u32, *v)));
        }
        Csr::from_triples(self.cols, self.rows, t)
    }

    /// Every value times `a`.
    pub fn scaled(mut self, a: f32) -> Csr {
        self.values.iter_mut().for_each(|v| *v *= a);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_sum_and_the_transpose_round_trips() {
        let m = Csr::from_triples(2, 3, vec![(1, 2, 1.0), (0, 1, 2.0), (1, 2, 0.5), (1, 0, 4.0)]);
        assert_eq!(m.row(0), (&[1u32][..], &[2.0f32][..]));
        assert_eq!(m.row(1), (&[0u32, 2][..], &[4.0f32, 1.5][..]));
        assert_eq!(m.transpose().transpose(), m);
    }
}
