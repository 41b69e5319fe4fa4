//! Cluster tests: real `strata` processes on loopback ports, real Kafka clients, real faults.
//!
//! Empty until the broker exists; storage-level tests live in `storage/tests/`.
