//! The Kafka wire protocol as Strata speaks it: frame codec, request and response types, and a small async
//! client for the CLI, tests and benchmarks; plus the internal gRPC messages between nodes.
//!
//! Empty for now: it is built by the issue that brings the single-node server (see `docs/architecture.md`).
