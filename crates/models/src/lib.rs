//! Models of missive, pure: customer lifetime value ([`clv`]: BG/NBD for repeat purchases and
//! the probability of being alive, Gamma-Gamma for spend), fitted by maximum likelihood.
//! Clustering, propensity and send-time models are to come (issue 14).

pub mod clv;
