//! Strata's fault suite: the whole system, or the controller quorum alone, under crashes, partitions and
//! paused links, checked against invariants over what its clients saw and what its nodes hold.
//!
//! # Layout
//!
//! - `sim`: the harness the turmoil simulations share (seeds, seeded choices, event log, faults applied
//!   between steps, tonic over simulated TCP).
//! - `tests/controller_quorum.rs`: three controllers (openraft, their log stores and state machines on disk,
//!   their gRPC network) on simulated hosts, under seeded partitions, message loss, crashes and restarts.
//! - `tests/replication.rs`: three whole nodes (controller, broker, storage) with Kafka clients producing
//!   and consuming, under seeded crashes, partitions and held links.
//!
//! Storage-level crash tests live in `storage/tests/`, the controller's real-process tests in
//! `controller/tests/`.

pub mod sim;
