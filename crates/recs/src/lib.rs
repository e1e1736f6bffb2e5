//! Recommendations that learn, as pure computations over interactions (no I/O): the caller
//! reads events or CSV files into [`data::Interactions`], trains a strategy, and asks it for a
//! person's top items.
//!
//! - [`data`]: interactions (user, item, weight, time, basket) with event weights and a time
//!   decay; CSV tables of interactions and items, bad lines reported by number;
//! - [`matrix`]: the sparse user × item matrix the learners read;
//! - [`als`]: implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) with
//!   conjugate-gradient steps, as the `implicit` package computes it, and fold-in of a new
//!   person's vector without retraining;
//! - [`index`]: 8-bit item factors, so that a large catalogue is served within a millisecond;
//! - [`cooccur`]: item-to-item co-occurrence in baskets (cosine, Jaccard or lift);
//! - [`content`]: TF-IDF vectors of the items' text and attributes, a person's taste as the
//!   decayed sum of what they interacted with;
//! - [`popular`]: best sellers with a decay;
//! - [`strategy`]: the strategies by name, a hybrid blend and cascade, each with reasons;
//! - [`eval`]: splits that never let the future into training, and ranking metrics;
//! - [`synthetic`]: interactions with planted taste groups, for tests and benchmarks.

pub mod als;
pub mod content;
pub mod cooccur;
pub mod data;
pub mod eval;
pub mod index;
pub mod matrix;
pub mod popular;
pub mod strategy;
pub mod synthetic;
pub(crate) mod topk;
