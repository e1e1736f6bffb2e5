//! Integration tests of the `missive` binary: each test starts the real server as a child
//! process on a port the OS picks, in its own temporary data directory, and drives it over
//! HTTP the way clients and operators do (batches, `kill -9`, SIGTERM, Segment libraries).

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(unix)]
mod cluster;
mod cluster_nodes;
mod crash;
mod demo;
mod doctor;
mod examples;
mod experiment;
mod golden;
mod journeys;
mod model;
mod privacy;
mod recs;
mod render;
mod segment_python;
#[cfg(unix)]
mod shutdown;
mod slowloris;
mod streams_out;
mod support;
mod tls;
mod webhooks;
