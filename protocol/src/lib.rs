//! The Kafka wire protocol as Strata speaks it.
//!
//! # Layout
//!
//! - [`frame`]: the 4-byte size prefix. A size over the limit is refused before anything is allocated;
//!   an incomplete frame is ordinary control flow, not an error.
//! - [`request`]: decodes a frame into a request header and a typed body (message codecs come from the
//!   `kafka-protocol` crate), checking the API key and version against what the broker supports first.
//! - [`response`]: encodes a typed response body with the header its version needs.
//! - [`client`]: a small async client: one broker's connection (version negotiation, any request, pipelined
//!   produce, typed admin helpers), and a router over a cluster's brokers that finds partition leaders and
//!   group coordinators; used by the `strata` CLI and the tests.
//! - [`transport`]: what connections run over: the OS's TCP, or a simulation's.
//! - [`metrics`]: counters, fixed-bucket histograms and the Prometheus text format, for the broker's and the
//!   controller's `/metrics`.
//! - [`blocking`]: file work started from async code, on tokio's blocking pool (inline in a simulation, where
//!   work on another thread would take simulated time).
//!
//! # Errors
//!
//! [`frame::FrameError`] and [`request::RequestError`] say why a connection must be closed or what to answer;
//! they carry enough (API key, version, correlation id) for the broker to log the cause.

pub mod blocking;
pub mod client;
pub mod frame;
pub mod metrics;
pub mod request;
pub mod response;
pub mod transport;

pub use kafka_protocol;
