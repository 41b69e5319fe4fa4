//! Strata's fault suite: the whole system, or the controller quorum alone, under crashes, partitions and
//! paused links, checked against invariants over what its clients saw and what its nodes hold; and the fuzz
//! targets' bodies, so that every test run replays their corpus on stable.
//!
//! # Layout
//!
//! - `fuzz`: the bodies of the fuzz targets in `fuzz/` (request decoding, stored batches, the controller's
//!   records), which `cargo fuzz` runs under libFuzzer and `tests/fuzz_corpus.rs` replays on the committed
//!   corpus.
//! - `sim`: the harness the turmoil simulations share (seeds, seeded choices, event log, faults applied
//!   between steps, tonic over simulated TCP).
//! - `tests/controller_quorum.rs`: three controllers (openraft, their log stores and state machines on disk,
//!   their gRPC network) on simulated hosts, under seeded partitions, message loss, crashes and restarts.
//! - `tests/replication.rs`: three whole nodes (controller, broker, storage) with Kafka clients producing
//!   and consuming, under seeded crashes, partitions and held links.
//!
//! Storage-level crash tests live in `storage/tests/`, the controller's real-process tests in
//! `controller/tests/`.

pub mod fuzz;
pub mod sim;
