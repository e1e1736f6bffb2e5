//! Models of missive, pure: customer lifetime value ([`clv`]: BG/NBD for repeat purchases and
//! the probability of being alive, Gamma-Gamma for spend), clustering ([`cluster`]: K-Means,
//! DBSCAN, hierarchical) and propensity ([`classify`]: random forest, gradient boosting,
//! logistic regression, validated by cross-validation and a holdout), on tables read by
//! [`dataset`] or from profiles by [`features`], and standardized by [`scale`]; and the best
//! hour of the week to send to each person ([`send_time`]).

pub mod classify;
pub mod cluster;
pub mod clv;
pub mod dataset;
pub mod features;
pub mod scale;
pub mod send_time;
