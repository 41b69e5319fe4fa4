//! Strata's fault suite: the whole system, or the controller quorum alone, under crashes, partitions and
//! paused links, checked against invariants over what its clients saw and what its nodes hold; and the fuzz
//! targets' bodies, so that every test run replays their corpus on stable.
//!
//! # Layout
//!
//! - [`faults`]: Jepsen-style histories against real clusters — a workload of `acks=all` producers and a
//!   group consumer (librdkafka), faults one at a time (SIGKILL, SIGSTOP past the session, the active
//!   controller killed, rolling restarts), and checkers for lost, moved, duplicated, unexpected and
//!   reordered records and committed offsets past the end. `tests/faults.rs` runs it against loopback
//!   processes.
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

pub mod faults;
pub mod fuzz;
pub mod sim;
