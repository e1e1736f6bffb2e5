//! Models of missive, pure: customer lifetime value ([`clv`]: BG/NBD for repeat purchases and
//! the probability of being alive, Gamma-Gamma for spend), clustering ([`cluster`]: K-Means,
//! DBSCAN, hierarchical) and propensity ([`classify`]: random forest, gradient boosting,
//! logistic regression, validated by cross-validation and a holdout), on tables read by
//! [`dataset`] and standardized by [`scale`]. Send-time models are to come (issue 14).

pub mod classify;
pub mod cluster;
pub mod clv;
pub mod dataset;
pub mod scale;
