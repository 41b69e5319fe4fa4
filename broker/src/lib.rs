//! The broker: the Kafka API server, replica manager, group coordinator and the `strata` binary.
//!
//! Empty for now: it is built by the issue that brings the single-node server (see `docs/architecture.md`).
