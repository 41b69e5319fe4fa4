//! The fault suite's parts: a cluster and the faults it takes ([`cluster`]: loopback processes;
//! [`compose`]: the `deploy/` compose cluster), what clients do and the history
//! they leave ([`workload`]), faults from a seed ([`nemesis`]), and the checkers ([`check`]).
//!
//! `tests/faults.rs` puts them together: a three-node cluster, producers and a group consumer running
//! throughout, faults one at a time, then the final log read back and checked against the history.

pub mod check;
pub mod cluster;
pub mod compose;
pub mod nemesis;
pub mod workload;
