//! The `strata` client commands: `topic`, `produce`, `consume`, `bench`, `group`, `share-group` and
//! `cluster`, built on `strata_protocol::client`, and `health`, which asks a node's HTTP endpoint instead
//! (plain HTTP/1.0, no Kafka, no `--bootstrap`).
//!
//! Every command starts at the broker given by `--bootstrap` and fails with an error that `main` prints as
//! one line. Commands that only administer (`topic`, `cluster`) talk to that broker alone; those that need a
//! partition's leader or a group's coordinator go through a [`Router`], which finds them on whichever
//! broker of the cluster they are and follows them when they move. Things several commands need live here or
//! in a module of their own, so that commands do not copy one another:
//!
//! - this file: `--bootstrap` and connecting, parsing of `key=value`, acks and codecs, the runtime.
//! - `producer`: batching records per partition and sending them pipelined to each partition's leader
//!   (`produce`, `bench produce`).
//! - `fetcher`: fetching from each partition's leader, a fetch in flight per leader (`consume`,
//!   `bench consume`).
//! - `format`: how `consume` prints a record (a `%k %v…` template or JSON), and the tables of `group` and
//!   `cluster`.
//! - `topic`, `produce`, `consume`, `bench`, `group`, `share_group`, `cluster`, `health`: one file per command.

pub mod bench;
pub mod cluster;
pub mod consume;
mod fetcher;
mod format;
pub mod group;
pub mod health;
pub mod produce;
mod producer;
pub mod share_group;
pub mod topic;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_protocol::client::records::parse_compression;
use strata_protocol::client::router::connect_bootstrap;
use strata_protocol::client::{Acks, Client, ClientOptions, Compression, Router};

/// Where the commands find the cluster.
#[derive(Debug, Clone, Args)]
pub struct Bootstrap {
    /// A broker to start from, as HOST:PORT (or several, separated by commas: the first that answers).
    #[arg(
        long,
        global = true,
        env = "STRATA_BOOTSTRAP",
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
}

impl Bootstrap {
    fn options() -> ClientOptions {
        ClientOptions {
            client_id: "strata-cli".into(),
            ..ClientOptions::default()
        }
    }

    /// Connects to the bootstrap broker and negotiates API versions.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(connect_bootstrap(&self.bootstrap, &Self::options()).await?)
    }

    /// Connects to the bootstrap broker and learns the cluster's brokers, for commands that talk to
    /// leaders and coordinators.
    pub async fn router(&self) -> anyhow::Result<Router> {
        Ok(Router::connect(&self.bootstrap, Self::options()).await?)
    }
}

/// Runs a command's future on a single-threaded runtime: a command's conversations with brokers are
/// requests pipelined on a few connections, which one thread keeps busy, and a second thread would only
/// compete with a broker on the same machine.
pub fn block_on<F: Future<Output = anyhow::Result<()>>>(command: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(command)
}

/// `key=value`, for `--config` and `--headers`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

pub fn parse_acks(text: &str) -> Result<Acks, String> {
    Acks::parse(text).ok_or_else(|| format!("`{text}` is not 0, 1 or all"))
}

pub fn parse_compression_arg(text: &str) -> Result<Compression, String> {
    parse_compression(text).ok_or_else(|| format!("`{text}` is not none, gzip, snappy, lz4 or zstd"))
}

/// Producer settings shared by `produce` and `bench produce`, named as Kafka's producer settings are.
#[derive(Debug, Clone, Args)]
pub struct ProducerArgs {
    /// Acknowledgement to wait for: 0 (none), 1 (the leader) or all (every in-sync replica).
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    pub acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression_arg)]
    pub compression: Compression,
    /// The most bytes in one partition's batch (before compression). Keep it under the topic's
    /// max.message.bytes (1 MiB by default).
    #[arg(long, default_value_t = 512 * 1024, value_name = "BYTES")]
    pub batch_size: usize,
    /// How long a batch that is not full may wait for more records before it is sent.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub linger_ms: u64,
    /// Produce requests sent and not yet acknowledged, at most, on each leader's connection.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_in_flight: usize,
}

impl ProducerArgs {
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), "".into())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }
}
