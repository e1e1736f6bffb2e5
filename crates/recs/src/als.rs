//! Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren & Volinsky,
//! "Collaborative filtering for implicit feedback datasets", 2008), each least-squares solve
//! approximated by a few conjugate-gradient steps from the previous solution (Takács, Pilászy
//! & Tikk 2011), as the `implicit` package's CPU solver does, so that the two can be compared
//! on the same data with the same settings.
//!
//! The matrix holds confidences: an observed cell's value `c` is how sure we are that the
//! person likes the item (preference 1), every other cell has confidence 1 and preference 0.
//! (`implicit` reads the matrix the same way, scaled by `alpha`.) A person's vector `x`
//! minimises `Σᵢ cᵤᵢ (pᵤᵢ − x·yᵢ)² + λ‖x‖²`, that is
//! `(YᵀY + Σ_{i∈I(u)} (cᵤᵢ − 1) yᵢyᵢᵀ + λI) x = Σ_{i∈I(u)} cᵤᵢ yᵢ`: only the person's own
//! items enter beside the shared `YᵀY`, which is what makes it fast.
//!
//! Written here: no maintained Rust crate implements implicit ALS with conjugate gradient
//! (the matrix-factorisation crates do explicit ratings by SGD).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::index::Quantized;
use crate::matrix::Csr;
use crate::topk::TopK;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    pub factors: usize,
    pub regularization: f32,
    /// Confidence per unit of weight.
    pub alpha: f32,
    pub iterations: usize,
    pub cg_steps: usize,
    pub seed: u64,
}

impl Default for AlsParams {
    /// `implicit`'s defaults but for the number of factors (64 rather than 100: a shop's
    /// catalogue is smaller than a music service's).
    fn default() -> Self {
        AlsParams {
            factors: 64,
            regularization: 0.01,
            alpha: 1.0,
            iterations: 15,
            cg_steps: 3,
            seed: 1,
        }
    }
}

/// Fitted factors, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Als {
    pub factors: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
    /// `YᵀY + λI` of the item factors (for folding people in).
    #[serde(skip)]
    yty: Vec<f32>,
    /// The 8-bit copy large catalogues are scanned on (built by `fit` and `prepare`).
    #[serde(skip)]
    index: Option<Quantized>,
}

/// From this many items, top lists are found on the 8-bit copy, then rescored exactly.
pub const INDEX_FROM_ITEMS: usize = 20_000;

/// `a · b`, summed in 16 lanes: a single running sum makes every addition wait for the one
/// before, and the compiler may not reorder float additions itself; independent lanes let it
/// use vector instructions (4 to 8× faster here).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

/// `YᵀY + λI` for `Y` with `f` columns.
fn gram(y: &[f32], f: usize, reg: f32) -> Vec<f32> {
    let mut g = y
        .par_chunks(f * 1024)
        .map(|block| {
            let mut g = vec![0f32; f * f];
            for row in block.chunks(f) {
                for (a, ra) in row.iter().enumerate() {
                    if *ra != 0.0 {
                        axpy(*ra, row, &mut g[a * f..(a + 1) * f]);
                    }
                }
            }
            g
        })
        .reduce(
            || vec![0f32; f * f],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    for d in 0..f {
        g[d * f + d] += reg;
    }
    g
}

fn mat_vec(m: &[f32], v: &[f32], out: &mut [f32]) {
    let f = v.len();
    for (o, row) in out.iter_mut().zip(m.chunks(f)) {
        *o = dot(row, v);
    }
}

/// A few conjugate-gradient steps towards a person's vector `x` (from its current value).
fn cg_solve(x: &mut [f32], items: &[u32], conf: &[f32], y: &[f32], yty: &[f32], steps: usize, rel_tol: f32) {
    let f = x.len();
    if items.is_empty() {
        // No interactions: the least squares' answer is 0 (as `implicit` sets it), not what
        // is left of the random start.
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut r = vec![0f32; f];
    mat_vec(yty, x, &mut r);
    r.iter_mut().for_each(|v| *v = -*v);
    for (i, c) in items.iter().zip(conf) {
        if *c > 0.0 {
            let yi = &y[*i as usize * f..(*i as usize + 1) * f];
            axpy(c - (c - 1.0) * dot(yi, x), yi, &mut r);
        }
    }
    let mut p = r.clone();
    let mut rs_old = dot(&r, &r);
    if rs_old < 1e-20 {
        return;
    }
    let stop = (rs_old * rel_tol).max(1e-20);
    let mut ap = vec![0f32; f];
    for _ in 0..steps {
        mat_vec(yty, &p, &mut ap);
        for (i, c) in items.iter().zip(conf) {
            if *c > 0.0 {
                let yi = &y[*i as usize * f..(*i as usize + 1) * f];
                axpy((c - 1.0) * dot(yi, &p), yi, &mut ap);
            }
        }
        let pap = dot(&p, &ap);
        if pap <= 0.0 {
            return;
        }
        let a = rs_old / pap;
        axpy(a, &p, x);
        axpy(-a, &ap, &mut r);
        let rs_new = dot(&r, &r);
        if rs_new < stop {
            return;
        }
        let beta = rs_new / rs_old;
        p.iter_mut().zip(&r).for_each(|(p, r)| *p = r + beta * *p);
        rs_old = rs_new;
    }
}

/// One half-iteration: every row of `x` solved against `y` for the rows of `m`.
fn solve_all(m: &Csr, x: &mut [f32], y: &[f32], f: usize, reg: f32, steps: usize) {
    let yty = gram(y, f, reg);
    x.par_chunks_mut(f).enumerate().for_each(|(u, xu)| {
        let (items, conf) = m.row(u);
        cg_solve(xu, items, conf, y, &yty, steps, 0.0);
    });
}

impl Als {
    /// Fits users × items `m` (values are weights; confidence is `alpha` × weight).
    /// `progress` is called after each iteration with its number.
    pub fn fit(m: &Csr, p: &AlsParams, mut progress: impl FnMut(usize)) -> Als {
        let f = p.factors.max(1);
        let cui = m.clone().scaled(p.alpha);
        let ciu = cui.transpose();
        let mut rng = StdRng::seed_from_u64(p.seed);
        let mut xs: Vec<f32> = (0..m.rows * f).map(|_| rng.random::<f32>() * 0.01).collect();
        let mut ys: Vec<f32> = (0..m.cols * f).map(|_| rng.random::<f32>() * 0.01).collect();
        for it in 0..p.iterations {
            solve_all(&cui, &mut xs, &ys, f, p.regularization, p.cg_steps);
            solve_all(&ciu, &mut ys, &xs, f, p.regularization, p.cg_steps);
            progress(it + 1);
        }
        let mut als = Als {
            factors: f,
            regularization: p.regularization,
            alpha: p.alpha,
            user_factors: xs,
            item_factors: ys,
            yty: Vec::new(),
            index: None,
        };
        als.prepare();
        als
    }

    /// After fitting or deserialising: the shared matrix folding in needs, and the 8-bit copy
    /// of a large catalogue.
    pub fn prepare(&mut self) {
        if self.yty.is_empty() {
            self.yty = gram(&self.item_factors, self.factors, self.regularization);
        }
        if self.index.is_none() && self.items() >= INDEX_FROM_ITEMS {
            self.index = Some(Quantized::build(&self.item_factors, self.factors));
        }
    }

    pub fn items(&self) -> usize {
        self.item_factors.len() / self.factors
    }

    pub fn item(&self, i: u32) -> &[f32] {
        &self.item_factors[i as usize * self.factors..(i as usize + 1) * self.factors]
    }

    pub fn user(&self, u: u32) -> &[f32] {
        &self.user_factors[u as usize * self.factors..(u as usize + 1) * self.factors]
    }

    /// A person's vector from their interactions (item, weight), without retraining: the same
    /// least squares the training solves, run to convergence from zero. This is how a new
    /// click changes someone's recommendations at once.
    pub fn fold_in(&self, interactions: &[(u32, f32)]) -> Vec<f32> {
        let f = self.factors;
        let mut x = vec![0f32; f];
        let n = self.items() as u32;
        // One cell per item, its weights summed, as the training matrix holds them.
        let mut cells: std::collections::BTreeMap<u32, f32> = Default::default();
        for (i, w) in interactions.iter().filter(|(i, w)| *i < n && *w > 0.0) {
            *cells.entry(*i).or_default() += w;
        }
        let (items, conf): (Vec<u32>, Vec<f32>) = cells.into_iter().map(|(i, w)| (i, w * self.alpha)).unzip();
        if items.is_empty() {
            return x;
        }
        let owned;
        let yty = if self.yty.is_empty() {
            owned = gram(&self.item_factors, f, self.regularization);
            &owned
        } else {
            &self.yty
        };
        // Until the residual's squared norm is a millionth of the first (its norm a
        // thousandth), at most 32 steps: a few for a history of a handful of items.
        cg_solve(&mut x, &items, &conf, &self.item_factors, yty, f.min(32), 1e-6);
        x
    }

    /// The `k` items scoring highest for vector `x`, leaving out those `skip` says: on the
    /// 8-bit copy then exactly for a large catalogue ([`INDEX_FROM_ITEMS`]), else exactly.
    pub fn top(&self, x: &[f32], k: usize, skip: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        match &self.index {
            Some(q) => q.top(x, k, skip, |i| dot(x, self.item(i))),
            None => self.top_exact(x, k, skip),
        }
    }

    /// The `k` items scoring highest for `x`, every item scored exactly.
    pub fn top_exact(&self, x: &[f32], k: usize, skip: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let mut t = TopK::new(k);
        // The filter is asked only about items that would make the list: a hash lookup per
        // item of a large catalogue would cost more than scoring it.
        for (i, yi) in self.item_factors.chunks_exact(self.factors).enumerate() {
            let s = dot(x, yi);
            if t.would_take(s) && !skip(i as u32) {
                t.offer(i as u32, s);
            }
        }
        t.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two taste groups: users 0–9 like items 0–4, users 10–19 items 5–9, each all but one.
    fn planted() -> Csr {
        let mut t = Vec::new();
        for u in 0..20u32 {
            let base = if u < 10 { 0 } else { 5 };
            for k in 0..5u32 {
                if k != u % 5 {
                    t.push((u, base + k, 1.0));
                }
            }
        }
        Csr::from_triples(20, 10, t)
    }

    #[test]
    fn recommends_the_missing_item_of_ones_group() {
        let m = planted();
        let p = AlsParams {
            factors: 4,
            regularization: 0.01,
            alpha: 10.0,
            iterations: 15,
            ..AlsParams::default()
        };
        let model = Als::fit(&m, &p, |_| {});
        for u in 0..20u32 {
            let (seen, _) = m.row(u as usize);
            let top = model.top(model.user(u), 1, |i| seen.contains(&i));
            let want = if u < 10 { 0 } else { 5 } + u % 5;
            assert_eq!(top[0].0, want, "user {u}: {top:?}");
        }
        // Folded in from their items without retraining, user 11 gets nearly the vector
        // training gave them, and the same pick.
        let items: Vec<(u32, f32)> = m.row(11).0.iter().map(|i| (*i, 1.0)).collect();
        let x = model.fold_in(&items);
        let learned = model.user(11);
        let dist: f32 = x
            .iter()
            .zip(learned)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        let norm: f32 = learned.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!(dist < 0.1 * norm, "{x:?} against {learned:?}");
        assert_eq!(model.top(&x, 1, |i| m.row(11).0.contains(&i))[0].0, 6);
        // Nothing known: a zero vector, no panic.
        assert!(model.fold_in(&[(99, 1.0)]).iter().all(|v| *v == 0.0));
    }
}
